"""The registry of planning policies.

A policy is a pure function ``(Problem, SearchLimits) -> (picks, stats)``:
``picks`` maps each stage to an index into its menu, or is None when the
policy finds no plan within the budget. The baselines of the evaluation
register here too, so the simulator and the scaler run the same code.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..model import PlanStats
from .errors import PlannerError
from .esg import solve_esg
from .limits import SearchLimits
from .oracle import solve_optimal
from .problem import Problem

Policy = Callable[[Problem, SearchLimits], tuple[Optional[dict[str, int]], PlanStats]]


def _optimal(problem: Problem, limits: SearchLimits) -> tuple[Optional[dict[str, int]], PlanStats]:
    result = solve_optimal(problem)
    return result.picks, result.stats


POLICIES: dict[str, Policy] = {
    "esg": solve_esg,
    "optimal": _optimal,
}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise PlannerError(f"unknown policy '{name}'; known policies: {', '.join(sorted(POLICIES))}") from None
