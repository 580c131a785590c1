"""``optimal``: exact plans under SPEC §3, for tests and benchmarks.

- Chains: dynamic programming over Pareto fronts
  (:func:`~esg_plugin.planner.front.chain_front`); the answer is the
  cheapest point of the chain's front within the budget.
- Other DAGs: depth-first branch and bound over the stages in topological
  order, cheapest configuration first. A branch is cut when the longest path
  (chosen latencies, the fastest ones for unchosen stages) exceeds the
  budget, or when its cost so far plus a latency-aware lower bound of the
  rest is no better than the incumbent. Exact, and exponential in the worst
  case: meant for the small DAGs of tests and benchmarks.

Plans are ranked as in SPEC §3: cost first, then latency.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Optional, Sequence

from ..model import LATENCY_TOLERANCE_MS, PlanStats
from .front import chain_front
from .problem import Problem, StageMenu

_INF = float("inf")


@dataclass(frozen=True)
class OracleResult:
    picks: Optional[dict[str, int]]
    stats: PlanStats


def chain_pareto_dp(menus: Sequence[StageMenu], budget_ms: float) -> tuple[Optional[tuple[int, ...]], int]:
    """Exact cheapest picks for a chain whose latencies sum to at most
    ``budget_ms``; returns (picks or None, number of front entries built)."""
    front, built = chain_front(menus, budget_ms)
    if not front:
        return None, built
    best = min(front, key=lambda c: (c.cost_pct, c.latency_ms))
    return best.picks, built


def solve_optimal(problem: Problem) -> OracleResult:
    workflow = problem.workflow
    if workflow.is_chain():
        order = workflow.topological_order()
        menus = [problem.menus[s] for s in order]
        budget = problem.budget_ms - workflow.hop_ms * (len(order) - 1)
        picks, built = chain_pareto_dp(menus, budget)
        stats = PlanStats(generated=built, segments=1)
        return OracleResult(None if picks is None else dict(zip(order, picks)), stats)
    return _branch_and_bound(problem)


def _branch_and_bound(problem: Problem) -> OracleResult:
    workflow = problem.workflow
    order = workflow.topological_order()
    index = {s: i for i, s in enumerate(order)}
    n = len(order)
    menus = [problem.menus[s] for s in order]
    preds = [[index[p] for p in workflow.graph.predecessors(s)] for s in order]
    succs = [[index[t] for t in workflow.graph.successors(s)] for s in order]
    hop = workflow.hop_ms
    budget = problem.budget_ms + LATENCY_TOLERANCE_MS
    min_lat = [m.min_latency_ms for m in menus]
    # tail[i]: longest path from the start of i to an exit, all fastest.
    tail = [0.0] * n
    for i in range(n - 1, -1, -1):
        tail[i] = min_lat[i] + max((hop + tail[j] for j in succs[i]), default=0.0)

    chosen_lat = [0.0] * n
    picks = [0] * n
    best = [_INF, _INF, None]  # cost, latency, picks
    counters = {"expanded": 0, "generated": 0, "latency": 0, "cost": 0}

    def bounds(depth: int) -> tuple[float, int]:
        """(latency lower bound, cost lower bound of stages depth..n-1)."""
        start = [0.0] * n
        finish = [0.0] * n
        latency_lb = 0.0
        for i in range(n):
            start[i] = max((finish[p] + hop for p in preds[i]), default=0.0)
            finish[i] = start[i] + (chosen_lat[i] if i < depth else min_lat[i])
            if not succs[i]:
                latency_lb = max(latency_lb, finish[i])
        cost_lb = 0
        for i in range(depth, n):
            # stage i may take at most what the budget leaves around it
            allowed = budget - (start[i] + tail[i] - min_lat[i])
            menu = menus[i]
            j = bisect_right(menu.latencies_ms, allowed) - 1
            cost_lb += menu.costs_pct[j] if j >= 0 else menu.min_cost_pct
        return latency_lb, cost_lb

    def visit(depth: int, cost: int) -> None:
        counters["expanded"] += 1
        menu = menus[depth]
        for i in range(len(menu.options) - 1, -1, -1):  # cheapest first
            counters["generated"] += 1
            chosen_lat[depth] = menu.latencies_ms[i]
            picks[depth] = i
            cost2 = cost + menu.costs_pct[i]
            latency_lb, cost_lb = bounds(depth + 1)
            if latency_lb > budget:
                counters["latency"] += 1
                continue
            if (cost2 + cost_lb, latency_lb) >= (best[0], best[1]):
                counters["cost"] += 1
                continue
            if depth + 1 == n:
                best[0], best[1], best[2] = cost2, latency_lb, list(picks)
            else:
                visit(depth + 1, cost2)

    visit(0, 0)
    stats = PlanStats(
        expanded=counters["expanded"],
        generated=counters["generated"],
        pruned_by_latency=counters["latency"],
        pruned_by_cost=counters["cost"],
        segments=1,
    )
    if best[2] is None:
        return OracleResult(None, stats)
    return OracleResult({order[i]: p for i, p in enumerate(best[2])}, stats)
