"""The scaler's decision: observed rates -> ESG plans -> desired state per
function, stabilised. A pure function of its inputs and ``now_s`` (the clock
is injected); the loop and the actuators do the effects.

Per workflow with data:

1. the rate is the entry function's observed rate — the larger of the
   window's and the last interval's, so that load steps are met at once —
   over the stage's fan-out, plus ``rate_headroom``;
2. ESG plans against ``SLO × (1 − slo_margin)`` with the queueing-aware
   latency (Poisson arrivals assumed), falling back to looser budgets (1,
   1.5, 2, 4 × SLO) rather than the dearest plan when nothing fits; profile
   latencies are scaled by the ratio of observed to profiled execution time
   where functions report it;
3. stabilisation per function: replicas go up at once and down only after
   the plan has asked for fewer for ``scale_down_delay_s`` — and never
   within a full window of the first good observation (conservative after a
   restart); a smaller GPU share, which restarts pods, is taken only when it
   saves at least ``min_share_saving`` of the stage's cost, else the
   workflow is re-planned with that stage's share pinned; timeout changes
   under ``wait_threshold_ms`` are ignored.

No observation means no decision: the current state stands.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping, Optional

from ..model import Plan, ProfileSet
from ..planner import PlannerError, plan_with_fallback
from .settings import ScalerSettings
from .sources import Observation
from .topology import Topology

MIN_RATE_RPS = 0.1


@dataclass(frozen=True)
class FunctionState:
    replicas: int
    batch_size: int
    max_wait_ms: float
    gpu_share: int


@dataclass
class Memory:
    """What the decider remembers between iterations."""

    first_good_s: Optional[float] = None
    low_since_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    desired: dict[str, FunctionState]
    """Only functions of workflows with data; others are left alone."""
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
) -> Decision:
    if observation is None:
        return Decision({}, {}, {"*": "no metrics data: nothing changes"}, {})
    if memory.first_good_s is None:
        memory.first_good_s = now_s
    profiles = _corrected(topology, profiles, current, exec_ms_observed or {})
    desired: dict[str, FunctionState] = {}
    plans: dict[str, Plan] = {}
    reasons: dict[str, str] = {}
    rates: dict[str, float] = {}
    for name, workflow in topology.workflows.items():
        entry_rates = [max(observation.rates_rps[fn], observation.recent_rps.get(fn, 0.0)) / workflow.stage(stage).fanout
                       for stage in workflow.entries
                       if (fn := topology.functions[(name, stage)]) in observation.rates_rps]
        if not entry_rates:
            reasons[name] = "no data for this workflow's entry function"
            continue
        rate = max(max(entry_rates), MIN_RATE_RPS) * (1 + settings.rate_headroom)
        rates[name] = rate
        plan = _plan(workflow, profiles, rate, settings)
        pinned = {}
        for stage, sp in plan.stages.items():
            fn = topology.functions[(name, stage)]
            cur = current.get(fn)
            if cur is not None and sp.gpu_share < cur.gpu_share:
                saving = 1 - (sp.gpu_share * sp.replicas) / (cur.gpu_share * max(cur.replicas, 1))
                if saving < settings.min_share_saving:
                    pinned[stage] = cur.gpu_share
        if pinned:
            plan = _plan(workflow, profiles, rate, settings, pinned) or plan
        plans[name] = plan
        for stage, sp in plan.stages.items():
            fn = topology.functions[(name, stage)]
            target = FunctionState(min(max(sp.replicas, settings.min_replicas), settings.max_replicas),
                                   sp.batch_size, round(sp.max_wait_ms, 3), sp.gpu_share)
            desired[fn], reasons[fn] = _stabilise(fn, target, current.get(fn), memory, now_s, settings)
    return Decision(desired, plans, reasons, rates)


def _plan(workflow, profiles, rate, settings, pinned: Optional[Mapping[str, int]] = None) -> Optional[Plan]:
    stage_filter = None
    if pinned:
        stage_filter = lambda stage, option: stage not in pinned or option.config.gpu_share == pinned[stage]  # noqa: E731
    try:
        problem, choices, stats, _ = plan_with_fallback(workflow, profiles, rate, "esg", 1 - settings.slo_margin,
                                                        arrival_cv2=1.0, stage_filter=stage_filter)
    except PlannerError:  # a pinned share the profile cannot run
        return None
    return Plan.build(workflow, "esg", problem.rate_rps, choices, stats, slo_ms=problem.budget_ms)


def _stabilise(fn, target: FunctionState, cur: Optional[FunctionState], memory: Memory, now_s: float,
               settings: ScalerSettings) -> tuple[FunctionState, str]:
    if cur is None:
        return target, "first plan"
    replicas, why = cur.replicas, []
    if target.replicas > cur.replicas:
        replicas = target.replicas
        memory.low_since_s.pop(fn, None)
        why.append(f"scale up {cur.replicas} -> {target.replicas}")
    elif target.replicas < cur.replicas:
        since = memory.low_since_s.setdefault(fn, now_s)
        started = now_s if memory.first_good_s is None else memory.first_good_s
        warm = now_s - started >= settings.window_s
        if warm and now_s - since >= settings.scale_down_delay_s:
            replicas = target.replicas
            memory.low_since_s.pop(fn, None)
            why.append(f"scale down {cur.replicas} -> {target.replicas}")
        else:
            why.append(f"hold {cur.replicas} (plan asks {target.replicas}; scale-down waits "
                       f"{settings.scale_down_delay_s:g} s{'' if warm else ' and a full window after start'})")
    else:
        memory.low_since_s.pop(fn, None)
    wait = cur.max_wait_ms if abs(target.max_wait_ms - cur.max_wait_ms) < settings.wait_threshold_ms \
        else target.max_wait_ms
    if target.gpu_share != cur.gpu_share:
        why.append(f"share {cur.gpu_share}% -> {target.gpu_share}%")
    if target.batch_size != cur.batch_size or wait != cur.max_wait_ms:
        why.append(f"batch {cur.batch_size}/{cur.max_wait_ms:g} ms -> {target.batch_size}/{wait:g} ms")
    return FunctionState(replicas, target.batch_size, wait, target.gpu_share), "; ".join(why) or "unchanged"


def _corrected(topology: Topology, profiles: ProfileSet, current: Mapping[str, FunctionState],
               exec_ms: Mapping[str, float]) -> ProfileSet:
    """Profiles scaled by observed / profiled execution time (per profile,
    averaged over the functions that use it; clamped to 0.5..3)."""
    factors: dict[str, list[float]] = {}
    for (wf, stage), fn in topology.functions.items():
        if fn not in exec_ms or fn not in current:
            continue
        key = topology.workflows[wf].stage(stage).function
        if key not in profiles:
            continue
        state = current[fn]
        profile = profiles[key]
        try:
            expected = profile.latency(state.batch_size, state.gpu_share)
        except Exception:
            continue
        if expected:
            factors.setdefault(key, []).append(min(3.0, max(0.5, exec_ms[fn] / expected)))
    if not factors:
        return profiles
    functions = dict(profiles.functions)
    for key, values in factors.items():
        scale = sum(values) / len(values)
        p = functions[key]
        rows = tuple(tuple(None if v is None else v * scale for v in row) for row in p.latency_ms)
        functions[key] = dataclasses.replace(p, latency_ms=rows)
    return dataclasses.replace(profiles, functions=functions)

