"""The control law's memory and its answer: what :class:`ControlLaw`
(``law.py``) keeps between ticks — per workflow (:class:`WorkflowState`)
and for all (:class:`ControlState`), held by the caller — and the desired
state each tick returns (:class:`Decision`). Plain data; every rule that
reads or moves it is in ``law.py`` and the modules it calls (``rate.py``,
``feedback.py``, ``calibration.py``, ``capacity.py``, ``search.py``,
``room.py``)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, Optional

from ..model import InstanceGroup, Plan
from .delay import DelayWindow

StageKey = tuple[str, str]
"""(workflow, stage)."""


@dataclass
class WorkflowState:
    margin: float
    scale_down: DelayWindow
    faster: DelayWindow
    """How long the instances have run faster than the plan assumed (a re-plan for that is a scale-down)."""
    planned_rps: Optional[float] = None
    """The rate the current plan covers (headroom included)."""
    estimate_rps: Optional[float] = None
    """The offered rate the current plan was made for: ``planned_rps`` over its
    headroom factor — kept by a re-plan for the same rate (margin, execution
    times, the node's capacity), and after a rollback the rate observed then
    (the capacity the rollback brought back is not a reading of the load)."""
    plan: Optional[Plan] = None
    groups: dict[str, list[InstanceGroup]] = field(default_factory=dict)
    downstream_ms: dict[str, float] = field(default_factory=dict)
    downstream_exec_ms: dict[str, float] = field(default_factory=dict)
    factors: dict[str, float] = field(default_factory=dict)
    """The execution-time factors the plan was made with, per function."""
    fits: bool = True
    late_by: float = 1.0
    """The budget of the plan that runs over the SLO: above 1 where no plan
    within reach meets the SLO even with no margin and the mean wait (a
    degraded plan the model itself says is late)."""
    hopeless: bool = False
    """No plan can meet the SLO: the fastest executions alone, as
    calibrated, take longer (``late_plans``); the cheapest plan runs."""
    unpacked: bool = False
    """The plan's instances do not find a GPU each beside the other
    workflows' planned ones (``packed_capacity``): no plan on time did."""
    last_margin_change_s: float = -math.inf
    boost: float = 1.0
    """The factor over the observed rate that misses at the largest margin
    added (``capacity_feedback``)."""
    held_below: Optional[tuple] = None
    """Where the capacity held the current plan below the plan on time for
    its rate (late by its model, or for less rate): (that rate less the
    boost, the arrivals' cv² it was planned with, the profiles); else None
    (``boost_spare_only``)."""
    on_time_gpus: Optional[float] = None
    """What the cheapest plan on time for ``held_below`` holds, once a
    boosted workflow asked (:meth:`Capacity._needed_gpus`)."""
    yielded_to_gpus: float = math.inf
    """The capacity the plan was last made again within because another
    workflow needed the GPUs its boost held: only less than that asks for
    it again (where nothing smaller fits, the plan stays as it is)."""
    yielding: bool = False
    """The re-plan asked for is that one: it may hold less while requests
    miss (the boost gives back what another workflow's plan on time needs)."""
    clean_since_s: Optional[float] = None
    margin_lowered_from: Optional[float] = None
    """The margin before the last lowering, while that lowering is watched
    for misses (``margin_rollback``)."""
    margin_lowered_at_s: float = -math.inf
    margin_rollbacks: int = 0
    """Lowerings of the margin undone in a row; the next one waits 2^this × the delay."""
    margin_hold_until_s: float = -math.inf
    """No lowering of the margin before then (after one was undone)."""
    wait_factor: float = 1.0
    """What the arrivals' cv² is multiplied by for planning: the queue the
    stages' requests were seen to wait over the one the model gave
    (``wait_calibration``)."""
    wait_changed_s: float = -math.inf
    wait_tested_s: float = -math.inf
    """When the queue's factor was last tested and its plan missed the budget
    (``_wait_feedback``): the test waits the cooldown again, as a change does."""
    waits: deque = field(default_factory=deque)
    """(time_s, stage, requests, their summed wait in ms) of each tick of the feedback window."""
    searched: Optional[tuple] = None
    """(what it was asked, what it gave) of the last unpinned :meth:`Search.choose`
    this tick: the queue's factor tests the plan its re-plan then makes."""
    panic_until_s: float = -math.inf
    """After a step, no scale-down until then (Knative's panic mode)."""
    counting_since: Optional[str] = None
    """While a panic ("the step") or the first plan's count after it ("the
    first plan") is on and its end not yet seen by a tick: which
    (``panic_exit``)."""
    step_at_s: float = -math.inf
    """When the last step was detected (its panic started), or the first plan was made."""
    first_until_s: float = -math.inf
    """Until then after the first plan, a count since it that reads
    significantly below it brings it down (``step_settle``)."""
    first_window: tuple[float, float] = (0.0, 0.0)
    """(arrivals, length in s) of the window the first plan was made from."""
    since_step: list = field(default_factory=list)
    """(time_s, start of its short window in s, arrivals in it) of each tick
    in the panic whose short window starts after the step was detected
    (``step_settle``)."""
    pool: list = field(default_factory=list)
    """(time_s, start of its short window in s, arrivals in it) of disjoint
    short windows since the arrival rate last moved (``pooled_rate``)."""
    step_cv2: Optional[float] = None
    """The arrivals' cv² when the last step was detected: in the panic after
    it the long window holds gaps at two rates, which read as bursts, so the
    cv² planned with is at most this one (``step_cv2_hold``)."""
    pending: Optional[tuple[str, float, float, Optional[float]]] = None
    """A re-plan deferred to the next tick (``max_replans_per_tick``)."""
    hop_ms: Optional[float] = None
    """The hop between stages as last measured (``measured_hops``)."""
    answers: deque = field(default_factory=deque)
    """(time_s, start of its short window in s, answers, misses, the part of
    the window after the tick before: ``feedback.new_part``) of each tick
    of the last ``feedback_window_s`` and the ``scale_down_delay_s`` before it."""
    last_raise_s: float = -math.inf
    """When the margin was last raised: the misses that raised it are spent."""
    share_changed_s: dict[str, float] = field(default_factory=dict)
    """Per stage, when the plan last moved it to another share."""
    started_s: dict[str, float] = field(default_factory=dict)
    """Per stage, when the plan last started instances (more replicas, or
    another share): they start for the function's cold start (``keep_starting``)."""
    larger: dict[str, list[tuple[InstanceGroup, float]]] = field(default_factory=dict)
    """Per stage, its groups at the batch size that carries the most within
    the stage's part of the SLO, with no batching wait, each with how many
    times the items a millisecond of the planned batch it serves
    (:func:`_larger_batches`)."""
    no_room: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Per stage: (a share the platform found no room for, until when its
    plans stay below it) (``below_no_room``)."""
    no_room_new: bool = False
    """``no_room``'s one hold was added at the last tick and no plan has
    tried it yet: taken unless the plan below the share misses its budget
    and the plan without the hold meets it, or has a tighter one."""
    no_room_said: str = ""
    """What the last re-plan did with the hold just added, for its reason
    ("" where none was)."""
    adopted: bool = False
    """Its plan is what ran when the law first saw it (``adopt_running``),
    until a rise, the scale-down path or another workflow's fair share
    re-plans it: a re-plan for misses, moved execution times or a
    time-shared node's part is then for the load, and taken only where it
    holds more."""
    adopted_said: str = ""
    """Where this tick's first plan is what already ran (``adopt_running``),
    its reason; said once."""
    no_room_tried: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Per stage: (a share found without room whose hold was not taken, until
    when it is not tried again)."""
    no_room_times: dict[str, int] = field(default_factory=dict)
    """Per stage: how many times it found no room (the hold doubles with each)."""
    unplaced_since: dict[str, list[float]] = field(default_factory=dict)
    """Per stage: [since when the platform has found no room for some of its
    instances, requests that left its queue since, their summed wait in ms]."""
    bridge_from_s: dict[str, float] = field(default_factory=dict)
    """Per stage, when a re-plan added replicas beside its running ones at
    their share: while those start, the running ones carry their load
    (``bridge_batching``, :meth:`ControlLaw._still_starting`)."""
    bridge_batch: dict[str, int] = field(default_factory=dict)
    """Per stage, the batch size its running instances ran at when the
    bridge began, where its execution fits the SLO beside the rest of the
    plan (else absent): the bridge runs no smaller batch."""
    handover: dict[str, list[InstanceGroup]] = field(default_factory=dict)
    """Per stage, the groups it ran before a re-plan that holds less and
    restarts other stages (``handover_restarts``): what it runs until
    their new instances serve (``handover``)."""
    handover_restarts: tuple[str, ...] = ()
    """The stages that re-plan moved to another share."""
    handover_rps: float = 0.0
    """The rate planned before that re-plan: the load the groups kept ran for."""
    calm: bool = True
    """No excess backlog, no misses (on a time-shared node: none above the
    share seen before, ``steady_misses``), no panic at the last tick: only
    then may a re-plan hold less."""
    busy: float = 0.0
    """The plan's busy time on a time-shared node (:func:`plan_busy`)."""
    demand: float = 0.0
    """The busy time of the plan for the wanted rate, before any capacity held it back."""
    admit_rps: Optional[float] = None
    """The rate the plan covers when ``busy_capacity`` held it below the wanted rate."""
    down_from_rps: Optional[float] = None
    """The rate planned before the last scale-down, while it is watched for misses (``rollback``)."""
    down_miss_share: float = 0.0
    """The share of misses over the scale-down delay before the last scale-down (``steady_misses``)."""
    down_at_s: float = -math.inf
    rollbacks: int = 0
    """Scale-downs undone in a row; the next one waits 2^this × the delay."""
    down_hold_until_s: float = -math.inf
    """No scale-down before then (after a rollback)."""
    down_hold_rps: Optional[float] = None
    """The rate planned while that hold was on, as a law before this one
    left it (``ControlLaw.resume``): no plan for less until the hold ends."""
    cold_until_s: float = -math.inf
    """A short window after the last tick at which a stage of the workflow
    had no instance in service (``cold_start_misses``): the miss feedback
    counts only answers after it."""
    joined_s: Optional[float] = None
    """When a reloaded workload brought this workflow in, or changed it
    (``ControlLaw.take_over``): its warm-up counts from then. None: from
    the law's first observation."""


@dataclass
class ControlState:
    first_observation_s: Optional[float] = None
    workflows: dict[str, WorkflowState] = field(default_factory=dict)
    exec_factor: dict[str, float] = field(default_factory=dict)
    """Per function: observed over profiled execution time, smoothed (at whatever share it ran)."""
    cpu_factor: dict[str, float] = field(default_factory=dict)
    """Per function: how busy its share's cores are while it executes
    (``Observation.cpu_ratio``), smoothed; for :func:`plan_busy`."""
    share_factor: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    """Per (function, share): the same factor, observed at that share, and when it was last observed."""
    batch_factor: dict[tuple[str, int, int], tuple[float, float]] = field(default_factory=dict)
    """Per (function, share, batch size of the profile): the same, observed at that share and batch size."""
    running_shares: dict[str, int] = field(default_factory=dict)
    """Per function: the share it runs at (as of the last tick)."""
    starting: Mapping[StageKey, int] = field(default_factory=dict)
    """Per stage: its instances not yet in service, as the last observation
    said (``Observation.starting``; a stage absent: not known)."""
    unplaced: Mapping[StageKey, int] = field(default_factory=dict)
    """Per stage: its instances the platform found no room for, as the last
    observation said (``Observation.unplaced``)."""
    serving: Mapping[StageKey, int] = field(default_factory=dict)
    """Per stage: its instances in service, as the last observation said
    (``Observation.serving``; a stage absent: not known)."""
    gpu_free_pct: Optional[list[int]] = None
    """Each GPU's share free, as the last observation said where believed
    (``Observation.gpu_free_pct``), less the room this tick's re-plans
    took for their new instances; None: not known."""
    searches_left: int = 0
    """The wait feedback's searches still allowed in this tick: as many as
    re-plans (``max_replans_per_tick``), so that misses on every workflow at
    once do not make one search per workflow in one tick; the others are
    asked at the next tick."""


@dataclass(frozen=True)
class Decision:
    desired: dict[StageKey, list[InstanceGroup]]
    """Every stage of every workflow that has a plan: the whole desired state."""
    plans: dict[str, Plan]
    changed: tuple[str, ...]
    """Workflows re-planned at this tick."""
    reasons: dict[str, str]
    rates_rps: dict[str, float]
    """The rate each workflow's plan covers."""
    downstream_ms: dict[StageKey, float]
    """Planned latency after each stage (hops included), for deadline-aware dispatch."""
    downstream_exec_ms: dict[StageKey, float] = field(default_factory=dict)
    """The planned executions after each stage, hops included and no wait: a
    request that cannot make its deadline even so is behind the plan, and
    its stage serves the newest first (``newest_first``; the router sends it
    as ``X-ESG-Downstream-Ms``)."""
    admit_rps: dict[str, float] = field(default_factory=dict)
    """Workflows planned below their wanted rate for lack of busy capacity:
    the rate to admit at the entry (the rest is shed with 429)."""
    estimates_rps: dict[str, float] = field(default_factory=dict)
    """The offered rate each workflow's plan was made for (``rates_rps`` less
    the headroom, and less the capacity a rollback brought back)."""
