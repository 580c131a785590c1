"""Spread: how much one workload's figures move with the draw of its arrivals.

    python bench/spread.py [--seeds 1-10] [--family standard|wide|extreme] [--draws 3]
                           [--policies esg,nexus,esg-no-fair,...] [--settings JSON] [--processes 2] [--json FILE]

A random workload (``random_workload(seed)``) fixes the workflows, the
profiles and each workflow's arrival process (Poisson at some rate, gamma
gaps of some cv, a step, a diurnal curve); the simulation seed draws the
arrivals' times from it. ``bench/robustness.py`` simulates each case once,
at simulation seed = case seed: one draw. This simulates each case at
``--draws`` simulation seeds (the case seed, then the case seed plus
multiples of ``DRAW_STRIDE``), every policy on the same draws, and prints
per case and policy the mean SLO hit rate over the draws with its lowest
and highest, the mean cost (GPUs held), and on how many draws ESG was
within one point of the best peer and held no more than whole-GPU nexus
(``robustness.py``'s two verdicts), and on how many a peer outdid it (as
high a hit rate for fewer GPUs, ``robustness.outdone_by``). Then ESG's
spread over all cases —
the median and the largest gap between its best and worst draw — and on
how many cases each verdict held on every draw, on none, or changed with
the draw: whether a difference between two policies on one workload is
larger than the workload's own noise. The first draw is ``robustness.py``'s
run of the case, to the digit.

``--settings`` changes ControlSettings fields for esg (JSON, as
``robustness.py``'s): two runs, with and without, compare a change of the
law draw by draw (the JSON keeps each draw's figures, ``hits`` and
``costs``); ``esg-no-MECHANISM`` is esg with one mechanism off.

A bad argument gets one line and exit code 2 (argparse's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import (  # noqa: E402  (a sibling bench script)
    MAX_PROCESSES, PEERS, emit, judged, outdone_by, parse_seeds, policies_and_settings, run_case)

from esg_plugin.sim import POLICY_NAMES  # noqa: E402
from esg_plugin.sim.generate import FAMILIES  # noqa: E402
from esg_plugin.limits import flag  # noqa: E402

DRAW_STRIDE = 1_000_003
"""Draw k of case s is simulated at seed s + k × this (a prime far above any case seed in use)."""
MAX_DRAWS = 100


def draw_seeds(seed: int, draws: int) -> list[int]:
    """The simulation seeds of a case's draws; the first is the case seed."""
    return [seed + k * DRAW_STRIDE for k in range(draws)]


def run_draw(job: tuple[int, int, list[str], str, Optional[dict]]) -> dict:
    """(case seed, simulation seed, policies, family, settings): ``robustness.run_case`` at that draw, else its
    defaults."""
    seed, sim_seed, policies, family, overrides = job
    return run_case(seed, policies, overrides, family=family, sim_seed=sim_seed)


def spread_of(runs: list[dict], policies: list[str]) -> dict:
    """One case's draws (``run_case`` outputs, the same case) summed up:
    per policy the hit rates and costs of every draw, their mean, lowest and
    highest; on how many draws ESG was within a point of the best peer, no
    dearer than nexus, and outdone by a peer."""
    peers = [p for p in policies if p in PEERS]
    row = {"seed": runs[0]["seed"], "workload": runs[0]["workload"], "draws": [r.get("sim_seed") for r in runs],
           "policies": {}}
    for p in policies:
        hits = [r["policies"][p]["hit"] for r in runs]
        costs = [r["policies"][p]["cost"] for r in runs]
        row["policies"][p] = {"hit": statistics.fmean(hits), "cost": statistics.fmean(costs),
                              "hit_min": min(hits), "hit_max": max(hits), "hits": hits, "costs": costs}
    verdicts = [judged(r["policies"], peers)[1:] for r in runs]
    row["esg_within"] = sum(w for w, _ in verdicts)
    row["esg_cheap"] = sum(c for _, c in verdicts)
    row["esg_outdone"] = sum(bool(outdone_by(r["policies"], peers)) for r in runs)
    return row


def report(rows: list[dict], policies: list[str]) -> str:
    draws = len(rows[0]["draws"])
    lines = [f"Each cell: mean SLO hit rate over {draws} draws of the arrivals (lowest-highest) / mean cost "
             "(GPUs held). ESG within / no dearer / outdone: on how many draws ESG was within one point of the "
             "best peer / held no more than nexus / was outdone by a peer (as high a hit rate for fewer GPUs).", "",
             "| case | " + " | ".join(policies) + " | ESG within | ESG no dearer | ESG outdone |",
             "|" + " --- |" * (len(policies) + 4)]
    for row in rows:
        cells = [f"{v['hit']:.1%} ({v['hit_min']:.1%}-{v['hit_max']:.1%}) / {v['cost']:.2f}"
                 for v in (row["policies"][p] for p in policies)]
        marks = [f"{row[key]}/{draws}" for key in ("esg_within", "esg_cheap", "esg_outdone")] \
            if "esg" in policies else ["", "", ""]
        lines.append(f"| {row['seed']} | " + " | ".join(cells) + " | " + " | ".join(marks) + " |")
    means = [f"{statistics.fmean(r['policies'][p]['hit'] for r in rows):.1%} / "
             f"{statistics.fmean(r['policies'][p]['cost'] for r in rows):.2f}" for p in policies]
    lines.append("| **mean** | " + " | ".join(means) + " | | | |")
    if "esg" in policies:
        gaps = sorted(((r["policies"]["esg"]["hit_max"] - r["policies"]["esg"]["hit_min"]) * 100, r["seed"])
                      for r in rows)
        widest = ", ".join(f"{seed} ({gap:.1f})" for gap, seed in reversed(gaps[-3:]))

        def held(key: str) -> str:
            always = sum(r[key] == draws for r in rows)
            never = sum(r[key] == 0 for r in rows)
            return f"on every draw on {always}, on none on {never}, changing with the draw on {len(rows) - always - never}"

        lines += ["", f"ESG over {len(rows)} cases x {draws} draws: mean hit "
                      f"{statistics.fmean(r['policies']['esg']['hit'] for r in rows):.3%} at "
                      f"{statistics.fmean(r['policies']['esg']['cost'] for r in rows):.4f} GPUs; its best draw over "
                      f"its worst by {statistics.median(g for g, _ in gaps):.2f} points at the median, the most "
                      f"on {widest}",
                  f"within a point of the best peer: {held('esg_within')}; no dearer than nexus: {held('esg_cheap')}; "
                  f"outdone by a peer: {held('esg_outdone')}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-10"), metavar="RANGES",
                        help="the cases, e.g. 1-10,101-105")
    parser.add_argument("--family", choices=tuple(FAMILIES), default="standard")
    parser.add_argument("--draws", type=flag(int, 1, MAX_DRAWS), default=3, help="arrival draws per case (default 3)")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES[:1] + POLICY_NAMES[2:]))
    parser.add_argument("--settings", default=None, metavar="JSON",
                        help='ControlSettings fields for esg, e.g. \'{"fair_share": false}\'')
    parser.add_argument("--processes", type=flag(int, 1, MAX_PROCESSES), default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    policies, overrides = policies_and_settings(parser, args.policies, args.settings)
    jobs = [(seed, sim_seed, policies, args.family, overrides)
            for seed in args.seeds for sim_seed in draw_seeds(seed, args.draws)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.processes) as pool:
        runs = list(pool.map(run_draw, jobs))
    rows = [spread_of(runs[i:i + args.draws], policies) for i in range(0, len(runs), args.draws)]
    emit(report(rows, policies), f"{len(args.seeds)} cases x {args.draws} draws x {len(policies)} policies", started,
         args.processes, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
