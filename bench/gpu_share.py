"""What a GPU share does to a stage: the model alone against the function
around it, at each share, in one table.

For each share a fresh process applies the share as the runtime does
(``runtime.gpu.apply_share``: on a GPU, MPS or a green context of the
share's SMs; on a CPU, torch's threads) before torch starts, then for each
stage and batch size times

- ``model``: the stage's network alone, its input already on the device;
- ``function``: the handler's ``infer`` on Open Inference Protocol requests
  with binary tensors (what the router sends between stages): decoding,
  the copy to the device, the model and the answer's tensors;

both inside the share's limit, each the median of --runs after --warmup.
``overhead`` is (function - model) / model. On a GPU, the model's time
should fall as the share grows, and the function's with it.

    python bench/gpu_share.py [--stages resnet50,resnet18,espcn] [--batch-sizes 1,8,32]
                              [--shares 10,20,30,50,100] [--mechanism auto|mps|green-context] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esg_plugin.runtime import contract as C  # noqa: E402
from esg_plugin.limits import flag  # noqa: E402


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def worker(share: int, stages: list[str], sizes: list[int], runs: int, warmup: int, mechanism: str) -> dict:
    from esg_plugin.runtime.gpu import apply_share  # before torch, as the runtime does

    report = apply_share(share, os.environ, mechanism=mechanism)
    import torch

    from esg_plugin.profiler.worker import load_handler

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    rows = []
    handler = None
    for stage in stages:
        os.environ[C.ENV_FUNCTION] = stage
        handler = load_handler(str(ROOT / "functions" / "dnn")) if handler is None else importlib.reload(handler)
        requests = handler.sample_infer(max(sizes))
        if not requests:
            raise SystemExit(f"{stage} takes no tensors: nothing to compare")
        model = handler.STAGE.model
        images = [r.inputs["image"] for r in requests]
        inputs = torch.stack([torch.frombuffer(bytearray(t.data), dtype=torch.float32).reshape(t.shape) for t in images])
        device = next(model.parameters()).device
        for b in sizes:
            x = inputs[:b].to(device)

            def alone():
                with torch.inference_mode():
                    model(x)

            def through():
                handler.infer(requests[:b], None)

            times = {}
            with report.limit():
                for what, call in (("model", alone), ("function", through)):
                    for _ in range(warmup):
                        call()
                    sync()
                    samples = []
                    for _ in range(runs):
                        sync()
                        t0 = time.perf_counter()
                        call()
                        sync()
                        samples.append((time.perf_counter() - t0) * 1000.0)
                    times[what] = statistics.median(samples)
            rows.append({"stage": stage, "batch": b, "share": share, "model_ms": times["model"],
                         "function_ms": times["function"]})
    return {"share": share, "mechanism": report.mechanism, "detail": report.detail, "device": report.device,
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="resnet50,resnet18,espcn")
    ap.add_argument("--batch-sizes", type=_int_list, default=[1, 8, 32])
    ap.add_argument("--shares", type=_int_list, default=[10, 20, 30, 50, 100])
    ap.add_argument("--mechanism", choices=("auto", "mps", "green-context"), default="auto")
    ap.add_argument("--runs", type=flag(int, 1, 100_000), default=20)
    ap.add_argument("--warmup", type=flag(int, 0, 10_000), default=5)
    ap.add_argument("--json", metavar="OUT", help="also write every row here")
    ap.add_argument("--worker", type=int, metavar="SHARE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    stages = args.stages.split(",")
    if args.worker is not None:
        print(json.dumps(worker(args.worker, stages, args.batch_sizes, args.runs, args.warmup, args.mechanism)))
        return 0
    results = []
    for share in args.shares:
        cmd = [sys.executable, __file__, "--worker", str(share), "--stages", args.stages,
               "--batch-sizes", ",".join(map(str, args.batch_sizes)), "--mechanism", args.mechanism,
               "--runs", str(args.runs), "--warmup", str(args.warmup)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"share {share}%: failed: {(out.stderr.strip().splitlines() or ['no output'])[-1]}", flush=True)
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"share {share}%: {result['device']} {result['gpu'] or ''} torch {result['torch']}, "
              f"limited by {result['mechanism']} {result['detail']}", flush=True)
    if not results:
        return 1
    print(f"\n{'stage':<10} {'batch':>5} {'share%':>6} {'model ms':>9} {'function ms':>12} {'overhead':>9}")
    rows = sorted((r for res in results for r in res["rows"]), key=lambda r: (r["stage"], r["batch"], r["share"]))
    for r in rows:
        overhead = (r["function_ms"] - r["model_ms"]) / r["model_ms"]
        print(f"{r['stage']:<10} {r['batch']:>5} {r['share']:>6} {r['model_ms']:>9.2f} {r['function_ms']:>12.2f} "
              f"{overhead:>9.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
