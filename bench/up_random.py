"""`esg up` on random live workloads nobody tuned for, every policy asked.

    python bench/up_random.py [--seeds 1-4] [--scale 1] [--policies esg,openfaas] [--cpu-hog N] [--out DIR]

Each seed draws a workload for the stack's three workflows
(``random_live_workload`` in ``esg_plugin/sim/generate.py``): per workflow
one arrival kind — Poisson, bursty gamma gaps with cv 2–4, a step up by
3–6x and back down, or diurnal — at a mean rate 0.5–2 times its rate in
``workloads/local.yaml`` times ``--scale``, for 80 s (20 s warm-up). Each
policy runs it with ``esg up --workload FILE --policy P --out DIR`` (one
after the other: never two systems on the machine at once), and the
table gives, per seed and policy, the SLO hit rate of every request, of
the requests admitted, the equivalents held, the machine's idle share
after the warm-up, and each workflow's hit rate. The workload files and
every run's report stay under ``--out``. About 100 s per run.

A live run's figures move with the host (how fast, how busy): the table
says the load average when each run started.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from esg_plugin.loaders import read_yaml  # noqa: E402
from esg_plugin.sim.generate import random_live_workload  # noqa: E402
from esg_plugin.sim.workload import parse_arrivals  # noqa: E402
from robustness import parse_seeds  # noqa: E402

DEFAULT_WORKLOAD = ROOT / "workloads/local.yaml"


def default_rates() -> dict[str, float]:
    """Each workflow's mean rate in the default workload (its workflows are the stack's, by name)."""
    data = read_yaml(DEFAULT_WORKLOAD)
    return {entry["workflow"]: parse_arrivals(entry["arrivals"], entry["workflow"], DEFAULT_WORKLOAD.parent)
            .mean_rate_rps(data["duration_s"]) for entry in data["workflows"]}


def run(workload_file: Path, policy: str, out: Path, cpu_hogs: int) -> tuple[dict, float]:
    load = os.getloadavg()[0]
    command = [sys.executable, "-m", "esg_plugin", "up", "--workload", str(workload_file), "--policy", policy,
               "--out", str(out)] + (["--cpu-hog", str(cpu_hogs)] if cpu_hogs else [])
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    return json.loads((out / "report.json").read_text()), load


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-4"), metavar="RANGES")
    parser.add_argument("--scale", type=float, default=1.0, help="times the default workload's rates")
    parser.add_argument("--policies", default="esg,openfaas")
    parser.add_argument("--cpu-hog", type=int, default=0, help="busy processes beside each run")
    parser.add_argument("--out", type=Path, default=None, help="where the workloads and reports go")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="esg-up-random-"))
    out.mkdir(parents=True, exist_ok=True)
    rates = default_rates()
    policies = args.policies.split(",")
    print(f"esg up on random live workloads (x{args.scale:g} the default rates"
          f"{f', {args.cpu_hog} busy processes beside' if args.cpu_hog else ''}); files in {out}")
    print()
    print("| seed | workload | policy | load at start | SLO hit (all) | of the admitted | equivalents held "
          "| idle after warm-up | " + " | ".join(rates) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in rates) + " |")
    started = time.monotonic()
    summary: dict[str, list[dict]] = {p: [] for p in policies}
    for seed in args.seeds:
        data, words = random_live_workload(seed, rates, args.scale)
        workload_file = out / f"random-{seed}.yaml"
        workload_file.write_text(yaml.safe_dump(data, sort_keys=False))
        for policy in policies:
            report, load = run(workload_file, policy, out / f"random-{seed}-{policy}", args.cpu_hog)
            summary[policy].append(report)
            idle = (report.get("machine") or {}).get("idle_share_after_warmup")
            cells = [f"{report['workflows'][name]['slo_hit_rate']:.1%}" if name in report["workflows"] else "-"
                     for name in rates]
            print(f"| {seed} | {words} | {policy} | {load:.1f} | {report['slo_hit_rate']:.2%} | "
                  f"{report['slo_hit_rate_admitted']:.2%} | {report['cost']:.2f} | "
                  f"{'-' if idle is None else f'{idle:.0%}'} | " + " | ".join(cells) + " |", flush=True)
    print()
    for policy, reports in summary.items():
        if reports:
            n = len(reports)
            print(f"{policy}: mean SLO hit {sum(r['slo_hit_rate'] for r in reports) / n:.2%} of all requests, "
                  f"{sum(r['slo_hit_rate_admitted'] for r in reports) / n:.2%} of the admitted, "
                  f"{sum(r['cost'] for r in reports) / n:.2f} equivalents held, over {n} workloads")
    print(f"({len(args.seeds)} workloads x {len(policies)} policies in {time.monotonic() - started:.0f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
