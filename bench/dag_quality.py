"""How close ESG's DAG plans come to the exact oracle's.

Random DAGs of 2..8 stages (random monotone profiles, random SLOs and
rates, see ``esg_plugin.synthetic.random_case``). For every instance the
oracle finds feasible, prints the distribution of ESG's cost over the
oracle's; also checks that both agree on feasibility. Deterministic: the
figures depend on --seed and --cases only.

    python bench/dag_quality.py [--cases 1000] [--seed 1] [--variants esg|all] [--json]

Variants: ``esg`` (the policy as shipped), ``esg-fast-reference`` (slack
shared in proportion to the fastest latencies instead of cheap − fast),
and ``*-split-only`` (the dominator split without the improvement passes).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys

from esg_plugin.model import Plan
from esg_plugin.planner import build_problem, plan_workflow, solve_esg
from esg_plugin.synthetic import random_case
from esg_plugin.limits import flag

#: name -> solve_esg keyword arguments
VARIANTS = {
    "esg": {},
    "esg-fast-reference": {"reference": "fast"},
    "esg-split-only": {"improve": False},
    "esg-fast-reference-split-only": {"reference": "fast", "improve": False},
}


def plan_variant(workflow, profiles, rate, options) -> Plan:
    problem = build_problem(workflow, profiles, rate)
    picks, stats = solve_esg(problem, **options)
    return Plan.build(workflow, "esg", rate, problem.choices(picks or problem.fastest()), stats)


def measure(cases: int, seed: int, max_stages: int = 8, variant: str = "esg") -> dict:
    rng = random.Random(seed)
    ratios = []
    disagreements = 0
    infeasible = 0
    non_chain = 0
    for _ in range(cases):
        n = rng.randint(2, max_stages)
        workflow, profiles, rate = random_case(rng, n, chain=False)
        if not workflow.is_chain():
            non_chain += 1
        esg = plan_variant(workflow, profiles, rate, VARIANTS[variant])
        oracle = plan_workflow(workflow, profiles, rate, policy="optimal")
        if esg.feasible != oracle.feasible:
            disagreements += 1
            continue
        if not oracle.feasible:
            infeasible += 1
            continue
        ratios.append(esg.cost_pct / oracle.cost_pct)
    ratios.sort()
    within = lambda x: sum(1 for r in ratios if r <= 1 + x + 1e-12) / len(ratios)  # noqa: E731
    return {
        "variant": variant,
        "cases": cases,
        "seed": seed,
        "non_chain": non_chain,
        "feasible": len(ratios),
        "infeasible": infeasible,
        "feasibility_disagreements": disagreements,
        "exactly_optimal": within(0.0),
        "within_1pct": within(0.01),
        "within_5pct": within(0.05),
        "within_10pct": within(0.10),
        "mean_ratio": statistics.fmean(ratios),
        "p95_ratio": ratios[int(0.95 * (len(ratios) - 1))],
        "max_ratio": ratios[-1],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=flag(int, 1, 1_000_000), default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-stages", type=flag(int, 3, 64), default=8)
    parser.add_argument("--variants", default="esg",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}; or 'all'")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    results = [measure(args.cases, args.seed, args.max_stages, name) for name in names]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        report(result, args.max_stages)
    return 0


def report(result: dict, max_stages: int) -> None:
    print(f"{result['variant']} vs oracle on {result['cases']} random DAGs of 2..{max_stages} stages "
          f"(seed {result['seed']}):")
    print(f"  not chains: {result['non_chain']}, feasible: {result['feasible']}, infeasible: {result['infeasible']}, "
          f"feasibility disagreements: {result['feasibility_disagreements']}")
    print(f"  ESG cost / optimal cost over feasible instances: exactly optimal {result['exactly_optimal']:.1%}, "
          f"within 1% {result['within_1pct']:.1%}, within 5% {result['within_5pct']:.1%}, "
          f"within 10% {result['within_10pct']:.1%}")
    print(f"  mean ratio {result['mean_ratio']:.4f}, p95 {result['p95_ratio']:.4f}, max {result['max_ratio']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
