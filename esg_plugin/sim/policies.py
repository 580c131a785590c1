"""Scheduling policies as the simulator runs them: a planner plus its
run-time reaction. Every policy observes arrival rates in the simulation
(never the true rates) and acts every ``interval_s``.

- Planned policies (``esg``, ``optimal``, ``infless``, ``fast-gshare``,
  ``nexus``, ``orion``, ``llama``) look every 5 s at the larger of the rates
  observed over the last 30 s and the last interval, and re-plan a workflow
  with the planner of the same name (``esg_plugin.planner``) for 10% above
  it (more for bursty arrivals: 10% × cv of the observed gaps) — at once when the load exceeds what the current plan covers, but down
  only after it has stayed under 70% of that for 30 s — then deploy its
  instance groups.
- When no plan fits, a planned policy tries looser budgets (1, 1.5, 2 and 4
  times the SLO) before the fastest plan, so that overload degrades latency
  instead of asking for more GPUs than exist.
- ``esg`` and ``optimal`` plan queueing-aware (``model/config.py``: the
  expected wait for a free instance, from the observed variability of
  arrivals) against ``SLO × (1 − margin)``, margin 0.35 by default — the
  model gives mean latencies, the objective is that 99% of requests make
  their SLO — and dispatch deadline-aware: a batch leaves
  early when waiting longer would make its oldest request miss its deadline
  given the plan's latency downstream — each request's remaining budget is
  re-checked at every stage.
- ``llama`` routes each request, at each stage, to the fast lane when its
  slack is less than the budget of the stages it still has to pass.
- ``kpa`` (Knative): every 2 s it samples each stage's concurrency (queued +
  in service); desired = ceil(average / 0.7) over a 60 s stable window, or
  over a 6 s panic window when that asks for at least twice the current
  instances (panic mode, which holds for 60 s and never scales down); at
  most halving per tick; at least one instance (min-scale 1, as GPU
  functions are deployed to avoid cold starts). A whole GPU per instance,
  no batching.
- ``openfaas``: every 5 s, desired = ceil(observed rps / target), the target
  being 80% of one whole-GPU instance's throughput; up at once, down only
  after 60 s of lower demand; at least one instance; no batching.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Optional

from ..model import DEFAULT_UTILISATION, InstanceGroup, ProfileSet, Workflow
from ..planner import build_problem, deployment_for, get_policy, plan_with_fallback
from ..planner.baselines import _whole_gpu, even_stage_budgets, kpa_replicas_for_concurrency, openfaas_replicas
from .engine import Deployment, Policy, View

DEFAULT_ESG_MARGIN = 0.35
RATE_HEADROOM = 0.1
"""Plan for this much more than the observed rate, times the square root of
the observed squared coefficient of variation of inter-arrival gaps (at
least 1): 10% for Poisson arrivals, 20% for gaps with cv 2."""
SCALE_DOWN_BELOW = 0.7
SCALE_DOWN_DELAY_S = 30.0
"""Re-plan down only after the load has stayed below SCALE_DOWN_BELOW of the
planned rate for this long (fewer reconfigurations, fewer cold starts)."""
DEGRADED_BUDGET_FACTORS = (1.0, 1.5, 2.0, 4.0)

"""When no plan fits, plan against these multiples of the SLO in turn: miss
the SLO by as little as the load allows, rather than deploying the fastest
(dearest) plan, which can take more GPUs than the cluster has."""
MIN_PLANNING_RATE_RPS = 1.0
"""Before any arrival is observed, policies plan for this rate."""

POLICY_NAMES = ("esg", "optimal", "infless", "fast-gshare", "nexus", "orion", "llama", "kpa", "openfaas")


class PlannedPolicy(Policy):
    """Re-plan every interval with a planner from ``esg_plugin.planner``."""

    def __init__(self, name: str, workflows: list[Workflow], profiles: ProfileSet, margin: float = 0.0,
                 deadline_dispatch: bool = False, interval_s: float = 5.0, queueing_aware: bool = False,
                 utilisation: float = DEFAULT_UTILISATION):
        self.name = name
        get_policy(name)  # an unknown policy fails here, not at the first tick
        self.workflows = workflows
        self.profiles = profiles
        self.margin = margin
        self.deadline_dispatch = deadline_dispatch
        self.interval_s = interval_s
        self.lanes = 2 if name == "llama" else 1
        self.queueing_aware = queueing_aware
        self.utilisation = utilisation
        self.downstream: dict[tuple[str, str], float] = {}
        self.remaining_budget: dict[tuple[str, str], float] = {}
        self.planned_rps: dict[str, float] = {}
        self.low_since: dict[str, float] = {}

    def _target_rps(self, wf: str, observed_rps: float, cv2: float, now_s: float) -> Optional[float]:
        """The rate to plan for now, or None to keep the current plan:
        up at once when the load passes what the plan covers, down only
        after it has stayed well below for a while. The headroom above the
        observed rate grows with the burstiness of arrivals (the spread of
        a rate estimate grows with the coefficient of variation of gaps)."""
        planned = self.planned_rps.get(wf)
        wanted = max(observed_rps, MIN_PLANNING_RATE_RPS) * (1 + RATE_HEADROOM * math.sqrt(max(cv2, 1.0)))
        if planned is None or observed_rps > planned:
            self.low_since.pop(wf, None)
            return wanted
        if observed_rps < SCALE_DOWN_BELOW * planned:
            since = self.low_since.setdefault(wf, now_s)
            if now_s - since >= SCALE_DOWN_DELAY_S:
                self.low_since.pop(wf, None)
                return wanted
        else:
            self.low_since.pop(wf, None)
        return None

    def decide(self, view: View) -> Optional[Deployment]:
        deployment: Deployment = {}
        for wf in self.workflows:
            observed = max(view.observed_rps.get(wf.name, 0.0), view.recent_rps.get(wf.name, 0.0))
            rate = self._target_rps(wf.name, observed, view.arrival_cv2.get(wf.name, 1.0), view.now_s)
            if rate is None:
                continue
            self.planned_rps[wf.name] = rate
            cv2 = view.arrival_cv2.get(wf.name, 1.0) if self.queueing_aware else None
            problem, choices, _, _ = plan_with_fallback(wf, self.profiles, rate, self.name, 1.0 - self.margin,
                                                        self.utilisation, cv2)
            for stage, groups in deployment_for(self.name, problem, choices).items():
                deployment[(wf.name, stage)] = groups
            latency = {s: o.latency_ms for s, o in choices.items()}
            self._remember(wf, latency, problem)
        return deployment or None

    def _remember(self, wf: Workflow, latency_ms: dict[str, float], problem) -> None:
        """Planned latency after each stage, and (llama) the budget of the
        stages from each one to the exit."""
        after: dict[str, float] = {}
        for s in reversed(wf.topological_order()):
            after[s] = max((wf.hop_ms + latency_ms[t] + after[t] for t in wf.graph.successors(s)), default=0.0)
            self.downstream[(wf.name, s)] = after[s]
        if self.lanes > 1:
            budgets = even_stage_budgets(problem)
            count: dict[str, int] = {}
            for s in reversed(wf.topological_order()):
                count[s] = 1 + max((count[t] for t in wf.graph.successors(s)), default=0)
                self.remaining_budget[(wf.name, s)] = count[s] * budgets[s] + wf.hop_ms * (count[s] - 1)

    def downstream_ms(self, workflow: str, stage: str) -> float:
        return self.downstream.get((workflow, stage), 0.0)

    def route(self, workflow: str, stage: str, slack_ms: float) -> int:
        return 1 if slack_ms < self.remaining_budget.get((workflow, stage), 0.0) else 0


class _WholeGpuAutoscaler(Policy):
    """Shared by kpa and openfaas: whole-GPU, batch-1 instances per stage."""

    def __init__(self, workflows: list[Workflow], profiles: ProfileSet):
        self.workflows = workflows
        self.profiles = profiles
        self.current: dict[tuple[str, str], int] = {}
        self.option = {}
        for wf in workflows:
            problem = build_problem(wf, profiles, 1.0)
            for s in wf.stage_names:
                self.option[(wf.name, s)] = _whole_gpu(problem, s)

    def _deployment(self, desired: dict[tuple[str, str], int]) -> Deployment:
        self.current = desired
        return {
            key: [self._group(key, n)] for key, n in desired.items()
        }

    def _group(self, key, n):
        o = self.option[key]
        return InstanceGroup(1, o.config.gpu_share, n, 0.0)


class KpaPolicy(_WholeGpuAutoscaler):
    name = "kpa"
    interval_s = 2.0
    stable_window_s = 60.0
    panic_window_s = 6.0
    panic_threshold = 2.0
    max_scale_down_rate = 2.0

    def __init__(self, workflows, profiles):
        super().__init__(workflows, profiles)
        self.samples: dict[tuple[str, str], deque] = {}
        self.panic_until: dict[tuple[str, str], float] = {}

    def decide(self, view: View) -> Optional[Deployment]:
        desired = {}
        for key, concurrency in view.concurrency.items():
            history = self.samples.setdefault(key, deque())
            history.append((view.now_s, concurrency))
            while history and history[0][0] < view.now_s - self.stable_window_s:
                history.popleft()
            stable = sum(c for _, c in history) / len(history)
            recent = [c for t, c in history if t >= view.now_s - self.panic_window_s]
            panic = sum(recent) / len(recent)
            current = self.current.get(key, 1)
            want_stable = kpa_replicas_for_concurrency(stable)
            want_panic = kpa_replicas_for_concurrency(panic)
            if want_panic >= self.panic_threshold * current:
                self.panic_until[key] = view.now_s + self.stable_window_s
            if view.now_s < self.panic_until.get(key, -1.0):
                n = max(current, want_panic)
            else:
                n = max(want_stable, math.ceil(current / self.max_scale_down_rate))
            desired[key] = n
        return self._deployment(desired)


class OpenFaasPolicy(_WholeGpuAutoscaler):
    name = "openfaas"
    interval_s = 5.0
    scale_down_delay_s = 60.0

    def __init__(self, workflows, profiles):
        super().__init__(workflows, profiles)
        self.lower_since: dict[tuple[str, str], float] = {}
        self.fanout = {(wf.name, s): wf.stage(s).fanout for wf in workflows for s in wf.stage_names}

    def decide(self, view: View) -> Optional[Deployment]:
        desired = {}
        for wf in self.workflows:
            rate = view.observed_rps.get(wf.name, 0.0)
            for s in wf.stage_names:
                key = (wf.name, s)
                want = openfaas_replicas(rate * self.fanout[key], self.option[key].exec_ms)
                current = self.current.get(key, 1)
                if want >= current:
                    self.lower_since.pop(key, None)
                    desired[key] = want
                else:
                    since = self.lower_since.setdefault(key, view.now_s)
                    desired[key] = want if view.now_s - since >= self.scale_down_delay_s else current
        return self._deployment(desired)


def make_policy(name: str, workflows: list[Workflow], profiles: ProfileSet,
                esg_margin: float = DEFAULT_ESG_MARGIN) -> Policy:
    if name == "kpa":
        return KpaPolicy(workflows, profiles)
    if name == "openfaas":
        return OpenFaasPolicy(workflows, profiles)
    if name in ("esg", "optimal"):
        return PlannedPolicy(name, workflows, profiles, margin=esg_margin, deadline_dispatch=True,
                             queueing_aware=True)
    return PlannedPolicy(name, workflows, profiles)


