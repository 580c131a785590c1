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

**A fluid ceiling** beside each run (the column "fluid ceiling"): the share
of the same requests, sent at the same times, that the machine's cores
could have answered in time if they were one pool of work — taken in the
order they were sent, each admitted only when the work already admitted,
spread over every core, plus its own critical path (its stages' execution
times alone) ends within its SLO, and turned away otherwise (that is how
a burst of ten requests for a 40-ms classifier on two cores loses most of
itself whatever the policy). The execution times are the run's own
(``timeline.json``: the median of each function's readings at batch ≤ 1.5
while its cores were not shared, ``cpu_ratio`` ≥ 0.9; else the least
reading). It is an estimate, not a bound: optimistic in that it counts no
HTTP, queueing, batching or load-generator cost and shares cores
perfectly, pessimistic in that it turns a request away for good where an
offline schedule might fit it by turning away another.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from esg_plugin.loaders import read_yaml  # noqa: E402
from esg_plugin.model import Topology, path_latency_ms  # noqa: E402
from esg_plugin.model.config import DEFAULT_QUEUEING_MODEL, QUEUEING_MODELS  # noqa: E402
from esg_plugin.sim.generate import random_live_workload  # noqa: E402
from esg_plugin.sim.workload import parse_arrivals  # noqa: E402
from robustness import parse_seeds  # noqa: E402
from esg_plugin.limits import flag  # noqa: E402

DEFAULT_WORKLOAD = ROOT / "workloads/local.yaml"


def default_rates() -> dict[str, float]:
    """Each workflow's mean rate in the default workload (its workflows are the stack's, by name)."""
    data = read_yaml(DEFAULT_WORKLOAD)
    return {entry["workflow"]: parse_arrivals(entry["arrivals"], entry["workflow"], DEFAULT_WORKLOAD.parent)
            .mean_rate_rps(data["duration_s"]) for entry in data["workflows"]}


def observed_exec_ms(timeline: list[dict]) -> dict[str, float]:
    """Each function's execution time in this run (see the module's docstring)."""
    readings: dict[str, list[tuple[float, bool]]] = {}
    for row in timeline:
        for fn, f in row["functions"].items():
            if f.get("exec_ms") and (f.get("batch_mean") or 1.0) <= 1.5:
                alone = f.get("cpu_ratio") is None or f["cpu_ratio"] >= 0.9
                readings.setdefault(fn, []).append((f["exec_ms"], alone))
    out = {}
    for fn, values in readings.items():
        alone = sorted(ms for ms, a in values if a)
        out[fn] = alone[len(alone) // 2] if alone else min(ms for ms, _ in values)
    return out


def fluid_ceiling(requests: list[dict], topology: Topology, exec_ms: dict[str, float], cores: int,
                  warmup_s: float) -> dict[str, float]:
    """Per workflow and ``"*"`` (all): the share of the requests sent after
    the warm-up the fluid machine answers in time (the module's docstring);
    a workflow with a function never seen running is left out."""
    shapes = {}
    for name, wf in topology.workflows.items():
        stage_ms = {s.name: exec_ms.get(topology.functions[(name, s.name)]) for s in wf.stages}
        if all(ms is not None for ms in stage_ms.values()):
            shapes[name] = (path_latency_ms(replace(wf, hop_ms=0.0), stage_ms),  # the stages alone
                            sum(stage_ms[s.name] * s.fanout for s in wf.stages),
                            wf.slo_ms)
    pooled_ms, last_s = 0.0, None
    met: dict[str, list[bool]] = {}
    for r in sorted(requests, key=lambda r: r["sent_s"]):
        if r["workflow"] not in shapes:
            continue
        if last_s is not None:
            pooled_ms = max(0.0, pooled_ms - (r["sent_s"] - last_s) * 1000.0 * cores)
        last_s = r["sent_s"]
        path_ms, work_ms, slo_ms = shapes[r["workflow"]]
        in_time = pooled_ms / cores + path_ms <= slo_ms
        if in_time:
            pooled_ms += work_ms
        if r["sent_s"] >= warmup_s:
            met.setdefault(r["workflow"], []).append(in_time)
    out = {name: sum(v) / len(v) for name, v in met.items() if v}
    every = [x for v in met.values() for x in v]
    if every and len(out) == len(topology.workflows):
        out["*"] = sum(every) / len(every)
    return out


def run(workload_file: Path, policy: str, out: Path, cpu_hogs: int,
        queueing_model: str = DEFAULT_QUEUEING_MODEL) -> tuple[dict, float]:
    load = os.getloadavg()[0]
    command = [sys.executable, "-m", "esg_plugin", "up", "--workload", str(workload_file), "--policy", policy,
               "--out", str(out), "--queueing-model", queueing_model] + \
        (["--cpu-hog", str(cpu_hogs)] if cpu_hogs else [])
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    report = json.loads((out / "report.json").read_text())
    timeline = json.loads((out / "timeline.json").read_text())["timeline"]
    requests = json.loads((out / "requests.json").read_text())
    topology = Topology.from_stack(read_yaml(ROOT / "stack.yml"))
    warmup_s = read_yaml(workload_file)["warmup_s"]
    report["fluid_ceiling"] = fluid_ceiling(requests, topology, observed_exec_ms(timeline),
                                            (report.get("machine") or {}).get("cores") or os.cpu_count(), warmup_s)
    return report, load


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-4"), metavar="RANGES")
    parser.add_argument("--scale", type=flag(float, 1e-3, 100.0), default=1.0, help="times the default workload's rates")
    parser.add_argument("--policies", default="esg,openfaas")
    parser.add_argument("--cpu-hog", type=flag(int, 0, 64), default=0, help="busy processes beside each run")
    parser.add_argument("--out", type=Path, default=None, help="where the workloads and reports go")
    parser.add_argument("--queueing-model", default=DEFAULT_QUEUEING_MODEL, choices=QUEUEING_MODELS,
                        help="esg up's --queueing-model")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="esg-up-random-"))
    out.mkdir(parents=True, exist_ok=True)
    rates = default_rates()
    policies = args.policies.split(",")
    print(f"esg up on random live workloads (x{args.scale:g} the default rates"
          f"{f', {args.cpu_hog} busy processes beside' if args.cpu_hog else ''}); files in {out}")
    print()
    print("| seed | workload | policy | load at start | SLO hit (all) | of the admitted | equivalents held "
          "| idle after warm-up | fluid ceiling | " + " | ".join(f"{name} (its ceiling)" for name in rates) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in rates) + " |")
    started = time.monotonic()
    summary: dict[str, list[dict]] = {p: [] for p in policies}
    for seed in args.seeds:
        data, words = random_live_workload(seed, rates, args.scale)
        workload_file = out / f"random-{seed}.yaml"
        workload_file.write_text(yaml.safe_dump(data, sort_keys=False))
        for policy in policies:
            report, load = run(workload_file, policy, out / f"random-{seed}-{policy}", args.cpu_hog,
                               args.queueing_model)
            summary[policy].append(report)
            idle = (report.get("machine") or {}).get("idle_share_after_warmup")
            ceiling = report["fluid_ceiling"]
            all_ceiling = f"{ceiling['*']:.2%}" if "*" in ceiling else "-"
            cells = [(f"{report['workflows'][name]['slo_hit_rate']:.1%}" if name in report["workflows"] else "-")
                     + (f" ({ceiling[name]:.0%})" if name in ceiling else "") for name in rates]
            print(f"| {seed} | {words} | {policy} | {load:.1f} | {report['slo_hit_rate']:.2%} | "
                  f"{report['slo_hit_rate_admitted']:.2%} | {report['cost']:.2f} | "
                  f"{'-' if idle is None else f'{idle:.0%}'} | "
                  f"{all_ceiling} | " + " | ".join(cells) + " |", flush=True)
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
