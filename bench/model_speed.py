"""How fast one DNN stage runs on this machine right now, alone: the
handler's handle_batch at batch 1, timed in a loop (the machine's speed
moves esg up's figures; docs/local.md quotes this).

    .venv/bin/python bench/model_speed.py [--stage resnet50] [--threads 1] [--runs 20]
"""

import argparse
import os
import sys
import time
from pathlib import Path

from esg_plugin.runtime import contract as C
from esg_plugin.limits import flag


def stage_handler(stage: str, threads: int):
    """The stage's handler in this process (``threads`` torch threads, one
    inter-op thread) and a batch-1 request, warmed up: (handler, events)."""
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    os.environ[C.ENV_FUNCTION] = stage
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "template/esg-python3"))  # esg_runtime
    from dnn import handler

    events = [handler._SampleEvent(body) for body in handler.sample_bodies(1)]
    for _ in range(3):
        handler.handle_batch(events, None)
    return handler, events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default="resnet50")
    ap.add_argument("--threads", type=flag(int, 1, 256), default=1)
    ap.add_argument("--runs", type=flag(int, 1, 100_000), default=20)
    args = ap.parse_args()
    handler, events = stage_handler(args.stage, args.threads)
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        handler.handle_batch(events, None)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(f"{args.stage} batch 1, {args.threads} thread(s): median {times[len(times) // 2]:.1f} ms, "
          f"min {times[0]:.1f} ms over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
