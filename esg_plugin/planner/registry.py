"""The registry of planning policies.

A policy is a pure function ``(Problem, SearchLimits) -> (choices, stats)``:
``choices`` maps each stage to its chosen, evaluated configuration, or is
None when the policy finds no plan within the budget (the caller then uses
the fastest plan) — or, with ``limits.cost_ceiling_pct``, none within the
budget that holds no more than the ceiling. The baselines of the evaluation
(``planner/baselines.py``) register here too, so ``esg plan``, the
simulator and the scaler run the same code.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..model import InstanceGroup, PlanStats, StageOption, group_of
from . import baselines
from .errors import PlannerError
from .esg import solve_esg
from .limits import SearchLimits
from .oracle import solve_optimal
from .problem import Problem

Choices = Optional[dict[str, StageOption]]
Policy = Callable[[Problem, SearchLimits], tuple[Choices, PlanStats]]


def _esg(problem: Problem, limits: SearchLimits) -> tuple[Choices, PlanStats]:
    picks, stats = solve_esg(problem, limits)
    return (None if picks is None else problem.choices(picks)), stats


def _optimal(problem: Problem, limits: SearchLimits) -> tuple[Choices, PlanStats]:
    result = solve_optimal(problem)
    return (None if result.picks is None else problem.choices(result.picks)), result.stats


def _within_ceiling(policy: Policy) -> Policy:
    """``policy``, answering None for a plan that holds more than
    ``limits.cost_ceiling_pct`` (ESG's search prunes by it itself)."""
    def plan(problem: Problem, limits: SearchLimits) -> tuple[Choices, PlanStats]:
        choices, stats = policy(problem, limits)
        ceiling = limits.cost_ceiling_pct
        if choices is not None and ceiling is not None and sum(o.cost_pct for o in choices.values()) > ceiling:
            return None, stats
        return choices, stats
    return plan


POLICIES: dict[str, Policy] = {
    "esg": _esg,
    "optimal": _within_ceiling(_optimal),
    **{name: _within_ceiling(policy) for name, policy in baselines.POLICIES.items()},
}


def deployment_for(name: str, problem: Problem, choices: dict[str, StageOption]) -> dict[str, list[InstanceGroup]]:
    """The instance groups that run a policy's choices: one group per stage,
    except for the baselines that run several (a residual instance, a fast
    lane)."""
    special = baselines.GROUPS.get(name)
    if special is not None:
        budgets = baselines.even_stage_budgets(problem)
        return {s: special(problem, s, budgets[s]) for s in problem.workflow.stage_names}
    return {s: [group_of(option)] for s, option in choices.items()}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise PlannerError(f"unknown policy '{name}'; known policies: {', '.join(sorted(POLICIES))}") from None
