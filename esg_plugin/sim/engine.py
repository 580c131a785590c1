"""The discrete-event simulator: an event heap, no wall clock. Times in ms.

What is modelled
----------------
- **Queues**: one per (workflow, stage) — ESG's application-function-wise
  queues — split into *lanes* only for policies that route requests between
  instance groups (``llama``). A request enters a stage's queue after the
  hop from its last predecessor; entry stages receive it at its arrival.
- **Instances** have a batch size, a GPU share and a batching timeout. An
  idle, ready instance takes a batch when the queue holds a full batch, when
  the oldest request has waited the timeout, or — for policies with
  deadline-aware dispatch (``esg``) — when waiting longer would make the
  oldest request miss its deadline given the plan's latency downstream.
  A batch takes the oldest requests, except, for policies with
  ``newest_first`` (``esg``), while the oldest would miss its deadline
  even run now with the executions the plan runs after the stage
  (``Policy.downstream_exec_ms``): then the newest (the runtime's rule,
  ``runtime/batcher.py: behind_plan``).
- **Batch execution time** is the profile's latency at the instance's share
  for the smallest profiled batch size that holds the batch (a batch of 3
  on a batch-4 instance takes the batch-4 time), optionally times seeded
  lognormal noise with mean 1 (``noise_sigma``) to model interference,
  and times the function's persistent profile error (``exec_factors``: a
  profile measured on another machine, or alone where neighbours now run)
  — what the policies see is the profile; only the executions show the error.
- **Cluster** (``cluster.py``: where an instance fits, what holding it
  costs): ``gpus`` GPUs of 100% share each. New instances are placed
  in decreasing order of share, except that a stage with no instance gets
  its first one before any stage gets more, each on the first GPU with
  room (``placement`` first-fit, the default) or on the one with the least
  room that fits (best-fit, a GPU-sharing scheduler's binpack); one that
  does not fit is not started (and counted as ``unplaced``). Creating an instance costs the function's
  ``cold_start_ms`` before it serves; it holds its share meanwhile.
- **Reconfiguration** (every ``policy.interval_s``): instance counts change;
  batch size and timeout change live on instances of the same share; an
  instance whose share is no longer wanted keeps serving until the new
  instances of its stage are ready (make before break), then drains; where
  the new ones found no room, the old ones leave one per reconfiguration
  (a rolling update), the last serving one not before its replacement. One
  waiting for its replacement whose share is wanted again serves on and
  counts among the instances wanted (a Deployment scales the old
  ReplicaSet whose pod template matches back up).
- **Shedding** (the runtime's early 504): a request that can no longer
  meet its deadline — now + the stage's fastest execution + the fastest
  path after it — is shed when it reaches a stage, when it reaches the
  front of a queue an idle instance serves, and, at every control tick,
  wherever it waits, also where no instance is ready (a cold start), so
  that the backlog a policy sees holds only requests that can still make it.
- **DAGs**: a stage with ``fanout f`` is called ``f`` times per request; a
  stage with several predecessors starts for a request when all have
  finished for it; the request is done when every exit stage has finished.
- **Accounting**: every arrived request (after ``warmup_s``) is counted
  exactly once: ``completed`` (finished within its SLO) or ``missed``
  (``late``, or ``unfinished`` when the run and its drain time end).
  ``cost`` is the time-average of Σ share/100 over live instances between
  ``warmup_s`` and ``duration_s``; ``gpu_util`` the busy share-time over the
  held share-time in that period.

Policies never see the true arrival rates: they see the arrivals of the last
``window_s`` seconds (:class:`View`).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import numpy as np

from ..control import gap_cv2
from ..limits import is_number
from ..model import FunctionProfile, InstanceGroup, ProfileSet
from ..runtime.batcher import behind_plan
from .cluster import PLACEMENTS, Cluster
from .workload import Workload, WorkloadError

MAX_NOISE_SIGMA = 10.0
"""The largest lognormal sigma of execution-time noise believed."""
EXEC_FACTOR_LIMITS = (0.1, 10.0)
"""The range of a profile error (a function's real over profiled execution time) believed."""

# event kinds
_ARRIVE, _ENQUEUE, _TIMER, _DONE, _READY, _CONTROL = range(6)
_INF = float("inf")
_EPS = 1e-9


#: (workflow name, stage name) -> the instance groups that stage should run
Deployment = dict[tuple[str, str], list[InstanceGroup]]


@dataclass
class View:
    """What a policy may observe at a control tick."""

    now_s: float
    observed_rps: dict[str, float]
    """Arrivals per second of each workflow over the last ``window_s``."""
    recent_rps: dict[str, float]
    """Arrivals per second of each workflow over the last ``interval_s``."""
    arrival_cv2: dict[str, float]
    """Squared coefficient of variation of inter-arrival gaps over the last ``window_s`` (1 if too few)."""
    concurrency: dict[tuple[str, str], int]
    """Requests queued or in service at each stage, right now."""
    instances: dict[tuple[str, str], int]
    """Live instances of each stage (ready or starting)."""
    backlog: dict[str, float] = field(default_factory=dict)
    """Per workflow: requests waiting beyond what the ready instances take
    next (the largest over its stages, in workflow requests)."""
    answers: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per workflow, over the last ``short_window_s``: (finished within the SLO, missed: late or shed)."""
    exec_ratio: dict[str, float] = field(default_factory=dict)
    """Per function: executed over profiled time of the batches since the last tick (noise shows here)."""
    starting: dict[tuple[str, str], int] = field(default_factory=dict)
    """Instances of each stage wanted and not yet in service: placed and in
    their cold start, or not placed (``unplaced``), as a Deployment's
    replicas less its ready ones count a ``Pending`` pod."""
    stage_wait: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    """Per stage: (requests taken from its queue for a batch since the last tick, their summed wait in ms)."""
    unplaced: dict[tuple[str, str], int] = field(default_factory=dict)
    """Instances of each stage that the last reconfiguration wanted and found no room for."""
    newest_rps: dict[str, float] = field(default_factory=dict)
    """Arrivals per second of each workflow since the last tick (over ``interval_s``), counted."""
    gpu_free_pct: Optional[tuple[int, ...]] = None
    """Each GPU's share not held by an instance, in percent, right now."""
    deployed: dict[tuple[str, str], InstanceGroup] = field(default_factory=dict)
    """What the platform is asked to run for each stage (its first group),
    as a scaler reads its functions' objects: the policies read it after a
    restart (``SimConfig.restart_at_s``)."""
    serving: dict[tuple[str, str], int] = field(default_factory=dict)
    """Instances of each stage in service: ready, not retiring."""


class Policy:
    """The simulator's side of a scheduling policy (see ``sim/policies.py``)."""

    name = "policy"
    interval_s = 5.0
    window_s = 30.0
    short_window_s: Optional[float] = None
    """The quick rate's window (``View.recent_rps``); None: ``interval_s``."""
    deadline_dispatch = False
    newest_first = False
    """Whether a stage behind its plan serves the newest requests first (the runtime's ``behind_plan``)."""
    lanes = 1

    def decide(self, view: View) -> Optional[Deployment]:  # pragma: no cover - interface
        raise NotImplementedError

    def downstream_ms(self, workflow: str, stage: str) -> float:
        """Planned latency after ``stage`` (hops included), for deadline dispatch."""
        return 0.0

    def downstream_exec_ms(self, workflow: str, stage: str) -> float:
        """The planned executions after ``stage`` (hops included, no wait), for ``newest_first``."""
        return 0.0

    def route(self, workflow: str, stage: str, slack_ms: float) -> int:
        """Lane of a request entering ``stage`` with ``slack_ms`` to spare."""
        return 0

    def decisions(self) -> list["PlanChange"]:
        """The re-plans the policy made, with why (the control law's; a
        peer gives none)."""
        return []

    def restart(self, view: View) -> None:  # pragma: no cover - interface
        """The policy's controller restarted (``SimConfig.restart_at_s``):
        what it remembered is gone; what runs is in ``view.deployed``."""
        raise NotImplementedError


@dataclass(frozen=True)
class PlanChange:
    """One workflow re-planned at one tick: what the plan covers and why."""

    time_s: float
    workflow: str
    rate_rps: float
    """The rate the new plan covers (headroom included)."""
    estimate_rps: Optional[float]
    """The offered rate it was made for (the law's estimate)."""
    plan_gpus: float
    """What the new plan holds: Σ share × replicas over its stages, in GPUs."""
    reason: str


@dataclass
class SimConfig:
    seed: int = 1
    noise_sigma: float = 0.0
    """Lognormal sigma of execution-time noise (0: deterministic)."""
    exec_factors: Mapping[str, float] = field(default_factory=dict)
    """Per function (by profile name): its real execution time over its
    profile's, fixed for the run (absent: 1, the profile is right). The
    policies plan with the profiles; the executions they observe show it."""
    drain_s: float = 30.0
    """After the last arrival, keep simulating this long for requests in flight."""
    placement: str = PLACEMENTS[0]
    """Which GPU with room an instance goes to (``cluster.PLACEMENTS``)."""
    restart_at_s: Optional[float] = None
    """The policy's controller restarts at the first control tick at or
    after this time — a scaler's new version, a drained node, a crash: it
    forgets what it remembered (``Policy.restart``; ESG's law keeps what its
    feedbacks learned, as the scaler keeps it in its Lease) and reads what the
    platform runs (``View.deployed``), as the scaler reads its functions'
    objects. None: no restart."""

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise WorkloadError(f"unknown placement {self.placement!r}; known: {', '.join(PLACEMENTS)}")
        if not (is_number(self.noise_sigma) and 0 <= self.noise_sigma <= MAX_NOISE_SIGMA):
            raise WorkloadError(f"the execution-time noise must lie in [0, {MAX_NOISE_SIGMA:g}], "
                                f"got {self.noise_sigma!r}")
        if self.restart_at_s is not None and not (is_number(self.restart_at_s) and self.restart_at_s >= 0):
            raise WorkloadError(f"the restart time must be a number of seconds, at least 0, got {self.restart_at_s!r}")
        for name, factor in self.exec_factors.items():
            if not (is_number(factor) and EXEC_FACTOR_LIMITS[0] <= factor <= EXEC_FACTOR_LIMITS[1]):
                raise WorkloadError(f"the profile error of {name!r} must lie in [{EXEC_FACTOR_LIMITS[0]:g}, "
                                    f"{EXEC_FACTOR_LIMITS[1]:g}] (real over profiled time), got {factor!r}")


class _Instance:
    __slots__ = ("share", "batch", "wait_ms", "exec_ms", "lane", "stage", "gpu", "ready", "busy", "retiring",
                 "retire_when_ready")

    def __init__(self, stage, share, batch, wait_ms, exec_ms, lane, gpu):
        self.stage = stage
        self.share = share
        self.batch = batch
        self.wait_ms = wait_ms
        self.exec_ms = exec_ms
        self.lane = lane
        self.gpu = gpu
        self.ready = False
        self.busy = False
        self.retiring = False
        self.retire_when_ready = False


class _Lane:
    __slots__ = ("queue", "idle", "timer_at", "stage")

    def __init__(self, stage):
        self.stage = stage
        self.queue: deque = deque()
        self.idle: list[_Instance] = []
        self.timer_at = _INF


class _Stage:
    __slots__ = ("wf", "index", "name", "key", "profile", "exec_factor", "fanout", "succs", "is_exit", "lanes",
                 "instances", "starting", "short", "in_service", "downstream_ms", "downstream_exec_ms", "min_exec_ms",
                 "min_after_ms", "waited", "waited_ms")

    def __init__(self, wf, index, name, profile, fanout, lanes, exec_factor=1.0):
        self.wf = wf
        self.index = index
        self.name = name
        self.key = (wf.name, name)
        self.profile = profile
        self.exec_factor = exec_factor
        """Real over profiled execution time (``SimConfig.exec_factors``)."""
        self.fanout = fanout
        self.succs: list[int] = []
        self.is_exit = False
        self.lanes = [_Lane(self) for _ in range(lanes)]
        self.instances: list[_Instance] = []
        self.starting = 0
        self.short = 0
        """Instances the last reconfiguration wanted but found no room for."""
        self.in_service = 0
        self.downstream_ms = 0.0
        self.downstream_exec_ms = 0.0
        self.min_exec_ms = min(v for row in profile.latency_ms for v in row if v is not None)
        self.min_after_ms = 0.0
        """The least time after this stage: fastest executions and hops on the longest path on."""
        self.waited = 0
        self.waited_ms = 0.0
        """Requests taken from its queues for a batch since the last tick, and their summed wait."""


class _Workflow:
    __slots__ = ("name", "slo_ms", "hop_ms", "stages", "entries", "need", "exits", "arrivals", "recent", "answers")

    def __init__(self, name, slo_ms, hop_ms):
        self.name = name
        self.slo_ms = slo_ms
        self.hop_ms = hop_ms
        self.stages: list[_Stage] = []
        self.entries: list[int] = []
        self.need: list[int] = []
        self.exits = 0
        self.arrivals = np.empty(0)
        self.recent: deque = deque()
        self.answers: deque = deque()
        """(time_ms, met the SLO) of each request answered or shed."""


class _Request:
    __slots__ = ("wf", "arrival_ms", "deadline_ms", "need", "left", "exits_left", "done_ms", "shed")

    def __init__(self, wf, arrival_ms):
        self.wf = wf
        self.arrival_ms = arrival_ms
        self.deadline_ms = arrival_ms + wf.slo_ms
        self.need = list(wf.need)
        self.left = [s.fanout for s in wf.stages]
        self.exits_left = wf.exits
        self.done_ms = -1.0
        self.shed = False


@dataclass
class RunResult:
    """Raw outcome of one run; ``sim/report.py`` turns it into figures."""

    policy: str
    workload: str
    seed: int
    duration_s: float
    warmup_s: float
    requests: list[tuple[str, float, float]]
    """(workflow, arrival_s, latency_ms or -1 when unfinished) per scored request."""
    slo_ms: dict[str, float]
    cost_gpu_s: float
    """GPU-seconds held in [warmup, duration]."""
    busy_gpu_s: float
    cost_gpu_s_by_workflow: dict[str, float]
    held_series: list[tuple[float, float]] = field(default_factory=list)
    """(time_s, GPUs held) at each control tick, before it acts."""
    decisions: list[PlanChange] = field(default_factory=list)
    """Every re-plan with its reason (``Policy.decisions``; the control law's)."""
    unplaced: int = 0
    """Instance placements that failed (a desired instance that does not fit is tried again every tick)."""
    shed: int = 0
    """Requests a stage dropped because they could no longer meet their deadline (counted as missed)."""
    stage_executions: int = 0
    """Request-stage executions simulated (one request passing one stage)."""
    batches: int = 0


class Simulator:
    def __init__(self, workload: Workload, profiles: ProfileSet, policy: Policy, config: Optional[SimConfig] = None):
        config = config or SimConfig()
        self.workload = workload
        self.policy = policy
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.heap: list = []
        self.seq = 0
        self.workflows: list[_Workflow] = []
        self.stage_by_key: dict[tuple[str, str], _Stage] = {}
        self._exec_cache: dict[tuple[str, int, int], list[float]] = {}
        self.noise: Optional[np.ndarray] = None
        self.noise_i = 0
        for load in workload.workflows:
            wf_model = load.workflow
            wf = _Workflow(wf_model.name, wf_model.slo_ms, wf_model.hop_ms)
            index = {name: i for i, name in enumerate(wf_model.stage_names)}
            for name in wf_model.stage_names:
                st = wf_model.stage(name)
                stage = _Stage(wf, index[name], name, profiles[st.function], st.fanout, policy.lanes,
                               config.exec_factors.get(st.function, 1.0))
                wf.stages.append(stage)
                self.stage_by_key[stage.key] = stage
            for name in wf_model.stage_names:
                stage = wf.stages[index[name]]
                stage.succs = [index[t] for t in wf_model.graph.successors(name)]
                stage.is_exit = not stage.succs
                wf.need.append(wf_model.graph.in_degree(name))
            for name in reversed(wf_model.topological_order()):
                stage = wf.stages[index[name]]
                stage.min_after_ms = max((wf.hop_ms + wf.stages[u].min_exec_ms + wf.stages[u].min_after_ms
                                          for u in stage.succs), default=0.0)
            wf.entries = [index[n] for n in wf_model.entries]
            wf.exits = len(wf_model.exits)
            wf.arrivals = load.arrivals.times_s(workload.duration_s, self.rng) * 1000.0
            self.workflows.append(wf)
        self.cluster = Cluster(workload.gpus, [wf.name for wf in self.workflows], workload.warmup_s * 1000.0,
                               workload.duration_s * 1000.0, config.placement)
        # accounting of requests and busy time (the cluster accounts for what is held)
        self.now = 0.0
        self.busy_acc = 0.0
        """Share-seconds busy executing between ``warmup_s`` and ``duration_s`` (the cost's period)."""
        self._scored_ms = (workload.warmup_s * 1000.0, workload.duration_s * 1000.0)
        self.shed = 0
        self.desired: Deployment = {}
        self.restarted = False
        """The last desired state per stage: re-applied every tick, as a controller reconciles."""
        self.exec_done: dict[str, list[float]] = {}
        """Per function since the last tick: [executed ms, profiled ms]."""
        self.stage_executions = 0
        self.batches = 0
        self.scored: list[_Request] = []
        self.held_series: list[tuple[float, float]] = []

    # --- events ------------------------------------------------------------
    def _push(self, t, kind, a=None, b=None):
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    def _noise(self) -> float:
        sigma = self.config.noise_sigma
        if sigma <= 0:
            return 1.0
        if self.noise is None or self.noise_i >= len(self.noise):
            self.noise = np.exp(self.rng.normal(-sigma * sigma / 2, sigma, size=65536))
            self.noise_i = 0
        value = self.noise[self.noise_i]
        self.noise_i += 1
        return float(value)

    # --- instances ---------------------------------------------------------
    def _exec_table(self, profile: FunctionProfile, share: int, batch: int) -> list[float]:
        key = (profile.name, share, batch)
        table = self._exec_cache.get(key)
        if table is None:
            j = profile.gpu_shares.index(share)
            top = profile.latency_ms[profile.batch_sizes.index(batch)][j]
            table = [0.0]
            for k in range(1, batch + 1):
                size = next(b for b in profile.batch_sizes if b >= k)
                value = profile.latency_ms[profile.batch_sizes.index(size)][j]
                table.append(top if value is None else value)
            self._exec_cache[key] = table
        return table

    def _start_instance(self, stage: _Stage, group: InstanceGroup, t: float) -> Optional[_Instance]:
        gpu = self.cluster.place(group.gpu_share)
        if gpu is None:
            return None
        inst = _Instance(stage, group.gpu_share, group.batch_size, group.max_wait_ms,
                         self._exec_table(stage.profile, group.gpu_share, group.batch_size), group.lane, gpu)
        stage.instances.append(inst)
        stage.starting += 1
        self.cluster.hold(stage.wf.name, group.gpu_share, +1, t)
        self._push(t + stage.profile.cold_start_ms, _READY, inst)
        return inst

    def _remove(self, inst: _Instance, t: float) -> None:
        stage = inst.stage
        stage.instances.remove(inst)
        lane = stage.lanes[inst.lane]
        if inst in lane.idle:
            lane.idle.remove(inst)
        self.cluster.release(inst.gpu, inst.share)
        self.cluster.hold(stage.wf.name, inst.share, -1, t)

    def _retire(self, inst: _Instance, t: float) -> None:
        if inst.retiring:
            return
        inst.retiring = True
        if not inst.busy:
            if not inst.ready:
                inst.stage.starting -= 1
            self._remove(inst, t)

    def _apply(self, deployment: Deployment, t: float) -> None:
        new_instances = []
        for key, groups in deployment.items():
            stage = self.stage_by_key[key]
            wanted: dict[tuple[int, int], InstanceGroup] = {}
            for g in groups:
                k = (g.gpu_share, g.lane)
                if k in wanted:
                    g0 = wanted[k]
                    wanted[k] = InstanceGroup(g0.batch_size, g0.gpu_share, g0.count + g.count, g0.max_wait_ms, g0.lane)
                elif g.count > 0:
                    wanted[k] = g
            stage.short = 0
            for inst in stage.instances:
                if inst.retire_when_ready and (inst.share, inst.lane) in wanted:
                    # wanted again before its replacement came: it serves on, as the Deployment
                    # scales the old ReplicaSet whose template matches back up (and ``esg up``
                    # counts its workers at the share wanted)
                    inst.retire_when_ready = False
            live = [i for i in stage.instances if not i.retiring and not i.retire_when_ready]
            created = False
            for k, group in wanted.items():
                mine = [i for i in live if (i.share, i.lane) == k]
                for inst in mine:  # batch size and timeout change live
                    if inst.batch != group.batch_size:
                        inst.batch = group.batch_size
                        inst.exec_ms = self._exec_table(stage.profile, inst.share, inst.batch)
                    inst.wait_ms = group.max_wait_ms
                if len(mine) < group.count:
                    missing = group.count - len(mine)
                    # never try to place more than the whole cluster could hold
                    most = self.cluster.most_instances(group.gpu_share)
                    if missing > most:
                        self.cluster.unplaced += missing - most
                        missing = most
                    new_instances.extend((stage, group) for _ in range(missing))
                    created = True
                else:
                    # drop starting ones first, then idle, then busy
                    mine.sort(key=lambda i: (i.ready, i.busy))
                    for inst in mine[: len(mine) - group.count]:
                        self._retire(inst, t)
            for inst in live:
                if (inst.share, inst.lane) not in wanted:
                    if created and inst.ready:
                        inst.retire_when_ready = True
                    else:
                        self._retire(inst, t)
            for lane in stage.lanes:
                self._dispatch(lane, t)
        # Placement: a stage with no instance gets its first before any
        # stage gets more (a stage without instances blocks its workflow);
        # within each round, first fit decreasing by share.
        first_round, rest, seen = [], [], set()
        for stage, group in new_instances:
            has_live = any(not i.retiring for i in stage.instances)
            if not has_live and stage.key not in seen:
                seen.add(stage.key)
                first_round.append((stage, group))
            else:
                rest.append((stage, group))
        for batch in (first_round, rest):
            for stage, group in sorted(batch, key=lambda sg: -sg[1].gpu_share):
                if self._start_instance(stage, group, t) is None:
                    stage.short += 1
        for stage in {s for s, _ in new_instances}:
            self._check_handover(stage, t)

    def _check_handover(self, stage: _Stage, t: float) -> None:
        """Once a stage has no instance starting, retire what they replace —
        all of it when every replacement found room; else one at a time
        (a rolling update's one unavailable replica: it frees room for the
        next reconfiguration to place one more), never the stage's last
        serving instance."""
        if stage.starting:
            return
        replaced = [i for i in stage.instances if i.retire_when_ready]
        if stage.short:
            serving = any(i.ready and not i.retiring and not i.retire_when_ready for i in stage.instances)
            if not replaced or (not serving and len(replaced) < 2):
                return
            replaced = [min(replaced, key=lambda i: (i.busy, i.ready))]
        for inst in replaced:
            inst.retire_when_ready = False
            self._retire(inst, t)

    # --- the data path -----------------------------------------------------
    def _shed(self, req: _Request, t: float) -> None:
        """Drop a request that can no longer meet its deadline (the runtime's early 504)."""
        req.shed = True
        self.shed += 1
        req.wf.answers.append((t, False))

    def _shed_hopeless(self, t: float) -> None:
        """Shed every queued request that can no longer meet its deadline,
        wherever it waits — also where no instance is ready to take it (a
        cold start): the runtime's early 504 checks its whole queue, and a
        queue of requests already lost is no load to plan for. Run at each
        control tick, before the policy's view; between ticks a request is
        shed when it arrives at a stage or reaches an idle instance."""
        for stage in self.stage_by_key.values():
            for lane in stage.lanes:
                kept = []
                for entry in lane.queue:
                    req = entry[1]
                    if not req.shed and _hopeless(stage, req, t):
                        self._shed(req, t)
                    if not req.shed:
                        kept.append(entry)
                if len(kept) < len(lane.queue):
                    lane.queue.clear()
                    lane.queue.extend(kept)

    def _enqueue(self, stage: _Stage, req: _Request, t: float) -> None:
        if req.shed:
            return
        if _hopeless(stage, req, t):
            self._shed(req, t)
            return
        lane_index = 0
        if len(stage.lanes) > 1:
            slack = req.deadline_ms - t
            lane_index = self.policy.route(stage.wf.name, stage.name, slack)
        lane = stage.lanes[lane_index]
        lane.queue.append((t, req))
        if lane.idle:
            self._dispatch(lane, t)

    def _dispatch(self, lane: _Lane, now: float) -> None:
        queue, idle = lane.queue, lane.idle
        deadline_dispatch = self.policy.deadline_dispatch
        newest_first = self.policy.newest_first
        stage = lane.stage
        after = stage.min_after_ms
        while queue and idle:
            inst = idle[-1]
            exec_ms = inst.exec_ms
            while queue and (queue[0][1].shed or now + exec_ms[1] + after > queue[0][1].deadline_ms + _EPS):
                req = queue.popleft()[1]
                if not req.shed:
                    self._shed(req, now)
            if not queue:
                return
            b = inst.batch
            n = len(queue)
            if n < b:
                due = queue[0][0] + inst.wait_ms
                if deadline_dispatch:
                    oldest = queue[0][1]
                    urgent = oldest.deadline_ms - lane.stage.downstream_ms - inst.exec_ms[n]
                    if urgent < due:
                        due = urgent
                if now + _EPS < due:
                    if due < lane.timer_at or lane.timer_at < now:
                        lane.timer_at = due
                        self._push(due, _TIMER, lane)
                    return
            k = b if n >= b else n
            items = []
            # behind the plan: the newest first, as the runtime's batcher (``newest_first``)
            behind = newest_first and behind_plan(now / 1000.0, exec_ms[k] / 1000.0,
                                                  stage.downstream_exec_ms / 1000.0, queue[0][1].deadline_ms / 1000.0)
            take = queue.pop if behind else queue.popleft
            for _ in range(k):
                queued_at, req = take()
                if req.shed:
                    continue
                stage.waited += 1
                stage.waited_ms += now - queued_at
                if now + exec_ms[k] + after > req.deadline_ms + _EPS:
                    self._shed(req, now)
                    continue
                items.append(req)
            if not items:
                continue
            k = len(items)
            idle.pop()
            nominal_ms = exec_ms[k]
            exec_ms = nominal_ms * stage.exec_factor * self._noise()
            done = self.exec_done.setdefault(stage.profile.name, [0.0, 0.0])
            done[0] += exec_ms
            done[1] += nominal_ms
            inst.busy = True
            lane.stage.in_service += k
            # busy share-time within the scored period only, as the cost is held (``gpu_util``)
            scored_ms = min(now + exec_ms, self._scored_ms[1]) - max(now, self._scored_ms[0])
            if scored_ms > 0:
                self.busy_acc += inst.share / 100.0 * scored_ms / 1000.0
            self.batches += 1
            self._push(now + exec_ms, _DONE, inst, items)

    def _finish_items(self, stage: _Stage, items: list, t: float) -> None:
        wf = stage.wf
        s = stage.index
        stages = wf.stages
        hop = wf.hop_ms
        self.stage_executions += len(items)
        for req in items:
            if req.shed:
                continue
            left = req.left
            left[s] -= 1
            if left[s]:
                continue
            for u in stage.succs:
                req.need[u] -= 1
                if req.need[u] == 0:
                    self._push(t + hop, _ENQUEUE, stages[u], req)
            if stage.is_exit:
                req.exits_left -= 1
                if req.exits_left == 0:
                    req.done_ms = t
                    wf.answers.append((t, t - req.arrival_ms <= wf.slo_ms + _EPS))

    # --- the loop ----------------------------------------------------------
    def run(self, progress: Optional[Callable[[float], None]] = None) -> RunResult:
        policy = self.policy
        duration_ms = self.workload.duration_s * 1000.0
        warmup_ms = self.workload.warmup_s * 1000.0
        end_ms = duration_ms + self.config.drain_s * 1000.0
        for wf in self.workflows:
            if len(wf.arrivals):
                self._push(float(wf.arrivals[0]), _ARRIVE, wf, 0)
        self._push(0.0, _CONTROL)
        heap = self.heap
        pop = heapq.heappop
        while heap:
            t, _, kind, a, b = pop(heap)
            if t > end_ms:
                break
            self.now = t
            if kind == _ENQUEUE:
                for _ in range(a.fanout):
                    self._enqueue(a, b, t)
            elif kind == _DONE:
                inst = a
                stage = inst.stage
                inst.busy = False
                stage.in_service -= len(b)
                lane = stage.lanes[inst.lane]
                if inst.retiring:
                    self._remove(inst, t)
                else:
                    lane.idle.append(inst)
                self._finish_items(stage, b, t)
                self._dispatch(lane, t)
            elif kind == _ARRIVE:
                wf, i = a, b
                req = _Request(wf, t)
                if t >= warmup_ms:
                    self.scored.append(req)
                wf.recent.append(t)
                for s in wf.entries:
                    stage = wf.stages[s]
                    for _ in range(stage.fanout):
                        self._enqueue(stage, req, t)
                if i + 1 < len(wf.arrivals):
                    self._push(float(wf.arrivals[i + 1]), _ARRIVE, wf, i + 1)
            elif kind == _TIMER:
                lane = a
                if lane.timer_at == t:
                    lane.timer_at = _INF
                self._dispatch(lane, t)
            elif kind == _READY:
                inst = a
                stage = inst.stage
                if inst.retiring:
                    continue
                inst.ready = True
                stage.starting -= 1
                lane = stage.lanes[inst.lane]
                lane.idle.append(inst)
                self._check_handover(stage, t)
                self._dispatch(lane, t)
            elif kind == _CONTROL:
                self.held_series.append((t / 1000.0, self.cluster.held_pct / 100.0))
                self._shed_hopeless(t)
                view = self._view(t)
                if self.config.restart_at_s is not None and not self.restarted and t >= self.config.restart_at_s * 1000.0:
                    policy.restart(view)
                    self.restarted = True
                deployment = policy.decide(view)
                if deployment is not None:
                    self.desired.update(deployment)
                if self.desired:
                    self._apply(self.desired, t)
                    for stage in self.stage_by_key.values():
                        stage.downstream_ms = policy.downstream_ms(stage.wf.name, stage.name)
                        stage.downstream_exec_ms = policy.downstream_exec_ms(stage.wf.name, stage.name)
                if progress is not None:
                    progress(min(1.0, t / end_ms))
                if t + policy.interval_s * 1000.0 <= end_ms:
                    self._push(t + policy.interval_s * 1000.0, _CONTROL)
        self.cluster.account(max(self.now, duration_ms))
        requests = [
            (r.wf.name, r.arrival_ms / 1000.0, (r.done_ms - r.arrival_ms) if r.done_ms >= 0 else -1.0)
            for r in self.scored
        ]
        return RunResult(
            policy=policy.name,
            workload=self.workload.name,
            seed=self.config.seed,
            duration_s=self.workload.duration_s,
            warmup_s=self.workload.warmup_s,
            requests=requests,
            slo_ms={wf.name: wf.slo_ms for wf in self.workflows},
            cost_gpu_s=self.cluster.cost_gpu_s,
            busy_gpu_s=self.busy_acc,
            cost_gpu_s_by_workflow=dict(self.cluster.cost_gpu_s_by_wf),
            held_series=self.held_series,
            decisions=list(policy.decisions()),
            unplaced=self.cluster.unplaced,
            shed=self.shed,
            stage_executions=self.stage_executions,
            batches=self.batches,
        )

    def _view(self, t: float) -> View:
        window_ms = self.policy.window_s * 1000.0
        short_ms = (self.policy.short_window_s or self.policy.interval_s) * 1000.0
        interval_ms = self.policy.interval_s * 1000.0
        observed, latest, newest, cv2, backlog, answers = {}, {}, {}, {}, {}, {}
        for wf in self.workflows:
            recent = wf.recent
            while recent and recent[0] < t - max(window_ms, short_ms):
                recent.popleft()
            span_ms = min(window_ms, t)
            observed[wf.name] = _arrived_since(recent, t - window_ms) / (span_ms / 1000.0) if span_ms > 0 else 0.0
            span_ms = min(short_ms, t)
            latest[wf.name] = _arrived_since(recent, t - short_ms) / (span_ms / 1000.0) if span_ms > 0 else 0.0
            if interval_ms <= max(window_ms, short_ms) and t > 0:  # the arrivals kept reach back that far
                span_ms = min(interval_ms, t)
                newest[wf.name] = _arrived_since(recent, t - span_ms) / (span_ms / 1000.0)
            gaps = np.diff(np.fromiter((a for a in recent if a >= t - window_ms), dtype=float))
            cv2[wf.name] = gap_cv2(len(gaps), float(gaps.sum()), float((gaps ** 2).sum()))
            while wf.answers and wf.answers[0][0] < t - short_ms:
                wf.answers.popleft()
            met = sum(1 for _, ok in wf.answers if ok)
            answers[wf.name] = (met, len(wf.answers) - met)
            waiting = 0.0
            for stage in wf.stages:
                queued = sum(len(lane.queue) for lane in stage.lanes)
                takes = sum(i.batch for i in stage.instances if i.ready and not i.retiring)
                waiting = max(waiting, max(0, queued - takes) / stage.fanout)
            backlog[wf.name] = waiting
        concurrency, instances, starting, stage_wait, unplaced, serving = {}, {}, {}, {}, {}, {}
        for key, stage in self.stage_by_key.items():
            if stage.waited:
                stage_wait[key] = (stage.waited, stage.waited_ms)
                stage.waited, stage.waited_ms = 0, 0.0
            concurrency[key] = sum(len(lane.queue) for lane in stage.lanes) + stage.in_service
            instances[key] = sum(1 for i in stage.instances if not i.retiring)
            # not in service: starting, or not placed (``Observation.starting``, as a Deployment's
            # replicas less its ready ones count a Pending pod)
            starting[key] = sum(1 for i in stage.instances if not i.retiring and not i.ready) + stage.short
            serving[key] = sum(1 for i in stage.instances if i.ready and not i.retiring)
            if stage.short:
                unplaced[key] = stage.short
        ratio = {fn: done / nominal for fn, (done, nominal) in self.exec_done.items() if nominal > 0}
        self.exec_done = {}
        return View(t / 1000.0, observed, latest, cv2, concurrency, instances, backlog, answers, ratio, starting,
                    stage_wait, unplaced, newest, tuple(self.cluster.gpu_free),
                    {key: groups[0] for key, groups in self.desired.items() if groups}
                    if self.config.restart_at_s is not None else {},  # read only after a restart
                    serving)


def _arrived_since(arrivals: deque, since_ms: float) -> int:
    """How many of the (time-ordered) arrivals came at ``since_ms`` or after:
    counted from the newest back, not over the whole window kept."""
    count = 0
    for at_ms in reversed(arrivals):
        if at_ms < since_ms:
            break
        count += 1
    return count


def _hopeless(stage: _Stage, req: _Request, t: float) -> bool:
    """Not even the stage's fastest execution and the fastest path after it
    bring ``req`` in before its deadline (the runtime's early 504)."""
    return t + stage.min_exec_ms + stage.min_after_ms > req.deadline_ms + _EPS


def simulate(workload: Workload, profiles: ProfileSet, policy: Policy, config: Optional[SimConfig] = None,
             progress: Optional[Callable[[float], None]] = None) -> RunResult:
    return Simulator(workload, profiles, policy, config).run(progress)
