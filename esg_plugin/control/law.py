"""The control law: (observation, state, now) -> desired instance groups.

One law for the simulator's ``esg`` and ``optimal`` policies, ``esg scaler``
and ``esg up``; each only translates its observations in and the desired
groups out. Pure: no I/O, no clock (``now_s`` is given), all memory in a
:class:`ControlState` the caller keeps.

Per workflow with data, at every tick (``docs/control.md``):

1. **Feedback** (``feedback.py``) — a short window with misses (late, 504 or 429 answers
   above ``miss_tolerance``) raises the workflow's SLO margin; a long
   clean stretch lowers it again, never below ``slo_margin``.
2. **Rate** (``rate.py``) — the long window's arrival rate, or at a steady rate the
   arrivals counted since it last moved (``pooled_rate``; for bursty
   arrivals only where that is higher); the short window's as soon
   as a one-sided test says it is significantly above the planned rate
   (step detection); plus the backlog drained within ``drain_s``; times a
   headroom that grows with the arrivals' variability.
3. **Up at once, down after a delay** — re-plan when the wanted rate
   exceeds the planned one; re-plan down only after it stayed below
   ``scale_down_below`` of it for ``scale_down_delay_s``, never while there
   is backlog or misses (on a time-shared node: misses above the share
   seen before them, ``steady_misses``), never before ``warmup_s`` of data. A scale-down
   followed by misses within the delay is undone (``rollback``), and the
   next one waits twice as long (on a time-shared node, misses at the
   share seen before it undo nothing).
4. **Plan** — ESG (or the exact oracle) against ``SLO × (1 − margin)``,
   queueing-aware, with the utilisation of each stage's instances a
   decision (several targets). A change of share restarts the stage's
   instances: a smaller share that saves too little is not taken, nor a
   larger one when the plan at the running shares meets the SLO too, for at
   most 1 / (1 − ``min_share_saving``) times the cost. Where the GPUs are
   counted (``capacity_gpus``; ``capacity.py``, ``search.py``), a plan on time fits
   where its instances and the other workflows' planned ones find a GPU
   each (``packing.py``; ``packed_capacity``), else the same budget is
   searched below the most room a GPU has left; restarts whose new
   instances find no GPU beside the running ones wait — in a step, and
   where the stages left meanwhile miss by the model (``restart_room``).
   When nothing fits: the degraded plan
   that still meets the SLO if any, within the capacity, else the least
   late one that fits. While replicas added beside a stage's running ones
   start, every group of the stage runs at the largest-throughput batch
   size that fits the stage's part of the SLO, with no wait (a batch
   leaves with what is queued; ``bridge_batching``).
5. **Calibration** (``calibration.py``) — profile latencies scaled by
   observed / profiled execution time (bounded to 0.5..3, smoothed), per
   function and, for a while, per share it was observed at. Slower
   instances re-plan at once; faster ones only after they stayed faster
   for the scale-down delay, when calm (a re-plan for faster instances
   holds less).
6. **A time-shared node** (``busy_capacity``, ``esg up`` on a CPU) — each
   workflow's demand is the busy time of its plan for its wanted rate
   (:func:`plan_busy`: the calibrated execution times, where contention
   shows as longer ones, times how busy the share's cores were while they
   ran — the runtime's processor time over its execution time — so an
   execution that waited for a core is not counted as keeping one busy). When the demands exceed the capacity, each
   workflow gets the capacity in proportion to its demand (no workflow
   starves while another grows), its plan is made again for the rate that
   fits its part, and that rate is its ``admit_rps``: the rest is shed at
   the entry (429) rather than slowing every request down. A workflow
   re-plans when its part moves by more than ``BUSY_FREED``.

The output is level-triggered, as a Kubernetes controller's: every tick
returns the whole desired state, so an actuator that failed to place
something earlier tries again.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Mapping, Optional, Sequence

from ..limits import is_number
from ..model import InstanceGroup, ModelError, Plan, ProfileSet, Stage, StageOption, Workflow, group_of
from ..model.config import Config, evaluate, fanout_rounds_ms
from ..model.plan import choices_latency_ms, path_latency_ms
from ..planner import PlannerError, deployment_for, get_policy
from .calibration import Calibration
from .capacity import Capacity, held_gpus, new_instances
from .delay import DelayWindow
from .errors import ControlError
from .feedback import BOOST_STEP, MAX_ROLLBACK_DOUBLINGS, WAIT_FACTOR_MAX, Feedback, longest_hold_s, on_margin_grid
from .observation import MAX_RATE_RPS, Observation, WorkflowObservation, believed_room
from .packing import room_after
from .rate import WantedRate, excess_backlog, on_rate_grid, panic_record, resume_panic
from .room import Room
from .search import Search, fastest_executions_ms, problem_for
from .settings import ControlSettings
from .state import ControlState, Decision, StageKey, WorkflowState

MAX_START_S = 120.0
"""Instances the platform reports as starting count as starting at most this
long after the re-plan that started them (the embedded platform gives up on
a worker after 120 s); a start that takes longer is a failure, not a start."""

BUSY_FREED = 0.1
"""A workflow re-plans when its part of ``busy_capacity`` moved this much
(relative) away from what its plan keeps busy."""

ADOPT_HALVINGS = 30
"""``adopt_running``: the rate what runs serves, bisected this many times."""
_DEFERRED = "deferred to the next tick"
"""``_wait_feedback``'s answer when the tick's searches are spent (``ControlState.searches_left``)."""


class ControlLaw:
    def __init__(self, workflows: Sequence[Workflow], profiles: ProfileSet,
                 settings: ControlSettings = ControlSettings(), policy: str = "esg"):
        get_policy(policy)  # an unknown policy fails here
        self.workflows = {wf.name: wf for wf in workflows}
        self.profiles = profiles
        self.settings = settings
        self.policy = policy
        self.calibration = Calibration(profiles, settings)
        self.rates = WantedRate(settings)
        self.feedback = Feedback(settings)
        self.room = Room(settings, profiles)
        self.capacity = Capacity(self.workflows, settings, policy, functools.partial(problem_for, settings))
        self.search = Search(settings, policy, self.capacity)

    def new_state(self) -> ControlState:
        return ControlState()

    def learned(self, state: ControlState, now_s: float) -> dict[str, dict[str, float]]:
        """What the feedbacks have learned of each workflow — its margin,
        boost and queue factor, where any is off where it starts, and the
        rollback's back-off: how many scale-downs in a row were undone
        (``rollbacks``), for how many more seconds no scale-down is taken
        (``down_hold_s``, from ``now_s``: a time relative to the writer's
        clock, so that no two hosts' clocks are compared) and the rate
        planned meanwhile (``down_hold_rps``); the margin's
        (``margin_rollback``): lowerings undone in a row
        (``margin_rollbacks``) and the seconds left before the next
        (``margin_hold_s``) — what a
        law started afresh (a restarted scaler, a new leader) resumes from
        (:meth:`resume`; the scaler keeps it in its Lease's record)."""
        s = self.settings
        out = {}
        for name, ws in sorted(state.workflows.items()):
            record = {}
            if ws.margin > s.slo_margin + 1e-9 or ws.boost > 1.0 + 1e-9 or ws.wait_factor > 1.0 + 1e-9:
                record.update(margin=ws.margin, boost=ws.boost, wait_factor=ws.wait_factor)
            if ws.rollbacks > 0:
                record["rollbacks"] = ws.rollbacks
            if ws.margin_rollbacks > 0:
                record["margin_rollbacks"] = ws.margin_rollbacks
            if ws.margin_hold_until_s > now_s:
                record["margin_hold_s"] = round(ws.margin_hold_until_s - now_s, 3)
            if ws.down_hold_until_s > now_s:
                record["down_hold_s"] = round(ws.down_hold_until_s - now_s, 3)
                # the rate a resumed hold keeps, else the plan's (which the hold keeps from going down)
                held_rps = ws.planned_rps if ws.down_hold_rps is None else ws.down_hold_rps
                if held_rps is not None:
                    record["down_hold_rps"] = held_rps
            if s.resume_panic:
                record.update(panic_record(ws, now_s))
            if record:
                out[name] = record
        return out

    def resume(self, state: ControlState, learned: object, now_s: float) -> list[str]:
        """``resume_learned``: start ``state`` (a new one) from what a law
        before it learned (:meth:`learned`): each workflow's margin, boost and
        queue factor, its rollbacks in a row, the seconds left of its hold
        on scale-downs (counted from ``now_s``) and the rate it holds, and
        the margin's rollbacks in a row and hold, each
        believed only as a number in its range ([``slo_margin``,
        ``max_margin``], [1, ``max_boost``], [1, ``WAIT_FACTOR_MAX``], a
        whole number in [0, ``MAX_ROLLBACK_DOUBLINGS``], [0, the longest
        hold a rollback sets], [0, ``MAX_RATE_RPS``]; while that hold
        lasts, no plan is for less than that rate: ``_step_workflow``)
        — the record may come from anyone who can write the Lease. What is
        not believed stays where it starts and is named in the list
        returned."""
        s = self.settings
        if not s.resume_learned:
            return []
        if not isinstance(learned, Mapping):
            return [f"a record of what was learned must be a mapping, got {type(learned).__name__}"]
        ranges = {"margin": (s.slo_margin, s.max_margin), "boost": (1.0, s.max_boost),
                  "wait_factor": (1.0, WAIT_FACTOR_MAX), "rollbacks": (0, MAX_ROLLBACK_DOUBLINGS),
                  "down_hold_s": (0.0, longest_hold_s(s.scale_down_delay_s)),
                  "down_hold_rps": (0.0, MAX_RATE_RPS), "margin_rollbacks": (0, MAX_ROLLBACK_DOUBLINGS),
                  "margin_hold_s": (0.0, longest_hold_s(s.scale_down_delay_s))}
        whole = ("rollbacks", "margin_rollbacks")
        refused = []
        for name, values in learned.items():
            if name not in self.workflows or not isinstance(values, Mapping):
                refused.append(f"{str(name)[:60]!r}: no workflow of this law, or not a mapping")
                continue
            ws = self._workflow_state(state, name)
            for field, (low, high) in ranges.items():
                value = values.get(field)
                if value is None:
                    continue
                if not (is_number(value) and low <= value <= high) \
                        or (field in whole and value != int(value)):
                    refused.append(f"{name}'s {field} {str(value)[:30]!r}: not a number in [{low:g}, {high:g}]"
                                   + (" (a whole one)" if field in whole else ""))
                    continue
                if field == "margin":
                    ws.margin = on_margin_grid(float(value))
                elif field in whole:
                    setattr(ws, field, int(value))
                elif field == "down_hold_s":
                    ws.down_hold_until_s = now_s + float(value)
                elif field == "margin_hold_s":
                    ws.margin_hold_until_s = now_s + float(value)
                elif field == "down_hold_rps":
                    ws.down_hold_rps = float(value) if value > 0 else None
                else:
                    setattr(ws, field, float(value))
            if s.resume_panic:
                refused += [f"{name}'s {said}" for said in resume_panic(ws, values, now_s, s.scale_down_delay_s)]
        return refused

    def take_over(self, before: "ControlLaw", state: ControlState, now_s: float,
                  vouched: Callable[[str], bool] = lambda name: True) -> tuple[ControlState, list[str]]:
        """A state for this law from ``state``, the state of the law
        ``before`` it (the law of a workload since reloaded: a stack or
        profiles file changed under a running scaler). A workflow that is
        the same — its definition, and the profile of each of its
        functions, equal to before, and ``vouched`` for by the caller (what
        only it knows: where its stages are deployed) — goes on as it was:
        its plan, windows, feedbacks, step and hold, all of it; no reload
        disturbs it. One that changed starts again as a restarted law's
        would (what runs is its first plan, ``adopt_running``) and resumes
        what the law had learned of it (:meth:`learned`, :meth:`resume`);
        a new one starts afresh; both warm up from ``now_s``
        (``WorkflowState.joined_s``). What was learned of each function's
        execution times (its factors) is kept where its profile is the
        same. Returns the new state and what :meth:`resume` did not
        believe."""
        same_functions = {name for name, profile in self.profiles.functions.items()
                          if before.profiles.functions.get(name) == profile}
        after = ControlState(first_observation_s=state.first_observation_s)
        for memory in ("exec_factor", "cpu_factor", "share_factor", "batch_factor"):
            getattr(after, memory).update({key: value for key, value in getattr(state, memory).items()
                                           if (key[0] if isinstance(key, tuple) else key) in same_functions})
        after.running_shares = {name: share for name, share in state.running_shares.items()
                                if name in same_functions}
        kept = {name for name, workflow in self.workflows.items()
                if name in state.workflows and before.workflows.get(name) == workflow and vouched(name)
                and all(st.function in same_functions for st in workflow.stages)}
        after.workflows = {name: state.workflows[name] for name in kept}
        learned = before.learned(state, now_s)
        refused = self.resume(after, {name: record for name, record in learned.items()
                                      if name in self.workflows and name not in kept}, now_s)
        for name in self.workflows:
            if name not in kept:
                self._workflow_state(after, name).joined_s = now_s
        return after, refused

    def _workflow_state(self, state: ControlState, name: str) -> WorkflowState:
        """The state the law keeps of workflow ``name``, made as it starts where there is none."""
        ws = state.workflows.get(name)
        if ws is None:
            s = self.settings
            ws = state.workflows[name] = WorkflowState(s.slo_margin, DelayWindow(s.scale_down_delay_s),
                                                       DelayWindow(s.scale_down_delay_s))
        return ws

    # --- the step -------------------------------------------------------------------------
    def step(self, observation: Optional[Observation], state: ControlState, now_s: float,
             current: Optional[Mapping[StageKey, InstanceGroup]] = None) -> Decision:
        """One tick. ``current`` is what each stage runs now, where the caller
        knows it better than the law's own last decision."""
        reasons: dict[str, str] = {}
        changed: list[str] = []
        if observation is None:
            reasons["*"] = "no data: nothing changes"
        else:
            if state.first_observation_s is None:
                state.first_observation_s = now_s
            state.running_shares = self._running_shares(state, current or {})
            state.starting = dict(observation.starting)
            state.unplaced = dict(observation.unplaced)
            state.serving = dict(observation.serving)
            state.gpu_free_pct = believed_room(observation.gpu_free_pct, self.settings.capacity_gpus) \
                if self.settings.actual_room else None
            state.searches_left = self.settings.max_replans_per_tick
            self.calibration.observe(observation, state, state.running_shares, now_s)
            wishes = []
            for name, workflow in self.workflows.items():
                raw = observation.workflows.get(name)
                if raw is None:
                    reasons[name] = "no data for this workflow"
                    continue
                try:
                    obs = raw.checked()
                except ControlError as err:
                    reasons[name] = f"implausible observation ignored: {err}"
                    continue
                wish = self._step_workflow(workflow, obs, state, now_s, current or {}) \
                    or state.workflows[name].pending
                if wish is None and state.workflows[name].adopted_said:  # what ran is its first plan (``_adopt``)
                    changed.append(name)
                    reasons[name], state.workflows[name].adopted_said = state.workflows[name].adopted_said, ""
                elif wish is None:
                    reasons[name] = "unchanged" + self.room.waiting_said(workflow, state.workflows[name], state,
                                                                         now_s)
                else:
                    wishes.append((name, wish))
            # the most urgent first: first plans, then the largest rise over what is planned
            wishes.sort(key=lambda item: _urgency(state.workflows[item[0]], item[1][1]), reverse=True)
            for i, (name, (why, target, cv2, offered)) in enumerate(wishes):
                ws = state.workflows[name]
                if i >= self.settings.max_replans_per_tick:
                    ws.pending = (why, target, cv2, offered)
                    reasons[name] = f"deferred to the next tick ({self.settings.max_replans_per_tick} re-plans " \
                                    f"per tick): {why}"
                    continue
                ws.pending = None
                boost = ws.boost
                self._plan(self._as_measured(self.workflows[name], ws), ws, state, target, cv2, current or {},
                           now_s, offered)
                changed.append(name)
                reasons[name] = why + ws.no_room_said + _late_said(ws) + _unpacked_said(ws) + (
                    f"; planned for {ws.boost:.2f} x the rate: a plan for more is " + (
                        "late by the model" if ws.late_by <= 1.0 else "later by the model")
                    if ws.boost < boost else "") + self.room.waiting_said(self.workflows[name], ws, state, now_s)
                ws.no_room_said = ""
        return self._decision(state, tuple(changed), reasons, now_s)

    def _as_measured(self, workflow: Workflow, ws: WorkflowState) -> Workflow:
        """The workflow as it is planned: with the hop between stages as
        measured where that is longer than the workflow says (``measured_hops``)."""
        if self.settings.measured_hops and ws.hop_ms is not None and ws.hop_ms > workflow.hop_ms:
            return dataclasses.replace(workflow, hop_ms=round(ws.hop_ms, 1))
        return workflow

    def _step_workflow(self, workflow: Workflow, obs: WorkflowObservation, state: ControlState, now_s: float,
                       current: Mapping[StageKey, InstanceGroup]) -> Optional[tuple[str, float, float, Optional[float]]]:
        """What this workflow wants re-planned now, if anything: (why, the
        rate to plan for, the arrivals' cv², the offered rate it is for
        where that is not the rate over its headroom). ``current``: what
        each stage runs, where the caller says."""
        s = self.settings
        ws = self._workflow_state(state, workflow.name)
        if obs.hop_ms is not None:
            ws.hop_ms = obs.hop_ms
        if s.step_cv2_hold and ws.step_cv2 is not None and now_s < ws.panic_until_s \
                and obs.arrival_cv2 > ws.step_cv2:
            obs = dataclasses.replace(obs, arrival_cv2=ws.step_cv2)
        if s.cold_start_misses and any(state.serving.get((workflow.name, st.name)) == 0 for st in workflow.stages):
            # what misses now is the start's, and so is what was queued meanwhile and is answered
            # within a short window after it: not counted against the plan
            ws.cold_until_s = now_s + obs.short_window_s
        missing, fresh = self.feedback.missing(ws, obs, now_s)
        rising = missing and self.feedback.misses_above(ws, now_s, self.feedback.miss_share_before(ws, now_s))
        boost_before = ws.boost
        waited = self._wait_feedback(workflow, ws, state, obs, missing and fresh, now_s)

        def more_helps() -> bool:  # asked only where the capacity feedback would act
            if s.boost_waits_for_start and any(self._starting_in_step(workflow, ws, st.name, now_s, state)
                                               for st in workflow.stages):
                return False  # more instances would start after those a step's re-plan started
            profiles = self.calibration.profiles_for(workflow, state, now_s)
            return not self.capacity.nothing_fits(workflow, state, profiles)

        if waited == _DEFERRED:  # these misses are answered at the next tick, by one feedback or the other
            ws.clean_since_s = None
            why = None
        elif waited is not None:  # these misses are answered by the queue's factor: the margin waits its cooldown
            ws.last_raise_s = ws.last_margin_change_s = now_s
            why = self.feedback.margin_and_boost(ws, missing, False, now_s, more_helps) or waited
        else:
            relaxed = self.feedback.wait_relax(ws, now_s)  # before the margin's clean stretch restarts
            why = self.feedback.margin_and_boost(ws, missing, fresh, now_s, more_helps) or relaxed
        backlog = excess_backlog(obs, ws.planned_rps, workflow.slo_ms)
        pooled = self.rates.pooled(ws, obs, now_s)
        want, wanted_rps, said, quick, settle_below = self.rates.wanted(ws, obs, backlog, now_s, pooled)
        if ws.down_hold_rps is not None:  # resumed with a rollback's hold (``resume``): no plan below it until it ends
            if now_s < ws.down_hold_until_s and want < ws.down_hold_rps:
                want, said = ws.down_hold_rps, f"{said}; {ws.down_hold_rps:.2f} rps held after a rolled-back " \
                                                 f"scale-down, for {ws.down_hold_until_s - now_s:.0f} s more"
            elif now_s >= ws.down_hold_until_s:
                ws.down_hold_rps = None
        planned = ws.planned_rps
        target = planned
        ws.calm = calm = backlog <= 0 and not rising and now_s >= ws.panic_until_s
        adopted = ws.adopted  # what ran, kept (``_adopt``), as this tick began
        if planned is None and s.adopt_running and self._adopt(workflow, ws, state, obs, current, want, wanted_rps,
                                                               said, now_s):
            return None  # what runs already (a restarted scaler) is its plan: down only by the scale-down path
        if planned is None:
            target, why = want, f"first plan for {said}"
            if s.step_settle and now_s >= ws.panic_until_s:
                # made from the first windows: the arrivals counted from here may say it read high (in a
                # panic resumed from the law before, ``resume_panic``, the step's count goes on instead)
                ws.step_at_s, ws.since_step, ws.first_until_s = now_s, [], now_s + s.scale_down_delay_s
                ws.counting_since = "the first plan"  # its count's end as a panic's (``panic_exit``)
                window_s = obs.short_window_s if quick else (obs.long_window_s or obs.short_window_s)
                ws.first_window = ((obs.rate_short_rps if quick else obs.rate_long_rps) * window_s, window_s)
        elif ws.boost > boost_before:  # the capacity feedback: more rate planned for at once
            target = max(planned, want)
        elif want > planned * (1 + 1e-9) and (quick or self.rates.rise_is_real(ws, obs, pooled)):
            target, why = want, f"up: {said}"
            ws.scale_down.reset()
            ws.adopted = False
        elif settle_below is not None and want < planned * settle_below and backlog <= 0 and not rising \
                and not ws.adopted:
            # the panic's plan was made for a short window that read high: down to
            # what the arrivals since the step say, the panic (and its hold on any
            # further scale-down) going on; watched for misses as a scale-down —
            # not what ran, kept (a law resumed in a panic): that waits for the delay
            target, why = want, f"settled: {said}"
            ws.down_from_rps, ws.down_at_s = planned, now_s
            ws.down_miss_share = self.feedback.miss_share_before(ws, now_s)
        else:
            warm = now_s - _warm_from(state, ws, now_s) >= s.warmup_s
            low = want < planned * s.scale_down_below
            due = ws.scale_down.update(low, now_s, keep=True)
            if due and warm and calm and now_s >= ws.down_hold_until_s:
                # never while requests wait or misses rise, nor in panic after a step, nor soon after a rollback
                ws.scale_down.reset()
                target, why = want, f"down after {s.scale_down_delay_s:g} s: {said}"
                ws.adopted = False
                ws.down_from_rps, ws.down_at_s = planned, now_s
                ws.down_miss_share = self.feedback.miss_share_before(ws, now_s)
        missed_since_down = fresh and self.feedback.misses_above(ws, now_s, ws.down_miss_share)
        rolled = self.feedback.rollback(ws, missed_since_down, now_s, target)
        # the offered rate the plan is for: the grid rounds the rate to cover up, not the estimate
        # (else each re-plan for the same count raises the estimate a step, and a held one with it)
        offered = None if target is None else ws.estimate_rps if abs(target - (planned or 0.0)) <= 1e-9 \
            else wanted_rps if abs(target - want) <= 1e-9 else None
        if rolled is not None and rolled > (target or 0.0):
            # capacity held back: the load it is for is still the one observed
            offered = min(wanted_rps, rolled / self.rates.headroom(obs.arrival_cv2))
            target, why = rolled, f"misses after a scale-down: planned again for {rolled:.2f} rps, halfway back " \
                                  f"to the {ws.down_from_rps:.2f} rps planned before it (no scale-down for " \
                                  f"{ws.down_hold_until_s - now_s:.0f} s)"
        moved = self.calibration.moved(workflow, ws, state)
        slower = moved and any(state.exec_factor.get(st.function, 1.0) > ws.factors.get(st.function, 1.0)
                               for st in workflow.stages)
        # faster instances are a scale-down: only once they stayed faster for the
        # scale-down delay, and never in a panic or while requests wait or miss
        faster_due = ws.faster.update(moved and not slower, now_s, keep=True)
        if why is None and (slower or (faster_due and calm)):
            ws.faster.reset()
            why = "execution times moved: re-planned"
        held = self.room.hold(workflow, ws, state, obs, missing, now_s)
        if held is not None:
            why = held if why is None else f"{why}; {held}"
        yields = s.fair_share or (s.boost_spare_only and ws.boost > 1.0)
        if not yields or ws.plan is None or s.capacity_gpus is None:
            ws.yielded_to_gpus = math.inf
        elif why is None:
            left = self.capacity.left_gpus(workflow, state)
            if ws.plan.cost <= left + 1e-9:
                if s.fair_share:  # (without it, as ``boost_spare_only`` alone did: until the boost ends)
                    ws.yielded_to_gpus = math.inf
            elif left < ws.yielded_to_gpus - 1e-9 and \
                    (not s.fair_share or ws.plan.cost > self.capacity.fair_share_gpus(workflow, state) + 1e-9):
                ws.yielded_to_gpus, ws.yielding, ws.adopted = left, True, False
                why = "another workflow's plan on time needs GPUs this plan holds: re-planned within its fair share" \
                    if s.fair_share else \
                    "another workflow's plan on time needs GPUs this boost holds: re-planned within the rest"
        if why is None and ws.plan is not None and s.busy_capacity is not None:
            part = self.capacity.busy_part(workflow.name, state, ws.demand)
            if ws.busy > part * (1 + BUSY_FREED) + 1e-9 or \
                    (ws.admit_rps is not None and part > ws.busy * (1 + BUSY_FREED) + 1e-9):
                why = "the node's capacity shared anew: re-planned"  # another workflow wants more, or less
        if why is None:
            return None
        if adopted and target is not None and abs(target - planned) <= 1e-9:
            # what ran, kept (``_adopt``), is re-planned for the load, not for all that what runs serves;
            # for misses, moved execution times or the node's share, taken only where it holds more
            # (``_plan``); for another workflow's fair share, as any yield
            target, offered = want, wanted_rps
        return why, target, obs.arrival_cv2 * ws.wait_factor, offered

    def _wait_feedback(self, workflow: Workflow, ws: WorkflowState, state: ControlState,
                       obs: WorkflowObservation, missing: bool, now_s: float) -> Optional[str]:
        """``wait_calibration``: where some stage's queue is longer than the
        plan's model gives it (:meth:`Feedback.queue_reading`), the model is
        wrong about the queue — bursts it does not see — and the workflow is
        planned with the arrivals' cv² times the factor by which it is: more
        replicas where the queue is, rather than a tighter budget for every
        stage. Not where the plan at that factor does not meet its budget
        (the margin's feedback answers then, and the test waits the cooldown
        before it is made again: its answer moves only with the plan's
        inputs). That test is a search: past the tick's
        (``ControlState.searches_left``), ``_DEFERRED`` — asked again at the
        next tick."""
        s = self.settings
        first_s = _warm_from(state, ws, now_s)
        reading = self.feedback.queue_reading(ws, obs, missing, now_s, lambda: now_s - first_s < s.warmup_s or any(
            self._still_starting(workflow, st.name, ws.started_s.get(st.name), now_s, state) for st in workflow.stages))
        if reading is None:
            return None
        ratio, where, factor = reading
        if state.searches_left <= 0:
            return _DEFERRED
        state.searches_left -= 1
        arrival_cv2 = max(obs.arrival_cv2 * factor, 0.0) if s.queueing_aware else None  # as _plan's
        try:  # the search the re-plan repeats, if it is for the same rate (``searched``)
            profiles = self.calibration.profiles_for(workflow, state, now_s)
            found = None if self.capacity.nothing_fits(workflow, state, profiles) else \
                self.search.choose(self._as_measured(workflow, ws), ws, state, profiles, ws.planned_rps, arrival_cv2,
                                   now_s=now_s, wanted="fits")
            fits = found is not None and found[3]
        except (PlannerError, ModelError):
            fits = False
        if not fits:
            ws.wait_tested_s = now_s
            return None
        ws.wait_factor, ws.wait_changed_s = factor, now_s
        return f"misses, and {where}'s requests waited {ratio:.1f} x what the model gives: " \
               f"planned with {ws.wait_factor:.2f} x the arrivals' cv2"

    # --- planning -------------------------------------------------------------------------
    def _plan(self, workflow: Workflow, ws: WorkflowState, state: ControlState, rate_rps: float, cv2: float,
              current: Mapping[StageKey, InstanceGroup], now_s: float,
              offered_rps: Optional[float] = None) -> None:
        """Plan ``workflow`` for ``rate_rps`` (headroom included); the offered
        rate it is for is ``offered_rps``, else the rate over its headroom."""
        profiles = self.calibration.profiles_for(workflow, state, now_s)
        arrival_cv2 = max(cv2, 0.0) if self.settings.queueing_aware else None
        chosen = self._planned(workflow, ws, state, profiles, rate_rps, arrival_cv2, current, now_s)
        if ws.no_room_new:
            ws.no_room_new = False
            ws.no_room_said = ": planned below that share"
            if not chosen[3]:
                # planned below the share just found without room, the plan misses its budget: where
                # the plan without the hold meets it, or a tighter one, the hold is not taken — that
                # plan runs and waits for room (``below_no_room``)
                held, ws.no_room = ws.no_room, {}
                without = self._planned(workflow, ws, state, profiles, rate_rps, arrival_cv2, current, now_s)
                if without[3] or without[0].budget_ms < chosen[0].budget_ms * (1 - 1e-9):
                    chosen = without
                    ws.no_room_tried.update(held)
                    ws.no_room_said = ": not planned below it, the plan below it is later by the model"
                else:
                    ws.no_room = held
        if self.settings.boost_on_time and ws.boost > 1.0 and _late(workflow, chosen[0]):
            # the capacity feedback's rate is a hedge against bursts the model does not see: not
            # so far that its plan is late by the model itself (on a full cluster, batches that
            # wait to fill) where a plan for less would be on time — the largest such boost;
            # ``boost_no_later``: where the plan for the rate itself is late too, not so far that
            # its plan is later than that one
            boost, highest = ws.boost, rate_rps
            unboosted = self._planned(workflow, ws, state, profiles, on_rate_grid(highest / boost), arrival_cv2,
                                      current, now_s)
            limit_ms = max(workflow.slo_ms, unboosted[0].budget_ms) if self.settings.boost_no_later \
                else workflow.slo_ms
            if unboosted[0].budget_ms <= limit_ms * (1 + 1e-9) < chosen[0].budget_ms:
                while boost > 1.0:
                    boost = round(max(1.0, boost / BOOST_STEP), 9)
                    rate = on_rate_grid(highest * boost / ws.boost)
                    again = unboosted if boost == 1.0 else \
                        self._planned(workflow, ws, state, profiles, rate, arrival_cv2, current, now_s)
                    if again[0].budget_ms <= limit_ms * (1 + 1e-9):
                        rate_rps, chosen, ws.boost, offered_rps = rate, again, boost, None
                        break
        problem, choices, stats, fits, admit_rps, ws.demand = chosen
        ws.factors = {st.function: state.exec_factor.get(st.function, 1.0) for st in workflow.stages}
        hopeless = not fits and self.search.hopeless_counts() \
            and fastest_executions_ms(workflow, profiles) > workflow.slo_ms
        yielding, ws.yielding = ws.yielding, False
        if ws.adopted and ws.plan is not None and held_gpus(choices) < ws.plan.cost - 1e-9:
            return  # what ran, kept, goes down by the scale-down path only
        ws.adopted = False
        if not ws.calm and not fits and not hopeless and ws.plan is not None and not yielding \
                and (rate_rps <= (ws.planned_rps or 0.0) + 1e-9
                     or not self._adds_capacity(workflow, ws, profiles, choices, current)) \
                and held_gpus(choices) < ws.plan.cost - 1e-9 \
                and self._running_ms(workflow, ws, profiles, problem.rate_rps, arrival_cv2, current,
                                     problem.queue_quantile) \
                <= choices_latency_ms(workflow, choices) + 1e-9:
            # while requests wait, miss or a step is under way (and some plan can
            # meet the SLO), a degraded re-plan for no more load (a higher margin
            # the model cannot meet, say) — or for more
            # that serves no more requests a second at any stage (the capacity
            # feedback's rate, where a tight budget no longer fits and a looser one's
            # cheapest plan runs a smaller share) — never holds less than the plan
            # that runs, unless the plan that runs, priced with today's execution
            # times, is slower than it (a larger share that turned out slow beside a
            # busy neighbour); one that meets its budget may
            return
        running = {st.name: _running(workflow, ws, st.name, current) for st in workflow.stages}
        restarted = [stage for stage, option in choices.items()
                     if running[stage] is not None and running[stage].gpu_share != option.config.gpu_share]
        # ``handover``: a re-plan that holds less for no more load and restarts some stage
        handing = self.settings.handover and self.settings.busy_capacity is None and bool(restarted) \
            and ws.plan is not None and held_gpus(choices) < ws.plan.cost - 1e-9 and rate_rps <= ws.planned_rps + 1e-9
        ran = {stage: self._batches_now(workflow, ws, stage, groups, now_s, state)
               for stage, groups in ws.groups.items()} if handing else {}  # as each stage runs now
        carried = None if handing else self._carried_handover(workflow, ws, state, choices, rate_rps, now_s)
        if handing:
            ws.handover_rps = ws.planned_rps  # the load the groups a handover keeps ran for
        ws.planned_rps = rate_rps
        ws.estimate_rps = rate_rps / self.rates.headroom(cv2) if offered_rps is None else offered_rps
        ws.fits = fits
        ws.late_by = problem.budget_ms / workflow.slo_ms
        ws.hopeless = hopeless
        ws.unpacked = not self.capacity.packs(self.capacity.others_instances(workflow, state), choices)
        if state.gpu_free_pct is not None:  # the room its new instances take: not there for the next re-plan
            state.gpu_free_pct = room_after(new_instances(choices, running), state.gpu_free_pct, partly=True)
        ws.admit_rps = admit_rps
        late_or_less = _late(workflow, problem) or problem.rate_rps < rate_rps * (1 - 1e-9)
        ws.held_below = (rate_rps / ws.boost, arrival_cv2, profiles) if late_or_less else None
        ws.on_time_gpus = None
        ws.busy = plan_busy(workflow, problem.rate_rps, choices, state.cpu_factor)
        ws.plan = Plan.build(workflow, self.policy, problem.rate_rps, choices, stats, slo_ms=problem.budget_ms)
        _record_downstream(workflow, ws, choices)
        path_exec_ms = max(option.exec_ms + ws.downstream_exec_ms[name] for name, option in choices.items())
        for stage, option in choices.items():
            before = running[stage]
            if before is not None and before.gpu_share != option.config.gpu_share:
                ws.share_changed_s[stage] = now_s
                ws.unplaced_since.pop(stage, None)  # room for the new share is yet to be found
            if before is None or before.gpu_share != option.config.gpu_share or option.replicas > before.count:
                ws.started_s[stage] = now_s
            if before is None or before.gpu_share != option.config.gpu_share:
                ws.bridge_from_s.pop(stage, None)  # no instance of this share runs yet: nothing to bridge with
                ws.bridge_batch.pop(stage, None)
            elif option.replicas > before.count >= 1:
                # the running ones keep the batch size they ran at, if larger, where it fits the SLO beside the rest
                still = self._still_starting(workflow, stage, ws.bridge_from_s.get(stage), now_s, state)
                batch = max(before.batch_size, ws.bridge_batch.get(stage, 0) if still else 0)
                batch_ms = _running_exec_ms(profiles, workflow.stage(stage).function, before._replace(batch_size=batch))
                rest_ms = ws.plan.latency_ms - option.latency_ms  # the longest path through the stage, less it
                if batch_ms is not None and batch_ms + rest_ms <= workflow.slo_ms:
                    ws.bridge_batch[stage] = batch
                elif self.settings.bridge_carry and (carry := _carrying_batch(
                        profiles, workflow.stage(stage).function, before, option.config.batch_size, batch,
                        problem.rate_rps * workflow.stage(stage).fanout,
                        workflow.slo_ms - (path_exec_ms - option.exec_ms))) is not None:
                    ws.bridge_batch[stage] = carry
                else:
                    ws.bridge_batch.pop(stage, None)
                ws.bridge_from_s[stage] = now_s
        ws.groups = deployment_for(self.policy, problem, choices)
        keep, wait = [], []  # ``handover``: stages kept as they ran, until those waited for serve
        if handing:
            planned = {stage: (groups or [None])[0] for stage, groups in ws.groups.items()}
            mix = {st.name: running[st.name] if st.name in restarted else planned.get(st.name)
                   for st in workflow.stages}  # what runs while the restarted stages' new ones start
            down = [stage for stage in restarted if choices[stage].config.gpu_share < running[stage].gpu_share]
            up = [stage for stage in restarted if stage not in down]
            # where every stage restarts there is no other to keep, and the order below still matters
            others = [stage for stage in ran if stage not in restarted and ran[stage]]
            if others and self._groups_ms(workflow, profiles, problem.rate_rps, arrival_cv2, mix,
                                          problem.queue_quantile) > workflow.slo_ms:
                # the new plan's other stages beside the restarted ones' old instances miss by the model:
                # the old plan runs whole until the new one can — the others as they ran until the restarted serve
                keep, wait = others, restarted
            elif down and up and self._groups_ms(workflow, profiles, problem.rate_rps, arrival_cv2,
                                                 {**mix, **{stage: planned.get(stage) for stage in down}},
                                                 problem.queue_quantile) > workflow.slo_ms:
                # restarts end one stage at a time: where the stages moved to a smaller share could
                # serve before those moved to a larger one and the mix misses by the model, they run
                # as they ran until the others' new instances serve, and restart then
                keep, wait = down, up
        ws.handover = {stage: ran[stage] for stage in keep if ran.get(stage)}
        ws.handover_restarts = tuple(wait)
        if carried is not None:
            ws.handover, ws.handover_restarts = carried
        if self.settings.bridge_batching or self.settings.burst_batching:
            ws.larger = _larger_batches(workflow, ws.groups, choices, profiles, ws.plan.latency_ms)

    def _carried_handover(self, workflow: Workflow, ws: WorkflowState, state: ControlState, choices,
                          rate_rps: float, now_s: float):
        """``handover_carry``: the handover under way, kept by a re-plan
        that is no handover itself — (its groups, the stages it waits for) —
        where the stages it waits for restart to the same share in the new
        plan, still start, and the new plan is for no more load than the kept
        stages ran for; else None. Without it a re-plan within the restart
        (a rollback's misses, say) moved the kept stages at once, beside the
        restarted stages' old instances."""
        if not (self.settings.handover_carry and ws.handover and ws.handover_restarts) \
                or rate_rps > ws.handover_rps + 1e-9:
            return None
        for stage in ws.handover_restarts:
            planned = ws.groups.get(stage)
            if not planned or choices[stage].config.gpu_share != planned[0].gpu_share:
                return None  # a restart waited for is called off or moved elsewhere
        if not self._handover_under_way(workflow, ws, now_s, state):
            return None
        return dict(ws.handover), ws.handover_restarts

    def _handover_under_way(self, workflow: Workflow, ws: WorkflowState, now_s: float, state: ControlState) -> bool:
        """Does some stage the handover waits for (``handover_restarts``) still start?"""
        return any(self._still_starting(workflow, name, ws.started_s.get(name), now_s, state)
                   for name in ws.handover_restarts)

    def _planned(self, workflow: Workflow, ws: WorkflowState, state: ControlState, profiles: ProfileSet,
                 rate_rps: float, arrival_cv2: Optional[float], current: Mapping[StageKey, InstanceGroup],
                 now_s: float):
        """(problem, choices, stats, fits, the rate to admit or None, the
        plan's busy demand) of the plan :meth:`_plan` would make for
        ``rate_rps``: the capacity's part, the shares kept while instances
        start, the restarts worth taking and those with room to take.
        Changes nothing of ``ws``'s but
        the search's cache (``searched``)."""
        problem, choices, stats, fits = self.search.choose(workflow, ws, state, profiles, rate_rps, arrival_cv2,
                                                           now_s=now_s)
        covered_rps, admit_rps = rate_rps, None
        demand = busy = plan_busy(workflow, problem.rate_rps, choices, state.cpu_factor)
        part = self.capacity.busy_part(workflow.name, state, busy)
        if busy > part * (1 + 1e-9) and problem.rate_rps > self.settings.min_rate_rps:
            # the node is full: plan for the rate that fits its part (busy time grows with the rate), admit that
            covered_rps = admit_rps = max(self.settings.min_rate_rps, problem.rate_rps * part / busy)
            problem, choices, stats, _ = self.search.choose(workflow, ws, state, profiles, covered_rps, arrival_cv2)
            fits = False
        down, up, starting, staying = self._pins(workflow, ws, choices, current, now_s, state)
        kept: dict = {}
        if starting:
            # in a step, instances still starting keep their share: more of them, not a restart of the restart —
            # where that plan is on time by the model (``keep_starting_on_time``; else where it meets the margin's
            # budget, as the plan that restarts them does)
            on_time = fits and self.settings.keep_starting_on_time
            again = self.search.pinned(workflow, ws, state, profiles, covered_rps, arrival_cv2,
                                       {**down, **staying, **starting},
                                       "on_time" if on_time else "fits" if fits else "any")
            if again is not None and (again[3] or not fits or on_time):
                problem, choices, stats, fits = again
                kept = starting
                down, up, _, staying = self._pins(workflow, ws, choices, current, now_s, state)
        kept = {**staying, **kept}  # nor does a search below move those the plan keeps at the share they start at
        # a restart for a larger share is not taken when the plan at the running
        # shares meets the SLO too, for at most 1 / (1 - min_share_saving) times the cost —
        # at the wait's quantile the restart's plan was made for (``low_rate_tail``), not below
        if up:
            again = self.search.pinned(workflow, ws, state, profiles, covered_rps, arrival_cv2, {**kept, **down, **up},
                                       "fits")
            if again is not None and again[3] and _no_looser(again[0], problem) and \
                    held_gpus(again[1]) * (1.0 - self.settings.min_share_saving) <= held_gpus(choices) + 1e-9:
                problem, choices, stats, fits = again
                down = {}
        # a restart for a smaller share that saves too little is not taken
        if down:
            again = self.search.pinned(workflow, ws, state, profiles, covered_rps, arrival_cv2, {**kept, **down},
                                       "fits" if fits else "any")
            if again is not None and (again[3] or not fits):
                problem, choices, stats, fits = again
        if self.settings.restart_room:
            # restarts whose new instances find no GPU beside those that run wait (``restart_room``): in a
            # step always, else where the stages the rolling update leaves while they wait miss by the model
            # — the plan at the running shares instead, where it is on time by the model, or, outside a step
            # at the largest boost (no climb of the boost left for a late plan to hold back) or where the
            # new instances would find no GPU even once the rolling update has left each restarted stage
            # its last old instance (they would wait for good), where it is faster by the model than those
            # stages; a stage whose instances wait for room does not run its planned share, and is neither
            # held at it nor counted
            running = {st.name: None if state.unplaced.get((workflow.name, st.name), 0) > 0
                       else _running(workflow, ws, st.name, current) for st in workflow.stages}
            shares = {stage: group.gpu_share for stage, group in running.items() if group is not None}
            restarted = [stage for stage, share in shares.items() if choices[stage].config.gpu_share != share]
            others = self.capacity.others_instances(workflow, state) if restarted else None
            # (the shares of a plan for the least rate were chosen for no load: not worth keeping)
            if restarted and not self._placeholder(ws) and not self.capacity.packs(others, choices, running,
                                                                                   state.gpu_free_pct):
                in_step = now_s < ws.panic_until_s
                waiting_ms = math.inf if in_step else \
                    self._groups_ms(workflow, profiles, problem.rate_rps, arrival_cv2, {
                        # while the new instances wait, as many old ones serve as the plan wants new ones
                        **{stage: group_of(option) for stage, option in choices.items()},
                        **{stage: running[stage]._replace(count=min(running[stage].count, choices[stage].replicas))
                           for stage in restarted}}, problem.queue_quantile)
                if waiting_ms > workflow.slo_ms:
                    late_too = not in_step and (ws.boost >= self.settings.max_boost - 1e-9 or not self.capacity.packs(
                        others, choices, {stage: group._replace(count=1) if stage in restarted else group
                                          for stage, group in running.items()}))  # for good: each down to one old
                    again = self.search.pinned(workflow, ws, state, profiles, covered_rps, arrival_cv2, shares,
                                               "any" if late_too else "on_time")
                    if again is not None and (not _late(workflow, again[0])
                                              or late_too and choices_latency_ms(workflow, again[1]) < waiting_ms):
                        problem, choices, stats, fits = again
        return problem, choices, stats, fits, admit_rps, demand

    def _adds_capacity(self, workflow: Workflow, ws: WorkflowState, profiles: ProfileSet, choices,
                       current: Mapping[StageKey, InstanceGroup]) -> bool:
        """Does the plan ``choices`` serve more requests a second than the
        groups that run now at some stage (instances × batch size over the
        calibrated execution time)? Yes where a stage runs nothing yet."""
        for st in workflow.stages:
            group, option = _running(workflow, ws, st.name, current), choices[st.name]
            exec_ms = _running_exec_ms(profiles, st.function, group)
            if exec_ms is None or group.count < 1:
                return True
            if option.replicas * option.config.batch_size / option.exec_ms > \
                    group.count * group.batch_size / exec_ms * (1 + 1e-9):
                return True
        return False

    def _running_ms(self, workflow: Workflow, ws: WorkflowState, profiles: ProfileSet, rate_rps: float,
                    arrival_cv2: Optional[float], current: Mapping[StageKey, InstanceGroup],
                    quantile: Optional[float] = None) -> float:
        """The end-to-end latency the model gives the groups that run now,
        priced with the calibrated profiles (∞ where a stage has none, or
        cannot keep up), each stage's wait at ``quantile`` (None: the mean)."""
        return self._groups_ms(workflow, profiles, rate_rps, arrival_cv2,
                               {st.name: _running(workflow, ws, st.name, current) for st in workflow.stages}, quantile)

    def _adopt(self, workflow: Workflow, ws: WorkflowState, state: ControlState, obs: WorkflowObservation,
               current: Mapping[StageKey, InstanceGroup], want_rps: float, offered_rps: float, said: str,
               now_s: float) -> bool:
        """``adopt_running``: where every stage of a workflow not planned yet
        already runs (``current``, as the caller reports it) and serves more
        than the first plan would be for (``want_rps``), what runs becomes
        its plan — for the largest rate at which it meets the margin's budget
        by the model (where it meets that at no rate, the SLO's), priced
        with the calibrated profiles, at no stage above
        the largest utilisation a plan is made for (bisected
        ``ADOPT_HALVINGS`` times) — and nothing changes: the scale-down path
        brings it down, as any plan, and a rise above that rate re-plans at
        once; until then a re-plan for misses or moved execution times is
        for the load, taken only where it holds more (``ws.adopted``). Says
        so in ``ws.adopted_said``; False (nothing adopted) otherwise."""
        groups = {st.name: current.get((workflow.name, st.name)) for st in workflow.stages}
        profiles = self.calibration.profiles_for(workflow, state, now_s)
        high = math.inf  # no stage keeps up with more than its instances execute
        exec_ms = {}
        for st in workflow.stages:
            group = groups[st.name]
            exec_ms[st.name] = _running_exec_ms(profiles, st.function, group)
            if exec_ms[st.name] is None or group.count < 1 or st.fanout <= 0:
                return False  # a stage runs nothing, or nothing its profile knows: no plan to adopt
            # at most the largest utilisation a plan is made for: what runs covers what its plan would
            high = min(high, max(self.settings.utilisations) * 1000.0 * group.batch_size * group.count
                       / exec_ms[st.name] / st.fanout)
        arrival_cv2 = max(obs.arrival_cv2, 0.0) if self.settings.queueing_aware else None
        for budget_ms in dict.fromkeys((workflow.slo_ms * (1.0 - ws.margin), workflow.slo_ms)):
            # the margin's budget; where what runs meets it at no rate (a plan made with the
            # margin out of reach, as a law resumed at a raised margin finds it), the SLO's
            low, top = 0.0, high
            for _ in range(ADOPT_HALVINGS):
                middle = (low + top) / 2
                if self._groups_ms(workflow, profiles, middle, arrival_cv2, groups, self.settings.queue_quantile) \
                        <= budget_ms:
                    low = middle
                else:
                    top = middle
            if low > 0.0:
                break
        if low <= want_rps * (1 + 1e-9):
            return False  # the first plan is for more than what runs serves: made as any first plan
        # each stage as the bisection priced it, so that its latencies are the ones it met the budget with
        choices = {st.name: self._group_option(st, profiles, groups[st.name], low, arrival_cv2,
                                               self.settings.queue_quantile) for st in workflow.stages}
        ws.planned_rps, ws.estimate_rps = low, min(offered_rps, low)
        ws.factors = {st.function: state.exec_factor.get(st.function, 1.0) for st in workflow.stages}
        ws.late_by = budget_ms / workflow.slo_ms
        # on a time-shared node what runs keeps busy what the load asks of it, not all it could serve
        ws.busy = ws.demand = plan_busy(workflow, want_rps, choices, state.cpu_factor)
        ws.plan = Plan.build(workflow, self.policy, low, choices, slo_ms=budget_ms)
        ws.groups = {st.name: [groups[st.name]] for st in workflow.stages}
        _record_downstream(workflow, ws, choices)
        ws.pending = None  # a first plan deferred at an earlier tick is this one
        ws.adopted = True
        ws.adopted_said = f"first plan: what runs, kept — it serves {low:.2f} rps by the model, more than {said}; " \
                          f"brought down only after {self.settings.scale_down_delay_s:g} s of lower load"
        return True

    def _groups_ms(self, workflow: Workflow, profiles: ProfileSet, rate_rps: float, arrival_cv2: Optional[float],
                   groups: Mapping[str, Optional[InstanceGroup]], quantile: Optional[float] = None) -> float:
        """The end-to-end latency the model gives a group per stage, priced
        with ``profiles`` (∞ where a stage has none, or cannot keep up), each
        stage's wait at its ``quantile`` (None: the mean) — a plan's
        (``Problem.queue_quantile``) where it is compared with one —, and a
        fan-out's calls waiting for each other as the planner counts them."""
        stage_ms = {}
        for st in workflow.stages:
            option = self._group_option(st, profiles, groups[st.name], rate_rps, arrival_cv2, quantile)
            if option is None:
                return math.inf
            stage_ms[st.name] = option.latency_ms
        return path_latency_ms(workflow, stage_ms)

    def _group_option(self, st: Stage, profiles: ProfileSet, group: Optional[InstanceGroup], rate_rps: float,
                      arrival_cv2: Optional[float], quantile: Optional[float]) -> Optional[StageOption]:
        """A running group of stage ``st`` as the model gives it at the
        workflow's ``rate_rps``, priced with ``profiles``: its wait at
        ``quantile`` (None: the mean), the fill wait bounded by the
        batcher's timeout (0: a batch leaves with what is queued), and a
        fan-out's calls waiting for each other as the planner's options
        count them (a batch without a fill wait planned as holding one).
        None where it has no instance, none its profile knows, or cannot
        keep up."""
        exec_ms = _running_exec_ms(profiles, st.function, group)
        stage_rps = rate_rps * st.fanout
        if exec_ms is None or group.count < 1 or stage_rps * exec_ms >= 1000.0 * group.batch_size * group.count:
            return None
        option = evaluate(Config(group.batch_size, group.gpu_share), exec_ms, stage_rps, arrival_cv2=arrival_cv2,
                          replicas=group.count, queueing_model=self.settings.queueing_model, queue_quantile=quantile)
        wait_ms = min(option.wait_ms, group.max_wait_ms)
        queue_ms = option.queue_ms
        if arrival_cv2 is not None and st.fanout > 1:
            fill = group.batch_size if group.max_wait_ms > 0 else 1
            queue_ms += float(fanout_rounds_ms(st.fanout, fill, group.count, exec_ms))
        return option._replace(wait_ms=wait_ms, queue_ms=queue_ms, latency_ms=wait_ms + exec_ms + queue_ms)

    def _pins(self, workflow: Workflow, ws: WorkflowState, choices, current: Mapping[StageKey, InstanceGroup],
              now_s: float, state: ControlState) -> tuple[dict, dict, dict, dict]:
        """Stages the plan would move to another share than they run at now
        (a restart of every instance of the stage), with the share they run
        at: (smaller shares that save less than ``min_share_saving`` of what
        the stage holds now, or that come within ``scale_down_delay_s`` of
        the stage's last change of share; larger shares; either, where the
        stage's instances still start (:meth:`_still_starting`) and
        ``keep_starting`` holds), and the stages the plan keeps at the share
        their still starting instances run at (``keep_starting``): no later
        search of the re-plan moves those. None where the plan in force was
        made for the least rate (``free_placeholder_shares``)."""
        down, up, starting, staying = {}, {}, {}, {}
        if self.settings.free_placeholder_shares and self._placeholder(ws):
            return down, up, starting, staying  # chosen for no load: nothing worth keeping
        for stage, option in choices.items():
            now = _running(workflow, ws, stage, current)
            if now is None:
                continue
            held = self.settings.keep_starting and self.settings.busy_capacity is None \
                and self._starting_in_step(workflow, ws, stage, now_s, state)
            if option.config.gpu_share == now.gpu_share:
                if held:
                    staying[stage] = now.gpu_share
            elif held:
                starting[stage] = now.gpu_share
            elif option.config.gpu_share > now.gpu_share:
                up[stage] = now.gpu_share
            elif (1 - option.cost_pct / (now.gpu_share * max(now.count, 1)) < self.settings.min_share_saving
                  or now_s - ws.share_changed_s.get(stage, -math.inf) < self.settings.scale_down_delay_s):
                down[stage] = now.gpu_share
        return down, up, starting, staying

    def _placeholder(self, ws: WorkflowState) -> bool:
        """Is the plan in force one made for the least rate
        (``min_rate_rps``: before any arrival, or with none)? Its shares
        were chosen for no load."""
        return ws.estimate_rps is not None and ws.estimate_rps <= self.settings.min_rate_rps * (1 + 1e-9)

    def _starting_in_step(self, workflow: Workflow, ws: WorkflowState, stage: str, now_s: float,
                          state: ControlState) -> bool:
        """In the panic after a step, does ``stage`` still start the instances
        a re-plan started (:meth:`_still_starting`)?"""
        return now_s < ws.panic_until_s and self._still_starting(workflow, stage, ws.started_s.get(stage), now_s,
                                                                 state)

    def _still_starting(self, workflow: Workflow, stage: str, since_s: Optional[float], now_s: float,
                        state: ControlState) -> bool:
        """Whether instances a re-plan started at ``since_s`` still start: for
        the function's profiled cold start at least, and after it while the
        platform says the stage has instances not yet in service
        (``Observation.starting``; a real start — a pod scheduled, an image
        pulled, a model loaded — often takes longer than the profile's), at
        most :data:`MAX_START_S`. Those the platform found no room for
        (``Observation.unplaced``: pods ``Pending`` as ``Unschedulable``) are
        not in service either, but do not start: they wait for room."""
        if since_s is None:
            return False
        elapsed_s = now_s - since_s
        if elapsed_s < self.profiles[workflow.stage(stage).function].cold_start_ms / 1000.0:
            return True
        key = (workflow.name, stage)
        return elapsed_s < MAX_START_S and state.starting.get(key, 0) - state.unplaced.get(key, 0) > 0

    # --- calibration ----------------------------------------------------------------------
    def _running_shares(self, state: ControlState, current: Mapping[StageKey, InstanceGroup]) -> dict[str, int]:
        """The share each function runs at: as the actuator reports it, else as last planned."""
        out = {}
        for workflow in self.workflows.values():
            ws = state.workflows.get(workflow.name)
            for st in workflow.stages:
                group = _running(workflow, ws, st.name, current) if ws is not None \
                    else current.get((workflow.name, st.name))
                if group is not None:
                    out[st.function] = group.gpu_share
        return out

    # --- output ---------------------------------------------------------------------------
    def _decision(self, state: ControlState, changed: tuple[str, ...], reasons: dict[str, str],
                  now_s: float) -> Decision:
        desired, plans, rates, downstream, admit, estimates, executions = {}, {}, {}, {}, {}, {}, {}
        for name, ws in state.workflows.items():
            if ws.plan is None:
                continue
            plans[name] = ws.plan
            rates[name] = ws.planned_rps
            estimates[name] = ws.estimate_rps
            if ws.admit_rps is not None:
                admit[name] = ws.admit_rps
            for stage, groups in ws.groups.items():
                desired[(name, stage)] = self._batches_now(self.workflows[name], ws, stage, groups, now_s, state)
                downstream[(name, stage)] = ws.downstream_ms.get(stage, 0.0)
                executions[(name, stage)] = ws.downstream_exec_ms.get(stage, 0.0)
        return Decision(desired, plans, changed, reasons, rates, downstream, executions, admit, estimates)

    def _batches_now(self, workflow: Workflow, ws: WorkflowState, stage: str, groups: list[InstanceGroup],
                     now_s: float, state: ControlState) -> list[InstanceGroup]:
        """The stage's groups as they run now: at their larger batch size
        while replicas added beside them still start (``bridge_batching``,
        :meth:`_still_starting`), or, with ``burst_batching``, where they
        were planned without a batching wait and the larger batch serves at
        least ``burst_min_gain`` times the items a millisecond of theirs;
        else as planned; while replicas start beside them, never below the
        batch size the running ones ran at before the re-plan, where its
        execution fits the SLO beside the rest of the plan (``bridge_batch``).
        While a re-plan's restarted stages start
        (``handover``), the groups the stage ran before it."""
        s = self.settings
        restarts = ws.handover_restarts if stage in ws.handover else ()
        if restarts:
            if not self._handover_under_way(workflow, ws, now_s, state):
                ws.handover, ws.handover_restarts = {}, ()  # over: a later start of those stages brings none back
            elif not any(state.unplaced.get((workflow.name, name), 0) > 0 for name in restarts):
                return ws.handover[stage]  # not where a restarted stage finds no room: what the others ran may be it
        bridging = s.bridge_batching and self._still_starting(workflow, stage, ws.bridge_from_s.get(stage), now_s,
                                                              state)
        larger = ws.larger.get(stage, [(group, 1.0) for group in groups])
        out = [big if bridging or (s.burst_batching and group.max_wait_ms == 0 and gain >= s.burst_min_gain)
               else group for group, (big, gain) in zip(groups, larger)]
        ran = ws.bridge_batch.get(stage, 0) if bridging else 0  # the batch size the running ones ran at
        return [group._replace(batch_size=ran, max_wait_ms=0.0) if ran > group.batch_size else group
                for group in out]


def _warm_from(state: ControlState, ws: WorkflowState, now_s: float) -> float:
    """When the workflow's warm-up began: the law's first observation, or
    later, when a reloaded workload brought the workflow in (``joined_s``)."""
    first_s = now_s if state.first_observation_s is None else state.first_observation_s
    return first_s if ws.joined_s is None else max(first_s, ws.joined_s)


def _late(workflow: Workflow, problem) -> bool:
    """Is a plan for ``problem`` late by the model: made for a budget beyond the SLO?"""
    return problem.budget_ms > workflow.slo_ms * (1 + 1e-9)


def _late_said(ws: WorkflowState) -> str:
    """What a reason adds where the plan that runs is late by its own model (``late_plans``)."""
    if ws.hopeless:
        return f"; no plan can meet the SLO: the fastest executions alone take {ws.late_by:.2f} x it " \
               f"(as observed): the cheapest plan that keeps up"
    if ws.late_by > 1.0 + 1e-9:
        return f"; no plan within reach meets the SLO: planned for {ws.late_by:.2f} x it"
    return ""


def _unpacked_said(ws: WorkflowState) -> str:
    """What a reason adds where the plan's instances find no GPU each (``packed_capacity``)."""
    return "; no plan on time finds a GPU for each instance beside the other workflows'" if ws.unpacked else ""


def _larger_batches(workflow: Workflow, groups: Mapping[str, list[InstanceGroup]], choices: Mapping[str, StageOption],
                profiles: ProfileSet, path_ms: float) -> dict[str, list[tuple[InstanceGroup, float]]]:
    """Per stage, its groups at the profile's batch size (at the group's
    share, calibrated) with the most items per millisecond among those
    no smaller than the plan's whose execution fits the stage's part of
    the SLO — its planned latency times the SLO over the plan's, ``path_ms`` —
    with no batching wait: a batch leaves with what is queued, so at a
    low queue it runs as planned, and a queue that builds drains in
    larger batches (Triton's dynamic batcher, a maximum batch size and
    no queue delay). Each with its gain: its items a millisecond over
    those of the planned batch size (1 where that is the larger one)."""
    stretch = workflow.slo_ms / path_ms if path_ms > 0 else 1.0
    out: dict[str, list[tuple[InstanceGroup, float]]] = {}
    for stage, stage_groups in groups.items():
        profile = profiles[workflow.stage(stage).function]
        budget_ms = choices[stage].latency_ms * stretch
        out[stage] = []
        for group in stage_groups:
            j = profile.gpu_shares.index(group.gpu_share)
            planned_ms = profile.latency_ms[profile.batch_sizes.index(group.batch_size)][j]
            best, most = group.batch_size, -1.0
            for i, b in enumerate(profile.batch_sizes):
                exec_ms = profile.latency_ms[i][j]
                if b >= group.batch_size and exec_ms is not None and exec_ms <= budget_ms and b / exec_ms > most:
                    best, most = b, b / exec_ms
            gain = most / (group.batch_size / planned_ms) if best != group.batch_size and planned_ms else 1.0
            out[stage].append((group._replace(batch_size=best, max_wait_ms=0.0), gain))
    return out


def _urgency(ws: WorkflowState, target_rps: float) -> tuple[bool, float]:
    if ws.planned_rps is None:
        return True, math.inf
    return False, target_rps / ws.planned_rps


def _running(workflow: Workflow, ws: WorkflowState, stage: str,
             current: Mapping[StageKey, InstanceGroup]) -> Optional[InstanceGroup]:
    """What a stage runs now: as the actuator reports it, else as last planned."""
    now = current.get((workflow.name, stage))
    if now is None and ws.groups.get(stage):
        now = ws.groups[stage][0]
    return now


def _carrying_batch(profiles: ProfileSet, function: str, running: InstanceGroup, planned_batch: int,
                    ran_batch: int, stage_rate_rps: float, within_ms: float) -> Optional[int]:
    """Where the ``running`` instances cannot serve ``stage_rate_rps``
    alone at the planned batch size, the smallest batch size of the
    profile above it and up to ``ran_batch`` at which they can, whose
    execution takes at most ``within_ms`` (the SLO less the other stages'
    executions on the plan's longest path: a batch beyond it misses
    whatever waits) (``bridge_carry``); None where they can at the planned
    one, or at none of those."""
    def serves(batch: int) -> bool:
        exec_ms = _running_exec_ms(profiles, function, running._replace(batch_size=batch))
        return exec_ms is not None and running.count * batch * 1000.0 / exec_ms >= stage_rate_rps \
            and (batch == planned_batch or exec_ms <= within_ms)
    if serves(planned_batch):
        return None
    return next((b for b in profiles[function].batch_sizes if planned_batch < b <= ran_batch and serves(b)), None)


def _running_exec_ms(profiles: ProfileSet, function: str, group: Optional[InstanceGroup]) -> Optional[float]:
    """A running group's execution time in ``profiles`` (None without a
    group, or where the profile has no such configuration)."""
    if group is None:
        return None
    try:
        return profiles[function].latency(group.batch_size, group.gpu_share)
    except ModelError:
        return None


def _record_downstream(workflow: Workflow, ws: WorkflowState, choices: Mapping[str, StageOption]) -> None:
    """What the plan ``choices`` leaves after each stage — its latency and
    its executions on the longest path — for the stages' deadlines (a
    request that cannot meet its SLO after them is shed: the runtime's
    504, the simulator's shed)."""
    ws.downstream_ms = _after(workflow, {name: option.latency_ms for name, option in choices.items()})
    ws.downstream_exec_ms = _after(workflow, {name: option.exec_ms for name, option in choices.items()})


def _after(workflow: Workflow, stage_ms: Mapping[str, float]) -> dict[str, float]:
    """Per stage, the longest path after it: each stage's ``stage_ms`` and the hops."""
    after: dict[str, float] = {}
    for name in reversed(workflow.topological_order()):
        after[name] = max((workflow.hop_ms + stage_ms[t] + after[t] for t in workflow.graph.successors(name)),
                          default=0.0)
    return after


def plan_busy(workflow: Workflow, rate_rps: float, choices, cpu_factor: Mapping[str, float] = {}) -> float:
    """How much of a time-shared node a plan keeps busy, in share units (1.0:
    the whole node): Σ over stages of the stage's rate × its execution time
    per request (a batch's over the batch size) × its share × how busy the
    share's cores are while it executes (``cpu_factor``, per function; 1
    where not known). On a CPU profile a share is that part of the node's
    cores, so this is the mean number of busy cores over the node's: an
    execution that waits for a core (the calibrated time counts the wait)
    does not keep one busy meanwhile."""
    return sum(rate_rps * workflow.stage(name).fanout * option.exec_ms / 1000.0 / option.config.batch_size
               * option.config.gpu_share / 100.0 * cpu_factor.get(workflow.stage(name).function, 1.0)
               for name, option in choices.items())


def _no_looser(pinned, problem) -> bool:
    """Is the problem ``pinned`` made for a wait's quantile at least as high
    as ``problem``'s (the mean, None, the lowest)? The plan at the running
    shares stands in for one that restarts a stage at a larger share only
    where it meets the budget at the same confidence in the wait
    (``low_rate_tail``: its search falls back to the mean where the tail is
    out of reach, and that fallback "fits" too)."""
    return (pinned.queue_quantile or 0.0) >= (problem.queue_quantile or 0.0) - 1e-12
