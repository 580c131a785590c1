"""``plan_workflow``: the one call that turns (workflow, profiles, rate) into a Plan."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Optional

from ..model import DEFAULT_UTILISATION, Config, Plan, ProfileSet, Workflow
from ..model.config import DEFAULT_QUEUEING_MODEL
from .limits import NO_LIMITS, SearchLimits
from .registry import get_policy
from .problem import build_problem


def plan_workflow(
    workflow: Workflow,
    profiles: ProfileSet,
    rate_rps: float,
    policy: str = "esg",
    utilisation: float = DEFAULT_UTILISATION,
    limits: SearchLimits = NO_LIMITS,
    clock_s: Optional[Callable[[], float]] = None,
    budget_ms: Optional[float] = None,
    restrict: Optional[Mapping[str, Config]] = None,
    arrival_cv2: Optional[float] = None,
    queueing_model: str = DEFAULT_QUEUEING_MODEL,
) -> Plan:
    """Plan one workflow at one request rate (SPEC §3).

    When no plan meets the budget (the SLO unless ``budget_ms`` is given),
    the result is the minimum-latency plan with ``feasible: false``.
    ``clock_s`` (seconds), when given, fills ``stats.elapsed_ms``.
    ``arrival_cv2`` turns on the queueing-aware latency (``model/config.py``),
    priced with ``queueing_model``.
    """
    started_s = clock_s() if clock_s is not None else None
    solve = get_policy(policy)
    problem = build_problem(workflow, profiles, rate_rps, utilisation, budget_ms=budget_ms, restrict=restrict,
                            arrival_cv2=arrival_cv2, queueing_model=queueing_model)
    choices, stats = solve(problem, limits)
    if choices is None:
        choices = problem.choices(problem.fastest())
    plan = Plan.build(workflow, policy, problem.rate_rps, choices, stats, slo_ms=problem.budget_ms)
    if started_s is not None:
        plan = plan.with_stats(replace(plan.stats, elapsed_ms=(clock_s() - started_s) * 1000.0))
    return plan


#: When no plan fits the target budget, live policies (the simulator's and the
#: scaler's) plan against these multiples of the SLO in turn: miss the SLO by
#: as little as the load allows, rather than deploying the fastest (dearest)
#: plan, which can ask for more GPUs than exist.
DEGRADED_BUDGET_FACTORS = (1.0, 1.5, 2.0, 4.0)


def plan_with_fallback(
    workflow: Workflow,
    profiles: ProfileSet,
    rate_rps: float,
    policy: str,
    first_factor: float,
    utilisation: float = DEFAULT_UTILISATION,
    arrival_cv2: Optional[float] = None,
    shares=None,
    utilisations: tuple[float, ...] = (),
    queue_quantile: Optional[float] = None,
    no_wait: bool = False,
    queueing_model: str = DEFAULT_QUEUEING_MODEL,
    shares_below=None,
):
    """Choices against ``SLO × first_factor``, else the first of
    :data:`DEGRADED_BUDGET_FACTORS` that fits, else the fastest plan at the
    loosest budget. Returns (problem, choices, stats, fits): ``fits`` when
    the choices meet ``SLO × first_factor`` itself; the problem's
    ``budget_ms`` is the budget the choices were made for."""
    solve = get_policy(policy)
    for factor in (first_factor,) + DEGRADED_BUDGET_FACTORS:
        problem = build_problem(workflow, profiles, rate_rps, utilisation, budget_ms=workflow.slo_ms * factor,
                                shares=shares, arrival_cv2=arrival_cv2,
                                utilisations=utilisations, queue_quantile=queue_quantile, no_wait=no_wait,
                                queueing_model=queueing_model, shares_below=shares_below)
        choices, stats = solve(problem, NO_LIMITS)
        if choices is not None:
            return problem, choices, stats, factor == first_factor
    return problem, problem.choices(problem.fastest()), stats, False
