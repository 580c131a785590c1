"""Why a plan did not pick a cheaper configuration (``esg plan --explain``).

For each stage, every configuration cheaper than the chosen one gets one
reason:

- ``dominated``: another configuration of the same stage is no slower and no
  dearer; the search never considers it.
- ``latency``: the latency blade. Even with every other stage at its fastest,
  the plan would exceed the budget.
- ``cost``: the cost blade. It fits only if other stages run faster, and the
  cheapest plan the policy finds with it costs at least as much.
- ``split``: (heuristic policies on DAGs) the policy's budget split ruled it
  out although a cheaper plan with it exists; reported, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..model import (
    LATENCY_TOLERANCE_MS,
    ModelError,
    Plan,
    ProfileSet,
    StageOption,
    Workflow,
    path_latency_ms,
)
from ..model.config import DEFAULT_QUEUEING_MODEL
from .errors import PlannerError
from .planning import plan_workflow
from .problem import build_problem

Reason = Literal["dominated", "latency", "cost", "split"]


@dataclass(frozen=True)
class Rejection:
    stage: str
    option: StageOption
    reason: Reason
    detail: str


def _dominator(option: StageOption, others: tuple[StageOption, ...]) -> StageOption | None:
    for other in others:
        if other.config == option.config:
            continue
        if other.latency_ms <= option.latency_ms and other.cost_pct <= option.cost_pct and (
            other.latency_ms < option.latency_ms or other.cost_pct < option.cost_pct
        ):
            return other
    return None


def explain_plan(
    workflow: Workflow, profiles: ProfileSet, plan: Plan, utilisation: float, arrival_cv2: float | None = None,
    queueing_model: str = DEFAULT_QUEUEING_MODEL,
) -> dict[str, list[Rejection]]:
    """The cheaper configurations of each stage and what rejected them."""
    problem = build_problem(workflow, profiles, plan.rate_rps, utilisation, budget_ms=plan.slo_ms,
                            arrival_cv2=arrival_cv2, queueing_model=queueing_model)
    fastest = {s: m.min_latency_ms for s, m in problem.menus.items()}
    out: dict[str, list[Rejection]] = {}
    for stage, chosen in plan.stages.items():
        every_option = tuple(problem.arrays[stage].options())
        chosen_cost_pct = round(chosen.cost * 100)
        cheaper = sorted(
            (o for o in every_option if o.cost_pct < chosen_cost_pct),
            key=lambda o: (-o.cost_pct, o.latency_ms),
        )
        rejections = []
        for option in cheaper:
            dominator = _dominator(option, every_option)
            if dominator is not None:
                c = dominator.config
                rejections.append(
                    Rejection(stage, option, "dominated", f"b={c.batch_size} g={c.gpu_share}% is no slower and no dearer")
                )
                continue
            bound = path_latency_ms(workflow, {**fastest, stage: option.latency_ms})
            if bound > plan.slo_ms + LATENCY_TOLERANCE_MS:
                rejections.append(
                    Rejection(
                        stage,
                        option,
                        "latency",
                        f"even with every other stage at its fastest the plan takes {bound:.1f} ms > {plan.slo_ms:.1f} ms",
                    )
                )
                continue
            try:
                alternative = plan_workflow(
                    workflow,
                    profiles,
                    plan.rate_rps,
                    policy=plan.policy,
                    utilisation=utilisation,
                    budget_ms=plan.slo_ms,
                    restrict={stage: option.config},
                    arrival_cv2=arrival_cv2,
                )
            except (ModelError, PlannerError) as err:  # pragma: no cover - restrict of a known option
                rejections.append(Rejection(stage, option, "split", str(err)))
                continue
            if not alternative.feasible:
                reason: Reason = "split"
                detail = "the policy's budget split leaves it too little time"
            elif alternative.cost_pct >= plan.cost_pct:
                reason = "cost"
                detail = f"other stages must speed up; the best plan with it costs {alternative.cost:.2f} >= {plan.cost:.2f}"
            else:
                reason = "split"
                detail = f"the policy's budget split ruled it out; a plan with it costs {alternative.cost:.2f}"
            rejections.append(Rejection(stage, option, reason, detail))
        out[stage] = rejections
    return out
