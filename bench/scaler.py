"""Control-loop time of the scaler per iteration: 10 workflows, 50 functions.

    python bench/scaler.py [--iterations 100]

Ten 5-stage workflows (chains and DAGs over the synthetic example profiles),
a metrics source answering from memory with rates that change every
iteration, and the dry-run actuator: what is timed is observe -> plan ->
stabilise -> diff, the scaler's own work. Goal: under 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from esg_plugin.loaders import load_profiles
from esg_plugin.runtime import contract as C
from esg_plugin.scaler import DryRunActuator, Observation, Scaler, ScalerSettings, Topology, freeze_start_up_heap
from esg_plugin.limits import flag

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ["decode", "ssd", "resnet50", "resnet18", "aggregate", "preprocess", "superres", "denoise", "caption",
             "langid", "translate", "sentiment"]


def stack(workflows: int, stages: int, rng: random.Random) -> dict:
    functions = {}
    for w in range(workflows):
        for s in range(stages):
            after = [] if s == 0 else ([f"s{s - 1}"] if w % 2 == 0 or s < 2 else [f"s{s - 1}", f"s{s - 2}"])
            annotations = {C.ANNOTATION_WORKFLOW: f"wf{w}", C.ANNOTATION_STAGE: f"s{s}",
                           C.ANNOTATION_PROFILE: rng.choice(FUNCTIONS), C.ANNOTATION_HOP_MS: "2"}
            if after:
                annotations[C.ANNOTATION_AFTER] = ",".join(after)
            else:
                annotations[C.ANNOTATION_SLO_MS] = str(rng.choice([150, 200, 300, 400]))
            functions[f"wf{w}-s{s}"] = {"lang": "esg-python3", "annotations": annotations}
    return {"functions": functions}


class MovingSource:
    def __init__(self, entries, rng):
        self.entries, self.rng = entries, rng

    def observe(self, now):
        rates = {fn: self.rng.uniform(5, 80) for fn in self.entries}
        return Observation(now, rates, "bench", 30.0, rates)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=flag(int, 1, 1_000_000), default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    topology = Topology.from_stack(stack(10, 5, rng))
    profiles = load_profiles(ROOT / "examples/profiles/synthetic.json")
    entries = [fn for name in topology.workflows for fn in topology.entry_functions(name)]
    clock = iter(range(0, 10 ** 9, 5))
    scaler = Scaler(topology, profiles, ScalerSettings(), MovingSource(entries, rng), DryRunActuator(),
                    clock=lambda: float(next(clock)))
    scaler.iterate()  # warm caches
    freeze_start_up_heap()  # as esg scaler does once it has started
    times = []
    for _ in range(args.iterations):
        started = time.perf_counter()
        scaler.iterate()
        times.append((time.perf_counter() - started) * 1000.0)
    times.sort()
    print(f"scaler iteration, {len(topology.workflows)} workflows / {len(topology.functions)} functions, "
          f"{args.iterations} iterations:")
    print(f"  median {statistics.median(times):.1f} ms   p99 {times[int(0.99 * (len(times) - 1))]:.1f} ms   "
          f"max {times[-1]:.1f} ms   (goal: under 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
