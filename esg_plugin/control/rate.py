"""The rate a plan is for: the statistics the law's rules read it with.

The step test (:func:`step_detected`, :func:`significantly_above`): is a
window's count of arrivals significantly above what a rate gives, for a
Poisson stream whose variance the arrivals' cv² inflates; whether the
cv² was read at all (:func:`cv2_measured`); the backlog a plan cannot
answer within the SLO (:func:`excess_backlog`); and the geometric grid
planned rates lie on (:func:`on_rate_grid`). Pure functions of numbers
and an observation; the rules that use them are in ``law.py``
(``docs/control.md``, point 2).
"""

from __future__ import annotations

import math
from typing import Optional

from .observation import MIN_GAPS_FOR_CV2, WorkflowObservation

RATE_GRID = 1.05
"""Planned rates lie on a geometric grid of this ratio (see :func:`on_rate_grid`)."""


def on_rate_grid(rate_rps: float) -> float:
    """The rate rounded up to the next step of a geometric grid (ratio
    :data:`RATE_GRID`): a load that creeps up re-plans once per step, not at
    every tick, and the same loads give the same plans."""
    return RATE_GRID ** math.ceil(math.log(rate_rps, RATE_GRID) - 1e-9)


def step_detected(obs: WorkflowObservation, planned_rps: float, z: float) -> bool:
    """Is the short window's count significantly above what the planned rate
    gives? One-sided, normal approximation of a Poisson count inflated by the
    arrivals' cv² (bursty arrivals need more evidence)."""
    return significantly_above(obs.rate_short_rps * obs.short_window_s, planned_rps * obs.short_window_s, z,
                               obs.arrival_cv2)


def cv2_measured(obs: WorkflowObservation) -> bool:
    """Was the arrivals' cv² read from enough gaps (``MIN_GAPS_FOR_CV2``)?
    Below, the source says 1 (Poisson) for want of a reading: at the start
    of a run, a window of a few seconds. Without the long window's length,
    taken as read."""
    return obs.long_window_s is None or obs.rate_long_rps * obs.long_window_s >= MIN_GAPS_FOR_CV2 + 1


def significantly_above(count: float, expected: float, z: float, arrival_cv2: float) -> bool:
    """The step test: is ``count`` more than ``z`` standard deviations (and
    one arrival) above the ``expected`` count of a Poisson stream whose
    variance is inflated by the arrivals' cv²?"""
    return count > expected + z * math.sqrt(max(expected, 1.0) * max(arrival_cv2, 1.0)) + 1.0


def excess_backlog(obs: WorkflowObservation, planned_rps: Optional[float], slo_ms: float) -> float:
    """The requests waiting beyond what the planned rate serves within one
    SLO: those the current plan cannot answer in time (a queue that the plan
    drains within the SLO needs no more capacity)."""
    served_in_time = (planned_rps or 0.0) * slo_ms / 1000.0
    return max(0.0, obs.backlog - served_in_time)
