"""The tail of the queueing waits along a path of stages.

A plan's latency adds each stage's wait at one quantile (or its mean:
``model/config.py``). At a light load that is far from the path's own
tail: a request rarely waits at any stage, and rarely at two, so the sum
of the stages' 99% quantiles is far above the 99% quantile of the sum —
and the sum of their means far below it. This module gives the share of
requests whose waits along a path add up to more than the time the path
leaves for waiting, under the model's own waits: at each stage a batch
waits with the Erlang C probability and then an exponential time
(:func:`~esg_plugin.model.config.wait_parts`), the stages independently.

The sum's distribution is built on a grid of :data:`GRID_POINTS` steps
up to the slack, each wait rounded *up* to the next step, so the share
given is an upper bound of the model's (within the grid); a stage that
cannot keep up makes it 1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .config import fanout_rounds_ms, wait_parts
from .errors import ModelError

GRID_POINTS = 256
"""Steps of the grid up to the slack: each wait is overstated by at most
slack / this."""


def path_miss_share(waits: Sequence[tuple[float, float]], slack_ms: float) -> float:
    """An upper bound of the share of requests whose waits add up to more
    than ``slack_ms``: ``waits`` holds, per stage of the path, (the
    probability that a batch waits, the mean wait of one that does, in
    ms; ∞ for a stage that cannot keep up)."""
    waiting = [(float(p), float(mean_ms)) for p, mean_ms in waits]
    for p, mean_ms in waiting:
        if not 0.0 <= p <= 1.0 or not mean_ms >= 0.0:  # (NaN fails both)
            raise ModelError(f"a wait's probability must lie in [0, 1] and its mean be ≥ 0, got {p!r}, {mean_ms!r}")
    waiting = [(p, mean_ms) for p, mean_ms in waiting if p > 0.0 and mean_ms > 0.0]
    if not waiting:
        return 0.0
    if slack_ms <= 0.0 or any(mean_ms == np.inf for _, mean_ms in waiting):
        return 1.0
    edges = np.arange(GRID_POINTS + 1) * (slack_ms / GRID_POINTS)
    within = np.zeros(GRID_POINTS + 1)
    within[0] = 1.0  # no wait at all
    for p, mean_ms in waiting:
        below = 1.0 - p * np.exp(-edges / mean_ms)  # P(wait ≤ edge)
        step = np.diff(below, prepend=0.0)  # the mass up to each edge, put at that edge
        within = np.convolve(within, step)[:GRID_POINTS + 1]
    return float(min(1.0, max(0.0, 1.0 - within.sum())))


def plan_miss_share(workflow, choices, rate_rps: float, budget_ms: float, arrival_cv2: float,
                    model: str) -> float:
    """An upper bound of the share of requests that the plan ``choices``
    (one StageOption per stage, at the workflow's ``rate_rps``) makes
    wait longer, along some entry-to-exit path, than that path leaves
    for waiting within ``budget_ms`` (the rest of each stage's latency —
    its execution, its batch's fill, a fan-out's rounds — and the hops
    taken as they are): :func:`path_miss_share` of each path, summed over
    the paths (a request late on two is counted twice)."""
    stages = workflow.stages
    options = [choices[st.name] for st in stages]
    # a no-wait option plans one item a batch
    fill = np.array([float(o.config.batch_size if o.wait_ms > 0 else 1) for o in options])
    exec_ms = np.array([o.exec_ms for o in options])
    replicas = np.array([o.replicas for o in options])
    fanout = np.array([st.fanout for st in stages])
    offered, stable, waiting, service = wait_parts(rate_rps * fanout, fill, exec_ms, replicas, arrival_cv2, model)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_ms = np.where(stable, exec_ms / (replicas - offered) * service, np.inf)
    # each option's latency less the wait it budgets for an instance (at whatever quantile), its fan-out's
    # rounds kept: what is fixed of the stage's time
    fixed = np.array([o.latency_ms - o.queue_ms for o in options]) + fanout_rounds_ms(fanout, fill, replicas, exec_ms)
    fixed_ms = dict(zip(workflow.stage_names, fixed.tolist()))
    waits = {st.name: (float(np.clip(p, 0.0, 1.0)) if ok else 1.0, float(m))
             for st, p, m, ok in zip(stages, waiting, mean_ms, stable)}
    share = 0.0
    for path in workflow.paths():
        path_fixed_ms = sum(fixed_ms[s] for s in path) + workflow.hop_ms * (len(path) - 1)
        share += path_miss_share([waits[s] for s in path], budget_ms - path_fixed_ms)
    return min(1.0, share)
