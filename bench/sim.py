"""Simulator throughput: simulated stage executions per second of wall time.

    python bench/sim.py [--duration 3600] [--rate 100] [--policy esg] [--seed 1]

The workload of the goal: one 5-stage chain (decode -> denoise -> upscale ->
detect -> classify, synthetic example profiles) at 100 rps Poisson for one
hour on 8 GPUs. A stage execution is one request passing one stage. Goal:
at least 200,000 per second, so that this run takes under 10 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from esg_plugin.loaders import load_profiles
from esg_plugin.model import Stage, Workflow
from esg_plugin.sim import SimConfig, make_policy, simulate
from esg_plugin.sim.report import summarize
from esg_plugin.sim.workload import Arrivals, Workload, WorkflowLoad
from esg_plugin.limits import flag

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=flag(float, 120.0, 1e6), default=3600.0,
                        help="simulated seconds, the first 60 a warm-up")
    parser.add_argument("--rate", type=flag(float, 1e-3, 1e5), default=100.0)
    parser.add_argument("--policy", default="esg")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    profiles = load_profiles(ROOT / "examples/profiles/synthetic.json")
    functions = ["decode", "denoise", "superres", "ssd", "resnet50"]
    stages = [Stage(f"s{i}", fn, (f"s{i - 1}",) if i else ()) for i, fn in enumerate(functions)]
    workflow = Workflow.build("chain5", 200.0, stages, hop_ms=2.0)
    workload = Workload("bench-chain5", 8, args.duration,
                        (WorkflowLoad(workflow, Arrivals("poisson", {"rate_rps": args.rate})),), warmup_s=60.0)
    policy = make_policy(args.policy, [workflow], profiles, gpus=workload.gpus)
    started = time.perf_counter()
    result = simulate(workload, profiles, policy, SimConfig(seed=args.seed))
    wall_s = time.perf_counter() - started
    summary = summarize(result)
    print(f"{args.duration:g} s of a 5-stage chain at {args.rate:g} rps, policy {args.policy}, seed {args.seed}")
    print(f"  wall time            {wall_s:.2f} s (workload generation and planning included)")
    print(f"  stage executions     {result.stage_executions:,} in {result.batches:,} batches")
    print(f"  executions per s     {result.stage_executions / wall_s:,.0f}   (goal: 200,000)")
    print(f"  SLO hit rate         {summary['slo_hit_rate']:.2%}, cost {summary['cost']:.2f} GPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
