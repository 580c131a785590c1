"""ESG's search for one chain of stages: A* with dual-blade pruning.

A search node is a partial plan: the configurations of the first ``d``
stages of the chain, with their summed latency ``L`` and cost ``g``. Its
children extend it by one configuration of stage ``d``.

- **h**, the heuristic, is an admissible lower bound of the cost of the
  remaining stages that respects the remaining latency budget ``R``: stage
  ``j`` can be no slower than ``R`` minus the least latency of the other
  remaining stages, so its cost is at least that of its cheapest
  configuration within that bound. The sum over remaining stages never
  exceeds the true remaining cost.
- The **latency blade** cuts a child when ``L`` plus the least possible
  remaining latency exceeds the budget. Menus are sorted fastest first, so
  once one configuration is cut, all slower ones of the stage are too.
- The **cost blade** cuts a child whose lower bound ``(g + h, L + least
  remaining latency)`` is not below the best complete plan found so far,
  compared lexicographically: cost first, latency to break ties, exactly as
  plans are ranked (SPEC §3). With a cost ceiling
  (``SearchLimits.cost_ceiling_pct``) the first incumbent is the ceiling
  plus one: a search for a plan within it ends as soon as none can be.
- **Dominance**: among partial plans of the same depth, one that is no
  faster and no cheaper than another is dropped; the other's completions
  are at least as good.

Nodes are expanded best-first by their lower bound; the search ends when the
best open bound is no better than the incumbent, which is then optimal. With
a :class:`SearchLimits` the search may stop early and return its incumbent,
marked not proven optimal.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Optional, Sequence

from ..model import LATENCY_TOLERANCE_MS, PlanStats
from .limits import NO_LIMITS, SearchLimits
from .problem import StageMenu

_INF = float("inf")


@dataclass(frozen=True)
class ChainResult:
    """The best configuration index per stage, or None when nothing fits."""

    picks: Optional[tuple[int, ...]]
    latency_ms: float
    cost_pct: int
    stats: PlanStats


class _Front:
    """Non-dominated (latency, cost) pairs of one depth: a staircase with
    latency ascending and cost strictly descending."""

    __slots__ = ("latencies", "costs", "nodes")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.costs: list[int] = []
        self.nodes: list[int] = []

    def dominates(self, latency: float, cost: int) -> bool:
        i = bisect_right(self.latencies, latency) - 1
        return i >= 0 and self.costs[i] <= cost

    def insert(self, latency: float, cost: int, node: int) -> list[int]:
        """Add a non-dominated pair; return the nodes it dominates."""
        p = bisect_left(self.latencies, latency)
        q = p
        while q < len(self.costs) and self.costs[q] >= cost:
            q += 1
        removed = self.nodes[p:q]
        self.latencies[p:q] = [latency]
        self.costs[p:q] = [cost]
        self.nodes[p:q] = [node]
        return removed


def _remaining_cost_bound(menus: Sequence[StageMenu], suffix_lat: list[float]):
    """``h(d, R)``: a lower bound of the cost of stages ``d..k-1`` within a
    remaining latency budget ``R``.

    With slack ``σ = R − (least latency of stages d..k-1)``, stage ``j`` can
    be at most ``σ`` slower than its fastest configuration, so its cost is at
    least that of its cheapest configuration within ``min_j + σ``. The sum
    over ``j ≥ d`` is a step function of ``σ``; it is tabulated once per
    depth (breakpoints and cumulative cost changes), so each evaluation is a
    single binary search.
    """
    k = len(menus)
    base = [0] * (k + 1)
    points: list[list[float]] = [[] for _ in range(k + 1)]
    totals: list[list[int]] = [[] for _ in range(k + 1)]
    steps: list[tuple[float, int]] = []
    for d in range(k - 1, -1, -1):
        menu = menus[d]
        base[d] = base[d + 1] + menu.costs_pct[0]
        lat0 = menu.latencies_ms[0]
        steps.extend(
            (menu.latencies_ms[i] - lat0, menu.costs_pct[i] - menu.costs_pct[i - 1])
            for i in range(1, len(menu.latencies_ms))
        )
        steps.sort()
        running = base[d]
        xs, ys = [], []
        for x, delta in steps:
            running += delta
            xs.append(x)
            ys.append(running)
        points[d], totals[d] = xs, ys

    def bound(d: int, remaining_ms: float) -> int:
        # the tolerance errs on the low (admissible) side of float rounding
        i = bisect_right(points[d], remaining_ms - suffix_lat[d] + LATENCY_TOLERANCE_MS)
        return totals[d][i - 1] if i else base[d]

    return bound


def solve_chain(menus: Sequence[StageMenu], budget_ms: float, limits: SearchLimits = NO_LIMITS) -> ChainResult:
    """Cheapest configurations for a chain whose latencies must sum to at
    most ``budget_ms`` (the caller has already taken the hops out). With
    ``limits.cost_ceiling_pct``, None where no such plan holds at most that:
    the ceiling is the cost blade's first incumbent, so the search ends as
    soon as every open bound is above it."""
    k = len(menus)
    budget = budget_ms + LATENCY_TOLERANCE_MS
    ceiling = limits.cost_ceiling_pct
    suffix_lat = [0.0] * (k + 1)
    for d in range(k - 1, -1, -1):
        suffix_lat[d] = suffix_lat[d + 1] + menus[d].min_latency_ms
    fastest_cost = sum(m.costs_pct[0] for m in menus)
    if suffix_lat[0] > budget:
        return ChainResult(None, suffix_lat[0], fastest_cost, PlanStats(pruned_by_latency=1))
    # Exact shortcuts: every stage at its cheapest fits (the cheapest
    # configuration is unique on a menu), or a single stage.
    cheapest_lat = sum(m.latencies_ms[-1] for m in menus)
    if cheapest_lat <= budget:
        picks = tuple(len(m.latencies_ms) - 1 for m in menus)
        cost = sum(m.costs_pct[-1] for m in menus)
        if ceiling is not None and cost > ceiling:
            return ChainResult(None, cheapest_lat, cost, PlanStats(generated=k, pruned_by_cost=1))
        return ChainResult(picks, cheapest_lat, cost, PlanStats(generated=k))
    if k == 1:
        i = bisect_right(menus[0].latencies_ms, budget) - 1
        if ceiling is not None and menus[0].costs_pct[i] > ceiling:
            return ChainResult(None, menus[0].latencies_ms[i], menus[0].costs_pct[i],
                               PlanStats(generated=i + 1, pruned_by_cost=1))
        return ChainResult((i,), menus[0].latencies_ms[i], menus[0].costs_pct[i], PlanStats(generated=i + 1))

    lower_bound_cost = _remaining_cost_bound(menus, suffix_lat)

    # node table: parent index, option index, depth, latency, cost
    parents: list[int] = [-1]
    picks: list[int] = [-1]
    depths: list[int] = [0]
    lats: list[float] = [0.0]
    costs: list[int] = [0]
    fronts = [_Front() for _ in range(k + 1)]
    dead: set[int] = set()
    # a ceiling is an incumbent no plan can tie: every plan that costs more is cut
    best_cost, best_lat = (_INF, _INF) if ceiling is None else (ceiling + 1, -_INF)
    best_node, best_last = -1, -1
    expanded = generated = by_latency = by_cost = by_dominance = 0
    proven = True
    watch = limits.start()
    heap = [(lower_bound_cost(0, budget), suffix_lat[0], 0, 0)]
    while heap:
        f_cost, f_lat, _, node = heapq.heappop(heap)
        if node in dead:
            continue
        if (f_cost, f_lat) >= (best_cost, best_lat):
            break
        if watch.exhausted(expanded):
            proven = False
            break
        expanded += 1
        d, lat, cost = depths[node], lats[node], costs[node]
        menu = menus[d]
        rest = suffix_lat[d + 1]
        last = d + 1 == k
        for i, option_lat in enumerate(menu.latencies_ms):
            lat2 = lat + option_lat
            if lat2 + rest > budget:
                by_latency += len(menu.latencies_ms) - i
                break
            generated += 1
            cost2 = cost + menu.costs_pct[i]
            if last:
                if (cost2, lat2) < (best_cost, best_lat):
                    best_cost, best_lat, best_node, best_last = cost2, lat2, node, i
                else:
                    by_cost += 1
                continue
            bound = (cost2 + lower_bound_cost(d + 1, budget - lat2), lat2 + rest)
            if bound >= (best_cost, best_lat):
                by_cost += 1
                continue
            front = fronts[d + 1]
            if front.dominates(lat2, cost2):
                by_dominance += 1
                continue
            child = len(parents)
            parents.append(node)
            picks.append(i)
            depths.append(d + 1)
            lats.append(lat2)
            costs.append(cost2)
            for loser in front.insert(lat2, cost2, child):
                dead.add(loser)
                by_dominance += 1
            heapq.heappush(heap, (bound[0], bound[1], -(d + 1), child))

    stats_kw = dict(
        expanded=expanded,
        generated=generated,
        pruned_by_latency=by_latency,
        pruned_by_cost=by_cost,
        pruned_by_dominance=by_dominance,
        proven_optimal=proven,
    )
    if best_node < 0:
        # No complete plan: none within the ceiling, or a limit stopped the
        # search before any — then the fastest plan, which fits (checked
        # above), unless it holds more than the ceiling.
        if ceiling is not None and (proven or fastest_cost > ceiling):
            return ChainResult(None, suffix_lat[0], fastest_cost, PlanStats(**stats_kw))
        fastest = tuple(0 for _ in menus)
        return ChainResult(fastest, suffix_lat[0], fastest_cost, PlanStats(**stats_kw))
    path = [best_last]
    node = best_node
    while node > 0:
        path.append(picks[node])
        node = parents[node]
    path.reverse()
    return ChainResult(tuple(path), best_lat, int(best_cost), PlanStats(**stats_kw))
