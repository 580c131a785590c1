"""What the C heap's thresholds cost a DNN stage (runtime/memory.py): per
stage, the model at one batch size, one torch thread, timed on the
process's main thread and on a second thread (the runtime's batching
thread is one), in a process with glibc's defaults and in one set as the
runtime sets a function (``keep_heap``). Medians of ``--runs`` calls,
interleaved main / thread. Figures, not pass/fail.

    .venv/bin/python bench/heap.py [--stages espcn resnet18] [--batch 8] [--size 56] [--runs 12]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from esg_plugin.runtime import contract as C
from esg_plugin.limits import flag

ROOT = Path(__file__).resolve().parents[1]

ONE = """
import json, os, queue, statistics, sys, threading, time
sys.path.insert(0, {functions!r}); sys.path.insert(0, {template!r})
from esg_runtime.memory import keep_heap
how = keep_heap({retain_mb})  # 0: glibc's defaults
import torch
torch.set_num_threads(1); torch.set_num_interop_threads(1)
os.environ[{env_function!r}] = {stage!r}
from dnn.handler import STAGE
model = STAGE.model
x = torch.rand({batch}, 3, {size}, {size}, generator=torch.Generator().manual_seed(0))
jobs, done = queue.Queue(), queue.Queue()
def timed():
    with torch.inference_mode():
        t = time.perf_counter(); model(x); return (time.perf_counter() - t) * 1000
def worker():
    while jobs.get():
        done.put(timed())
threading.Thread(target=worker, daemon=True).start()
main, other = [], []
for r in range({runs} + 2):
    main.append(timed())
    jobs.put(True); other.append(done.get())
jobs.put(False)
print(json.dumps({{"how": how, "main": statistics.median(main[2:]), "thread": statistics.median(other[2:])}}))
"""


def run(stage: str, batch: int, size: int, runs: int, retain_mb: int) -> dict:
    code = ONE.format(functions=str(ROOT / "functions"), template=str(ROOT / "template/esg-python3"),
                      retain_mb=retain_mb, env_function=C.ENV_FUNCTION, stage=stage, batch=batch, size=size, runs=runs)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", nargs="+", default=["espcn", "resnet18"])
    ap.add_argument("--batch", type=flag(int, 1, 1_024), default=8)
    ap.add_argument("--size", type=flag(int, 8, 4_096), default=56)
    ap.add_argument("--runs", type=flag(int, 1, 100_000), default=12)
    args = ap.parse_args()
    from esg_plugin.runtime.memory import DEFAULT_RETAIN_MB

    print(f"{'stage':<10} {'batch':>5} | {'heap':<26} {'main ms':>8} {'thread ms':>9}")
    for stage in args.stages:
        for retain_mb in (0, DEFAULT_RETAIN_MB):
            r = run(stage, args.batch, args.size, args.runs, retain_mb)
            print(f"{stage:<10} {args.batch:>5} | {r['how']:<26} {r['main']:>8.2f} {r['thread']:>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
