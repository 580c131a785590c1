"""What a worker's start costs on this machine, and what it costs the
workers that serve beside it (docs/local.md quotes this).

    .venv/bin/python bench/worker_start.py [--stages resnet50,translator,ssd-mobilenetv2] [--runs 40] [--nice 10]
                                           [--busy 1]

1. **Where a start's time goes**, per stage, each in a fresh process as
   the embedded platform starts one (one torch thread): ``import torch``,
   the stage's model built (its handler imported), the warm-up at batch 1
   — wall-clock and the process's CPU time.
2. **What a start does to a serving worker**: ResNet-50 at batch 1 (one
   thread) timed in a loop in this process, alone, then while fresh
   processes start one after the other at ``--nice`` (the platform's
   ``START_NICE``) — the median and p90 of each. On a machine with a core
   free for the start, a slowdown here is not CPU time taken (nice gives
   the serving worker the core) but what a start shares besides: memory
   bandwidth, caches, page faults of a ~1-GB library. ``--busy N``: N
   more processes run ResNet-50 in a loop meanwhile (one thread each), so
   that no core is free for the start — as under ``esg up``, where ten
   workers, the gateway and the load generator share two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from esg_plugin.runtime import contract as C
from model_speed import stage_handler  # bench/ is the script's folder
from esg_plugin.limits import flag

ROOT = Path(__file__).resolve().parents[1]
PATHS = [str(ROOT / "functions"), str(ROOT / "template/esg-python3"), str(ROOT)]

CHILD = r"""
import json, os, sys, time
wall, cpu = time.perf_counter, time.process_time
marks = [(wall(), cpu())]
import torch
torch.set_num_threads(1)
torch.set_num_interop_threads(1)
marks.append((wall(), cpu()))
from dnn import handler
marks.append((wall(), cpu()))
handler.warmup([1], None)
marks.append((wall(), cpu()))
print(json.dumps([[b[0] - a[0], b[1] - a[1]] for a, b in zip(marks, marks[1:])]))
"""


def start_once(stage: str, nice: int = 0) -> list[list[float]]:
    """One fresh process through a worker's start: [[wall, cpu] of import torch, model, warm-up]."""
    env = {**os.environ, C.ENV_FUNCTION: stage, "PYTHONPATH": os.pathsep.join(PATHS)}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True,
                         preexec_fn=(lambda: os.nice(nice)) if nice else None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def serving_times_ms(handler, events, runs: int, beside_nice: int | None) -> list[float]:
    """The request timed ``runs`` times; with ``beside_nice``, while fresh
    processes start ResNet-50 workers one after the other at that nice value."""
    import threading

    stop = threading.Event()

    def starts():
        while not stop.is_set():
            start_once("resnet50", beside_nice)

    starter = threading.Thread(target=starts, daemon=True) if beside_nice is not None else None
    if starter:
        starter.start()
        time.sleep(0.5)  # the first start under way
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        handler.handle_batch(events, None)
        times.append((time.perf_counter() - began) * 1000.0)
    stop.set()
    if starter:
        starter.join()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="resnet50,translator,ssd-mobilenetv2")
    ap.add_argument("--runs", type=flag(int, 1, 100_000), default=40,
                    help="ResNet-50 runs timed alone and beside starts")
    ap.add_argument("--nice", type=flag(int, -20, 19), default=10, help="the nice value the starts run at")
    ap.add_argument("--busy", type=flag(int, 0, 64), default=0, help="processes serving ResNet-50 in a loop meanwhile")
    args = ap.parse_args()
    print(f"a worker's start, each in a fresh process (one torch thread), {os.cpu_count()} cores:")
    for stage in args.stages.split(","):
        (torch_w, torch_c), (model_w, model_c), (warm_w, warm_c) = start_once(stage)
        print(f"  {stage:16s} import torch {torch_w:.2f} s ({torch_c:.2f} s CPU), model {model_w:.2f} s "
              f"({model_c:.2f}), warm-up at batch 1 {warm_w:.2f} s ({warm_c:.2f}); "
              f"total {torch_w + model_w + warm_w:.2f} s")
    handler, events = stage_handler("resnet50", 1)
    # a serving loop each, until killed: bench/model_speed.py with runs nobody waits for
    busy = [subprocess.Popen([sys.executable, str(ROOT / "bench" / "model_speed.py"), "--runs", str(10 ** 9)],
                             stdout=subprocess.DEVNULL) for _ in range(args.busy)]
    try:
        time.sleep(5.0 if busy else 0.0)  # the busy ones past their own start
        alone = serving_times_ms(handler, events, args.runs, None)
        beside = serving_times_ms(handler, events, args.runs, args.nice)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    others = f", {args.busy} more serving" if busy else ""
    for label, times in ((f"alone{others}", alone), (f"beside starts at nice {args.nice}{others}", beside)):
        ordered = sorted(times)
        print(f"  ResNet-50 batch 1 {label:40s} median {statistics.median(times):.1f} ms, "
              f"p90 {ordered[int(0.9 * (len(ordered) - 1))]:.1f} ms over {len(times)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
