"""An independent exact planner for tiny cases: enumerate every plan.

Shares nothing with the planners under test but the model's equations.
"""

from __future__ import annotations

import itertools

from esg_plugin.model import LATENCY_TOLERANCE_MS, ProfileSet, Workflow, all_options, path_latency_ms


def brute_force(workflow: Workflow, profiles: ProfileSet, rate_rps: float):
    """(cost_pct, latency_ms) of the best feasible plan, or None."""
    names = workflow.stage_names
    options = [all_options(profiles[workflow.stage(s).function], rate_rps * workflow.stage(s).fanout) for s in names]
    best = None
    for combo in itertools.product(*options):
        latency = path_latency_ms(workflow, {s: o.latency_ms for s, o in zip(names, combo)})
        if latency > workflow.slo_ms + LATENCY_TOLERANCE_MS:
            continue
        key = (sum(o.cost_pct for o in combo), latency)
        if best is None or key < best:
            best = key
    return best


def plan_count(workflow: Workflow, profiles: ProfileSet, rate_rps: float) -> int:
    total = 1
    for s in workflow.stage_names:
        total *= len(all_options(profiles[workflow.stage(s).function], rate_rps))
    return total
