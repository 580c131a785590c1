"""Scheduling policies as the simulator runs them. Every policy observes the
simulation (never the true rates) through :class:`View` and acts every
``interval_s``; the engine re-applies the last desired state at every tick,
so a placement that failed is tried again.

- ``esg`` and ``optimal`` are the control law of ``esg_plugin.control`` —
  the same code as ``esg scaler`` and ``esg up`` — behind
  :class:`ControlledPolicy`, which only translates the view into the law's
  observation (arrival rates over 30 s and 2 s, their variability, the
  backlog, answers by class, execution times) every second; they dispatch
  deadline-aware: a batch leaves early when waiting longer would make its
  oldest request miss its deadline given the plan's latency downstream.

The peers keep their own reaction here (``docs/EVALUATION.md``):

- Planned peers (``infless``, ``fast-gshare``, ``nexus``, ``orion``,
  ``llama``) look every 5 s at the larger of the rates observed over the
  last 30 s and the last interval, and re-plan a workflow with the planner
  of the same name (``esg_plugin.planner``) for 10% above it (more for
  bursty arrivals: 10% × cv of the observed gaps) — at once when the load
  exceeds what the current plan covers, but down only after it has stayed
  under 70% of that for 30 s — then deploy its instance groups. When no
  plan fits, they try looser budgets (1, 1.5, 2 and 4 times the SLO) before
  the fastest plan.
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

from ..control import ControlLaw, ControlSettings, DelayWindow, Observation, WorkflowObservation
from ..model import DEFAULT_UTILISATION, InstanceGroup, ProfileSet, Workflow
from ..planner import build_problem, deployment_for, get_policy, plan_with_fallback
from ..planner.baselines import _whole_gpu, even_stage_budgets, kpa_replicas_for_concurrency, openfaas_replicas
from .engine import Deployment, PlanChange, Policy, View

CONTROL_INTERVAL_S = 1.0
CONTROL_SHORT_WINDOW_S = 2.0
RATE_HEADROOM = 0.1
"""Planned peers: plan for this much more than the observed rate, times the
square root of the observed squared coefficient of variation of
inter-arrival gaps (at least 1)."""
SCALE_DOWN_BELOW = 0.7
SCALE_DOWN_DELAY_S = 30.0
"""Planned peers re-plan down only after the load has stayed below
SCALE_DOWN_BELOW of the planned rate for this long."""
MIN_PLANNING_RATE_RPS = 1.0
"""Before any arrival is observed, planned peers plan for this rate."""

POLICY_NAMES = ("esg", "optimal", "infless", "fast-gshare", "nexus", "orion", "llama", "kpa", "openfaas")


def observation_from_view(view: View, short_window_s: float, long_window_s: Optional[float] = None,
                          interval_s: Optional[float] = None) -> Observation:
    """The control law's observation, from what the simulator lets a policy
    see; with ``interval_s`` (the policy's tick), the count since the last
    tick too."""
    workflows = {}
    for name, long_rps in view.observed_rps.items():
        ok, missed = view.answers.get(name, (0, 0))
        newest = view.newest_rps.get(name) if interval_s else None
        workflows[name] = WorkflowObservation(
            rate_long_rps=long_rps, rate_short_rps=view.recent_rps.get(name, 0.0),
            short_window_s=min(short_window_s, view.now_s) if view.now_s > 0 else short_window_s,
            arrival_cv2=view.arrival_cv2.get(name, 1.0), backlog=view.backlog.get(name, 0.0), ok=ok, late=missed,
            stage_wait={stage: v for (wf, stage), v in view.stage_wait.items() if wf == name},
            long_window_s=min(long_window_s, view.now_s) if long_window_s and view.now_s > 0 else None,
            newest_rps=newest, newest_window_s=None if newest is None else min(interval_s, view.now_s))
    return Observation(view.now_s, workflows, dict(view.exec_ratio), starting=dict(view.starting),
                       unplaced=dict(view.unplaced), gpu_free_pct=view.gpu_free_pct, serving=dict(view.serving))


class ControlledPolicy(Policy):
    """``esg`` and ``optimal``: the control law, observed from the simulation."""

    deadline_dispatch = True
    interval_s = CONTROL_INTERVAL_S
    short_window_s = CONTROL_SHORT_WINDOW_S

    def __init__(self, name: str, workflows: list[Workflow], profiles: ProfileSet,
                 settings: Optional[ControlSettings] = None):
        self.name = name
        self.law = ControlLaw(workflows, profiles, settings or ControlSettings(), policy=name)
        self.newest_first = self.law.settings.newest_first
        self.state = self.law.new_state()
        self.downstream: dict[tuple[str, str], float] = {}
        self.downstream_exec: dict[tuple[str, str], float] = {}
        self.changes: list[PlanChange] = []
        self.reads_platform = False
        """After a restart, the law is told what runs (``View.deployed``), as the scaler tells it."""

    def restart(self, view: View) -> None:
        learned = self.law.learned(self.state, view.now_s)  # kept across the restart, as the scaler keeps it
        self.state = self.law.new_state()
        self.law.resume(self.state, learned, view.now_s)
        self.reads_platform = True

    def decide(self, view: View) -> Optional[Deployment]:
        decision = self.law.step(observation_from_view(view, self.short_window_s, self.window_s, self.interval_s),
                                 self.state, view.now_s, view.deployed if self.reads_platform else None)
        self.downstream = decision.downstream_ms
        self.downstream_exec = decision.downstream_exec_ms
        for name in decision.changed:
            plan = decision.plans.get(name)
            self.changes.append(PlanChange(view.now_s, name, decision.rates_rps.get(name, 0.0),
                                           decision.estimates_rps.get(name), plan.cost if plan else 0.0,
                                           decision.reasons.get(name, "")))
        return decision.desired or None

    def decisions(self) -> list[PlanChange]:
        return self.changes

    def downstream_ms(self, workflow: str, stage: str) -> float:
        return self.downstream.get((workflow, stage), 0.0)

    def downstream_exec_ms(self, workflow: str, stage: str) -> float:
        return self.downstream_exec.get((workflow, stage), 0.0)


class PlannedPolicy(Policy):
    """A planned peer: re-plan every interval with a planner from ``esg_plugin.planner``."""

    def __init__(self, name: str, workflows: list[Workflow], profiles: ProfileSet, interval_s: float = 5.0,
                 utilisation: float = DEFAULT_UTILISATION):
        self.name = name
        get_policy(name)  # an unknown policy fails here, not at the first tick
        self.workflows = workflows
        self.profiles = profiles
        self.interval_s = interval_s
        self.lanes = 2 if name == "llama" else 1
        self.utilisation = utilisation
        self.remaining_budget: dict[tuple[str, str], float] = {}
        self.planned_rps: dict[str, float] = {}
        self.low: dict[str, DelayWindow] = {wf.name: DelayWindow(SCALE_DOWN_DELAY_S) for wf in workflows}

    def restart(self, view: View) -> None:
        self.planned_rps = {}
        self.low = {wf.name: DelayWindow(SCALE_DOWN_DELAY_S) for wf in self.workflows}

    def _target_rps(self, wf: str, observed_rps: float, cv2: float, now_s: float) -> Optional[float]:
        """The rate to plan for now, or None to keep the current plan:
        up at once when the load passes what the plan covers, down only
        after it has stayed well below for a while."""
        planned = self.planned_rps.get(wf)
        wanted = max(observed_rps, MIN_PLANNING_RATE_RPS) * (1 + RATE_HEADROOM * math.sqrt(max(cv2, 1.0)))
        if planned is None or observed_rps > planned:
            self.low[wf].reset()
            return wanted
        return wanted if self.low[wf].update(observed_rps < SCALE_DOWN_BELOW * planned, now_s) else None

    def decide(self, view: View) -> Optional[Deployment]:
        deployment: Deployment = {}
        for wf in self.workflows:
            observed = max(view.observed_rps.get(wf.name, 0.0), view.recent_rps.get(wf.name, 0.0))
            rate = self._target_rps(wf.name, observed, view.arrival_cv2.get(wf.name, 1.0), view.now_s)
            if rate is None:
                continue
            self.planned_rps[wf.name] = rate
            problem, choices, _, _ = plan_with_fallback(wf, self.profiles, rate, self.name, 1.0, self.utilisation)
            for stage, groups in deployment_for(self.name, problem, choices).items():
                deployment[(wf.name, stage)] = groups
            if self.lanes > 1:
                self._remember_budgets(wf, problem)
        return deployment or None

    def _remember_budgets(self, wf: Workflow, problem) -> None:
        """(llama) the budget of the stages from each one to the exit."""
        budgets = even_stage_budgets(problem)
        count: dict[str, int] = {}
        for s in reversed(wf.topological_order()):
            count[s] = 1 + max((count[t] for t in wf.graph.successors(s)), default=0)
            self.remaining_budget[(wf.name, s)] = count[s] * budgets[s] + wf.hop_ms * (count[s] - 1)

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

    def restart(self, view: View) -> None:
        self.current = {key: group.count for key, group in view.deployed.items()}  # the replicas it reads back

    def _deployment(self, desired: dict[tuple[str, str], int]) -> Deployment:
        self.current = desired
        return {
            key: [self._group(key, n)] for key, n in desired.items()
        }

    def _group(self, key, n):
        o = self.option[key]
        return InstanceGroup(o.config.batch_size, o.config.gpu_share, n, 0.0)


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

    def restart(self, view: View) -> None:
        super().restart(view)
        self.samples, self.panic_until = {}, {}

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
        self.lower: dict[tuple[str, str], DelayWindow] = {}
        self.fanout = {(wf.name, s): wf.stage(s).fanout for wf in workflows for s in wf.stage_names}

    def restart(self, view: View) -> None:
        super().restart(view)
        self.lower = {}

    def decide(self, view: View) -> Optional[Deployment]:
        desired = {}
        for wf in self.workflows:
            rate = view.observed_rps.get(wf.name, 0.0)
            for s in wf.stage_names:
                key = (wf.name, s)
                want = openfaas_replicas(rate * self.fanout[key], self.option[key].exec_ms)
                current = self.current.get(key, 1)
                lower = self.lower.setdefault(key, DelayWindow(self.scale_down_delay_s))
                desired[key] = want if lower.update(want < current, view.now_s) or want >= current else current
        return self._deployment(desired)


def make_policy(name: str, workflows: list[Workflow], profiles: ProfileSet,
                settings: Optional[ControlSettings] = None, ablation: Optional[str] = None,
                gpus: Optional[int] = None) -> Policy:
    """A policy by name. ``settings`` (``esg``/``optimal`` only) default to
    :class:`ControlSettings` with the cluster's ``gpus`` as capacity;
    ``ablation`` switches one of the law's mechanisms off."""
    if name == "kpa":
        return KpaPolicy(workflows, profiles)
    if name == "openfaas":
        return OpenFaasPolicy(workflows, profiles)
    if name in ("esg", "optimal"):
        settings = settings or ControlSettings(capacity_gpus=float(gpus) if gpus else None)
        return ControlledPolicy(name, workflows, profiles, settings.without(ablation))
    return PlannedPolicy(name, workflows, profiles)
