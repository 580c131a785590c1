"""``esg plan``: plan one workflow at one request rate."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ..limits import MAX_RATE_RPS, MIN_RATE_RPS, flag
from ..loaders import load_profiles, load_workflow
from ..model import DEFAULT_UTILISATION
from ..model.config import DEFAULT_QUEUEING_MODEL, QUEUEING_MODELS
from ..planner import POLICIES, SearchLimits, explain_plan, plan_workflow
from .table import render_explain, render_plan

DESCRIPTION = """\
Choose batch size, GPU share and replicas for every stage of a workflow so
that the end-to-end latency meets the SLO at the lowest cost (SPEC §3).
Exit 0 when the plan meets the SLO, 3 when no plan does (the minimum-latency
plan is printed, marked infeasible), 2 on bad input."""


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("plan", help="plan one workflow", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workflow", required=True, metavar="W",
                   help="workflow YAML, or a stack.yml with com.esg.* annotations")
    p.add_argument("--name", metavar="NAME", help="which workflow of a stack.yml that describes several")
    p.add_argument("--profiles", required=True, metavar="P", help="profiles JSON (SPEC §1)")
    p.add_argument("--rate", required=True, type=flag(float, MIN_RATE_RPS, MAX_RATE_RPS), metavar="R",
                   help=f"workflow request rate, requests/s, in [{MIN_RATE_RPS:g}, {MAX_RATE_RPS:g}]")
    p.add_argument("--policy", default="esg", metavar="NAME",
                   help=f"planning policy: {', '.join(sorted(POLICIES))} (default: esg)")
    p.add_argument("--utilisation", type=flag(float, 0.01, 1), default=DEFAULT_UTILISATION, metavar="RHO",
                   help=f"target utilisation of each instance, in [0.01, 1] (default: {DEFAULT_UTILISATION})")
    p.add_argument("--queueing-cv2", type=flag(float, 0, 1e4), metavar="CV2",
                   help="queueing-aware latency: add the expected wait for a free instance, for arrivals whose "
                        "inter-arrival times have this squared coefficient of variation (1 = Poisson)")
    p.add_argument("--queueing-model", choices=QUEUEING_MODELS, default=DEFAULT_QUEUEING_MODEL,
                   help="with --queueing-cv2: the wait's model (default allen-cunneen, what the control law plans "
                        "with; renewal: the GI/M/c wait for gamma gaps, truer for bursty arrivals at a light load: "
                        "docs/planner.md)")
    p.add_argument("--max-expansions", type=flag(int, 1, 10**9), metavar="N",
                   help="anytime search: stop each A* after N expansions and keep the best plan so far")
    p.add_argument("--time-limit-ms", type=flag(float, 0, 3.6e6, low_open=True), metavar="MS",
                   help="anytime search: stop each A* after MS milliseconds")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (SPEC §4)")
    p.add_argument("--explain", action="store_true",
                   help="also show, per stage, the cheaper configurations and which blade rejected them")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    workflow = load_workflow(args.workflow, args.name)
    profiles = load_profiles(args.profiles)
    limits = SearchLimits(
        max_expansions=args.max_expansions,
        time_limit_ms=args.time_limit_ms,
        clock_s=time.perf_counter if args.time_limit_ms is not None else None,
    )
    plan = plan_workflow(workflow, profiles, args.rate, policy=args.policy, utilisation=args.utilisation,
                         limits=limits, clock_s=time.perf_counter, arrival_cv2=args.queueing_cv2,
                         queueing_model=args.queueing_model)
    explained = explain_plan(workflow, profiles, plan, args.utilisation, args.queueing_cv2,
                             args.queueing_model) if args.explain else None
    if args.json:
        document: dict[str, Any] = plan.to_dict()
        if explained is not None:
            document["explain"] = {
                stage: [
                    {"batch_size": r.option.config.batch_size, "gpu_share": r.option.config.gpu_share,
                     "latency_ms": round(r.option.latency_ms, 3), "cost": round(r.option.cost, 2),
                     "reason": r.reason, "detail": r.detail}
                    for r in rejections
                ]
                for stage, rejections in explained.items()
            }
        print(json.dumps(document, indent=2))
    else:
        print(render_plan(plan))
        if explained is not None:
            print()
            print(render_explain(explained))
    return 0 if plan.feasible else 3
