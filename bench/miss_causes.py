"""Where each policy's missed requests come from, on random workloads.

    python bench/miss_causes.py [--seeds 1-20,...] [--policies esg,kpa,...] [--settle-s 30]
                                [--first-s S] [--settings JSON] [--processes 2] [--json FILE]

Each case is ``random_workload(seed)`` (as in ``bench/robustness.py``),
simulated once per policy. Every scored request that missed its SLO (late,
shed or unfinished) is put in one class by what its workflow's arrivals
were doing when it arrived — the workload's truth, the same for every
policy, not any policy's reading of it:

- ``rise``: within ``--settle-s`` seconds (the control law's long window)
  after an upward step of a ``steps`` workflow — the transient in which
  new instances are decided and start;
- ``fall``: within ``--settle-s`` seconds after a downward step;
- ``bursty``: a ``gamma`` workflow with cv > 1 (clustered arrivals);
- ``steady``: the rest (Poisson, steps outside their transients, diurnal).

``--first-s S`` also prints, for every upward step, each policy's missed
over arrived requests among those that arrived in the first S seconds
after it (the transient before new instances serve).
``--settings`` changes ControlSettings fields for esg and optimal (JSON),
as ``bench/robustness.py`` takes them: a variant of the law read by where
its misses fall. Prints one row per case (each policy's hit rate and its misses by class, as
a share of the case's scored requests; the best peer; whether ESG is within
one point of it), then, over the cases where ESG is not within a point,
how ESG's misses and the best peer's split by class. A class's share says
what an improvement there could win back: ESG cannot be within a point of
a peer that misses nothing where the class alone costs it more than a point.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Optional

from esg_plugin.control import ControlSettings
from esg_plugin.sim import POLICY_NAMES, SimConfig, make_policy, simulate
from esg_plugin.sim.generate import random_workload
from esg_plugin.sim.report import met
from esg_plugin.sim.workload import Arrivals

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from robustness import (  # noqa: E402  (a sibling bench script)
    MAX_PROCESSES, PEERS, judged, parse_seeds, policies_and_settings)
from esg_plugin.limits import flag  # noqa: E402

CLASSES = ("rise", "fall", "bursty", "steady")


def miss_class(arrivals: Arrivals, arrival_s: float, settle_s: float) -> str:
    """The class of a request that missed, by what its workflow's arrivals
    were doing at ``arrival_s`` (see the module's docstring)."""
    if arrivals.kind == "gamma" and arrivals.params.get("cv", 1.0) > 1.0:
        return "bursty"
    if arrivals.kind == "steps":
        before = None  # the first entry is where the run starts, not a step
        for start_s, rate_rps in arrivals.params["steps"]:
            if start_s > arrival_s:
                break
            if before is not None and arrival_s - start_s < settle_s and rate_rps != before:
                return "rise" if rate_rps > before else "fall"
            before = rate_rps
    return "steady"


def rises(arrivals: Arrivals) -> list[float]:
    """When a ``steps`` workflow's rate goes up (its first entry is the start, not a step)."""
    steps = arrivals.params["steps"] if arrivals.kind == "steps" else []
    return [float(start_s) for (_, before), (start_s, rate) in zip(steps, steps[1:]) if rate > before]


def run_case(seed: int, policies: list[str], settle_s: float, overrides: Optional[dict] = None,
             first_s: Optional[float] = None) -> dict:
    case = random_workload(seed)
    workflows = [load.workflow for load in case.workload.workflows]
    arrivals = {load.workflow.name: load.arrivals for load in case.workload.workflows}
    out = {"seed": seed, "description": case.description, "policies": {}}
    for name in policies:
        settings = ControlSettings(**{"capacity_gpus": float(case.workload.gpus), **(overrides or {})})
        policy = make_policy(name, workflows, case.profiles, settings=settings, gpus=case.workload.gpus)
        result = simulate(case.workload, case.profiles, policy, SimConfig(seed=seed))
        missed = dict.fromkeys(CLASSES, 0)
        for workflow, arrival_s, latency_ms in result.requests:
            if not met(latency_ms, result.slo_ms[workflow]):
                missed[miss_class(arrivals[workflow], arrival_s, settle_s)] += 1
        scored = len(result.requests)
        out["policies"][name] = {"hit": 1.0 - sum(missed.values()) / scored if scored else 0.0,
                                 "scored": scored, "missed": missed}
        if first_s is not None:
            first = out.setdefault("first", {})
            for workflow, load in arrivals.items():
                for at_s in rises(load):
                    seen = [met(latency_ms, result.slo_ms[workflow]) for w, arrival_s, latency_ms in result.requests
                            if w == workflow and at_s <= arrival_s < at_s + first_s]
                    first.setdefault(f"{workflow} at {at_s:g} s", {})[name] = (seen.count(False), len(seen))
    return out


def report(results: list[dict], policies: list[str]) -> str:
    peers = [p for p in policies if p in PEERS]
    lines = ["Each cell: SLO hit rate; misses by class as a share of the scored requests "
             "(r rise, f fall, b bursty, s steady; classes with none left out).", "",
             "| case | " + " | ".join(policies) + " | best peer | ESG within a point |",
             "|" + " --- |" * (len(policies) + 3)]
    behind = []
    for r in results:
        pol = r["policies"]
        best, within, _ = judged({p: {**v, "cost": 0.0} for p, v in pol.items()}, peers)
        if not within:
            behind.append((r, best))
        cells = []
        for p in policies:
            shares = [f"{c[0]} {n / pol[p]['scored']:.2%}" for c, n in zip(CLASSES, pol[p]["missed"].values()) if n]
            cells.append(f"{pol[p]['hit']:.2%}" + (f" ({', '.join(shares)})" if shares else ""))
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + f" | {best} | {'yes' if within else '**no**'} |")
    if "esg" in policies and peers:
        lines += ["", f"ESG not within a point of the best peer on {len(behind)} of {len(results)} cases."]
        if behind:
            lines += ["Over those cases, the missed requests by class (share of each policy's misses; "
                      "the points lost, mean over the cases):", "",
                      "| policy | " + " | ".join(CLASSES) + " | points lost |", "|" + " --- |" * (len(CLASSES) + 2)]
            for who, pick in (("esg", lambda r, best: r["policies"]["esg"]),
                              ("best peer", lambda r, best: r["policies"][best])):
                chosen = [pick(r, best) for r, best in behind]
                total = {c: sum(p["missed"][c] for p in chosen) for c in CLASSES}
                all_missed = sum(total.values()) or 1
                lost = sum(100.0 * (1.0 - p["hit"]) for p in chosen) / len(chosen)
                lines.append(f"| {who} | " + " | ".join(f"{total[c] / all_missed:.0%}" for c in CLASSES)
                             + f" | {lost:.2f} |")
            by_class = {c: sum(1 for r, _ in behind
                               if r["policies"]["esg"]["missed"][c] / r["policies"]["esg"]["scored"] > 0.01)
                        for c in CLASSES}
            lines += ["", "Cases where one class alone costs ESG more than a point: "
                      + ", ".join(f"{c} {n}" for c, n in by_class.items()) + "."]
    firsts = [(r["seed"], step, counts) for r in results for step, counts in r.get("first", {}).items()]
    if firsts:
        lines += ["", "Requests missed of those that arrived in the first seconds after each rise:", "",
                  "| case | rise | " + " | ".join(policies) + " |", "|" + " --- |" * (len(policies) + 2)]
        lines += [f"| {seed} | {step} | " + " | ".join(f"{counts[p][0]} / {counts[p][1]}" for p in policies) + " |"
                  for seed, step, counts in firsts]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-20"), metavar="RANGES")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES[:1] + POLICY_NAMES[2:]))
    parser.add_argument("--settle-s", type=float, default=30.0)
    parser.add_argument("--first-s", type=float, default=None, metavar="S",
                        help="also the misses among the requests of the first S seconds after each rise")
    parser.add_argument("--settings", default=None, metavar="JSON",
                        help='ControlSettings fields for esg and optimal, e.g. \'{"newest_first": false}\'')
    parser.add_argument("--processes", type=flag(int, 1, MAX_PROCESSES), default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    policies, overrides = policies_and_settings(parser, args.policies, args.settings, ablations=False)
    if not args.settle_s > 0 or (args.first_s is not None and not args.first_s > 0):
        parser.error("--settle-s and --first-s must be positive")
    started = time.perf_counter()
    with ProcessPoolExecutor(args.processes) as pool:
        results = list(pool.map(run_case, args.seeds, [policies] * len(args.seeds),
                                [args.settle_s] * len(args.seeds), [overrides] * len(args.seeds),
                                [args.first_s] * len(args.seeds)))
    print(report(results, policies))
    print(f"({len(results)} cases x {len(policies)} policies in {time.perf_counter() - started:.0f} s, "
          f"{args.processes} processes)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
