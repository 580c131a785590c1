"""Robustness: every policy on randomly generated workloads nobody tuned for.

    python bench/robustness.py [--cases 20] [--first-seed 1] [--seeds 1-20,101-130,...]
                               [--policies esg,nexus,...] [--ablation] [--settings JSON]
                               [--processes 2] [--json FILE] [--family standard|wide|extreme]
                               [--profile-error F] [--noise SIGMA] [--placement best-fit]
                               [--workflows w1,w2] [--gpus N] [--restart-at S]
    python bench/robustness.py --report FILE [--family standard|wide|extreme]
    python bench/robustness.py --seeds ... --policies esg --others-from FILE [--json FILE2]
    python bench/robustness.py --seeds 501 --family wide --policies esg,fast-gshare --out DIR

Each case is ``esg_plugin.sim.generate.random_workload(seed)`` (seeded: the
figures depend only on the seeds and the code), simulated once per policy
(simulation seed = case seed). Prints one markdown row per case: each
policy's SLO hit rate and cost (GPUs held), the best peer, and whether ESG
is within one point of it and holds no more than whole-GPU Nexus; then the
means, and a last line with ESG's mean to more digits and its counts
(within a point of the best peer; no dearer than nexus — and, of the
cases where it is dearer, those where nexus hits within half a point of
it or more: where nexus is not cheaper only by missing — and the cases
where some peer outdoes it: as high a hit rate for fewer GPUs). Before that
line, the same by the shape of the arrivals (each case's workflows'
arrival kinds: ``poisson``, ``gamma``, ``steps``, ``diurnal``, or several
joined by ``+``): how many cases, each policy's mean hit rate and cost,
and ESG's two counts — where each policy wins and loses. ``--report
FILE``: print the report of a ``--json`` file of an earlier run instead
of running anything (the shapes of a file written before they were
recorded are drawn again from its seeds and ``--family``). ``--seeds``
instead of ``--cases``/``--first-seed``: ranges and single seeds, comma
separated (the development sets of ``docs/EVALUATION.md``).
``--family wide``: the generator's wider family (``FAMILIES`` in
``esg_plugin/sim/generate.py``: up to three workflows of 2–12 stages, SLOs
1.1–4x, 2–400 rps, …), which no setting of the law was tried on;
``--family extreme``: wider still (up to 16 stages, SLOs 1.05–6x,
0.3–600 rps, cold starts up to 15 s, …).
``--ablation`` adds ESG with each mechanism of the control law
switched off in turn (``esg_plugin/control/settings.py``); ``--settings``
changes ControlSettings fields for esg and optimal (JSON; a tuple field as a
list).
``--profile-error F``: the profiles are wrong — each function's real
execution time is its profile's times a factor log-uniform in [1/F, F]
(``profile_errors`` in ``esg_plugin/sim/generate.py``, drawn from the case's
seed), fixed for the run; every policy plans with the profiles as given,
and the executions show the error (ESG's calibration reads it, the planned
peers do not). ``--noise SIGMA``: lognormal execution-time noise on top
(``SimConfig.noise_sigma``). ``--placement best-fit``: a new instance goes
to the GPU with the least room that fits, not the first with room
(``esg_plugin/sim/cluster.py``, ``PLACEMENTS``).
``--workflows w1,w2`` and ``--gpus N``: each case with only those of its
workflows, on N GPUs (its own 16 where not given) — one workflow of a
full cluster alone, say, to read what it needs (not with
``--others-from``). ``--others-from FILE``: run only ``--policies`` (ESG after a change to its
law, say) and take every other policy's figures from an earlier run's
``--json`` file of the same seeds, as if run again — the simulation is
seeded, so a policy whose code did not change gives the same figures to
the digit. The file must hold every seed, each its workload of this
``--family``, and (where it records them) the same ``--profile-error``,
``--noise`` and ``--placement``; else one line and exit code 2, before anything runs. Each
row of ``--json`` then names the file and the policies taken from it.
``--restart-at S``: each policy's controller restarts at the first
control tick at or after S seconds — a scaler's new version, a drained
node, a crash (``SimConfig.restart_at_s``): it forgets what it
remembered (the control law's state, a peer's planned rates, windows
and panics) but for what ESG's feedbacks learned, which the scaler keeps
in its Lease (``resume_learned``; ``--settings '{"resume_learned":
false}'`` forgets that too), and reads what the platform runs, as the
scaler reads its functions' objects (ESG's ``adopt_running`` then keeps
it as its first plan; ``--settings '{"adopt_running": false}'`` plans
from the first window instead). Not with ``--others-from``.
``--out DIR``: for reading a case, also write each case's outputs as
``esg simulate --out`` does into ``DIR/<workload>/``: ``simulation.json``,
``latencies.csv`` (every request), ``decisions.csv`` (every re-plan of
the control law, with why: what it covered, for what estimate, what the
plan held) and the plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

from esg_plugin.control import ABLATIONS, ControlSettings
from esg_plugin.limits import flag, is_number
from esg_plugin.sim import POLICY_NAMES, SimConfig, make_policy, simulate
from esg_plugin.sim.cluster import PLACEMENTS
from esg_plugin.sim.engine import EXEC_FACTOR_LIMITS, MAX_NOISE_SIGMA
from esg_plugin.sim.workload import WorkloadError
from esg_plugin.sim.generate import FAMILIES, profile_errors, random_workload, workload_name
from esg_plugin.sim.report import document, summarize, write_outputs

PEERS = [p for p in POLICY_NAMES if p not in ("esg", "optimal")]
COST_TOLERANCE = 0.005
"""GPUs: costs are compared as printed (two decimals)."""
AS_GOOD = 0.005
"""Of the cases where ESG holds more GPUs than nexus, the summary counts
those where nexus's hit rate is within this of ESG's (or above): where
nexus is not cheaper only by missing more."""


def run_case(seed: int, policies: list[str], overrides: Optional[dict] = None, family: str = "standard",
             profile_error: float = 1.0, noise: float = 0.0, outputs: Optional[str] = None,
             placement: str = PLACEMENTS[0], sim_seed: Optional[int] = None,
             only: Optional[tuple[str, ...]] = None, gpus: Optional[int] = None,
             restart_at_s: Optional[float] = None) -> dict:
    """Case ``seed`` simulated once per policy, at simulation seed ``sim_seed``
    (the arrivals' draw; the case seed where None, as every run of this
    bench does — ``bench/spread.py`` draws others); with ``only`` those of
    its workflows alone, with ``gpus`` on that many GPUs; with
    ``restart_at_s``, each policy's controller restarted then
    (``SimConfig.restart_at_s``)."""
    case = random_workload(seed, family=family)
    workload = subset(case.workload, only, gpus)
    errors = profile_errors(seed, case.profiles.functions, profile_error)  # 1: every factor 1
    workflows = [load.workflow for load in workload.workflows]
    out = {"seed": seed, "workload": case.workload.name, "description": case.description,
           "shape": shape_of(case.workload), "family": family, "profile_error": profile_error, "noise": noise,
           "placement": placement,
           "policies": {}}
    for key, value in (("sim_seed", sim_seed), ("workflows", only), ("gpus", gpus), ("restart_at_s", restart_at_s)):
        if value is not None:
            out[key] = list(value) if key == "workflows" else value
    runs = []
    for name in policies:
        policy_name, _, ablation = name.partition("-no-")
        settings = ControlSettings(**{"capacity_gpus": float(workload.gpus), **(overrides or {})})
        policy = make_policy(policy_name, workflows, case.profiles, settings=settings, ablation=ablation or None,
                             gpus=workload.gpus)
        config = SimConfig(seed=seed if sim_seed is None else sim_seed, noise_sigma=noise, exec_factors=errors,
                           placement=placement, restart_at_s=restart_at_s)
        run = simulate(workload, case.profiles, policy, config)
        run.policy = name  # an ablation's row by its own name
        summary = summarize(run)
        out["policies"][name] = {"hit": summary["slo_hit_rate"], "cost": summary["cost"]}
        runs.append(run)
    if outputs:
        write_outputs(Path(outputs) / case.workload.name,
                      document(case.workload.name, seed, case.workload.duration_s, runs), runs)
    return out


def subset(workload, only: Optional[tuple[str, ...]], gpus: Optional[int]):
    """The workload with only the workflows named in ``only`` (all where
    None), on ``gpus`` GPUs (its own where None); ValueError naming the
    workflows it has where ``only`` names another."""
    names = [load.workflow.name for load in workload.workflows]
    unknown = [name for name in (only or ()) if name not in names]
    if unknown:
        raise ValueError(f"{workload.name} has no workflow {', '.join(unknown)} (it has {', '.join(names)})")
    loads = tuple(load for load in workload.workflows if only is None or load.workflow.name in only)
    return dataclasses.replace(workload, workflows=loads, gpus=workload.gpus if gpus is None else gpus)


def shape_of(workload) -> str:
    """The arrival kinds of a workload's workflows, sorted and joined by ``+``."""
    return "+".join(sorted({load.arrivals.kind for load in workload.workflows}))


def parse_seeds(text: str) -> list[int]:
    """``"1-20,101-130,7"`` -> the seeds, in order."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a seed or a range of seeds: {part!r}") from None
        if last < first:
            raise argparse.ArgumentTypeError(f"an empty range of seeds: {part!r}")
        if len(seeds) + last - first + 1 > MAX_CASES:
            raise argparse.ArgumentTypeError(f"more than {MAX_CASES} seeds: {text!r}")
        seeds.extend(range(first, last + 1))
    return seeds


def policies_and_settings(parser: argparse.ArgumentParser, policies: str, settings: Optional[str],
                          ablations: bool = True):
    """(the policies of a comma-separated list, the ControlSettings fields of
    a JSON object or None), each checked: an unknown policy (with
    ``ablations``, ``esg-no-MECHANISM`` is one), or settings that do not
    parse, name no setting or hold a value out of range (a ControlError is
    a ValueError), end the command with argparse's one line and exit code 2."""
    names = policies.split(",")
    known = list(POLICY_NAMES) + ([f"esg-no-{mechanism}" for mechanism in ABLATIONS] if ablations else [])
    unknown = [p for p in names if p not in known]
    if unknown:
        parser.error(f"unknown policies: {', '.join(unknown)} (known: {', '.join(POLICY_NAMES)}"
                     + (", esg-no-MECHANISM)" if ablations else ")"))
    try:
        overrides = json.loads(settings) if settings else None
        ControlSettings(**(overrides or {}))
    except (ValueError, TypeError) as e:
        parser.error(f"--settings: {e}")
    return names, overrides


def outdone_by(pol: dict, peers: list[str]) -> list[str]:
    """The peers that outdo ESG in one case: at least its hit rate for fewer
    GPUs (by more than ``COST_TOLERANCE``) — better on one count and no
    worse on the other, whatever the objective."""
    if "esg" not in pol:
        return []
    esg = pol["esg"]
    return [p for p in peers if pol[p]["hit"] >= esg["hit"] and pol[p]["cost"] < esg["cost"] - COST_TOLERANCE]


def judged(pol: dict, peers: list[str]) -> tuple[Optional[str], bool, bool]:
    """(the best peer, ESG within one point of it, ESG no dearer than nexus)
    of one case; True where there is nothing to compare with."""
    best = max(peers, key=lambda p: pol[p]["hit"]) if peers else None
    if "esg" not in pol:
        return best, True, True
    within = best is None or pol["esg"]["hit"] >= pol[best]["hit"] - 0.01
    cheap = "nexus" not in pol or pol["esg"]["cost"] <= pol["nexus"]["cost"] + COST_TOLERANCE
    return best, within, cheap


def report(results: list[dict], policies: list[str]) -> str:
    peers = [p for p in policies if p in PEERS]
    head = "| case | " + " | ".join(policies) + " | best peer | ESG ok |"
    lines = ["Each cell: SLO hit rate / cost (GPUs held, time average after the warm-up). "
             "ESG ok: within one point of the best peer's hit rate and no more GPUs than nexus.", "",
             head, "|" + " --- |" * (len(policies) + 3)]
    failures = within_count = cheap_count = dearer_as_good = outdone = 0
    verdicts = [judged(r["policies"], peers) for r in results]
    for r, (best, within, cheap) in zip(results, verdicts):
        pol = r["policies"]
        ok = within and cheap
        within_count += within
        cheap_count += cheap
        dearer_as_good += not cheap and pol["nexus"]["hit"] >= pol["esg"]["hit"] - AS_GOOD
        failures += not ok
        outdone += bool(outdone_by(pol, peers))
        cells = [f"{pol[p]['hit']:.1%} / {pol[p]['cost']:.2f}" for p in policies]
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + f" | {best} | {'yes' if ok else '**no**'} |")
    means = [f"{statistics.fmean(r['policies'][p]['hit'] for r in results):.1%} / "
             f"{statistics.fmean(r['policies'][p]['cost'] for r in results):.2f}" for p in policies]
    lines.append("| **mean** | " + " | ".join(means) + f" | | {len(results) - failures}/{len(results)} |")
    mins = [f"{min(r['policies'][p]['hit'] for r in results):.1%}" for p in policies]
    lines.append("| min hit | " + " | ".join(mins) + " | | |")
    lines += ["", "| policy | mean SLO hit rate | workloads ≥ 99% | mean cost (GPUs) |", "| --- | --- | --- | --- |"]
    for p in policies:
        hits = [r["policies"][p]["hit"] for r in results]
        lines.append(f"| {p} | {statistics.fmean(hits):.1%} | {sum(h >= 0.99 for h in hits)} / {len(results)} | "
                     f"{statistics.fmean(r['policies'][p]['cost'] for r in results):.2f} |")
    shapes = sorted({r["shape"] for r in results if "shape" in r})
    if shapes:
        lines += ["", "| arrivals | cases | " + " | ".join(policies) + " | ESG within a point | ESG no dearer than nexus |",
                  "|" + " --- |" * (len(policies) + 4)]
        for shape in shapes:
            some = [r for r in results if r.get("shape") == shape]
            cells = [f"{statistics.fmean(r['policies'][p]['hit'] for r in some):.1%} / "
                     f"{statistics.fmean(r['policies'][p]['cost'] for r in some):.2f}" for p in policies]
            marks = [v[1:] for r, v in zip(results, verdicts) if r.get("shape") == shape] if "esg" in policies else []
            counts_cells = [str(sum(w for w, _ in marks)), str(sum(c for _, c in marks))] if marks else ["", ""]
            lines.append(f"| {shape} | {len(some)} | " + " | ".join(cells) + " | " + " | ".join(counts_cells) + " |")
    if "esg" in policies:
        counts = ([f"within a point of the best peer on {within_count}"] if peers else []) + \
                 ([f"no dearer than nexus on {cheap_count} (of the {len(results) - cheap_count} dearer, nexus "
                   f"hits within {AS_GOOD * 100:g} point of ESG or more on {dearer_as_good})"] if "nexus" in policies else []) + \
                 ([f"outdone by a peer (as high a hit rate for fewer GPUs) on {outdone}"] if peers else [])
        lines += ["", f"ESG over {len(results)} cases: mean hit "
                      f"{statistics.fmean(r['policies']['esg']['hit'] for r in results):.3%} at "
                      f"{statistics.fmean(r['policies']['esg']['cost'] for r in results):.4f} GPUs"
                      + "".join(f"; {c}" for c in counts)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=flag(int, 1, MAX_CASES), default=20)
    parser.add_argument("--first-seed", type=flag(int, 0, 2**31 - 1), default=1)
    parser.add_argument("--seeds", type=parse_seeds, default=None, metavar="RANGES",
                        help="e.g. 1-20,101-130 (instead of --cases and --first-seed)")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES[:1] + POLICY_NAMES[2:]))
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--processes", type=flag(int, 1, MAX_PROCESSES), default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--describe", action="store_true", help="print each case's description")
    parser.add_argument("--family", choices=tuple(FAMILIES), default="standard",
                        help="the generator's family of workloads (default: the one the law was developed on)")
    parser.add_argument("--settings", default=None, metavar="JSON",
                        help='ControlSettings fields for esg and optimal, e.g. \'{"queue_quantile": 0.95}\'')
    parser.add_argument("--profile-error", type=float, default=1.0, metavar="F",
                        help="real execution time = profile x a factor log-uniform in [1/F, F] per function (default 1)")
    parser.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                        help="lognormal sigma of execution-time noise (default 0)")
    parser.add_argument("--placement", choices=PLACEMENTS, default=PLACEMENTS[0],
                        help="which GPU with room a new instance goes to (default first-fit)")
    parser.add_argument("--workflows", default=None, metavar="NAMES",
                        help="only these workflows of each case, e.g. w1 or w0,w2 (default all)")
    parser.add_argument("--gpus", type=flag(int, 1, MAX_GPUS), default=None, metavar="N",
                        help="the cluster's GPUs (default each case's own)")
    parser.add_argument("--restart-at", type=float, default=None, metavar="S",
                        help="restart each policy's controller at S seconds: it forgets what it remembered and "
                             "reads what runs (default none)")
    parser.add_argument("--report", default=None, metavar="FILE",
                        help="print the report of an earlier run's --json file; run nothing")
    parser.add_argument("--others-from", default=None, metavar="FILE",
                        help="run only --policies; every other policy's figures from an earlier run's --json file")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also write each case's simulation.json, latencies.csv, decisions.csv and plots "
                             "into DIR/<workload>/")
    args = parser.parse_args(argv)
    if args.report:
        return print_saved(args.report, args.family)
    if not 1.0 <= args.profile_error <= EXEC_FACTOR_LIMITS[1]:
        parser.error(f"--profile-error must lie in [1, {EXEC_FACTOR_LIMITS[1]:g}]")
    if not 0.0 <= args.noise <= MAX_NOISE_SIGMA:
        parser.error(f"--noise must lie in [0, {MAX_NOISE_SIGMA:g}]")
    only = tuple(args.workflows.split(",")) if args.workflows else None
    if (only or args.gpus is not None) and args.others_from:
        parser.error("--workflows and --gpus do not go with --others-from (its file ran every workflow)")
    try:
        SimConfig(restart_at_s=args.restart_at)  # the simulator's own check of the restart time
    except WorkloadError as e:
        parser.error(f"--restart-at: {e}")
    if args.restart_at is not None and args.others_from:
        parser.error("--restart-at does not go with --others-from (its file ran without a restart)")
    policies, overrides = policies_and_settings(parser, args.policies, args.settings)
    if args.ablation:
        policies += [f"esg-no-{a}" for a in ABLATIONS]
    seeds = args.seeds or list(range(args.first_seed, args.first_seed + args.cases))
    for seed in seeds if only else ():
        try:
            subset(random_workload(seed, family=args.family).workload, only, None)
        except ValueError as e:
            parser.error(str(e))
    others: dict[int, dict] = {}
    if args.others_from:
        try:
            others = saved_others(args.others_from, seeds, policies, args.family, args.profile_error, args.noise,
                                  args.placement)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"robustness: {args.others_from}: cannot take the other policies from it ({e})", file=sys.stderr)
            return 2
    run = list(policies)  # what the simulator runs; the report's columns add the policies taken from the file
    policies += [name for name in others[seeds[0]] if name not in policies] if others else []
    started = time.perf_counter()
    with ProcessPoolExecutor(args.processes) as pool:
        results = list(pool.map(run_case, seeds, [run] * len(seeds), [overrides] * len(seeds),
                                [args.family] * len(seeds), [args.profile_error] * len(seeds),
                                [args.noise] * len(seeds), [args.out] * len(seeds),
                                [args.placement] * len(seeds), [None] * len(seeds), [only] * len(seeds),
                                [args.gpus] * len(seeds), [args.restart_at] * len(seeds)))
    for r in results:
        if others:
            r["policies"].update(others[r["seed"]])
            r["taken_from"] = {"file": args.others_from, "policies": list(others[r["seed"]])}
    if args.describe:
        for r in results:
            print(f"- {r['workload']}: {r['description']}")
        print()
    emit(report(results, policies), f"{len(seeds)} cases x {len(run)} policies", started, args.processes, results,
         args.json)
    return 0


def emit(text: str, what: str, started: float, processes: int, rows: list, json_path: Optional[str]) -> None:
    """The report on stdout, what ran and in how long on stderr, the rows in ``json_path`` where given."""
    print(text)
    print(f"({what} in {time.perf_counter() - started:.0f} s, {processes} processes)", file=sys.stderr)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows, f, indent=1)


MAX_GPUS = 1024
"""The most GPUs ``--gpus`` takes."""
MAX_CASES = 100_000
"""The most cases one run takes (``--cases``, or the seeds of ``--seeds``)."""
MAX_PROCESSES = 64
"""The most worker processes ``--processes`` takes."""

UNRECORDED = {"profile_error": 1.0, "noise": 0.0, "placement": PLACEMENTS[0]}
"""What a ``--json`` file written before a setting was recorded ran with."""


def saved_others(path: str, seeds: list[int], policies: list[str], family: str, profile_error: float,
                 noise: float, placement: str = PLACEMENTS[0]) -> dict[int, dict]:
    """Per seed, the figures of the policies of an earlier run's ``--json``
    file that this run does not run (the same ones for every seed);
    ValueError where the file does not hold this run's cases."""
    with open(path) as f:
        rows = {int(r["seed"]): r for r in json.load(f)}
    out: dict[int, dict] = {}
    for seed in seeds:
        row = rows.get(seed)
        if row is None:
            raise ValueError(f"no case {seed} in it")
        name = workload_name(seed, family)
        if row["workload"] != name:
            raise ValueError(f"case {seed} is {row['workload']!r}, not this --family's {name!r}")
        for key, value in (("profile_error", profile_error), ("noise", noise), ("placement", placement)):
            if row.get(key, UNRECORDED[key]) != value:
                raise ValueError(f"case {seed} ran with {key} {row.get(key, 'not recorded')!r}, not {value!r}")
        taken = {p: saved_figures(seed, v) for p, v in row["policies"].items() if p not in policies}
        if out and list(taken) != list(next(iter(out.values()))):
            raise ValueError(f"case {seed} has other policies than case {seeds[0]}")
        out[seed] = taken
    return out


def saved_figures(seed, figures) -> dict:
    """One policy's figures of one case of a ``--json`` file, believed only
    where they can be a run's: a hit rate in [0, 1], a cost (GPUs) finite
    and not negative; ValueError naming the case otherwise."""
    try:
        hit, cost = figures["hit"], figures["cost"]
    except (KeyError, TypeError):
        raise ValueError(f"case {seed}: a policy without its hit rate and cost") from None
    if not (is_number(hit) and 0.0 <= hit <= 1.0 and is_number(cost) and cost >= 0.0):
        raise ValueError(f"case {seed}: hit rate {hit!r} or cost {cost!r} out of range")
    return {"hit": float(hit), "cost": float(cost)}


def print_saved(path: str, family: str) -> int:
    """The report of an earlier run's ``--json`` file; 2 with one line where it cannot be read."""
    try:
        with open(path) as f:
            results = json.load(f)
        policies = list(results[0]["policies"])
        for r in results:
            if "shape" not in r:
                r["shape"] = shape_of(random_workload(r["seed"], family=family).workload)
            if list(r["policies"]) != policies:
                raise ValueError(f"case {r['seed']} has other policies than the first")
            r["policies"] = {p: saved_figures(r["seed"], v) for p, v in r["policies"].items()}
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        print(f"robustness: {path}: not a --json file of this bench ({e})", file=sys.stderr)
        return 2
    print(report(results, policies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
