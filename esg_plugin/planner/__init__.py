"""Pure planners: (workflow, profiles, rate) -> Plan. No I/O, no clock of their own."""

from .astar import ChainResult, solve_chain
from .errors import PlannerError
from .esg import solve_esg
from .explain import Rejection, explain_plan
from .limits import NO_LIMITS, SearchLimits
from .oracle import solve_optimal
from .planning import DEGRADED_BUDGET_FACTORS, plan_with_fallback, plan_workflow
from .registry import POLICIES, deployment_for, get_policy
from .problem import CheapestPlanCosts, Problem, StageMenu, build_problem
from .replan import replan_downstream

__all__ = [
    "DEGRADED_BUDGET_FACTORS",
    "plan_with_fallback",
    "NO_LIMITS",
    "POLICIES",
    "ChainResult",
    "CheapestPlanCosts",
    "PlannerError",
    "Problem",
    "Rejection",
    "SearchLimits",
    "StageMenu",
    "build_problem",
    "deployment_for",
    "explain_plan",
    "get_policy",
    "plan_workflow",
    "replan_downstream",
    "solve_chain",
    "solve_esg",
    "solve_optimal",
]
