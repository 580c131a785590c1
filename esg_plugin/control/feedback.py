"""Feedback: what the answers say about the plan, and the law's answers to it.

The misses (late, 504 or 429 answers) over the feedback window, against
the tolerance, each answer counted once however the ticks' windows overlap
(:meth:`Feedback.missing`, :func:`once`: the simulator's 2-s windows a tick
a second and ``esg scaler``'s windows as long as its interval act on the
same misses); whether they rise over
the share seen before them, counted over disjoint windows
(:meth:`Feedback.misses_above`); the margin raised on fresh misses and
then, at the largest margin, the rate boosted (``capacity_feedback``),
each given back a step after a clean stretch — a lowering of the margin
that brings misses back undone, the next one held off twice as long
(:meth:`Feedback.margin_and_boost`); the queue each stage's requests
waited against the plan's model (:meth:`Feedback.queue_reading`, the
factor on the arrivals' cv² that ``law.py`` tests with a search, and
:meth:`Feedback.wait_relax`); a scale-down followed by misses undone
halfway (:meth:`Feedback.rollback`). ``docs/control.md``, points 1 and 3.
Pure: what it keeps lives in the caller's :class:`WorkflowState`.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from ..limits import is_number
from .observation import WorkflowObservation
from .rate import RATE_GRID, disjoint, on_rate_grid
from .settings import ControlSettings
from .state import WorkflowState

MARGIN_RELAX_FRACTION = 0.5
"""A clean stretch lowers the margin by this part of ``margin_step``."""
BOOST_STEP = 1.2
"""Each answer of ``capacity_feedback`` plans for this factor more (a clean stretch takes one back)."""
MIN_MISSES = 1.5
"""Fewer misses than this over the feedback window are noise, not a signal:
one miss is, a second is not. Counted once (:func:`once`): a miss in the
newest part of a window that the next tick's window overlaps is a part of
one until that window sees it too (half of one, where each window is twice
the tick), so the second miss counts from the tick that first sees it."""
WAIT_RATIO_RAISE = 1.5
"""``wait_calibration``: a stage's requests waited, on average over the
feedback window, more than this many times what the plan's model gives
its stage (its batching and queueing wait, at least
``WAIT_FLOOR_EXEC_FRACTION`` of its execution): the model is wrong about
the queue there."""
WAIT_FLOOR_EXEC_FRACTION = 0.25
"""Waits shorter than this part of a stage's execution time say nothing of
the model (the model gives a wait near 0 there, and any jitter reads as a
large ratio)."""
WAIT_FLOOR_MS = 0.1
"""... and shorter than this at any stage."""
WAIT_MIN_REQUESTS = 20
"""Fewer waits than this at a stage over the feedback window are noise."""
WAIT_FACTOR_MAX = 8.0
"""The most the arrivals' cv² is multiplied by for the queue the model sees."""
WAIT_FACTOR_STEP_MAX = 2.0
"""At most this factor more at one raise: the plan it gives is watched before the next."""
WAIT_FACTOR_RELAX = 1.5
"""A clean stretch of ``scale_down_delay_s`` divides the factor by this (down to 1)."""
MISS_RISE_Z = 3.0
"""Misses are rising (``steady_misses``) when the feedback window's count is
this many standard deviations (binomial) above the count the share seen
before gives."""
MAX_ROLLBACK_DOUBLINGS = 3
"""A scale-down undone again and again waits at most 2³ × the scale-down delay before the next."""


class Feedback:
    """The law's feedbacks (one per :class:`ControlLaw`)."""

    def __init__(self, settings: ControlSettings):
        self.settings = settings

    def missing(self, ws: WorkflowState, obs: WorkflowObservation, now_s: float) -> tuple[bool, bool]:
        """(missing, fresh): is the share of misses over the feedback window
        (each answer counted once, :func:`once`) above the
        tolerance, and is it so over what was observed after the margin was
        last raised alone, and after the workflow's last cold
        start (``WorkflowState.cold_until_s``)? The misses that raised the
        margin, or a cold start's, are no evidence that it is too low; they
        still keep the workflow from relaxing for the window (and from calm
        while they rise)."""
        s = self.settings
        history = ws.answers  # the feedback window, and the scale-down delay before it
        history.append((now_s, now_s - obs.short_window_s, obs.answers, obs.late + obs.rejected,
                        new_part(history[-1][0] if history else None, now_s, obs.short_window_s)))
        while history and history[0][0] <= now_s - s.feedback_window_s - s.scale_down_delay_s:
            history.popleft()
        window = [entry for entry in history if entry[0] > now_s - s.feedback_window_s]
        since_s = max(ws.last_raise_s, ws.cold_until_s)  # not the misses that raised it, nor a cold start's
        fresh = [entry for entry in window if entry[1] >= since_s - 1e-9]
        return self._over_tolerance(window), bool(fresh) and self._over_tolerance(fresh)

    def miss_share_before(self, ws: WorkflowState, now_s: float) -> float:
        """The share of misses over the scale-down delay before the feedback
        window (0 without ``steady_misses`` on a time-shared node, or
        without answers then)."""
        if not (self.settings.steady_misses and self.settings.busy_capacity is not None):
            return 0.0
        answers, misses = totals(disjoint([e for e in ws.answers if e[0] <= now_s - self.settings.feedback_window_s]))
        return misses / answers if answers else 0.0

    def misses_above(self, ws: WorkflowState, now_s: float, share: float) -> bool:
        """Are the feedback window's misses significantly more than ``share``
        of its answers gives (``MISS_RISE_Z``)? Counted over disjoint short
        windows (the ticks' windows overlap). With no share seen before,
        yes: the callers ask only when the misses are over the tolerance."""
        if share <= 0.0:
            return True
        answers, misses = totals(disjoint([e for e in ws.answers if e[0] > now_s - self.settings.feedback_window_s]))
        expected = answers * share
        return misses > expected + MISS_RISE_Z * math.sqrt(max(expected * (1.0 - share), 1.0))

    def _over_tolerance(self, entries) -> bool:
        answers, misses = once(entries)
        return misses >= MIN_MISSES and misses > self.settings.miss_tolerance * answers

    def margin_and_boost(self, ws: WorkflowState, missing: bool, fresh: bool, now_s: float,
                         more_helps: Callable[[], bool]) -> Optional[str]:
        """The margin's and the capacity's feedback on misses, and their
        relaxation after a clean stretch. ``more_helps``: would more
        capacity serve more — does some plan fit the capacity the other
        workflows leave (``Capacity.nothing_fits``; where none does, a plan
        for more rate would only hold more of what finds no room), and has
        every instance a step's re-plan started begun to serve
        (``boost_waits_for_start``)? Where not, the capacity step is not
        taken."""
        s = self.settings
        if not s.feedback:
            return None
        if missing:
            ws.clean_since_s = None
            if ws.hopeless:
                return None  # misses every plan gives: neither a margin nor capacity can meet the SLO
            if fresh and now_s - ws.last_margin_change_s >= s.feedback_cooldown_s and s.margin_rollback \
                    and ws.margin_lowered_from is not None and ws.margin < ws.margin_lowered_from \
                    and now_s - ws.margin_lowered_at_s <= s.scale_down_delay_s:
                # the lowering brought these misses: back to the margin last seen clean, and the
                # next lowering waits twice as long (``margin_rollback``)
                ws.margin, ws.margin_lowered_from = ws.margin_lowered_from, None
                ws.margin_rollbacks, ws.margin_hold_until_s = back_off(ws.margin_rollbacks, now_s,
                                                                       s.scale_down_delay_s)
                ws.last_margin_change_s = ws.last_raise_s = now_s
                return f"misses after the margin was lowered: back to {ws.margin:.2f} (not lowered for " \
                       f"{ws.margin_hold_until_s - now_s:.0f} s)"
            if fresh and now_s - ws.last_margin_change_s >= s.feedback_cooldown_s and ws.margin < s.max_margin:
                ws.margin = on_margin_grid(min(s.max_margin, ws.margin + s.margin_step))
                ws.last_margin_change_s = ws.last_raise_s = now_s
                return f"misses: margin raised to {ws.margin:.2f}"
            if fresh and now_s - ws.last_margin_change_s >= s.feedback_cooldown_s and s.capacity_feedback \
                    and ws.boost < s.max_boost and s.busy_capacity is None and more_helps():
                # the largest margin still misses: the model is wrong about more than
                # the latency (bursts it does not see): capacity is the lever left — where
                # capacity is reserved (GPU shares); on a time-shared node more replicas
                # share the same cores, and contention is what calibration measures
                ws.boost = round(min(s.max_boost, ws.boost * BOOST_STEP), 9)
                ws.last_margin_change_s = ws.last_raise_s = now_s
                return f"misses at the largest margin: planning for {ws.boost:.2f} x the rate"
            return None
        if ws.clean_since_s is None:
            ws.clean_since_s = now_s
        elif now_s - ws.clean_since_s >= s.scale_down_delay_s and ws.boost > 1.0:
            ws.boost = round(max(1.0, ws.boost / BOOST_STEP), 9)  # back to 1 exactly
            ws.clean_since_s = now_s
            ws.last_margin_change_s = now_s
            return f"no misses for {s.scale_down_delay_s:g} s: planning for {ws.boost:.2f} x the rate"
        elif now_s - ws.clean_since_s >= s.scale_down_delay_s and ws.margin > s.slo_margin \
                and (not s.margin_rollback or now_s >= ws.margin_hold_until_s):
            if s.margin_rollback:
                if ws.margin_lowered_from is not None and now_s - ws.margin_lowered_at_s >= s.scale_down_delay_s:
                    ws.margin_rollbacks = 0  # the last lowering held: the back-off starts again
                ws.margin_lowered_from, ws.margin_lowered_at_s = ws.margin, now_s
            ws.margin = max(s.slo_margin, on_margin_grid(ws.margin - s.margin_step * MARGIN_RELAX_FRACTION))
            ws.clean_since_s = now_s
            ws.last_margin_change_s = now_s
            return f"no misses for {s.scale_down_delay_s:g} s: margin lowered to {ws.margin:.2f}"
        return None

    def wait_relax(self, ws: WorkflowState, now_s: float) -> Optional[str]:
        """A clean stretch of ``scale_down_delay_s`` takes the queue's factor a step back toward 1."""
        s = self.settings
        if ws.wait_factor <= 1.0 or ws.clean_since_s is None or now_s - ws.clean_since_s < s.scale_down_delay_s \
                or now_s - ws.wait_changed_s < s.scale_down_delay_s:
            return None
        ws.wait_factor = max(1.0, round(ws.wait_factor / WAIT_FACTOR_RELAX, 9))
        ws.wait_changed_s = now_s
        return f"no misses for {s.scale_down_delay_s:g} s: planned with {ws.wait_factor:.2f} x the arrivals' cv2"

    def rollback(self, ws: WorkflowState, fresh: bool, now_s: float, target: float) -> Optional[float]:
        """The rate to go back to when the last scale-down brought fresh
        misses within the scale-down delay, else None (``rollback``): halfway
        (geometrically) from the rate planned now back to the one planned
        before the scale-down, a bisection between a plan that met the SLO
        and one that did not — the plan before may have covered far more
        than was needed (a backlog's drain, a step's panic). The new plan is
        watched in turn: misses again within the delay bisect again. The
        watch ends once this tick's plan (``target``) is back at the one
        before the scale-down: later misses are not the scale-down's
        (a rate that rose), and lengthen no hold on the next one."""
        s = self.settings
        if not s.rollback or ws.down_from_rps is None or ws.planned_rps is None:
            return None
        if target >= ws.down_from_rps * (1 - 1e-9):
            ws.down_from_rps = None  # back where it was: nothing left to bisect (the back-off's count is kept)
            return None
        if now_s - ws.down_at_s > s.scale_down_delay_s:
            ws.down_from_rps, ws.rollbacks = None, 0  # the scale-down held: the back-off starts again
            return None
        if not fresh or (ws.rollbacks and now_s - ws.down_at_s < s.feedback_cooldown_s):
            return None  # as the margin's feedback: at most once per cooldown
        ws.last_raise_s = ws.down_at_s = now_s  # these misses are answered: only later ones count again
        ws.rollbacks, ws.down_hold_until_s = back_off(ws.rollbacks, now_s, s.scale_down_delay_s)
        halfway = on_rate_grid(math.sqrt(ws.down_from_rps * ws.planned_rps))
        return min(ws.down_from_rps, max(halfway, ws.planned_rps * RATE_GRID))

    def queue_reading(self, ws: WorkflowState, obs: WorkflowObservation, missing: bool, now_s: float,
                      settling: Callable[[], bool]) -> Optional[tuple[float, str, float]]:
        """``wait_calibration``'s reading: while fresh misses go on
        (``missing``), is some stage's queue longer than the plan's model
        gives it (``WAIT_RATIO_RAISE``)? Then (by how much, that stage, the
        arrivals' cv² factor to plan with: the ratio times the factor now, at
        most ``WAIT_FACTOR_STEP_MAX`` more at once, up to ``WAIT_FACTOR_MAX``);
        else None. Not while ``settling`` (before ``warmup_s``, or while a
        stage's instances start: the queue a cold start leaves is no error
        of the model), nor within the cooldown of the factor's last change
        or test. The waits of the feedback window are kept in ``ws``."""
        s = self.settings
        if not (s.wait_calibration and s.feedback):  # a feedback on misses, as the margin's
            return None
        waits = ws.waits
        if settling():
            waits.clear()
            return None
        for stage, (count, total_ms) in stage_waits(obs).items():
            waits.append((now_s, stage, count, total_ms))
        while waits and waits[0][0] <= now_s - s.feedback_window_s:
            waits.popleft()
        if not missing or ws.plan is None or now_s - max(ws.wait_changed_s, ws.wait_tested_s) < s.feedback_cooldown_s \
                or ws.wait_factor >= WAIT_FACTOR_MAX:
            return None
        sums: dict[str, list[float]] = {}
        for _, stage, count, total_ms in waits:
            pair = sums.setdefault(stage, [0.0, 0.0])
            pair[0] += count
            pair[1] += total_ms
        ratio, where = 0.0, None
        for stage, planned in ws.plan.stages.items():  # the model's batching and queueing wait: latency less execution
            count, total_ms = sums.get(stage, (0.0, 0.0))
            if count >= WAIT_MIN_REQUESTS:
                r = total_ms / count / max(planned.latency_ms - planned.exec_ms,
                                           WAIT_FLOOR_EXEC_FRACTION * planned.exec_ms, WAIT_FLOOR_MS)
                if r > ratio:
                    ratio, where = r, stage
        if ratio <= WAIT_RATIO_RAISE:
            return None
        return ratio, where, round(min(WAIT_FACTOR_MAX, ws.wait_factor * min(ratio, WAIT_FACTOR_STEP_MAX)), 9)


def back_off(rollbacks: int, now_s: float, delay_s: float) -> tuple[int, float]:
    """A change undone once more (a scale-down's ``rollback``, a lowering of
    the margin's ``margin_rollback``): the undone in a row, one more (at most
    ``MAX_ROLLBACK_DOUBLINGS``), and until when the next such change waits —
    ``delay_s`` doubled that many times from ``now_s``."""
    rollbacks = min(rollbacks + 1, MAX_ROLLBACK_DOUBLINGS)
    return rollbacks, now_s + delay_s * 2 ** rollbacks


def longest_hold_s(delay_s: float) -> float:
    """The longest wait :func:`back_off` gives after ``delay_s``."""
    return delay_s * 2 ** MAX_ROLLBACK_DOUBLINGS


def stage_waits(obs: WorkflowObservation) -> dict[str, tuple[float, float]]:
    """Per stage, (requests that left its queue, their summed wait in ms)
    as observed, where believed: a pair of numbers, the count positive, the
    wait not negative (``WorkflowObservation.stage_wait``)."""
    believed = {}
    for stage, reading in obs.stage_wait.items():
        try:
            count, total_ms = reading
        except (TypeError, ValueError):
            continue  # no pair: not believed
        if is_number(count) and is_number(total_ms) and count > 0 and total_ms >= 0:  # else not believed
            believed[stage] = (float(count), float(total_ms))
    return believed


def on_margin_grid(margin: float) -> float:
    """A margin rounded to 1e-9: steps of 0.1 up and 0.05 down come back to
    exactly where they started (0.1 + 0.1, then four times − 0.05, is
    1.4e-17 in floating point, which would be "above" a margin of 0 and
    re-plan at every clean stretch)."""
    return round(margin, 9)


def totals(entries) -> tuple[int, int]:
    """(answers, misses) over ticks' (time, window start, answers, misses,
    new part): every window whole (of windows that do not overlap:
    :func:`~.rate.disjoint`)."""
    return sum(e[2] for e in entries), sum(e[3] for e in entries)


def once(entries) -> tuple[float, float]:
    """(answers, misses) over ticks' (time, window start, answers, misses,
    new part), each answer counted once however the windows overlap: each
    window's counts times the part of it the tick before did not see
    (:func:`new_part`; the counts taken as spread evenly over the window).
    Where each window is the time since the last tick, the counts as they
    are; where each is twice that (the simulator's), half of each."""
    return sum(e[2] * e[4] for e in entries), sum(e[3] * e[4] for e in entries)


def new_part(last_tick_s: Optional[float], now_s: float, window_s: float) -> float:
    """The part of a tick's window (``window_s`` up to ``now_s``) after
    the last tick (at ``last_tick_s``, None for none): what the last
    tick's window did not hold, if it ended there. 1 for the first tick,
    or a window no longer than the time since the last."""
    if last_tick_s is None or not window_s > 0:
        return 1.0
    return min(1.0, max(0.0, (now_s - last_tick_s) / window_s))
