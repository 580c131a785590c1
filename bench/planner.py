"""Planning time and search effort of ESG, beside exhaustive enumeration.

Chains of 2, 4, 8 and 12 stages and DAGs of 10, 30 and 100 stages; every
function has the full 6 batch sizes x 10 shares. For each size, --cases
random instances (random monotone profiles, rates and SLOs between 1.0x and
3x the fastest plan's latency), each planned --repeat times; prints median
and p99 planning time (time.perf_counter around plan_workflow, profile
evaluation included), median node expansions, and the number of complete
plans exhaustive enumeration would visit (the product of configurations).

    python bench/planner.py [--cases 50] [--repeat 5] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time

from esg_plugin.planner import build_problem, plan_workflow
from esg_plugin.synthetic import random_case
from esg_plugin.limits import flag

SIZES = [("chain", 2), ("chain", 4), ("chain", 8), ("chain", 12), ("dag", 10), ("dag", 30), ("dag", 100)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def bench_size(kind: str, n: int, cases: int, repeat: int, rng: random.Random) -> dict:
    times_ms, expansions, generated, exhaustive, feasible = [], [], [], [], 0
    for _ in range(cases):
        workflow, profiles, rate = random_case(rng, n, chain=(kind == "chain"), slo_factor=(1.0, 3.0),
                                               full_axes=True)
        problem = build_problem(workflow, profiles, rate)
        exhaustive.append(math.prod(m.considered for m in problem.menus.values()))
        for _ in range(repeat):
            plan = plan_workflow(workflow, profiles, rate, clock_s=time.perf_counter)
            times_ms.append(plan.stats.elapsed_ms)
        expansions.append(plan.stats.expanded)
        generated.append(plan.stats.generated)
        feasible += plan.feasible
    return {
        "kind": kind,
        "stages": n,
        "cases": cases,
        "feasible": feasible,
        "median_ms": statistics.median(times_ms),
        "p99_ms": percentile(times_ms, 0.99),
        "median_expanded": statistics.median(expansions),
        "median_generated": statistics.median(generated),
        "exhaustive_plans": statistics.median(exhaustive),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=flag(int, 1, 100_000), default=50)
    parser.add_argument("--repeat", type=flag(int, 1, 1_000), default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    rows = [bench_size(kind, n, args.cases, args.repeat, rng) for kind, n in SIZES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"ESG planning time ({args.cases} instances x {args.repeat} runs per size, 6 batch sizes x 10 shares, "
          f"seed {args.seed})")
    header = f"{'workflow':<10}{'feasible':>9}{'median ms':>11}{'p99 ms':>9}{'expanded':>10}{'generated':>11}" \
             f"{'exhaustive plans':>18}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['kind'] + ' ' + str(r['stages']):<10}{r['feasible']:>5}/{r['cases']:<3}{r['median_ms']:>11.2f}"
              f"{r['p99_ms']:>9.2f}{r['median_expanded']:>10.0f}{r['median_generated']:>11.0f}"
              f"{r['exhaustive_plans']:>18.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
