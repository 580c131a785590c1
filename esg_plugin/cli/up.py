"""``esg up``: run the embedded platform, router, scaler and load on this machine."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..limits import MAX_DURATION_S, MAX_SEED, flag
from ..loaders import LoadError, load_profiles, load_workflow, read_yaml
from ..model.config import DEFAULT_QUEUEING_MODEL, QUEUEING_MODELS

DESCRIPTION = """\
Start the whole system on this machine: every function of the stack as
processes of the esg-python3 runtime, an OpenFaaS-compatible gateway, the
workflow router and a controller (the ESG scaler, or OpenFaaS-style rps
autoscaling with --policy openfaas); drive the workload through the router;
show a live dashboard; print a report; stop everything it started."""


def admission_settings(choice, policy: str):
    """The router's admission limit for ``--admission`` (none given: the policy's default)."""
    from ..control.admission import AdmissionSettings

    choice = choice or ("machine" if policy == "esg" else "off")
    return None if choice == "off" else AdmissionSettings(scope=choice)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("up", help="run the whole system on this machine", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", default="stack.yml", metavar="S", help="default stack.yml")
    p.add_argument("--workload", default="workloads/local.yaml", metavar="L",
                   help="workload YAML whose workflows name workflows of the stack (default workloads/local.yaml)")
    p.add_argument("--profiles", default="profiles/cpu-2core.json", metavar="P")
    p.add_argument("--duration", type=flag(float, 0, MAX_DURATION_S, low_open=True), metavar="S", help="override the workload's duration_s")
    p.add_argument("--policy", default="esg", choices=("esg", "openfaas"))
    p.add_argument("--admission", choices=("machine", "workflow", "off"),
                   help="shedding at the entry: one adaptive limit over all workflows (machine; the default with "
                        "--policy esg), one per workflow, or none (the default with --policy openfaas)")
    p.add_argument("--interval-s", type=flag(float, 0.1, 3600), default=2.0, metavar="N", help="control interval (default 2)")
    p.add_argument("--max-replicas", type=flag(int, 1, 16), default=3, metavar="N", help="per function (default 3)")
    p.add_argument("--seed", type=flag(int, 0, MAX_SEED), default=1)
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.add_argument("--out", metavar="DIR",
                   help="also write report.json, timeline.json (every control iteration and action), "
                        "requests.json (every request: sent, latency, status, why rejected) and "
                        "timeline.png (rate, replicas, hit rate and resources on one time axis), and logs/ "
                        "(every worker's stdout and stderr)")
    p.add_argument("--no-zygote", action="store_true",
                   help="start every worker as a plain process (default: forked from one that imported torch once)")
    p.add_argument("--cpu-hog", type=flag(int, 0, 64), default=0, metavar="N",
                   help="run N busy processes beside the system, as a noisy neighbour (default 0)")
    p.add_argument("--queueing-model", choices=QUEUEING_MODELS, default=DEFAULT_QUEUEING_MODEL,
                   help="the queueing wait ESG's plans are priced with (default allen-cunneen; renewal: the "
                        "GI/M/c wait for gamma gaps, for a comparison: docs/planner.md)")
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
                        interval_s=args.interval_s, max_replicas=args.max_replicas, dashboard=terminal_dashboard(),
                        cpu_hogs=args.cpu_hog, admission=admission_settings(args.admission, args.policy),
                        logs_to=Path(args.out) / "logs" if args.out else None, zygote=not args.no_zygote,
                        queueing_model=args.queueing_model)
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
        (out / "timeline.json").write_text(json.dumps({"timeline": report.timeline, "actions": report.actions,
                                                       "steps": report.steps}) + "\n")
        (out / "requests.json").write_text(json.dumps(report.requests()) + "\n")
        _plot(out, report)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"esg up — policy {summary['policy']} (admission {summary['admission']}), "
              f"{summary['requests']} requests after warm-up, "
              f"SLO hit rate {summary['slo_hit_rate']:.2%} ({summary['slo_hit_rate_admitted']:.2%} of those "
              f"admitted), cost {summary['cost']} equivalents held, {summary['actions']} actions")
        machine = summary["machine"]
        idle = machine["idle_share_after_warmup"]
        allotted = machine["cores_allotted"]
        mine = "" if allotted >= (machine["cores"] or 0) else f" ({allotted:g} allotted to this run)"
        print(f"  machine: {machine['cores']} cores{mine}, "
              f"{'idle time not readable' if idle is None else f'{idle:.0%} of their time idle after warm-up'}")
        starts = summary["worker_starts"]
        print(f"  worker starts: {starts['count']} ({starts['forked']} forked by the zygote), ready after "
              f"{starts['ready_after_median_s']} s (median), {starts['ready_after_max_s']} s at most")
        for name, w in summary["workflows"].items():
            why = ", ".join(f"{k} {n}" for k, n in w["rejected_by"].items())
            print(f"  {name:<10} requests {w['requests']:>5}  late {w['late']:>4}  rejected {w['rejected']:>3}"
                  f"{f' ({why})' if why else ''}  "
                  f"errors {w['errors']:>3}  SLO hit {w['slo_hit_rate']:.2%}  "
                  f"p50 {w['p50_ms']} ms  p99 {w['p99_ms']} ms  (in the stages {w['stages_p50_ms']} ms, "
                  f"in the hops {w['hops_p50_ms']} ms, p50)  planned/offered {w['planned_over_offered_median']}"
                  f" (planned for/offered {w['estimate_over_offered_median']}, "
                  f"{w['steady_ticks_estimate_within_15pct']} of steady ticks within 15%; the offered rate's "
                  f"own noise {w['offered_window_noise_median']}; planned for/the generator's rate "
                  f"{w['estimate_over_nominal_median']}, {w['steady_ticks_estimate_within_15pct_of_nominal']} "
                  f"within 15%; planned for/the arrivals' own mean {w['estimate_over_arrivals_median']}, "
                  f"{w['steady_ticks_estimate_within_15pct_of_arrivals']} within 15%)  "
                  f"generator lag p99 {w['send_lag_p99_ms']} ms"
                  f"  step -> plan covering it {w['step_to_plan_covering_s']} s, "
                  f"-> scale-up {w['step_to_first_scale_up_s']} s")
    return 0


def _plot(out: Path, report) -> None:
    """timeline.png: per workflow the offered and planned rate, the replicas
    of its functions, its SLO hit rate per 5 s; the resources held."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed", file=sys.stderr)
        return
    fig, (rate, replicas, hit, held) = plt.subplots(4, 1, figsize=(7.0, 8.0), sharex=True)
    workflows = sorted({r.workflow for r in report.results} | set(report.steps))
    for i, name in enumerate(workflows):
        colour = f"C{i}"
        rows = [r for r in report.timeline if name in r["workflows"]]
        t = [r["t"] for r in rows]
        offered = [r["workflows"][name]["offered_rps"] for r in rows]
        planned = [r["workflows"][name]["planned_rps"] for r in rows]
        rate.plot(t, [float("nan") if v is None else v for v in offered], color=colour, label=f"{name} offered")
        rate.plot(t, [float("nan") if v is None else v for v in planned], color=colour, linestyle="--",
                  label=f"{name} planned")
        functions = rows[0]["workflows"][name]["functions"] if rows else []
        replicas.step(t, [sum(r["functions"][f]["replicas"] for f in functions if f in r["functions"]) for r in rows],
                      where="post", color=colour, label=name)
        mine = [r for r in report.results if r.workflow == name]
        bins = {}
        for r in mine:
            bins.setdefault(int(r.sent_s // 5), []).append(r.slo_met)
        keys = sorted(bins)
        hit.plot([5 * k + 2.5 for k in keys], [100.0 * sum(bins[k]) / len(bins[k]) for k in keys], color=colour,
                 marker=".", label=name)
        for step in report.steps.get(name, []):
            for ax in (rate, replicas, hit):
                ax.axvline(step, color=colour, linestyle=":", linewidth=0.8)
    if report.held:
        t, h = zip(*report.held)
        held.step(t, h, where="post")
    for ax in (rate, replicas, hit, held):
        ax.axvline(report.warmup_s, color="grey", linestyle=":", linewidth=0.8)
    rate.set_ylabel("rate (rps)")
    replicas.set_ylabel("replicas")
    hit.set_ylabel("SLO hit (%)")
    hit.set_ylim(0, 105)
    held.set_ylabel("equivalents held")
    held.set_xlabel("time (s)")
    rate.legend(fontsize=7, ncol=2)
    replicas.legend(fontsize=7)
    rate.set_title(f"esg up ({report.policy})")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=110)
    plt.close(fig)
