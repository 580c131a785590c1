"""The scaler's decision: what the scaler observes, through the one control
law (``esg_plugin.control``), to the desired state of each deployed function.

This module only translates; every decision is the law's, the same code the
simulator's ``esg`` policy runs:

- in: the entry function's arrival rates over the window and the last
  interval (over its fan-out), plus the requests the router shed at the
  entry over the last interval, as each workflow's long and short rates; the
  workflow's backlog, as the simulator counts it (per stage, requests
  queued beyond what its replicas take in their next batches, over the
  stage's fan-out; the largest); how bursty its arrivals were over the
  window (the router's gaps between arrivals; Poisson without them); the
  time a hop between stages took (the router's; the workflow's own
  ``hop_ms`` without it); the
  answers of the last interval by class
  (the router's per workflow when read, else the gateway's status codes:
  504 late, 429 rejected, 200 from an exit stage ok); the functions'
  observed mean execution time over the profile's time at the batch size
  they ran and the share they run, as the execution-time ratio; what each
  function runs now (so that a small share saving does not restart pods),
  its replicas in service and those not yet, and those the platform found
  no room for (pods ``Unschedulable``), where the platform says; each GPU's free
  share, where the actuator reads it (HAMi's records: ``Actuator.gpu_room``);
- out: per function the law's instance group — replicas (bounded by
  ``min_replicas``..``max_replicas``), batch size, batching timeout (changes
  under ``wait_threshold_ms`` ignored) and share.

No observation means no decision: the current state stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from ..control import ControlLaw, ControlState, Observation as ControlObservation, WorkflowObservation
from ..model import FunctionState, InstanceGroup, ModelError, Plan, ProfileSet, Topology
from .settings import ScalerSettings
from .sources import Observation


@dataclass
class Memory:
    """What the scaler remembers between iterations: the law's state."""

    state: ControlState = field(default_factory=ControlState)


@dataclass(frozen=True)
class ScalerDecision:
    desired: dict[str, FunctionState]
    """Only functions of workflows with a plan; others are left alone."""
    plans: dict[str, Plan]
    reasons: dict[str, str]
    rates_rps: dict[str, float]
    admit_rps: dict[str, float] = field(default_factory=dict)
    """Workflows the node's busy capacity holds below their rate: the rate to admit at the entry."""
    estimates_rps: dict[str, float] = field(default_factory=dict)
    """The offered rate each plan was made for (``rates_rps`` less the headroom)."""
    downstream_exec_ms: dict[tuple[str, str], float] = field(default_factory=dict)
    """Per (workflow, stage): the executions the plan runs after the stage (the router sends it on)."""


def decide_functions(
    topology: Topology,
    profiles: ProfileSet,
    settings: ScalerSettings,
    observation: Optional[Observation],
    current: Mapping[str, FunctionState],
    memory: Memory,
    now_s: float,
    gpu_free_pct: Optional[tuple[int, ...]] = None,
) -> ScalerDecision:
    if observation is None:
        return ScalerDecision({}, {}, {"*": "no metrics data: nothing changes"}, {})
    law = control_law(topology, profiles, settings)
    running = {key: InstanceGroup(current[fn].batch_size, current[fn].gpu_share, current[fn].replicas,
                                  current[fn].max_wait_ms)
               for key, fn in topology.functions.items() if fn in current}
    decision = law.step(control_observation(topology, profiles, observation, current, gpu_free_pct), memory.state,
                        now_s, running)
    desired: dict[str, FunctionState] = {}
    reasons = dict(decision.reasons)
    for key, groups in decision.desired.items():
        fn = topology.functions[key]
        group = groups[0]  # ESG runs one group per stage
        cur = current.get(fn)
        wait_ms = round(group.max_wait_ms, 3)
        if cur is not None and abs(wait_ms - cur.max_wait_ms) < settings.wait_threshold_ms:
            wait_ms = cur.max_wait_ms
        want = FunctionState(min(max(group.count, settings.min_replicas), settings.max_replicas),
                             group.batch_size, wait_ms, group.gpu_share)
        desired[fn] = want
        reasons[fn] = describe_change(cur, want)
    return ScalerDecision(desired, dict(decision.plans), reasons, dict(decision.rates_rps), dict(decision.admit_rps),
                          dict(decision.estimates_rps), dict(decision.downstream_exec_ms))


def control_law(topology: Topology, profiles: ProfileSet, settings: ScalerSettings) -> ControlLaw:
    """The control law these settings stand for, over the stack's workflows."""
    return ControlLaw(list(topology.workflows.values()), profiles, settings.control(), policy="esg")


def control_observation(topology: Topology, profiles: ProfileSet, observation: Observation,
                        current: Mapping[str, FunctionState],
                        gpu_free_pct: Optional[tuple[int, ...]] = None) -> ControlObservation:
    """The law's observation from the scaler's (see the module's docstring);
    ``gpu_free_pct`` from the actuator (``Actuator.gpu_room``)."""
    waits: dict[str, dict[str, tuple[float, float]]] = {}
    for (wf, stage), fn in topology.functions.items():
        reading = observation.functions.get(fn)
        if reading is not None and reading.queue_waits is not None:
            waits.setdefault(wf, {})[stage] = reading.queue_waits
    workflows = {}
    for name in topology.workflows:
        offered = offered_rps(topology, name, observation)
        if offered is None:
            continue
        ok, late, rejected = answers(topology, name, observation)
        workflows[name] = WorkflowObservation(offered[0], offered[1], observation.recent_window_s,
                                              arrival_cv2=observation.workflow_arrival_cv2.get(name, 1.0),
                                              hop_ms=observation.workflow_hop_ms.get(name),
                                              backlog=backlog(topology, name, observation, current),
                                              ok=int(ok), late=int(late), rejected=int(rejected),
                                              long_window_s=observation.window_s, stage_wait=waits.get(name, {}))
    ratios: dict[str, list[float]] = {}
    batches: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for (wf, stage), fn in topology.functions.items():
        state, reading = current.get(fn), observation.functions.get(fn)
        key = topology.workflows[wf].stage(stage).function
        if reading is None or reading.exec_ms is None or state is None or key not in profiles:
            continue
        batch = reading.batch_mean or state.batch_size
        if reading.cpu_ratio is not None:
            cpu.setdefault(key, []).append(reading.cpu_ratio)
        expected = profiled_ms(profiles[key], batch, state.gpu_share)
        if expected:
            ratios.setdefault(key, []).append(reading.exec_ms / expected)
            batches.setdefault(key, []).append(batch)
    starting = {key: current[fn].starting for key, fn in topology.functions.items()
                if fn in current and current[fn].starting is not None}
    unplaced = {key: current[fn].unplaced_replicas for key, fn in topology.functions.items()
                if fn in current and current[fn].unplaced_replicas}
    serving = {key: current[fn].ready_replicas for key, fn in topology.functions.items()
               if fn in current and current[fn].ready_replicas is not None}
    return ControlObservation(observation.at_s, workflows,
                              exec_ratio={k: sum(v) / len(v) for k, v in ratios.items()},
                              exec_batch={k: sum(v) / len(v) for k, v in batches.items()}, starting=starting,
                              cpu_ratio={k: sum(v) / len(v) for k, v in cpu.items()}, unplaced=unplaced,
                              gpu_free_pct=gpu_free_pct, serving=serving)


def offered_rps(topology: Topology, workflow: str, observation: Observation) -> Optional[tuple[float, float]]:
    """The workflow's offered load, (over the window, over the last interval):
    its busiest entry's arrivals over that stage's fan-out, plus the requests
    the router shed at the entry over the same span; None without data."""
    wf = topology.workflows[workflow]
    long_rps, short_rps = [], []
    for stage in wf.entries:
        fn = topology.functions[(workflow, stage)]
        if fn in observation.rates_rps:
            fanout = wf.stage(stage).fanout
            long_rps.append(observation.rates_rps[fn] / fanout)
            short_rps.append(observation.recent_rps.get(fn, 0.0) / fanout)
    if not long_rps:
        return None
    shed_recent = observation.workflow_shed.get(workflow, 0.0) / observation.recent_window_s
    shed_long = observation.workflow_shed_window.get(workflow, 0.0) / observation.window_s
    return max(long_rps) + shed_long, max(short_rps) + shed_recent


def answers(topology: Topology, workflow: str, observation: Observation) -> tuple[float, float, float]:
    """(ok, late, rejected) over the last interval: the router's count when
    read; else the gateway's codes — 504 at any stage late, 429 rejected,
    200 from an exit stage ok."""
    if workflow in observation.workflow_answers:
        return observation.workflow_answers[workflow]
    wf = topology.workflows[workflow]
    ok = late = rejected = 0.0
    for stage in wf.graph.nodes:
        codes = observation.codes.get(topology.functions[(workflow, stage)], {})
        late += codes.get("504", 0.0)
        rejected += codes.get("429", 0.0)
        if stage in wf.exits:
            ok += codes.get("200", 0.0) / wf.stage(stage).fanout
    return ok, late, rejected


def backlog(topology: Topology, workflow: str, observation: Observation,
            current: Mapping[str, FunctionState]) -> float:
    """Workflow requests queued beyond what the replicas take next, at the
    most backed-up stage (as the simulator's view counts it)."""
    wf = topology.workflows[workflow]
    most = 0.0
    for stage in wf.graph.nodes:
        fn = topology.functions[(workflow, stage)]
        reading, state = observation.functions.get(fn), current.get(fn)
        if reading is None or state is None:
            continue
        most = max(most, max(0.0, reading.queue - state.replicas * state.batch_size) / wf.stage(stage).fanout)
    return most


def profiled_ms(profile, batch: float, share: int) -> Optional[float]:
    """The profile's time at the profiled batch size nearest ``batch`` (the
    mean size observed) and this share; None where it has none."""
    nearest = min(profile.batch_sizes, key=lambda b: (abs(b - batch), b))
    try:
        return profile.latency(nearest, share)
    except ModelError:  # a share the profile does not list: no ratio
        return None


def describe_change(cur: Optional[FunctionState], want: FunctionState) -> str:
    if cur is None:  # new to a dry run; else gone, not answered or not believed (the actuator's log says which)
        return "its state not read: every field written"
    why = []
    if want.replicas != cur.replicas:
        why.append(f"scale {'up' if want.replicas > cur.replicas else 'down'} {cur.replicas} -> {want.replicas}")
    if want.gpu_share != cur.gpu_share:
        why.append(f"share {cur.gpu_share}% -> {want.gpu_share}%")
    if want.batch_size != cur.batch_size or want.max_wait_ms != cur.max_wait_ms:
        why.append(f"batch {cur.batch_size}/{cur.max_wait_ms:g} ms -> {want.batch_size}/{want.max_wait_ms:g} ms")
    return "; ".join(why) or "unchanged"
