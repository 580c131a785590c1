"""The ESG policy: chains by A*, DAGs by dominator-based SLO distribution.

1. **Chains** are solved exactly by :func:`~esg_plugin.planner.astar.solve_chain`.
2. **DAGs** are cut at the stages every path passes through
   (:mod:`~esg_plugin.planner.segments`). The budget is shared among the
   series elements by a *reference latency*: each element first gets its
   fastest latency ``fast`` (so that it can always fit), and the slack left
   over is shared in proportion to ``cheap − fast``, where ``cheap`` is the
   element's latency when every stage runs its cheapest configuration.
   ``cheap − fast`` is how much time the element can turn into savings:
   budget beyond ``cheap`` buys nothing, and an element whose fastest and
   cheapest configurations coincide needs no slack at all. (Sharing by
   ``fast`` alone, the obvious alternative, starves cheap-but-slow stages
   of the time that makes them cheap; ``docs/planner.md`` compares both.)
   Elements are solved in order, and the budget of each is recomputed from
   what the earlier ones actually used, so unused slack passes on.
3. Parallel branches inside a gap each get the gap's budget and are solved
   recursively (chains by A*). An **irreducible** region (no cut stage, one
   component) is solved along its critical path: the path that is longest at
   the cheapest configurations is solved as a chain with the whole budget,
   and the stages hanging off it get the window that path leaves them. Where
   a window is too small, the region falls back to a uniform scaling of every
   stage's time between its fastest and cheapest configurations.
4. **Slack reclamation**: a final pass gives each stage the cheapest
   configuration that its float (the time it can grow without making the
   plan miss the budget) allows, greatest saving first, until nothing changes.
   It only lowers cost and never breaks the budget.

The result is optimal for chains (unless a search limit stopped it) and a
heuristic for other DAGs; ``bench/dag_quality.py`` measures the gap to the
oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple, Optional

import networkx as nx

from ..model import LATENCY_TOLERANCE_MS, PlanStats
from .astar import solve_chain
from .limits import NO_LIMITS, SearchLimits
from .problem import Problem
from .segments import Element, critical_path, is_path, series_elements


#: Fractions of an element's usable slack at which its cost is sampled for
#: the refinement of a series split.
_REFINE_FRACTIONS = (0.0, 0.125, 0.25, 0.5, 0.75, 1.0)
#: Series nested deeper than this keep the plain proportional split.
DEFAULT_REFINE_DEPTH = 2


def solve_esg(
    problem: Problem, limits: SearchLimits = NO_LIMITS, refine_depth: int = DEFAULT_REFINE_DEPTH
) -> tuple[Optional[dict[str, int]], PlanStats]:
    """Configuration index per stage (into its menu), or None if no plan fits.

    ``refine_depth`` 0 gives the plain proportional split of the paper.
    """
    return _EsgSolver(problem, limits, refine_depth).solve()


class _Point(NamedTuple):
    """One outcome of solving an element at some budget."""

    latency_ms: float
    cost_pct: int
    picks: dict[str, int]


@dataclass(frozen=True)
class _PointMenu:
    """Outcomes of one element as a chain-search menu: the Pareto front of
    its points, fastest first (what :func:`solve_chain` needs)."""

    points: tuple[_Point, ...]
    latencies_ms: tuple[float, ...]
    costs_pct: tuple[int, ...]

    @property
    def min_latency_ms(self) -> float:
        return self.latencies_ms[0]

    @staticmethod
    def from_points(points: list[_Point]) -> "_PointMenu":
        front: list[_Point] = []
        for p in sorted(points, key=lambda p: (p.latency_ms, p.cost_pct)):
            if not front or p.cost_pct < front[-1].cost_pct:
                front.append(p)
        return _PointMenu(tuple(front), tuple(p.latency_ms for p in front), tuple(p.cost_pct for p in front))


@dataclass
class _Shape:
    """How one region (a set of stages) decomposes; computed once per region."""

    stages: tuple[str, ...]
    """Topological order."""
    preds: tuple[tuple[str, ...], ...]
    """Predecessors of each stage inside the region."""
    kind: str
    """'chain', 'series', 'parallel' or 'irreducible'."""
    parts: tuple = ()
    """series: Elements; parallel: stage tuples; irreducible: (critical path, hanging components)."""
    fast_ms: float = 0.0
    cheap_ms: float = 0.0


class _EsgSolver:
    def __init__(self, problem: Problem, limits: SearchLimits, refine_depth: int) -> None:
        self.problem = problem
        self.limits = limits
        self.graph = problem.workflow.graph
        self.hop_ms = problem.workflow.hop_ms
        self.menus = problem.menus
        self.fast_ms = {s: m.min_latency_ms for s, m in problem.menus.items()}
        self.cheap_ms = {s: m.cheapest_latency_ms for s, m in problem.menus.items()}
        self.picks: dict[str, int] = {}
        self.depth = 0
        self.refine_depth = refine_depth
        self.shapes: dict[frozenset, _Shape] = {}
        self.segments: set[frozenset] = set()
        self.counts = {"expanded": 0, "generated": 0, "latency": 0, "cost": 0, "dominance": 0}
        self.proven = True

    # --- entry point -------------------------------------------------------
    def solve(self) -> tuple[Optional[dict[str, int]], PlanStats]:
        whole = self._shape(tuple(self.problem.workflow.topological_order()))
        budget = self.problem.budget_ms + LATENCY_TOLERANCE_MS
        if whole.fast_ms > budget:
            return None, PlanStats(pruned_by_latency=1, segments=0)
        self._region(whole, self.problem.budget_ms)
        if self._longest(whole, self._chosen_ms()) > budget:
            # A bug-free decomposition never gets here; stay safe regardless.
            self.picks = self.problem.fastest()
        self._reclaim_slack()
        stats = PlanStats(
            expanded=self.counts["expanded"],
            generated=self.counts["generated"],
            pruned_by_latency=self.counts["latency"],
            pruned_by_cost=self.counts["cost"],
            pruned_by_dominance=self.counts["dominance"],
            segments=len(self.segments),
            proven_optimal=self.proven and whole.kind == "chain",
        )
        return dict(self.picks), stats

    # --- helpers -----------------------------------------------------------
    def _chosen_ms(self) -> dict[str, float]:
        return {s: self.menus[s].latencies_ms[i] for s, i in self.picks.items()}

    def _longest(self, shape: _Shape, latency_ms: dict[str, float]) -> float:
        """Longest path through the region, hops included."""
        finish: dict[str, float] = {}
        hop = self.hop_ms
        for s, preds in zip(shape.stages, shape.preds):
            start = max([finish[p] for p in preds], default=-hop) + hop
            finish[s] = start + latency_ms[s]
        return max(finish.values())

    def _shape(self, stages: tuple[str, ...]) -> _Shape:
        key = frozenset(stages)
        shape = self.shapes.get(key)
        if shape is not None:
            return shape
        sub = self.graph.subgraph(stages)
        order = tuple(nx.topological_sort(sub)) if len(stages) > 1 else stages
        preds = tuple(tuple(sub.predecessors(s)) for s in order)
        shape = _Shape(order, preds, "chain")
        if not is_path(sub):
            elements = series_elements(sub)
            components = list(nx.weakly_connected_components(sub))
            position = {s: i for i, s in enumerate(order)}
            if len(elements) > 1:
                shape.kind, shape.parts = "series", tuple(elements)
            elif len(components) > 1:
                shape.kind = "parallel"
                shape.parts = tuple(tuple(sorted(c, key=position.__getitem__)) for c in components)
            else:
                path = critical_path(sub, self.cheap_ms, self.hop_ms)
                on_path = set(path)
                rest = sub.subgraph([s for s in order if s not in on_path])
                hanging = []
                for component in nx.weakly_connected_components(rest):
                    members = tuple(sorted(component, key=position.__getitem__))
                    feeders = tuple({p for s in members for p in sub.predecessors(s) if p in on_path})
                    consumers = tuple({q for s in members for q in sub.successors(s) if q in on_path})
                    hanging.append((members, feeders, consumers))
                shape.kind, shape.parts = "irreducible", (tuple(path), tuple(hanging))
        shape.fast_ms = self._longest(shape, self.fast_ms)
        shape.cheap_ms = self._longest(shape, self.cheap_ms)
        self.shapes[key] = shape
        return shape

    def _add_search_stats(self, stats: PlanStats) -> None:
        c = self.counts
        c["expanded"] += stats.expanded
        c["generated"] += stats.generated
        c["latency"] += stats.pruned_by_latency
        c["cost"] += stats.pruned_by_cost
        c["dominance"] += stats.pruned_by_dominance
        self.proven = self.proven and stats.proven_optimal

    # --- the recursion -----------------------------------------------------
    def _region(self, shape: _Shape, budget_ms: float) -> float:
        """Plan a region within ``budget_ms``; return its resulting latency."""
        if shape.kind == "chain":
            return self._chain(shape.stages, budget_ms)
        if shape.kind == "series":
            return self._series(shape.parts, budget_ms)
        if shape.kind == "parallel":
            return max(self._region(self._shape(branch), budget_ms) for branch in shape.parts)
        return self._irreducible(shape, budget_ms)

    def _chain(self, order: tuple[str, ...], budget_ms: float) -> float:
        self.segments.add(frozenset(order))
        hops_ms = self.hop_ms * (len(order) - 1)
        result = solve_chain([self.menus[s] for s in order], budget_ms - hops_ms, self.limits)
        self._add_search_stats(result.stats)
        if result.picks is None:
            # Callers only hand a chain a budget it can meet; be safe anyway.
            self.picks.update({s: 0 for s in order})
            return sum(self.fast_ms[s] for s in order) + hops_ms
        self.picks.update(zip(order, result.picks))
        return result.latency_ms + hops_ms

    def _element(self, element: Element, budget_ms: float) -> float:
        if element.kind == "chain":
            return self._chain(element.stages, budget_ms)
        return self._region(self._shape(element.stages), budget_ms)

    def _series(self, elements: tuple[Element, ...], budget_ms: float) -> float:
        """Share the budget among elements in series (see the module doc)."""
        hops_ms = self.hop_ms * (len(elements) - 1)
        inner_ms = budget_ms - hops_ms
        shapes = [self._shape(e.stages) for e in elements]
        fast = [sh.fast_ms for sh in shapes]
        room = [max(0.0, sh.cheap_ms - sh.fast_ms) for sh in shapes]
        proportional = self._proportional(elements, inner_ms, fast, room)
        if self.depth >= self.refine_depth:
            return sum(p.latency_ms for p in proportional) + hops_ms
        # Refinement: each element's cost at a few budgets between its fastest
        # latency and all the slack; the proportional outcome is one of the
        # points, so the refined split is never dearer.
        slack_ms = max(0.0, inner_ms - sum(fast))
        menus = []
        for i, element in enumerate(elements):
            points = [proportional[i]]
            for q in _REFINE_FRACTIONS:
                points.append(self._solve_isolated(element, fast[i] + min(room[i], slack_ms) * q))
            menus.append(_PointMenu.from_points(points))
        result = solve_chain(menus, inner_ms, self.limits)
        self._add_search_stats(result.stats)
        chosen = proportional if result.picks is None else [m.points[i] for m, i in zip(menus, result.picks)]
        for point in chosen:
            self.picks.update(point.picks)
        return sum(p.latency_ms for p in chosen) + hops_ms

    def _proportional(
        self, elements: tuple[Element, ...], inner_ms: float, fast: list[float], room: list[float]
    ) -> list[_Point]:
        """ESG's split: each element gets its fastest latency plus a share of
        the slack proportional to its room; solved in order, slack passing on."""
        remaining = inner_ms
        points = []
        for i, element in enumerate(elements):
            if i == len(elements) - 1:
                allotment = remaining
            else:
                slack = max(0.0, remaining - sum(fast[i:]))
                weight = sum(room[i:])
                share = room[i] / weight if weight > 0 else 1.0 / (len(elements) - i)
                allotment = fast[i] + slack * share
            point = self._solve_isolated(element, allotment)
            self.picks.update(point.picks)
            points.append(point)
            remaining -= point.latency_ms
        return points

    def _solve_isolated(self, element: Element, budget_ms: float) -> _Point:
        """Solve one element one level deeper; return its outcome without
        leaving its picks behind."""
        saved = self.picks
        self.picks = {}
        self.depth += 1
        try:
            latency = self._element(element, budget_ms)
            picks = self.picks
        finally:
            self.depth -= 1
            self.picks = saved
        cost = sum(self.menus[s].costs_pct[i] for s, i in picks.items())
        return _Point(latency, cost, picks)

    def _irreducible(self, shape: _Shape, budget_ms: float) -> float:
        """A region with no cut stage and one component: its critical path
        first, then the stages hanging off it within the windows it leaves."""
        path, hanging = shape.parts
        saved = dict(self.picks)
        self._chain(path, budget_ms)
        start: dict[str, float] = {}
        finish: dict[str, float] = {}
        t = 0.0
        for s in path:
            start[s] = t
            finish[s] = t + self.menus[s].latencies_ms[self.picks[s]]
            t = finish[s] + self.hop_ms
        for members, feeders, consumers in hanging:
            low = max((finish[p] + self.hop_ms for p in feeders), default=0.0)
            high = min((start[q] - self.hop_ms for q in consumers), default=budget_ms)
            part = self._shape(members)
            if high - low + LATENCY_TOLERANCE_MS < part.fast_ms:
                self.picks = saved
                return self._uniform(shape, budget_ms)
            self._region(part, high - low)
        latency = self._longest(shape, self._chosen_ms())
        if latency > budget_ms + LATENCY_TOLERANCE_MS:
            self.picks = saved
            return self._uniform(shape, budget_ms)
        return latency

    def _uniform(self, shape: _Shape, budget_ms: float) -> float:
        """Every stage gets ``fast + α·(cheap − fast)`` with the largest α in
        [0, 1] (to 1/1024) whose longest path fits; then the cheapest
        configuration within that. α = 0 is the fastest plan, which fits."""
        stages = shape.stages

        def node_budgets(alpha: float) -> dict[str, float]:
            return {s: self.fast_ms[s] + alpha * (self.cheap_ms[s] - self.fast_ms[s]) for s in stages}

        budget = budget_ms + LATENCY_TOLERANCE_MS
        low, high = 0.0, 1.0
        if shape.cheap_ms <= budget:
            low = 1.0
        else:
            for _ in range(10):
                mid = (low + high) / 2
                if self._longest(shape, node_budgets(mid)) <= budget:
                    low = mid
                else:
                    high = mid
        for s, limit_ms in node_budgets(low).items():
            pick = self.menus[s].cheapest_within(limit_ms)
            self.picks[s] = 0 if pick is None else pick
        self.segments.add(frozenset(stages))
        return self._longest(shape, self._chosen_ms())

    # --- the final pass ----------------------------------------------------
    def _reclaim_slack(self) -> None:
        """Greedily hand each stage's float to a cheaper configuration."""
        order = self.problem.workflow.topological_order()
        preds = {s: tuple(self.graph.predecessors(s)) for s in order}
        succs = {s: tuple(self.graph.successors(s)) for s in order}
        menus = self.menus
        hop = self.hop_ms
        deadline = self.problem.budget_ms
        while True:
            lat = self._chosen_ms()
            earliest_finish: dict[str, float] = {}
            for s in order:
                earliest_finish[s] = max([earliest_finish[p] for p in preds[s]], default=-hop) + hop + lat[s]
            latest_finish: dict[str, float] = {}
            for s in reversed(order):
                latest_finish[s] = min([latest_finish[q] - lat[q] for q in succs[s]], default=deadline + hop) - hop
            best_saving, best_stage, best_pick = 0, None, None
            for s in order:
                pick = menus[s].cheapest_within(lat[s] + latest_finish[s] - earliest_finish[s])
                if pick is None or pick <= self.picks[s]:
                    continue
                saving = menus[s].costs_pct[self.picks[s]] - menus[s].costs_pct[pick]
                if saving > best_saving:
                    best_saving, best_stage, best_pick = saving, s, pick
            if best_stage is None:
                return
            self.picks[best_stage] = best_pick
