"""ESG before and after a change, workload by workload, from runs of bench/robustness.py.

    python bench/pairs.py BEFORE.json AFTER.json [BEFORE2.json AFTER2.json ...] [--below-rps R]

Each pair: two ``--json`` files of ``bench/robustness.py`` on the same
seeds and family, ESG before the change and after it (e.g. one run with
``--settings '{"low_rate_tail": false}'`` and one without); the peers'
figures are read from whichever of the two holds them (``--others-from``
copies them). Prints, before and after, over every case of every pair:
ESG's mean hit rate and GPUs, how many cases are ≥ 99%, within a point of
the best peer and no dearer than nexus (``bench/robustness.py``'s own
verdicts). With ``--below-rps R``, the same over the cases whose every
workflow's arrivals stay below R requests a second (the generator's
intensity, regenerated from the seed), in all and by arrival kind (cases
of one kind only). A file that does not load, or a pair that is not the
same seeds: one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from robustness import judged, saved_figures  # noqa: E402  (the bench's own verdicts and reading)

from esg_plugin.limits import MAX_RATE_RPS, flag  # noqa: E402
from esg_plugin.sim.generate import random_workload  # noqa: E402


def load_cases(path: str) -> dict[int, dict]:
    """The cases of a ``--json`` file of bench/robustness.py, by seed
    (ValueError where a figure is out of its range: ``saved_figures``)."""
    data = json.loads(Path(path).read_text())
    cases = data["cases"] if isinstance(data, dict) else data
    for case in cases:
        case["policies"] = {p: saved_figures(case["seed"], v) for p, v in case["policies"].items()}
    return {case["seed"]: case for case in cases}


def peak_rps(case: dict) -> float:
    """The highest intensity any workflow of the case's workload is drawn with (1-s grid)."""
    workload = random_workload(case["seed"], family=case.get("family", "standard")).workload
    return max(load.arrivals.rate_at_rps(float(t)) for load in workload.workflows
               for t in range(int(workload.duration_s) + 1))


def rows(pairs: list[tuple[dict, dict]]) -> list[dict]:
    """One row per case: ESG before and after, and the verdicts of each against the peers."""
    out = []
    for before, after in pairs:
        for seed, old in before.items():
            new = after[seed]
            policies = {**new["policies"], **old["policies"]}  # the peers from either file
            peers = [p for p in policies if p != "esg"]
            row = {"case": old, "kinds": set(old.get("shape", "").split("+"))}
            for tag, esg in (("before", old["policies"]["esg"]), ("after", new["policies"]["esg"])):
                _, within, cheap = judged({**policies, "esg": esg}, peers)
                row[tag] = (esg["hit"], esg["cost"], within, cheap)
            out.append(row)
    return out


def line(label: str, some: list[dict]) -> str:
    if not some:
        return f"{label} (0)"

    def side(tag):
        hit, cost, within, cheap = zip(*(r[tag] for r in some))
        return (f"{statistics.fmean(hit):.3%} / {statistics.fmean(cost):.3f} GPUs, ≥ 99% {sum(h >= 0.99 for h in hit)}, "
                f"within a point {sum(within)}, no dearer than nexus {sum(cheap)}")
    return f"{label} ({len(some)}): before {side('before')}; after {side('after')}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--below-rps", type=flag(float, 1e-6, MAX_RATE_RPS), default=None, metavar="R")
    args = parser.parse_args(argv)
    if len(args.files) % 2:
        parser.error("the files come in pairs: BEFORE AFTER")
    pairs = []
    for before_path, after_path in zip(args.files[::2], args.files[1::2]):
        try:
            before, after = load_cases(before_path), load_cases(after_path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            parser.error(f"{before_path} or {after_path} does not load: {err}")
        if set(before) != set(after):
            parser.error(f"{before_path} and {after_path} are not the same seeds")
        pairs.append((before, after))
    every = rows(pairs)
    print(line("all", every))
    if args.below_rps is not None:
        low = [r for r in every if peak_rps(r["case"]) < args.below_rps]
        print(line(f"every workflow below {args.below_rps:g} rps", low))
        for kind in sorted({k for r in low for k in r["kinds"]}):
            only = [r for r in low if r["kinds"] == {kind}]
            if only:
                print(line(f"  {kind} only", only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
