"""``esg up``: run the embedded platform, router, scaler and load on this machine."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..loaders import LoadError, load_profiles, load_workflow, read_yaml

DESCRIPTION = """\
Start the whole system on this machine: every function of the stack as
processes of the esg-python3 runtime, an OpenFaaS-compatible gateway, the
workflow router and a controller (the ESG scaler, or OpenFaaS-style rps
autoscaling with --policy openfaas); drive the workload through the router;
show a live dashboard; print a report; stop everything it started."""


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("up", help="run the whole system on this machine", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", default="stack.yml", metavar="S", help="default stack.yml")
    p.add_argument("--workload", default="workloads/local.yaml", metavar="L",
                   help="workload YAML whose workflows name workflows of the stack (default workloads/local.yaml)")
    p.add_argument("--profiles", default="profiles/cpu-2core.json", metavar="P")
    p.add_argument("--duration", type=float, metavar="S", help="override the workload's duration_s")
    p.add_argument("--policy", default="esg", choices=("esg", "openfaas"))
    p.add_argument("--interval-s", type=float, default=5.0, metavar="N", help="control interval (default 5)")
    p.add_argument("--max-replicas", type=int, default=3, metavar="N", help="per function (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.add_argument("--out", metavar="DIR", help="also write report.json and gpus_over_time.png")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..local import PlatformError, run_up
    from ..local.up import terminal_dashboard
    from ..scaler import Topology
    from ..sim.workload import WorkloadError, parse_workload

    stack_path = Path(args.stack)
    stack = read_yaml(stack_path)
    try:
        topology = Topology.from_stack(stack)
    except ValueError as err:
        raise LoadError(f"{stack_path}: {err}") from None
    profiles = load_profiles(args.profiles)
    for workflow in topology.workflows.values():
        workflow.check_profiles(profiles)
    workload_path = Path(args.workload)

    def workflow_named(path: Path):
        if path.name in topology.workflows:
            return topology.workflows[path.name]
        return load_workflow(path)

    try:
        workload = parse_workload(read_yaml(workload_path), workload_path.parent, workload_path.stem, workflow_named)
    except WorkloadError as err:
        raise LoadError(f"{workload_path}: {err}") from None
    for load in workload.workflows:
        if load.workflow.name not in topology.workflows:
            raise LoadError(f"{workload_path}: workflow '{load.workflow.name}' is not in {stack_path}")
    if args.duration is not None:
        if args.duration <= workload.warmup_s:
            raise LoadError(f"--duration must exceed the workload's warmup_s ({workload.warmup_s:g} s)")
        workload = dataclasses.replace(workload, duration_s=args.duration)
    import signal

    def stop_on_sigterm(signum, frame):
        raise KeyboardInterrupt  # unwinds run_up, which stops everything it started

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        report = run_up(stack, stack_path.parent, topology, profiles, workload, args.policy, seed=args.seed,
                        interval_s=args.interval_s, max_replicas=args.max_replicas, dashboard=terminal_dashboard())
    except PlatformError as err:
        raise LoadError(str(err)) from None
    except KeyboardInterrupt:
        print("esg up: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    summary = report.summary()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        _plot(out, report)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"esg up — policy {summary['policy']}, {summary['requests']} requests after warm-up, "
              f"SLO hit rate {summary['slo_hit_rate']:.2%}, cost {summary['cost']} equivalents held")
        for name, w in summary["workflows"].items():
            print(f"  {name:<10} requests {w['requests']:>5}  late {w['late']:>4}  rejected {w['rejected']:>3}  "
                  f"errors {w['errors']:>3}  SLO hit {w['slo_hit_rate']:.2%}  "
                  f"p50 {w['p50_ms']} ms  p99 {w['p99_ms']} ms")
    return 0


def _plot(out: Path, report) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if report.held:
        t, held = zip(*report.held)
        ax.step(t, held, where="post")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("equivalents held")
    ax.set_title(f"esg up ({report.policy}): resources held")
    fig.tight_layout()
    fig.savefig(out / "gpus_over_time.png", dpi=110)
    plt.close(fig)
