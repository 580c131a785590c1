"""Plans: one configuration per stage, with the JSON of SPEC §4."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from .config import StageOption
from .errors import ModelError
from .workflow import Workflow

#: Latencies are sums of floats taken in different orders by different
#: planners; two plans within this many milliseconds of the SLO agree on
#: feasibility.
LATENCY_TOLERANCE_MS = 1e-9


@dataclass(frozen=True)
class StagePlan:
    """The configuration chosen for one stage, with its model quantities."""

    function: str
    batch_size: int
    gpu_share: int
    replicas: int
    max_wait_ms: float
    exec_ms: float
    latency_ms: float
    cost: float
    queue_ms: float = 0.0
    """Expected queueing wait, when planned queueing-aware (then in the JSON)."""

    @staticmethod
    def from_option(function: str, option: StageOption) -> "StagePlan":
        return StagePlan(
            function=function,
            batch_size=option.config.batch_size,
            gpu_share=option.config.gpu_share,
            replicas=option.replicas,
            max_wait_ms=option.wait_ms,
            exec_ms=option.exec_ms,
            latency_ms=option.latency_ms,
            cost=option.cost,
            queue_ms=option.queue_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "function": self.function,
            "batch_size": self.batch_size,
            "gpu_share": self.gpu_share,
            "replicas": self.replicas,
            "max_wait_ms": round(self.max_wait_ms, 3),
            "exec_ms": round(self.exec_ms, 3),
            "latency_ms": round(self.latency_ms, 3),
            "cost": round(self.cost, 2),
        }
        if self.queue_ms:
            out["queue_ms"] = round(self.queue_ms, 3)
        return out


@dataclass(frozen=True)
class PlanStats:
    """How the planner got there. ``elapsed_ms`` is filled in only when the
    caller handed the planner a clock."""

    elapsed_ms: float = 0.0
    expanded: int = 0
    generated: int = 0
    pruned_by_latency: int = 0
    pruned_by_cost: int = 0
    pruned_by_dominance: int = 0
    segments: int = 1
    proven_optimal: bool = True
    """False when a search budget ran out (anytime result) or the policy is a heuristic."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["elapsed_ms"] = round(self.elapsed_ms, 3)
        return out


def path_latency_ms(workflow: Workflow, stage_latency_ms: Mapping[str, float]) -> float:
    """Longest entry-to-exit path: stage latencies plus ``hop_ms`` per edge."""
    finish: dict[str, float] = {}
    for name in workflow.topological_order():
        start = max((finish[p] + workflow.hop_ms for p in workflow.graph.predecessors(name)), default=0.0)
        finish[name] = start + stage_latency_ms[name]
    return max(finish[name] for name in workflow.exits)


def choices_latency_ms(workflow: Workflow, choices: Mapping[str, StageOption]) -> float:
    """The end-to-end latency of one option per stage: :func:`path_latency_ms` of their latencies."""
    return path_latency_ms(workflow, {s: choices[s].latency_ms for s in workflow.stage_names})


@dataclass(frozen=True)
class Plan:
    """One configuration per stage of a workflow, at one request rate."""

    workflow: str
    policy: str
    slo_ms: float
    rate_rps: float
    feasible: bool
    latency_ms: float
    cost: float
    stages: Mapping[str, StagePlan]
    stats: PlanStats = field(default_factory=PlanStats)

    @staticmethod
    def build(
        workflow: Workflow,
        policy: str,
        rate_rps: float,
        choices: Mapping[str, StageOption],
        stats: PlanStats = PlanStats(),
        slo_ms: float | None = None,
    ) -> "Plan":
        """Assemble a plan from one evaluated option per stage.

        ``slo_ms`` defaults to the workflow's; the replanner passes the budget
        that is actually left.
        """
        missing = [s for s in workflow.stage_names if s not in choices]
        if missing:
            raise ModelError(f"plan for workflow '{workflow.name}' has no configuration for: {', '.join(missing)}")
        slo = workflow.slo_ms if slo_ms is None else slo_ms
        latency = choices_latency_ms(workflow, choices)
        cost_pct = sum(choices[s].cost_pct for s in workflow.stage_names)
        return Plan(
            workflow=workflow.name,
            policy=policy,
            slo_ms=slo,
            rate_rps=rate_rps,
            feasible=latency <= slo + LATENCY_TOLERANCE_MS,
            latency_ms=latency,
            cost=cost_pct / 100.0,
            stages={s: StagePlan.from_option(workflow.stage(s).function, choices[s]) for s in workflow.stage_names},
            stats=stats,
        )

    @property
    def cost_pct(self) -> int:
        return round(self.cost * 100)

    def with_stats(self, stats: PlanStats) -> "Plan":
        return replace(self, stats=stats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "policy": self.policy,
            "slo_ms": self.slo_ms,
            "rate_rps": self.rate_rps,
            "feasible": self.feasible,
            "latency_ms": round(self.latency_ms, 3),
            "cost": round(self.cost, 2),
            "stages": {name: sp.to_dict() for name, sp in self.stages.items()},
            "stats": self.stats.to_dict(),
        }
