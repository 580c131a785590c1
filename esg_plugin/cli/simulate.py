"""``esg simulate``: compare scheduling policies on one workload."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ..control import ABLATIONS
from ..limits import MAX_DURATION_S, MAX_SEED, flag
from ..loaders import LoadError, load_profiles, load_workload

DESCRIPTION = """\
Run the discrete-event simulator (no wall clock) of a GPU cluster serving the
workload's workflows, once per policy, and compare SLO hit rate, cost
(average GPUs held), GPU utilisation and latency. Policies observe arrival
rates in the simulation, never the true ones. See docs/EVALUATION.md."""


def register(commands: argparse._SubParsersAction) -> None:
    from ..sim import POLICY_NAMES
    from ..sim.cluster import PLACEMENTS
    from ..sim.engine import EXEC_FACTOR_LIMITS, MAX_NOISE_SIGMA

    p = commands.add_parser("simulate", help="compare policies in the simulator", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", required=True, metavar="L", help="workload YAML (SPEC §7)")
    p.add_argument("--profiles", required=True, metavar="P", help="profiles JSON (SPEC §1)")
    p.add_argument("--policies", default="esg", metavar="A,B",
                   help=f"comma-separated policies, or 'all': {', '.join(POLICY_NAMES)} (default: esg)")
    p.add_argument("--duration", type=flag(float, 0, MAX_DURATION_S, low_open=True), metavar="S", help="override the workload's duration_s")
    p.add_argument("--seed", type=flag(int, 0, MAX_SEED), default=1, metavar="N", help="random seed (default 1)")
    p.add_argument("--noise", type=flag(float, 0, MAX_NOISE_SIGMA), default=0.0, metavar="SIGMA",
                   help="lognormal sigma of execution-time noise (interference), default 0")
    p.add_argument("--profile-error", type=flag(float, 1, EXEC_FACTOR_LIMITS[1]), default=1.0, metavar="F",
                   help="each function runs its profile's time x a factor log-uniform in [1/F, F], drawn from "
                        "--seed and fixed for the run: profiles that are wrong, as measured on another machine "
                        "(default 1: right); every policy plans with the profiles as given")
    p.add_argument("--placement", choices=PLACEMENTS, default=PLACEMENTS[0],
                   help="which GPU with room a new instance goes to: the first (first-fit, the default) or the "
                        "one with the least room that fits (best-fit: a GPU-sharing scheduler's binpack)")
    p.add_argument("--esg-margin", type=flag(float, 0, 0.9), metavar="M",
                   help="share of the SLO that esg and optimal keep in reserve at start (default 0.25; "
                        "misses raise it, see docs/control.md)")
    p.add_argument("--ablation", metavar="MECHANISM",
                   help="switch one mechanism of esg's control law off: " + ", ".join(ABLATIONS))
    p.add_argument("--json", action="store_true", help="print the SPEC §7 JSON instead of the table")
    p.add_argument("--out", metavar="DIR",
                   help="also write simulation.json, latencies.csv, decisions.csv (every re-plan of the "
                        "control law, with why) and PNG plots into DIR")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..sim import POLICY_NAMES, SimConfig, make_policy, simulate
    from ..sim.generate import profile_errors
    from ..control import ABLATIONS, ControlSettings
    from ..sim.report import document, render_table, write_outputs

    workload = load_workload(args.workload)
    profiles = load_profiles(args.profiles)
    for load in workload.workflows:
        load.workflow.check_profiles(profiles)
    names = list(POLICY_NAMES) if args.policies == "all" else [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown or not names:
        raise LoadError(f"unknown policy {', '.join(map(repr, unknown)) or '(none)'}; known: {', '.join(POLICY_NAMES)}")
    if args.duration is not None:
        if not args.duration > workload.warmup_s:
            raise LoadError(f"--duration must exceed the workload's warmup_s ({workload.warmup_s:g} s)")
        workload = dataclasses.replace(workload, duration_s=args.duration)
    if args.noise < 0:
        raise LoadError("--noise must not be negative")
    settings = ControlSettings(capacity_gpus=float(workload.gpus))
    margin = settings.slo_margin if args.esg_margin is None else args.esg_margin
    if not (0 <= margin < settings.max_margin):
        raise LoadError(f"--esg-margin must lie in [0, {settings.max_margin:g})")
    settings = dataclasses.replace(settings, slo_margin=margin)
    if args.ablation is not None and args.ablation not in ABLATIONS:
        raise LoadError(f"unknown --ablation {args.ablation!r}; known: {', '.join(ABLATIONS)}")
    workflows = [load.workflow for load in workload.workflows]
    errors = profile_errors(args.seed, profiles.functions, args.profile_error)  # 1: every factor 1
    results = []
    for name in names:
        policy = make_policy(name, workflows, profiles, settings=settings, ablation=args.ablation)
        progress = _Progress(name)
        results.append(simulate(workload, profiles, policy, SimConfig(seed=args.seed, noise_sigma=args.noise,
                                                                      exec_factors=errors, placement=args.placement),
                                progress=progress))
        progress.close()
    doc = document(workload.name, args.seed, workload.duration_s, results)
    if args.out:
        written = write_outputs(Path(args.out), doc, results)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    print(json.dumps(doc, indent=2) if args.json else render_table(doc))
    return 0


class _Progress:
    """A progress bar on stderr, shown only on a terminal and only once a run
    has taken more than two seconds."""

    def __init__(self, label: str):
        self.label = label
        self.started = time.monotonic()
        self.shown = False
        self.enabled = sys.stderr.isatty()

    def __call__(self, fraction: float) -> None:
        if not self.enabled or time.monotonic() - self.started < 2.0:
            return
        filled = int(fraction * 30)
        sys.stderr.write(f"\r{self.label:<12} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()
