"""What the control law observes at a tick: the one contract between the
sources (the simulator's view, the gateway scrape, Prometheus) and the law.

Sources fill what they can; a field they cannot see keeps its neutral
default (no backlog, no answers, no execution times). A number outside its
range is not believed: :func:`WorkflowObservation.checked` raises
:class:`ControlError`, and the caller treats that workflow as "no data".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from ..limits import MAX_RATE_RPS, is_number  # above MAX_RATE_RPS: a broken counter, not traffic
from .errors import ControlError

MAX_BACKLOG = 1e7
MAX_ARRIVAL_CV2 = 1e4
MAX_HOP_MS = 1e4
MIN_GAPS_FOR_CV2 = 20
"""Fewer gaps between arrivals than this say nothing of their variability:
the arrivals are taken as Poisson (cv² 1)."""


def gap_cv2(count: float, sum_s: float, sum_squares_s2: float) -> float:
    """The squared coefficient of variation of gaps between arrivals, from
    their number, sum and sum of squares over a window — the three counters a
    source can keep (the router exports them; the simulator sums its own
    arrivals): variance over squared mean, ``n·Σg² / (Σg)² − 1``. Below
    ``MIN_GAPS_FOR_CV2`` gaps, or with no time between them, 1 (Poisson)."""
    if not (is_number(count) and is_number(sum_s) and is_number(sum_squares_s2)) \
            or count < MIN_GAPS_FOR_CV2 or not sum_s > 0 or sum_squares_s2 < 0:
        return 1.0
    return min(max(count * sum_squares_s2 / sum_s ** 2 - 1.0, 0.0), MAX_ARRIVAL_CV2)


@dataclass(frozen=True)
class WorkflowObservation:
    """One workflow, at one tick."""

    rate_long_rps: float
    """Workflow requests per second arriving over the long window (smooth)."""
    rate_short_rps: float
    """The same over the short window (quick)."""
    short_window_s: float
    """Length of the short window, for the step test."""
    arrival_cv2: float = 1.0
    """Squared coefficient of variation of inter-arrival gaps (1: Poisson)."""
    backlog: float = 0.0
    """Workflow requests waiting beyond what the running instances take next."""
    ok: int = 0
    """Answers within the SLO over the short window."""
    late: int = 0
    """Answers after the SLO, or 504 / shed, over the short window."""
    rejected: int = 0
    """429s over the short window."""
    long_window_s: Optional[float] = None
    """Length of the long window, for the test of a rise (None: not known —
    every rise of the long window counts)."""
    stage_wait: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Per stage: (requests that left its queue for a batch since the last
    tick, the time they waited there in ms, summed), where the source sees
    it; a pair that is no pair of non-negative numbers is not believed
    (the law skips it)."""
    hop_ms: Optional[float] = None
    """The time one hop between stages took over the window, as measured
    (the router's); None: not measured."""
    newest_rps: Optional[float] = None
    """Workflow requests per second arriving since the source's reading
    before this one, over ``newest_window_s``: a count (a counter's
    increase between two readings, or the simulator's own arrivals), where
    the source has one and it spans less than the short window; None: not
    known. A Prometheus ``rate()`` over a range is extrapolated, and the
    difference of two overlapping ranges is no count (a step from 3 to
    60 rps read as 248), so that source leaves it out; the gateway scrape's
    short window is already the interval since its reading before."""
    newest_window_s: Optional[float] = None
    """The seconds ``newest_rps`` spans (given with it, or not at all)."""

    def checked(self) -> "WorkflowObservation":
        limits = {"rate_long_rps": MAX_RATE_RPS, "rate_short_rps": MAX_RATE_RPS, "arrival_cv2": MAX_ARRIVAL_CV2,
                  "backlog": MAX_BACKLOG}
        for name, most in limits.items():
            value = getattr(self, name)
            if not is_number(value) \
                    or not 0 <= value <= most:
                raise ControlError(f"{name} must be a number in [0, {most:g}], got {value!r}")
        if (self.newest_rps is None) != (self.newest_window_s is None):
            raise ControlError("newest_rps and newest_window_s go together")
        if self.newest_rps is not None and not (is_number(self.newest_rps) and 0 <= self.newest_rps <= MAX_RATE_RPS
                                                and is_number(self.newest_window_s) and self.newest_window_s > 0):
            raise ControlError(f"newest_rps must be a number in [0, {MAX_RATE_RPS:g}] over a positive window, got "
                               f"{self.newest_rps!r} over {self.newest_window_s!r}")
        if self.hop_ms is not None and not (is_number(self.hop_ms) and 0 <= self.hop_ms <= MAX_HOP_MS):
            raise ControlError(f"hop_ms must be a number in [0, {MAX_HOP_MS:g}], got {self.hop_ms!r}")
        for name in ("short_window_s", "long_window_s"):
            value = getattr(self, name)
            if value is None and name == "long_window_s":
                continue
            if not (is_number(value) and math.isfinite(value) and value > 0):
                raise ControlError(f"{name} must be positive, got {value!r}")
        for name in ("ok", "late", "rejected"):
            if getattr(self, name) < 0:
                raise ControlError(f"{name} must not be negative")
        return self

    @property
    def answers(self) -> int:
        return self.ok + self.late + self.rejected

    @property
    def miss_fraction(self) -> float:
        return (self.late + self.rejected) / self.answers if self.answers else 0.0


@dataclass(frozen=True)
class Observation:
    at_s: float
    workflows: Mapping[str, WorkflowObservation]
    """Workflows with data; a workflow absent here is left as it is."""
    exec_ratio: Mapping[str, float] = field(default_factory=dict)
    """Per profile (function) name: observed over profiled execution time of
    the batches run since the last tick, where known."""
    exec_batch: Mapping[str, float] = field(default_factory=dict)
    """Per profile name: the mean size of those batches, where known (the
    ratio is then also that batch size's)."""
    starting: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Per (workflow, stage): its instances wanted and not yet in service
    (placed and starting, or not placed yet), where the platform says; a
    stage absent here is not known (its instances are taken to start for
    the profile's cold start)."""
    serving: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Per (workflow, stage): its instances in service now (ready, taking
    requests), where the platform says (a Deployment's ready replicas, the
    simulator's ready instances); a stage absent here: not known."""
    cpu_ratio: Mapping[str, float] = field(default_factory=dict)
    """Per profile name: how busy the share's cores were while its batches
    ran since the last tick — processor time over execution time (1: the
    whole execution on a core; less: waiting for one, on a time-shared
    node), where the runtime says (``esg_exec_cpu_seconds``)."""
    unplaced: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Per (workflow, stage): its instances wanted that the platform found
    no room for — no GPU with that much of its share free (Kubernetes: pods
    ``Pending`` with ``PodScheduled`` false, reason ``Unschedulable``) —
    where the platform says; a stage absent here: none, or not known."""
    gpu_free_pct: Optional[Sequence[int]] = None
    """Each GPU's share free now — not held by any instance — in percent,
    where the platform says (the simulator's cluster; HAMi's records, read
    by the Kubernetes actuator: ``Actuator.gpu_room``); None: not known, and
    a restart's new instances are packed with every other afresh
    (``Capacity.packs``). Believed only as whole numbers in [0, 100], no
    more of them than ``capacity_gpus`` counts (:func:`believed_room`)."""


def believed_room(free_pct: Optional[Sequence[int]], capacity_gpus: Optional[float]) -> Optional[list[int]]:
    """``Observation.gpu_free_pct`` where believed: each a whole number in
    [0, 100], at least one and no more of them than ``capacity_gpus``
    (a fraction counts as a GPU); else None — not known, as if not said."""
    if free_pct is None or capacity_gpus is None:
        return None
    try:
        room = list(free_pct)
    except TypeError:
        return None
    if not room or len(room) > math.ceil(capacity_gpus - 1e-9):
        return None
    if not all(is_number(pct) and float(pct).is_integer() and 0 <= pct <= 100 for pct in room):
        return None
    return [int(pct) for pct in room]
