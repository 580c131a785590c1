"""The scaler's decision: what the scaler observes, through the one control
law (``esg_plugin.control``), to the desired state of each deployed function.

This module only translates; every decision is the law's, the same code the
simulator's ``esg`` policy runs:

- in: the entry function's invocation rates over the window and the last
  interval (over its fan-out) as each workflow's long and short rates; the
  functions' observed mean execution time over the profile's time at the
  configuration they run now, as the execution-time ratio; what each
  function runs now (so that a small share saving does not restart pods);
- out: per function the law's instance group — replicas (bounded by
  ``min_replicas``..``max_replicas``), batch size, batching timeout (changes
  under ``wait_threshold_ms`` ignored) and share.

No observation means no decision: the current state stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from ..control import ControlLaw, ControlState, Observation as ControlObservation, WorkflowObservation
from ..model import InstanceGroup, Plan, ProfileSet
from .settings import ScalerSettings
from .sources import Observation
from .topology import Topology


@dataclass(frozen=True)
class FunctionState:
    replicas: int
    batch_size: int
    max_wait_ms: float
    gpu_share: int


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


def decide(
    topology: Topology,
    profiles: ProfileSet,
    settings: ScalerSettings,
    observation: Optional[Observation],
    current: Mapping[str, FunctionState],
    memory: Memory,
    now_s: float,
    exec_ms_observed: Optional[Mapping[str, float]] = None,
) -> ScalerDecision:
    if observation is None:
        return ScalerDecision({}, {}, {"*": "no metrics data: nothing changes"}, {})
    law = ControlLaw(list(topology.workflows.values()), profiles, settings.control(), policy="esg")
    running = {key: InstanceGroup(current[fn].batch_size, current[fn].gpu_share, current[fn].replicas,
                                  current[fn].max_wait_ms)
               for key, fn in topology.functions.items() if fn in current}
    decision = law.step(control_observation(topology, profiles, observation, current, exec_ms_observed or {}),
                        memory.state, now_s, running)
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
    return ScalerDecision(desired, dict(decision.plans), reasons, dict(decision.rates_rps))


def control_observation(topology: Topology, profiles: ProfileSet, observation: Observation,
                        current: Mapping[str, FunctionState], exec_ms: Mapping[str, float]) -> ControlObservation:
    """The law's observation from the scaler's: per workflow the busiest entry's
    rates over its fan-out; per profile the observed / profiled execution time."""
    workflows = {}
    for name, workflow in topology.workflows.items():
        long_rps, short_rps = [], []
        for stage in workflow.entries:
            fn = topology.functions[(name, stage)]
            if fn in observation.rates_rps:
                fanout = workflow.stage(stage).fanout
                long_rps.append(observation.rates_rps[fn] / fanout)
                short_rps.append(observation.recent_rps.get(fn, 0.0) / fanout)
        if long_rps:
            workflows[name] = WorkflowObservation(max(long_rps), max(short_rps), observation.recent_window_s)
    ratios: dict[str, list[float]] = {}
    for (wf, stage), fn in topology.functions.items():
        state = current.get(fn)
        key = topology.workflows[wf].stage(stage).function
        if fn not in exec_ms or state is None or key not in profiles:
            continue
        try:
            expected = profiles[key].latency(state.batch_size, state.gpu_share)
        except Exception:  # a configuration the profile does not have: no ratio
            continue
        if expected:
            ratios.setdefault(key, []).append(exec_ms[fn] / expected)
    return ControlObservation(observation.at_s, workflows, {k: sum(v) / len(v) for k, v in ratios.items()})


def describe_change(cur: Optional[FunctionState], want: FunctionState) -> str:
    if cur is None:
        return "first plan"
    why = []
    if want.replicas != cur.replicas:
        why.append(f"scale {'up' if want.replicas > cur.replicas else 'down'} {cur.replicas} -> {want.replicas}")
    if want.gpu_share != cur.gpu_share:
        why.append(f"share {cur.gpu_share}% -> {want.gpu_share}%")
    if want.batch_size != cur.batch_size or want.max_wait_ms != cur.max_wait_ms:
        why.append(f"batch {cur.batch_size}/{cur.max_wait_ms:g} ms -> {want.batch_size}/{want.max_wait_ms:g} ms")
    return "; ".join(why) or "unchanged"
