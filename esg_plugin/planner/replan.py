"""Replanning with the budget actually left (ESG's pipeline-consciousness).

When a stage finishes later or earlier than planned, the stages after it
can be planned again with the milliseconds really left, so that one slow
stage is made up for downstream and one fast stage lets the rest run
cheaper. The runtime (per request) and the scaler (per interval) both call
:func:`replan_downstream`.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from ..limits import is_number
from ..model import DEFAULT_UTILISATION, Plan, ProfileSet, Workflow
from .errors import PlannerError
from .limits import NO_LIMITS, SearchLimits
from .planning import plan_workflow


def replan_downstream(
    workflow: Workflow,
    profiles: ProfileSet,
    rate_rps: float,
    after_stage: str,
    remaining_ms: float,
    policy: str = "esg",
    utilisation: float = DEFAULT_UTILISATION,
    limits: SearchLimits = NO_LIMITS,
    clock_s: Optional[Callable[[], float]] = None,
) -> Plan:
    """Plan the stages strictly downstream of ``after_stage``.

    ``remaining_ms`` is the time left of the request's SLO at the moment
    ``after_stage``'s output is ready; the hop to the next stage comes out
    of it. Stages that are not downstream (a parallel sibling feeding a
    join) are taken as on time and left out of the plan. The returned plan's
    ``slo_ms`` is the budget the downstream stages were planned against.
    """
    if not is_number(remaining_ms):
        raise PlannerError(f"remaining_ms must be a number, got {remaining_ms!r}")
    downstream = workflow.downstream_of(after_stage)
    return plan_workflow(
        downstream,
        profiles,
        rate_rps,
        policy=policy,
        utilisation=utilisation,
        limits=limits,
        clock_s=clock_s,
        budget_ms=remaining_ms - workflow.hop_ms,
    )
