"""The ESG policy: chains by A*, DAGs by dominator-based SLO distribution.

1. **Chains** are solved exactly by :func:`~esg_plugin.planner.astar.solve_chain`
   (A* with the latency and cost blades).
2. **DAGs** are cut at the stages every path passes through
   (:mod:`~esg_plugin.planner.segments`). The budget is shared among the
   series of segments by a *reference latency*: each segment first gets its
   fastest latency ``fast`` (so that it can always fit), and the slack left
   over is shared in proportion to ``cheap − fast``, where ``cheap`` is the
   segment's latency when every stage runs its cheapest configuration.
   ``cheap − fast`` is how much time the segment can turn into savings:
   budget beyond ``cheap`` buys nothing, and a segment whose fastest and
   cheapest configurations coincide needs no slack at all.
   (``docs/planner.md`` compares this with sharing the whole budget in
   proportion to ``fast``, selectable as ``reference="fast"``.)
   Segments are solved in order, and each one's budget is recomputed from
   what the earlier ones actually used, so unused slack passes on.
3. Parallel branches inside a segment each get the segment's budget and are
   solved recursively (chains by A*). An **irreducible** region (no cut
   stage, one component: two paths that cross) is solved along its critical
   path: the path that is longest at the cheapest configurations is solved
   as a chain with the whole budget, and the stages hanging off it get the
   window it leaves them; where a window cannot be expressed as one budget,
   those stages share their time by uniform scaling (:meth:`_EsgSolver._uniform`).
4. **Improvement** (:mod:`~esg_plugin.planner.improve`): slack reclamation,
   then, for workflows of up to ``PATH_SEARCH_MAX_STAGES`` stages, exact
   re-planning of the longest path through each stage with the others held
   fixed. Both only lower the cost and keep the budget.

The result is optimal for chains (unless a search limit stopped it) and a
heuristic for other DAGs; ``bench/dag_quality.py`` measures the gap to the
oracle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..model import LATENCY_TOLERANCE_MS, PlanStats
from .astar import solve_chain
from .improve import reclaim_slack, replan_paths
from .errors import PlannerError
from .limits import NO_LIMITS, SearchLimits
from .problem import Problem
from .segments import Element, Region, critical_path, series_elements

#: Workflows up to this many stages get the path re-planning pass; it costs
#: about a millisecond per stage on a 30-stage DAG and more beyond.
PATH_SEARCH_MAX_STAGES = 40


REFERENCES = ("room", "fast")


def solve_esg(
    problem: Problem, limits: SearchLimits = NO_LIMITS, reference: str = "room", improve: bool = True
) -> tuple[Optional[dict[str, int]], PlanStats]:
    """Configuration index per stage (into its menu), or None if no plan fits.

    ``reference`` picks how a series' slack is shared: ``room`` (in
    proportion to cheap − fast, the default) or ``fast`` (the whole budget in
    proportion to the fastest latencies). ``improve=False`` skips the
    improvement passes, leaving the dominator split alone (for comparisons).
    With ``limits.cost_ceiling_pct``, None where the plan would hold more:
    a chain's A* search stops as soon as none within it can be found, a
    DAG is not searched where a lower bound of what its plans hold is above
    it (:meth:`_EsgSolver._floor_above`).
    """
    if reference not in REFERENCES:
        raise PlannerError(f"unknown reference latency '{reference}'; known: {', '.join(REFERENCES)}")
    return _EsgSolver(problem, limits, reference, improve).solve()


@dataclass
class _Shape:
    """How one region decomposes; computed once per region and solve."""

    region: Region
    kind: str
    """'chain', 'series', 'parallel' or 'irreducible'."""
    parts: tuple = ()
    """series: Elements; parallel: stage tuples; irreducible: (critical path, hanging components)."""
    fast_ms: float = 0.0
    """Longest path with every stage at its fastest configuration."""
    cheap_ms: float = 0.0
    """Longest path with every stage at its cheapest configuration."""


class _EsgSolver:
    def __init__(self, problem: Problem, limits: SearchLimits, reference: str, improve: bool) -> None:
        self.problem = problem
        self.ceiling = limits.cost_ceiling_pct
        self.whole_limits = limits
        # a DAG's parts are searched without the ceiling: the improvement
        # passes may bring a plan whose parts cost more within it
        self.limits = dataclasses.replace(limits, cost_ceiling_pct=None)
        self.reference = reference
        self.improve = improve
        self.graph = problem.workflow.graph
        self.hop_ms = problem.workflow.hop_ms
        self.menus = problem.menus
        self.fast_ms = {s: m.min_latency_ms for s, m in problem.menus.items()}
        self.cheap_ms = {s: m.cheapest_latency_ms for s, m in problem.menus.items()}
        self.picks: dict[str, int] = {}
        self.shapes: dict[frozenset, _Shape] = {}
        self.segments: set[frozenset] = set()
        self.counts = {"expanded": 0, "generated": 0, "latency": 0, "cost": 0, "dominance": 0}
        self.proven = True

    # --- entry point -------------------------------------------------------
    def solve(self) -> tuple[Optional[dict[str, int]], PlanStats]:
        order = tuple(self.problem.workflow.topological_order())
        whole = self._shape(order)
        budget = self.problem.budget_ms + LATENCY_TOLERANCE_MS
        if whole.fast_ms > budget:
            return None, PlanStats(pruned_by_latency=1, segments=0)
        if whole.kind == "chain":
            self._chain(order, self.problem.budget_ms, self.whole_limits)  # the ceiling cuts the A* search
        elif self.ceiling is not None and self._floor_above(order, budget, self.ceiling):
            return None, PlanStats(pruned_by_cost=1, segments=0)
        else:
            self._region(whole, self.problem.budget_ms)
        if self._longest(whole, self._chosen_ms()) > budget:  # pragma: no cover - defensive
            self.picks = self.problem.fastest()
        if whole.kind != "chain" and self.improve:
            self.picks = reclaim_slack(self.problem, self.picks)
            if len(order) <= PATH_SEARCH_MAX_STAGES:
                self.picks, built = replan_paths(self.problem, self.picks)
                self.counts["generated"] += built
        stats = PlanStats(
            expanded=self.counts["expanded"],
            generated=self.counts["generated"],
            pruned_by_latency=self.counts["latency"],
            pruned_by_cost=self.counts["cost"],
            pruned_by_dominance=self.counts["dominance"],
            segments=len(self.segments),
            proven_optimal=self.proven and whole.kind == "chain",
        )
        if self.ceiling is not None and sum(self.menus[s].costs_pct[i] for s, i in self.picks.items()) > self.ceiling:
            return None, stats
        return dict(self.picks), stats

    # --- helpers -----------------------------------------------------------
    def _floor_above(self, order: tuple[str, ...], budget_ms: float, ceiling_pct: int) -> bool:
        """Does every plan within ``budget_ms`` (hops and tolerance
        included) hold more than ``ceiling_pct``? Two lower bounds of what
        one holds: (1) each stage's cheapest configuration no slower than
        the budget less the longest path through it with the other stages
        at their fastest (the A* search's bound at its root, for any DAG);
        (2) the cheapest plan of the longest path at the fastest (an
        entry-to-exit chain, which must fit the budget: an A* search under
        the ceiling less the other stages' bounds (1))."""
        hop, fast = self.hop_ms, self.fast_ms
        before: dict[str, float] = {}  # the longest path to a stage's end, fastest
        after: dict[str, float] = {}  # from a stage's start to an exit, fastest
        for s in order:
            before[s] = max((before[p] + hop for p in self.graph.predecessors(s)), default=0.0) + fast[s]
        for s in reversed(order):
            after[s] = max((after[q] + hop for q in self.graph.successors(s)), default=0.0) + fast[s]
        floor: dict[str, int] = {}
        for s in order:
            menu = self.menus[s]  # the budget leaves every stage its fastest (checked by the caller)
            floor[s] = menu.costs_pct[menu.cheapest_within(budget_ms - before[s] - after[s] + 2 * fast[s]) or 0]
        if sum(floor.values()) > ceiling_pct:
            return True
        path = critical_path(self._shape(order).region, fast, hop)
        on_path = set(path)
        rest = ceiling_pct - sum(floor[s] for s in order if s not in on_path)
        chain = solve_chain([self.menus[s] for s in path], budget_ms - hop * (len(path) - 1) + LATENCY_TOLERANCE_MS,
                            SearchLimits(cost_ceiling_pct=rest))
        return chain.picks is None

    def _chosen_ms(self) -> dict[str, float]:
        return {s: self.menus[s].latencies_ms[i] for s, i in self.picks.items()}

    def _longest(self, shape: _Shape, latency_ms: dict[str, float]) -> float:
        """Longest path through the region, hops included."""
        finish: dict[str, float] = {}
        hop = self.hop_ms
        preds = shape.region.preds
        for s in shape.region.stages:
            finish[s] = max([finish[p] for p in preds[s]], default=-hop) + hop + latency_ms[s]
        return max(finish.values())

    def _shape(self, stages: tuple[str, ...]) -> _Shape:
        """``stages`` in topological order."""
        key = frozenset(stages)
        shape = self.shapes.get(key)
        if shape is not None:
            return shape
        region = Region.induced(self.graph, stages)
        shape = _Shape(region, "chain")
        if not region.is_path():
            elements = series_elements(region)
            components = region.components()
            if len(elements) > 1:
                shape.kind, shape.parts = "series", tuple(elements)
            elif len(components) > 1:
                shape.kind, shape.parts = "parallel", tuple(components)
            else:
                path = critical_path(region, self.cheap_ms, self.hop_ms)
                on_path = set(path)
                rest = Region.induced(self.graph, tuple(s for s in stages if s not in on_path))
                shape.kind, shape.parts = "irreducible", (tuple(path), tuple(rest.components()))
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
            return self._chain(shape.region.stages, budget_ms)
        if shape.kind == "series":
            return self._series(shape.parts, budget_ms)
        if shape.kind == "parallel":
            return max(self._region(self._shape(branch), budget_ms) for branch in shape.parts)
        return self._irreducible(shape, budget_ms)

    def _chain(self, order: tuple[str, ...], budget_ms: float, limits: Optional[SearchLimits] = None) -> float:
        self.segments.add(frozenset(order))
        hops_ms = self.hop_ms * (len(order) - 1)
        result = solve_chain([self.menus[s] for s in order], budget_ms - hops_ms,
                             self.limits if limits is None else limits)
        self._add_search_stats(result.stats)
        if result.picks is None:  # none within the ceiling (callers hand chains budgets they can meet)
            self.picks.update({s: 0 for s in order})
            return sum(self.fast_ms[s] for s in order) + hops_ms
        self.picks.update(zip(order, result.picks))
        return result.latency_ms + hops_ms

    def _series(self, elements: tuple[Element, ...], budget_ms: float) -> float:
        """ESG's split: each segment gets its fastest latency plus a share of
        the slack proportional to its room (cheap − fast); solved in order,
        unused slack passing on to the segments after it."""
        hops_ms = self.hop_ms * (len(elements) - 1)
        shapes = [self._shape(e.stages) for e in elements]
        fast = [sh.fast_ms for sh in shapes]
        room = [max(0.0, sh.cheap_ms - sh.fast_ms) for sh in shapes]
        remaining = budget_ms - hops_ms
        used_total = 0.0
        for i, (element, shape) in enumerate(zip(elements, shapes)):
            if i == len(elements) - 1:
                allotment = remaining
            elif self.reference == "fast":
                allotment = max(fast[i], min(remaining * fast[i] / sum(fast[i:]), remaining - sum(fast[i + 1:])))
            else:
                slack = max(0.0, remaining - sum(fast[i:]))
                weight = sum(room[i:])
                share = room[i] / weight if weight > 0 else 1.0 / (len(elements) - i)
                allotment = fast[i] + slack * share
            if element.kind == "chain":
                used = self._chain(element.stages, allotment)
            else:
                used = self._region(shape, allotment)
            used_total += used
            remaining -= used
        return used_total + hops_ms

    def _irreducible(self, shape: _Shape, budget_ms: float) -> float:
        """A region with no cut stage and one component: its critical path
        first, with the whole budget; then each component hanging off it.

        A component whose inputs from the path all finish before its outputs
        to the path must start gets that window as its budget and is solved
        recursively. Otherwise (its stages sit at several places along the
        path) it gets uniform scaling under the path's fixed times. If the
        path left a component no room at all, the whole region falls back to
        uniform scaling."""
        path, hanging = shape.parts
        saved = dict(self.picks)
        self._chain(path, budget_ms)
        hop = self.hop_ms
        start: dict[str, float] = {}
        finish: dict[str, float] = {}
        t = 0.0
        for s in path:
            start[s] = t
            finish[s] = t + self.menus[s].latencies_ms[self.picks[s]]
            t = finish[s] + hop
        for members in hanging:
            part = self._shape(members)
            release = {
                s: max((finish[p] + hop for p in self.graph.predecessors(s) if p in finish), default=0.0)
                for s in members
            }
            deadline = {
                s: min((start[q] - hop for q in self.graph.successors(s) if q in start), default=budget_ms)
                for s in members
            }
            low, high = max(release.values()), min(deadline.values())
            if high - low + LATENCY_TOLERANCE_MS >= part.fast_ms:
                self._region(part, high - low)
            elif not self._uniform(part, release, deadline):
                self.picks = saved
                stages = shape.region.stages
                self._uniform(shape, dict.fromkeys(stages, 0.0), dict.fromkeys(stages, budget_ms))
                break
        return self._longest(shape, self._chosen_ms())

    def _uniform(self, shape: _Shape, release_ms: dict[str, float], deadline_ms: dict[str, float]) -> bool:
        """Every stage gets ``fast + α·(cheap − fast)`` with the largest α in
        [0, 1] (to 1/1024) such that each stage starts no earlier than its
        release and finishes by its deadline; then the cheapest configuration
        within that. False (nothing changed) when not even α = 0 fits."""
        stages = shape.region.stages
        preds = shape.region.preds
        hop = self.hop_ms

        def node_budgets(alpha: float) -> dict[str, float]:
            return {s: self.fast_ms[s] + alpha * (self.cheap_ms[s] - self.fast_ms[s]) for s in stages}

        def fits(latency_ms: dict[str, float]) -> bool:
            finish: dict[str, float] = {}
            for s in stages:
                begin = max([finish[p] + hop for p in preds[s]] + [release_ms[s]])
                finish[s] = begin + latency_ms[s]
                if finish[s] > deadline_ms[s] + LATENCY_TOLERANCE_MS:
                    return False
            return True

        if not fits(self.fast_ms):
            return False
        low, high = 0.0, 1.0
        if fits(self.cheap_ms):
            low = 1.0
        else:
            for _ in range(10):
                mid = (low + high) / 2
                if fits(node_budgets(mid)):
                    low = mid
                else:
                    high = mid
        for s, limit_ms in node_budgets(low).items():
            pick = self.menus[s].cheapest_within(limit_ms)
            self.picks[s] = 0 if pick is None else pick
        self.segments.add(frozenset(stages))
        return True
