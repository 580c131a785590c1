"""The systems ESG is compared with, as planners under the same model.

Each was designed for single functions (or for whole-GPU serving); here is
how each is adapted to workflows. Per-stage systems get a **per-stage
budget**: the SLO, less the hops of the longest path, split evenly over the
stages of the longest path (by stage count) — every stage of a DAG gets the
same share, so any path fits when each stage meets its own.

- ``infless`` (INFless, ASPLOS'22): per stage, the largest batch first; a
  batch above 1 must execute within half the stage budget (the other half
  is for filling it); shares 10–50% only; instances sized by the upper end
  of their request-rate range, i.e. to full throughput (utilisation 1, no
  headroom); among qualifying configurations the cheapest.
- ``fast-gshare`` (FaST-GShare, ICPP'23): no batching; per stage the share
  with the highest throughput per percent of GPU among those within the
  stage budget, as many such instances as the rate fills, plus one
  *residual* instance at the smallest share that carries the rest
  (:func:`fast_gshare_groups`).
- ``nexus`` (Nexus, SOSP'19): whole GPUs, batch-aware duty cycles: the
  largest batch that the rate fills within a duty cycle such that a request
  waiting one duty cycle and then running one stays within the stage budget,
  instances at full share, and the leftover load *squished* onto a partial
  share (:func:`nexus_groups`).
- ``orion`` (best-first, as in Orion, SoCC'22): every stage starts at its
  cheapest configuration; while the plan misses the SLO, the stage on a
  critical path with the best latency gain per unit of added cost is
  upgraded. Whole workflow, no even split.
- ``llama`` (Llama, SoCC'21): per-invocation configuration from the slack
  left. Per stage, a cheap group (the cheapest configuration within the stage
  budget) and a fast lane (one batch-1 instance, the cheapest that runs in
  half the stage budget); at
  run time each request takes the fast lane when its slack is less than the
  budget of the stages it still has to pass (:func:`llama_groups`).
- ``kpa`` (Knative's default autoscaler): one whole GPU per instance, no
  batching; instances = observed concurrency (Little's law: rate × execution
  time) over a target of 0.7 per instance. Its stable (60 s) and panic (6 s)
  windows are a run-time behaviour, modelled by the simulator's policy.
- ``openfaas`` (OpenFaaS's autoscaler, rps mode): one whole GPU per
  instance, no batching; instances = rate over a target per replica of 80%
  of what one instance can serve (a well-tuned operator's setting).

All of them use the same profiles and the same SPEC §3 equations; what
differs is how they choose.
"""

from __future__ import annotations

import math
from typing import Optional

from ..model import Config, InstanceGroup, PlanStats, StageOption, evaluate, group_of, path_latency_ms
from .limits import SearchLimits
from .problem import Problem

KPA_TARGET_CONCURRENCY = 0.7
OPENFAAS_TARGET_FRACTION = 0.8


# --- shared helpers ---------------------------------------------------------
def even_stage_budgets(problem: Problem) -> dict[str, float]:
    """The SLO, less the hops of the longest path, split evenly over the
    number of stages on the longest path."""
    workflow = problem.workflow
    depth: dict[str, int] = {}
    for s in workflow.topological_order():
        depth[s] = 1 + max((depth[p] for p in workflow.graph.predecessors(s)), default=0)
    longest = max(depth.values())
    share = (problem.budget_ms - workflow.hop_ms * (longest - 1)) / longest
    return {s: share for s in workflow.stage_names}


def _options(problem: Problem, stage: str) -> list[StageOption]:
    return problem.arrays[stage].options()


def _stage_rate(problem: Problem, stage: str) -> float:
    return problem.rate_rps * problem.workflow.stage(stage).fanout


def _fastest(options: list[StageOption]) -> StageOption:
    return min(options, key=lambda o: (o.latency_ms, o.cost_pct))


def _summary(groups: list[InstanceGroup], options: dict[tuple[int, int], StageOption]) -> StageOption:
    """One StageOption standing for several groups: the first group's
    configuration, all replicas, the summed cost, the slowest latency."""
    first = options[(groups[0].batch_size, groups[0].gpu_share)]
    slowest = max(options[(g.batch_size, g.gpu_share)].latency_ms for g in groups)
    return StageOption(
        first.config,
        first.exec_ms,
        sum(g.count for g in groups),
        first.wait_ms,
        max(first.latency_ms, slowest),
        sum(g.count * g.gpu_share for g in groups),
    )


def _max_share(options: list[StageOption]) -> int:
    return max(o.config.gpu_share for o in options)


# --- infless ------------------------------------------------------------------
def _infless(problem: Problem, limits: SearchLimits):
    budgets = even_stage_budgets(problem)
    choices = {}
    for stage in problem.workflow.stage_names:
        rate = _stage_rate(problem, stage)
        budget = budgets[stage]
        options = [
            evaluate(o.config, o.exec_ms, rate, utilisation=1.0)
            for o in _options(problem, stage)
            if 10 <= o.config.gpu_share <= 50
        ]
        chosen = None
        for b in sorted({o.config.batch_size for o in options}, reverse=True):
            fits = [
                o for o in options
                if o.config.batch_size == b and o.exec_ms <= (budget / 2 if b > 1 else budget)
                and o.latency_ms <= budget
            ]
            if fits:
                chosen = min(fits, key=lambda o: (o.cost_pct, o.latency_ms))
                break
        if chosen is None:
            chosen = _fastest(options or _options(problem, stage))
        choices[stage] = chosen
    return choices, PlanStats(proven_optimal=False)


# --- fast-gshare -------------------------------------------------------------
def fast_gshare_groups(problem: Problem, stage: str, budget_ms: float) -> list[InstanceGroup]:
    rate = _stage_rate(problem, stage)
    rho = problem.utilisation
    single = [o for o in _options(problem, stage) if o.config.batch_size == 1]
    if not single:
        return [group_of(_fastest(_options(problem, stage)))]
    within = [o for o in single if o.exec_ms <= budget_ms] or [_fastest(single)]
    efficient = min(within, key=lambda o: (o.exec_ms * o.config.gpu_share, o.exec_ms))
    capacity_rps = rho * 1000.0 / efficient.exec_ms
    full = math.floor(rate / capacity_rps + 1e-9)
    rest_rps = rate - full * capacity_rps
    groups = []
    if full:
        groups.append(InstanceGroup(1, efficient.config.gpu_share, full, 0.0))
    if rest_rps > 1e-9 or not full:
        carriers = [o for o in within if rho * 1000.0 / o.exec_ms >= rest_rps]
        residual = min(carriers, key=lambda o: (o.config.gpu_share, o.exec_ms)) if carriers else efficient
        groups.append(InstanceGroup(1, residual.config.gpu_share, 1, 0.0))
    return groups


# --- nexus ---------------------------------------------------------------------
def nexus_groups(problem: Problem, stage: str, budget_ms: float) -> list[InstanceGroup]:
    rate = _stage_rate(problem, stage)
    rho = problem.utilisation
    options = _options(problem, stage)
    top = _max_share(options)
    whole = [o for o in options if o.config.gpu_share == top]
    # the batch the rate fills in one duty cycle: waiting for b requests
    # (b / rate) or for the previous batch (e), then running one
    fitting = [o for o in whole
               if max(o.exec_ms, 1000.0 * o.config.batch_size / rate) + o.exec_ms <= budget_ms]
    main = max(fitting, key=lambda o: o.config.batch_size) if fitting else min(whole, key=lambda o: o.exec_ms)
    b = main.config.batch_size
    capacity_rps = rho * 1000.0 * b / main.exec_ms
    full = math.floor(rate / capacity_rps + 1e-9)
    rest_rps = rate - full * capacity_rps
    groups = []
    if full:
        groups.append(InstanceGroup(b, top, full, main.exec_ms))
    if rest_rps > 1e-9 or not full:
        squished = [
            o for o in options
            if o.config.batch_size == b and 2 * o.exec_ms <= budget_ms and rho * 1000.0 * b / o.exec_ms >= rest_rps
        ]
        part = min(squished, key=lambda o: (o.config.gpu_share, o.exec_ms)) if squished else main
        groups.append(InstanceGroup(b, part.config.gpu_share, 1, part.exec_ms))
    return groups


# --- orion -----------------------------------------------------------------------
def _orion(problem: Problem, limits: SearchLimits):
    workflow = problem.workflow
    menus = problem.menus
    picks = {s: len(m.options) - 1 for s, m in menus.items()}
    expanded = 0

    def latencies() -> dict[str, float]:
        return {s: menus[s].latencies_ms[i] for s, i in picks.items()}

    while True:
        lat = latencies()
        total = path_latency_ms(workflow, lat)
        if total <= problem.budget_ms + 1e-9:
            break
        critical = _critical_stages(problem, lat, total)
        best: Optional[tuple[float, str, int]] = None
        for s in critical:
            i = picks[s]
            menu = menus[s]
            for j in range(i):
                gain = menu.latencies_ms[i] - menu.latencies_ms[j]
                cost = menu.costs_pct[j] - menu.costs_pct[i]
                ratio = gain / cost if cost > 0 else math.inf
                if gain > 0 and (best is None or ratio > best[0]):
                    best = (ratio, s, j)
        expanded += 1
        if best is None:
            return None, PlanStats(expanded=expanded, proven_optimal=False)
        picks[best[1]] = best[2]
    return problem.choices(picks), PlanStats(expanded=expanded, proven_optimal=False)


def _critical_stages(problem: Problem, lat: dict[str, float], total: float) -> list[str]:
    """Stages on a longest path (zero float)."""
    workflow = problem.workflow
    hop = workflow.hop_ms
    order = workflow.topological_order()
    finish: dict[str, float] = {}
    for s in order:
        finish[s] = max((finish[p] + hop for p in workflow.graph.predecessors(s)), default=0.0) + lat[s]
    latest: dict[str, float] = {}
    for s in reversed(order):
        latest[s] = min((latest[q] - lat[q] - hop for q in workflow.graph.successors(s)), default=total)
    return [s for s in order if latest[s] - finish[s] <= 1e-6]


# --- llama -------------------------------------------------------------------------
def llama_groups(problem: Problem, stage: str, budget_ms: float) -> list[InstanceGroup]:
    """Lane 0: the cheapest configuration within the stage budget; lane 1: one
    batch-1 instance, the cheapest that runs within half the stage budget
    (so that a late request catches up), or the fastest batch-1 one."""
    options = _options(problem, stage)
    within = [o for o in options if o.latency_ms <= budget_ms]
    cheap = min(within, key=lambda o: (o.cost_pct, o.latency_ms)) if within else _fastest(options)
    singles = [o for o in options if o.config.batch_size == 1] or options
    quick = [o for o in singles if o.exec_ms <= budget_ms / 2]
    fast = (min(quick, key=lambda o: (o.config.gpu_share, o.exec_ms)) if quick
            else min(singles, key=lambda o: (o.exec_ms, -o.config.gpu_share)))
    return [group_of(cheap, lane=0), InstanceGroup(fast.config.batch_size, fast.config.gpu_share, 1, 0.0, lane=1)]


# --- planners of the baselines that run several groups per stage --------------------
def _from_groups(groups_of, summarize):
    """A planner that reports, per stage, one StageOption standing for the
    groups ``groups_of`` deploys (``summarize(groups, options)``)."""

    def plan(problem: Problem, limits: SearchLimits):
        budgets = even_stage_budgets(problem)
        choices = {}
        for stage in problem.workflow.stage_names:
            groups = groups_of(problem, stage, budgets[stage])
            options = {(o.config.batch_size, o.config.gpu_share): o for o in _options(problem, stage)}
            choices[stage] = summarize(groups, options)
        return choices, PlanStats(proven_optimal=False)

    return plan


def _nexus_summary(groups, options) -> StageOption:
    # a request waits at most one duty cycle, then runs one
    duty = max(options[(g.batch_size, g.gpu_share)].exec_ms for g in groups)
    return _summary(groups, options)._replace(wait_ms=duty, latency_ms=2 * duty)


def _llama_summary(groups, options) -> StageOption:
    # requests on time take the cheap group: its latency is the plan's
    return _summary(groups, options)._replace(latency_ms=options[(groups[0].batch_size, groups[0].gpu_share)].latency_ms)


# --- platform defaults ---------------------------------------------------------------
def _whole_gpu(problem: Problem, stage: str) -> StageOption:
    options = [o for o in _options(problem, stage) if o.config.batch_size == 1] or _options(problem, stage)
    top = _max_share(options)
    return min((o for o in options if o.config.gpu_share == top), key=lambda o: o.exec_ms)


def kpa_replicas_for_concurrency(concurrency: float) -> int:
    """Knative's rule: observed concurrency over the per-instance target."""
    return max(1, math.ceil(concurrency / KPA_TARGET_CONCURRENCY - 1e-9))


def kpa_replicas(stage_rate_rps: float, exec_ms: float) -> int:
    """The same at a steady rate: concurrency by Little's law."""
    return kpa_replicas_for_concurrency(stage_rate_rps * exec_ms / 1000.0)


def openfaas_replicas(stage_rate_rps: float, exec_ms: float) -> int:
    target_rps = OPENFAAS_TARGET_FRACTION * 1000.0 / exec_ms
    return max(1, math.ceil(stage_rate_rps / target_rps - 1e-9))


def _platform(replicas):
    def plan(problem: Problem, limits: SearchLimits):
        choices = {}
        for stage in problem.workflow.stage_names:
            o = _whole_gpu(problem, stage)
            n = replicas(_stage_rate(problem, stage), o.exec_ms)
            choices[stage] = StageOption(Config(1, o.config.gpu_share), o.exec_ms, n, 0.0, o.exec_ms,
                                         n * o.config.gpu_share)
        return choices, PlanStats(proven_optimal=False)

    return plan


POLICIES = {
    "infless": _infless,
    "fast-gshare": _from_groups(fast_gshare_groups, _summary),
    "nexus": _from_groups(nexus_groups, _nexus_summary),
    "orion": _orion,
    "llama": _from_groups(llama_groups, _llama_summary),
    "kpa": _platform(kpa_replicas),
    "openfaas": _platform(openfaas_replicas),
}


#: Baselines that run several instance groups per stage (see deployment_for).
GROUPS = {
    "fast-gshare": fast_gshare_groups,
    "nexus": nexus_groups,
    "llama": llama_groups,
}
