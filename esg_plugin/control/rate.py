"""The rate a plan is for: the statistics the law's rules read it with.

The step test (:func:`step_detected`, :func:`significantly_above`): is a
window's count of arrivals significantly above what a rate gives, for a
Poisson stream whose variance the arrivals' cv² inflates; whether the
cv² was read at all (:func:`cv2_measured`); the backlog a plan cannot
answer within the SLO (:func:`excess_backlog`); and the geometric grid
planned rates lie on (:func:`on_rate_grid`). With them, the rules of the
rate a workflow is planned for (:class:`WantedRate`: the long window, the
count since the rate last moved, the short window on evidence of a step and
the count since, the backlog, the headroom; ``docs/control.md``, point 2).
Pure: the counts it keeps live in the caller's :class:`WorkflowState`.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

from ..limits import MAX_RATE_RPS, is_number
from .observation import MAX_ARRIVAL_CV2, MIN_GAPS_FOR_CV2, WorkflowObservation
from .settings import ControlSettings
from .state import WorkflowState

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


def disjoint(entries: list) -> list:
    """Of the ticks' (time, window start, answers, misses), the newest and
    then each one whose window ends before the last taken one starts: the
    answers of each request counted once."""
    taken, start = [], math.inf
    for entry in reversed(entries):
        if entry[0] <= start + 1e-9:
            taken.append(entry)
            start = entry[1]
    return taken


class WantedRate:
    """The rate a workflow is planned for (one per :class:`ControlLaw`):
    the long window's, or the arrivals counted since the rate last moved
    (:meth:`pooled`); the short window's on evidence of a step, then the
    arrivals since the step (:meth:`since_step`); the backlog drained
    within ``drain_s``; times the :meth:`headroom` (:meth:`wanted`). Whether
    a rise is more than the noise of its count (:meth:`rise_is_real`). The
    counts it keeps live in the caller's :class:`WorkflowState`."""

    def __init__(self, settings: ControlSettings):
        self.settings = settings

    def wanted(self, ws: WorkflowState, obs: WorkflowObservation, backlog: float, now_s: float,
               pooled: Optional[tuple[float, float, float]]) -> tuple[float, float, str, bool, Optional[float]]:
        """From this tick's count since the rate last moved (``pooled``, or
        None): the rate to cover now (headroom included, on the rate grid), the
        offered rate it is for (neither), a few words on where it came from, whether
        the short window, the arrivals since a step or a backlog made it (not
        the long window alone), and, where the arrivals since a step (or the
        first plan) made it (``step_settle``), the share of the plan below which
        they bring it down — ``scale_down_below`` in the panic, any grid step at
        its end (``panic_exit``) — else None."""
        s = self.settings
        rate, said = obs.rate_long_rps, f"{obs.rate_long_rps:.2f} rps (long window)"
        bursty = obs.arrival_cv2 > s.pooled_max_cv2
        if pooled is not None and (not bursty or pooled[0] >= rate):
            # bursty arrivals: a long window that reads above the count is planned for (``pooled_max_cv2``)
            rate, said = pooled[0], f"{pooled[0]:.2f} rps (counted over {pooled[2]:.0f} s)"
        quick = False
        latest = self.latest(obs)
        panic = now_s < ws.panic_until_s
        stepped = ws.planned_rps is not None and step_detected(obs, ws.planned_rps, s.step_z)
        ended = ws.counting_since if not panic and now_s >= ws.first_until_s else None  # the first tick after
        if ended is not None:
            ws.counting_since = None
        ending = ended is not None and s.panic_exit  # (``panic_exit``)
        first = ended == "the first plan"
        since, after = None, "the step"
        if (panic or (ending and not first)) and not stepped:  # a panic: a step seen
            since = self.since_step(ws, obs, now_s)
        elif (now_s < ws.first_until_s or (ending and not bursty)) and not stepped and ws.estimate_rps is not None:
            # after the first plan, made from the first windows, the count since
            # only brings it down (at the end of its count, to it): a rise goes
            # through the rise test as ever — when that window's own count is within
            # the noise of the rate since: one well above it is a load that fell,
            # which waits for the delay
            counted, after = self.since_step(ws, obs, now_s), "the first plan"
            arrivals, window_s = ws.first_window
            if counted is not None and (ending or ws.estimate_rps > counted[1]) and \
                    not significantly_above(arrivals, counted[0] * window_s, s.step_z, obs.arrival_cv2):
                since = counted
        if since is not None:
            # in the panic, once the arrivals since the step are counted, they
            # say the new rate better than any one short window does: the plan
            # is for their rate when it is significantly above the rate the plan
            # was made for (``rise_z``, as the long window's rise) or significantly
            # below it (``step_z``); else it holds — at the panic's end, for their
            # rate: the panic held the plan for the scale-down delay since the step
            # (``panic_exit``)
            mean, upper, count, span_s = since
            estimate = ws.estimate_rps if ws.estimate_rps is not None else mean
            # a rise of the count is tested as the long window's is (``rise_z``): the highest of its
            # noisy readings over the panic is no estimate of the rate
            rose = estimate < mean and (s.rise_z <= 0 or
                                        significantly_above(count, estimate * span_s, s.rise_z, obs.arrival_cv2))
            held = mean if (ending or rose or estimate > upper) else estimate
            # else the long window's, as outside the panic (its rise is tested; for bursty
            # arrivals, a long window above the count is planned for, ``pooled_max_cv2``)
            if held >= rate or (ending and not bursty):
                rate, said, quick = held, f"{held:.2f} rps (since {after}: {mean:.2f} counted)" + \
                    (", in the panic after it" if panic else ", its count over" if ending and first
                     else ", the panic over" if ending else ""), not ending
        elif s.step_detection and obs.rate_short_rps > rate and (ws.planned_rps is None or panic or stepped):
            # the short window only on evidence of a step, or in the panic that
            # follows one (Knative's panic window): its noise alone is no reason to scale
            rate, said, quick = obs.rate_short_rps, f"{obs.rate_short_rps:.2f} rps (short window)", True
            if latest is not None and latest > rate:
                rate, said = latest, f"{latest:.2f} rps (counted since the last tick)"
            if ws.planned_rps is not None and (stepped or not panic):
                ws.step_at_s, ws.since_step = now_s, []  # another step in the panic: counted from it
                if panic:
                    said += ", a step again, in the panic after a step"
                else:
                    ws.panic_until_s = now_s + s.scale_down_delay_s
                    ws.counting_since = "the step"
                    ws.step_cv2 = obs.arrival_cv2 if cv2_measured(obs) else None  # unknown: nothing to hold
                    said += ", a step: no scale-down before the delay has passed"
            elif panic:
                said += ", in the panic after a step"
        if ws.boost > 1.0:
            rate *= ws.boost
            said += f" x {ws.boost:.2f} (misses at the largest margin)"
        if s.backlog_drain and backlog > 0:
            rate += backlog / s.drain_s
            said += f" + backlog {backlog:.0f} over {s.drain_s:g} s"
            quick = True
        offered = max(rate, s.min_rate_rps)
        # at the panic's end, down to the count with no band (``panic_exit``); in it, below ``scale_down_below``
        settle_below = None if since is None else 1.0 if ending else s.scale_down_below
        return on_rate_grid(offered * self.headroom(obs.arrival_cv2)), offered, said, quick, settle_below

    def since_step(self, ws: WorkflowState, obs: WorkflowObservation,
                   now_s: float) -> Optional[tuple[float, float, float, float]]:
        """In the panic after a step (``step_settle``), the arrival rate since
        the step (after the first plan: since it, ``step_at_s`` either way),
        that plus ``step_z`` standard deviations (of a Poisson count inflated
        by the arrivals' cv²), the count and the seconds it spans: counted over the short windows
        that start after the tick that detected it — not that tick's window,
        the one chosen because it read high — each arrival once (disjoint
        windows); this tick's window is recorded for the next. None before
        there is one such window, and None while one
        of them reads significantly above the rate since (the step's own
        test): the arrivals since are then no one rate — a load that rose
        and fell again — and a fall waits for the scale-down delay, as
        outside the count."""
        if not self.settings.step_settle:
            return None
        start_s = now_s - obs.short_window_s
        if start_s >= ws.step_at_s - 1e-9:
            ws.since_step.append((now_s, start_s, obs.rate_short_rps * obs.short_window_s))
        taken = disjoint(ws.since_step)
        span_s = sum(end - start for end, start, _ in taken)
        if span_s <= 0:
            return None
        count = sum(n for _, _, n in taken)
        z, mean = self.settings.step_z, count / span_s
        if any(significantly_above(n, mean * (end - start), z, obs.arrival_cv2) for end, start, n in taken):
            return None
        return mean, (count + z * math.sqrt(max(count, 1.0) * max(obs.arrival_cv2, 1.0))) / span_s, count, span_s

    def latest(self, obs: WorkflowObservation) -> Optional[float]:
        """The rate since the source's reading before (``latest_rate``), less
        one standard deviation of its count (a Poisson count inflated by the
        arrivals' cv²), where the source counted it over less than the short
        window; else None."""
        if not self.settings.latest_rate or obs.newest_rps is None or \
                obs.newest_window_s >= obs.short_window_s - 1e-9:
            return None
        count = obs.newest_rps * obs.newest_window_s
        sd = math.sqrt(max(count, 1.0) * max(obs.arrival_cv2, 1.0))
        return max(0.0, count - sd) / obs.newest_window_s

    def rise_is_real(self, ws: WorkflowState, obs: WorkflowObservation,
                     pooled: Optional[tuple[float, float, float]]) -> bool:
        """Is the long window's count — or the count pooled since the rate
        last moved, where there is one (``pooled_rate``) — significantly
        above the rate the plan was made for (``rise_z``)? Without the
        window's length, or for a plan made without an estimate, every rise is."""
        z = self.settings.rise_z
        if z <= 0 or obs.long_window_s is None or ws.estimate_rps is None:
            return True
        count, span_s = pooled[1:] if pooled is not None else (obs.rate_long_rps * obs.long_window_s,
                                                               obs.long_window_s)
        expected = ws.estimate_rps * span_s
        return count > expected + z * math.sqrt(max(expected, 1.0) * max(obs.arrival_cv2, 1.0))

    def pooled(self, ws: WorkflowState, obs: WorkflowObservation,
               now_s: float) -> Optional[tuple[float, float, float]]:
        """The arrival rate counted since it last moved (``pooled_rate``):
        (rate, arrivals, seconds counted) over the disjoint short windows
        since the last step (or the first plan) and within ``pool_max_s``,
        where they span more than the long window — else None, and the long
        window's rate is the estimate. A long window whose count is more
        than ``rise_z`` standard deviations (of a Poisson count inflated by
        the arrivals' cv²) from what the pooled rate gives says the rate
        moved: the count starts again from the next window. At a steady rate
        the estimate is then the mean over minutes, not over one window: a
        window that read high (at 1 rps a 30-s window is ±18%) no longer
        holds the plan above the load until the scale-down delay."""
        s = self.settings
        if not s.pooled_rate or obs.long_window_s is None:
            ws.pool = []
            return None
        start_s = now_s - obs.short_window_s
        if not ws.pool or start_s >= ws.pool[-1][0] - 1e-9:
            ws.pool.append((now_s, start_s, obs.rate_short_rps * obs.short_window_s))
        floor_s = max(ws.step_at_s, now_s - s.pool_max_s)
        ws.pool = [entry for entry in ws.pool if entry[1] >= floor_s - 1e-9]
        span_s = sum(end - start for end, start, _ in ws.pool)
        if span_s <= obs.long_window_s + 1e-9:
            return None
        count = sum(n for _, _, n in ws.pool)
        expected = count / span_s * obs.long_window_s
        if abs(obs.rate_long_rps * obs.long_window_s - expected) > \
                s.rise_z * math.sqrt(max(expected, 1.0) * max(obs.arrival_cv2, 1.0)):
            ws.pool = []  # counted again from here: until then the long window's rate, as without the count
            return None
        return count / span_s, count, span_s

    def headroom(self, arrival_cv2: float) -> float:
        """The factor over the offered rate a plan covers: more for more variable arrivals."""
        return 1 + self.settings.rate_headroom * math.sqrt(max(arrival_cv2, 1.0))


PANIC_RECORD_WINDOWS = 64
"""At most this many counts of the arrivals since a step in a record of
a panic (:func:`panic_record`): a panic of ``scale_down_delay_s`` holds
one per short window."""


def panic_record(ws: WorkflowState, now_s: float) -> dict:
    """A step's panic, where one is on, for a law that resumes from it
    (``resume_panic``, :func:`resume_panic`): the seconds left of it
    (``panic_s``), how long ago the step was detected (``step_s``), the
    arrivals counted since (``step_counts``: [ended, started] seconds ago
    and the arrivals of each disjoint short window, oldest first) and the
    arrivals' cv² when it was detected (``step_cv2``). Times relative to
    ``now_s``, the writer's clock, as a rollback's hold is: no two hosts'
    clocks are compared. Empty outside a panic."""
    if ws.panic_until_s <= now_s or ws.counting_since != "the step":
        return {}
    record = {"panic_s": round(ws.panic_until_s - now_s, 3), "step_s": round(now_s - ws.step_at_s, 3),
              "step_counts": [[round(now_s - end, 3), round(now_s - start, 3), round(arrivals, 3)]
                              for end, start, arrivals in reversed(disjoint(ws.since_step)[:PANIC_RECORD_WINDOWS])]}
    if ws.step_cv2 is not None:
        record["step_cv2"] = ws.step_cv2
    return record


def resume_panic(ws: WorkflowState, record: Mapping, now_s: float, delay_s: float) -> list[str]:
    """A new law's workflow state ``ws`` in the panic ``record`` says (from
    :func:`panic_record`), as if the law before it went on: the panic ends
    when it would have, the arrivals since the step are counted on from
    those it had counted, and the cv² before the step is planned with.
    Each value believed only in its range — ``panic_s`` and ``step_s`` in
    [0, ``delay_s``] (the panic's length), each count's times within
    ``step_s`` and ended before started, its arrivals what
    ``MAX_RATE_RPS`` brings in its window, the cv² in [0,
    ``MAX_ARRIVAL_CV2``]; what is not, is named in the list returned, and
    without a believed ``panic_s`` nothing of it is taken."""
    if "panic_s" not in record:
        return []
    panic_s, step_s = record.get("panic_s"), record.get("step_s", 0.0)
    for field, value in (("panic_s", panic_s), ("step_s", step_s)):
        if not (is_number(value) and 0.0 <= value <= delay_s):
            return [f"{field} {str(value)[:30]!r}: not a number in [0, {delay_s:g}]"]
    refused = []
    counts = record.get("step_counts", [])
    taken = []
    if not isinstance(counts, list) or len(counts) > PANIC_RECORD_WINDOWS:
        refused.append(f"step_counts: not a list of at most {PANIC_RECORD_WINDOWS}")
    else:
        for entry in counts:
            triple = isinstance(entry, (list, tuple)) and len(entry) == 3 and all(is_number(v) for v in entry)
            ended, started, arrivals = entry if triple else (0.0, 0.0, 0.0)
            if not (triple and 0.0 <= ended < started <= step_s + 1e-9
                    and 0.0 <= arrivals <= MAX_RATE_RPS * (started - ended)):
                refused.append(f"step_counts {str(entry)[:40]}: not [ended, started] seconds ago within the "
                               f"step's and the arrivals between")
                taken = []
                break
            taken.append((now_s - ended, now_s - started, float(arrivals)))
    cv2 = record.get("step_cv2")
    if cv2 is not None and not (is_number(cv2) and 0.0 <= cv2 <= MAX_ARRIVAL_CV2):
        refused.append(f"step_cv2 {str(cv2)[:30]!r}: not a number in [0, {MAX_ARRIVAL_CV2:g}]")
        cv2 = None
    ws.panic_until_s, ws.step_at_s, ws.counting_since = now_s + panic_s, now_s - step_s, "the step"
    ws.since_step, ws.step_cv2 = taken, None if cv2 is None else float(cv2)
    return refused
