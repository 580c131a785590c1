"""The standard evaluation: every shipped workload x every policy x 3 seeds.

    python bench/evaluate.py [--seeds 1,2,3] [--out docs/evaluation]   (or: make evaluate)

Prints the markdown tables of docs/EVALUATION.md (means over the seeds) and
writes, under --out, results.json (every run's SPEC §7 summary) and, for the
first seed, each workload's plots (<workload>-hit_rate_vs_cost.png, ...).
Deterministic: the figures depend only on the seeds, the shipped files and
the code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from esg_plugin.loaders import load_profiles, load_workload
from esg_plugin.sim import POLICY_NAMES, SimConfig, make_policy, simulate
from esg_plugin.sim.report import document, write_outputs

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ["mixed", "steps", "diurnal", "azure"]
PROFILES = ROOT / "examples/profiles/synthetic.json"


def evaluate(seeds: list[int], out_dir: Path) -> dict:
    profiles = load_profiles(PROFILES)
    results: dict = {}
    for name in WORKLOADS:
        workload = load_workload(ROOT / f"examples/workloads/{name}.yaml")
        workflows = [load.workflow for load in workload.workflows]
        results[name] = {}
        for seed in seeds:
            runs = [simulate(workload, profiles, make_policy(p, workflows, profiles, gpus=workload.gpus), SimConfig(seed=seed))
                    for p in POLICY_NAMES]
            doc = document(name, seed, workload.duration_s, runs)
            results[name][seed] = doc
            if seed == seeds[0]:
                with tempfile.TemporaryDirectory() as tmp:
                    for path in write_outputs(Path(tmp), doc, runs):
                        if path.suffix == ".png":
                            shutil.copy(path, out_dir / f"{name}-{path.name}")
            print(f"  {name} seed {seed} done", file=sys.stderr, flush=True)
    return results


def mean_of(results: dict, workload: str, policy: str, key: str) -> float:
    return statistics.fmean(doc["policies"][policy][key] for doc in results[workload].values())


def tables(results: dict) -> str:
    lines = []
    for name, by_seed in results.items():
        seeds = ", ".join(map(str, by_seed))
        lines.append(f"### {name} (mean of seeds {seeds})")
        lines.append("")
        lines.append("| policy | SLO hit rate | min over seeds | cost (GPUs) | GPU util | p50 ms | p99 ms |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        reaching = [p for p in POLICY_NAMES if mean_of(results, name, p, "slo_hit_rate") >= 0.95]
        cheapest = min(reaching, key=lambda p: mean_of(results, name, p, "cost")) if reaching else None
        for p in POLICY_NAMES:
            hit = mean_of(results, name, p, "slo_hit_rate")
            low = min(doc["policies"][p]["slo_hit_rate"] for doc in by_seed.values())
            cost = mean_of(results, name, p, "cost")
            p50 = [doc["policies"][p]["p50_ms"] for doc in by_seed.values()]
            p99 = [doc["policies"][p]["p99_ms"] for doc in by_seed.values()]
            fmt = lambda xs: "-" if None in xs else f"{statistics.fmean(xs):.1f}"  # noqa: E731
            mark = " (cheapest ≥ 95%)" if p == cheapest else ""
            lines.append(f"| {p}{mark} | {hit:.2%} | {low:.2%} | {cost:.2f} | "
                         f"{mean_of(results, name, p, 'gpu_util'):.0%} | {fmt(p50)} | {fmt(p99)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--out", default=str(ROOT / "docs/evaluation"))
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = evaluate(seeds, out_dir)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(tables(results))
    print(f"({len(WORKLOADS)} workloads x {len(POLICY_NAMES)} policies x {len(seeds)} seeds in "
          f"{time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
