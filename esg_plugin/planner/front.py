"""Pareto fronts of chains: every non-dominated (latency, cost) outcome.

After each stage the front holds every non-dominated (latency, cost) pair of
the prefix; partial plans that cannot fit the budget even with the rest at
its fastest are dropped. Used by the exact oracle (the cheapest point of the
front) and by ESG's split refinement (the points a chain can reach).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from ..model import LATENCY_TOLERANCE_MS
from .problem import StageMenu


class FrontPoint(NamedTuple):
    latency_ms: float
    cost_pct: int
    picks: tuple[int, ...]


def chain_front(menus: Sequence[StageMenu], budget_ms: float) -> tuple[list[FrontPoint], int]:
    """The Pareto front of a chain within ``budget_ms`` (fastest first), and
    how many candidate points were built on the way."""
    budget = budget_ms + LATENCY_TOLERANCE_MS
    suffix = [0.0] * (len(menus) + 1)
    for d in range(len(menus) - 1, -1, -1):
        suffix[d] = suffix[d + 1] + menus[d].min_latency_ms
    front = [FrontPoint(0.0, 0, ())]
    built = 0
    for d, menu in enumerate(menus):
        candidates = []
        for lat, cost, picks in front:
            for i, (olat, ocost) in enumerate(zip(menu.latencies_ms, menu.costs_pct)):
                lat2 = lat + olat
                if lat2 + suffix[d + 1] > budget:
                    break
                candidates.append(FrontPoint(lat2, cost + ocost, picks + (i,)))
        candidates.sort(key=lambda c: (c.latency_ms, c.cost_pct))
        front = []
        for c in candidates:
            if not front or c.cost_pct < front[-1].cost_pct:
                front.append(c)
        built += len(candidates)
        if not front:
            return [], built
    return front, built
