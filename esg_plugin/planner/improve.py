"""Improving a feasible plan without breaking its budget.

Two moves, both pure functions of (problem, picks) that only ever lower the
cost and keep the plan within its budget:

- :func:`reclaim_slack`: every stage takes the cheapest configuration that
  its float (how much later it may finish without delaying the plan past
  its budget) allows.
- :func:`replan_paths`: an entry-to-exit path is planned again, exactly,
  with every other stage held at fixed times. This is what lets two stages
  that are not neighbours in a chain trade time: one gets faster (and
  dearer), the other slower (and much cheaper).

``picks`` maps each stage to an index into its menu
(:class:`~esg_plugin.planner.problem.StageMenu`, fastest first).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..model import LATENCY_TOLERANCE_MS
from .problem import Problem


class _Dag:
    """The workflow graph as index lists, in topological order."""

    def __init__(self, problem: Problem) -> None:
        workflow = problem.workflow
        self.order = workflow.topological_order()
        index = {s: i for i, s in enumerate(self.order)}
        self.preds = [tuple(index[p] for p in workflow.graph.predecessors(s)) for s in self.order]
        self.succs = [tuple(index[q] for q in workflow.graph.successors(s)) for s in self.order]
        self.menus = [problem.menus[s] for s in self.order]
        self.arrays = [(np.array(m.latencies_ms), np.array(m.costs_pct, dtype=np.int64)) for m in self.menus]
        self.hop_ms = workflow.hop_ms
        self.budget_ms = problem.budget_ms

    def latencies(self, picks: list[int]) -> list[float]:
        return [m.latencies_ms[i] for m, i in zip(self.menus, picks)]

    def earliest_finish(self, lat: list[float]) -> list[float]:
        hop = self.hop_ms
        finish = [0.0] * len(lat)
        for i, preds in enumerate(self.preds):
            finish[i] = max([finish[p] for p in preds], default=-hop) + hop + lat[i]
        return finish

    def latest_finish(self, lat: list[float]) -> list[float]:
        hop = self.hop_ms
        latest = [0.0] * len(lat)
        for i in range(len(lat) - 1, -1, -1):
            latest[i] = min([latest[q] - lat[q] for q in self.succs[i]], default=self.budget_ms + hop) - hop
        return latest


def reclaim_slack(problem: Problem, picks: dict[str, int]) -> dict[str, int]:
    """Hand each stage's float to a cheaper configuration.

    One pass: latest finishes from a backward pass, then, in topological
    order, each stage takes the cheapest configuration that finishes by its
    latest finish given the (already updated) finishes of its predecessors.
    Every stage still finishes by its latest finish, so the plan keeps its
    budget. Passes repeat until nothing changes.
    """
    dag = _Dag(problem)
    chosen = [picks[s] for s in dag.order]
    hop = dag.hop_ms
    changed = True
    while changed:
        changed = False
        latest = dag.latest_finish(dag.latencies(chosen))
        finish = [0.0] * len(chosen)
        for i, menu in enumerate(dag.menus):
            start = max([finish[p] for p in dag.preds[i]], default=-hop) + hop
            pick = menu.cheapest_within(latest[i] - start)
            if pick is not None and pick > chosen[i]:
                chosen[i] = pick
                changed = True
            finish[i] = start + menu.latencies_ms[chosen[i]]
    return dict(zip(dag.order, chosen))


def _candidate_paths(dag: _Dag, lat: list[float]) -> list[tuple[int, ...]]:
    """The longest entry-to-exit path through each stage, deduplicated."""
    n = len(lat)
    head, head_from = [0.0] * n, [-1] * n
    for i in range(n):
        best = max(dag.preds[i], key=head.__getitem__, default=-1)
        head_from[i] = best
        head[i] = lat[i] + (head[best] if best >= 0 else 0.0)
    tail, tail_to = [0.0] * n, [-1] * n
    for i in range(n - 1, -1, -1):
        best = max(dag.succs[i], key=tail.__getitem__, default=-1)
        tail_to[i] = best
        tail[i] = lat[i] + (tail[best] if best >= 0 else 0.0)
    paths: dict[tuple[int, ...], None] = {}
    for i in range(n):
        back, node = [], head_from[i]
        while node >= 0:
            back.append(node)
            node = head_from[node]
        forward, node = [i], tail_to[i]
        while node >= 0:
            forward.append(node)
            node = tail_to[node]
        path = tuple(reversed(back)) + tuple(forward)
        if len(path) > 1:
            paths[path] = None
    return list(paths)


def _replan_path(dag: _Dag, chosen: list[int], path: tuple[int, ...]) -> tuple[Optional[list[int]], int]:
    """The cheapest configurations of ``path`` with every other stage at a
    fixed time: as early as possible when no stage of the path precedes it,
    as late as possible otherwise. All those times are valid for the
    current plan, so the current configurations are one feasible answer.

    A Pareto dynamic program over (finish time, cost) along the path, with
    each stage's release (its fixed predecessors) and due time (its fixed
    successors, or the budget at an exit). Returns the new picks of the
    path when they are cheaper, else None; and the candidates built.
    """
    hop = dag.hop_ms
    lat = dag.latencies(chosen)
    earliest = dag.earliest_finish(lat)
    latest = dag.latest_finish(lat)
    on_path = set(path)
    n = len(chosen)
    after_path = [False] * n
    for i in range(n):
        if i not in on_path:
            after_path[i] = any(p in on_path or after_path[p] for p in dag.preds[i])
    finish_at = [latest[i] if after_path[i] else earliest[i] for i in range(n)]
    # the front after each stage: finish times ascending, costs strictly descending,
    # and for each point the point of the front before it and the option it took
    ends, costs = np.array([-hop]), np.array([0], dtype=np.int64)
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    built = 0
    for i in path:
        release = max([finish_at[p] + hop for p in dag.preds[i] if p not in on_path], default=0.0)
        due = min([finish_at[q] - lat[q] - hop for q in dag.succs[i] if q not in on_path], default=float("inf"))
        if not dag.succs[i]:
            due = min(due, dag.budget_ms)
        due += LATENCY_TOLERANCE_MS
        option_ms, option_cost = dag.arrays[i]
        end = np.maximum(ends + hop, release)[:, None] + option_ms[None, :]
        before, option = np.nonzero(end <= due)  # every point × every option that ends in time, point by point
        end, cost = end[before, option], costs[before] + option_cost[option]
        built += len(end)
        if not len(end):  # pragma: no cover - the current picks always fit
            return None, built
        order = np.lexsort((cost, end))  # by finish, then cost; stable
        end, cost, before, option = end[order], cost[order], before[order], option[order]
        keep = np.empty(len(cost), dtype=bool)
        keep[0] = True
        np.less(cost[1:], np.minimum.accumulate(cost)[:-1], out=keep[1:])
        ends, costs = end[keep], cost[keep]
        steps.append((before[keep], option[keep]))
    # the cheapest point is the front's last
    picks, at = [], len(costs) - 1
    for before, option in reversed(steps):
        picks.append(int(option[at]))
        at = before[at]
    current = sum(dag.menus[i].costs_pct[chosen[i]] for i in path)
    return (picks[::-1] if costs[-1] < current else None), built


def replan_paths(problem: Problem, picks: dict[str, int], max_rounds: int = 3) -> tuple[dict[str, int], int]:
    """Local search: re-plan the longest path through each stage exactly
    (see :func:`_replan_path`), round after round until one improves
    nothing (at most ``max_rounds``). Returns the picks and the number of
    candidate partial plans built."""
    dag = _Dag(problem)
    chosen = [picks[s] for s in dag.order]
    built_total = 0
    for _ in range(max_rounds):
        improved = False
        for path in _candidate_paths(dag, dag.latencies(chosen)):
            new, built = _replan_path(dag, chosen, path)
            built_total += built
            if new is not None:
                for i, k in zip(path, new):
                    chosen[i] = k
                improved = True
        if not improved:
            break
    return dict(zip(dag.order, chosen)), built_total
