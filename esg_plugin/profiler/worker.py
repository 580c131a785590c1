"""One profiling process: one function, one share, every batch size.

Run by :mod:`esg_plugin.profiler.run` as
``python -m esg_plugin.profiler.worker FOLDER NAME SHARE SIZES REPS WARMUP``.
It applies the share first (before torch is imported, as the runtime does),
then imports the handler folder as the ``function`` package with
``ESG_FUNCTION=NAME``, and prints one JSON line: the median and raw
execution times of a batch per batch size, and how long the import took
(the process's share of a cold start). A batch is what the runtime runs:
the handler's ``infer`` on Open Inference Protocol requests when it offers
``sample_infer(count)`` (binary tensors, the path between a workflow's
stages), else ``handle_batch`` on ``sample_bodies(count)``; inside the
share's limit (a green context on a GPU without MPS), as the runtime runs it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import time
from types import SimpleNamespace

from esg_plugin.runtime import contract as C


def load_handler(folder: str):
    """The handler folder as the package ``function``, as the template's
    index.py loads it; ``esg_runtime`` (the runtime a handler may import in
    its image) is this package's runtime."""
    sys.modules.setdefault("esg_runtime", importlib.import_module("esg_plugin.runtime"))
    spec = importlib.machinery.ModuleSpec("function", None, is_package=True)
    spec.submodule_search_locations = [folder]
    sys.modules["function"] = importlib.util.module_from_spec(spec)
    return importlib.import_module("function.handler")


def main(argv: list[str]) -> int:
    folder, name, share, sizes, reps, warmup = argv
    share_pct = int(share)
    batch_sizes = [int(b) for b in sizes.split(",")]
    repetitions, warmups = int(reps), int(warmup)
    started = time.perf_counter()
    os.environ[C.ENV_FUNCTION] = name
    from esg_plugin.runtime.gpu import apply_share  # noqa: E402 - before the handler imports torch
    from esg_plugin.runtime.settings import share_mechanism

    report = apply_share(share_pct, os.environ, mechanism=share_mechanism(os.environ))
    handler = load_handler(folder)
    import_ms = (time.perf_counter() - started) * 1000.0
    run, path = _batch(handler, max(batch_sizes))
    sync = _synchronizer()
    medians, raw = {}, {}
    for b in batch_sizes:
        with report.limit():
            for _ in range(warmups):
                _check(run(b), name)
            times = []
            for _ in range(repetitions):
                sync()
                t0 = time.perf_counter()
                results = run(b)
                sync()
                times.append((time.perf_counter() - t0) * 1000.0)
                _check(results, name)
        medians[b] = statistics.median(times)
        raw[b] = [round(t, 4) for t in times]
    print(json.dumps({"name": name, "share": share_pct, "median_ms": medians, "raw_ms": raw,
                      "import_ms": import_ms, "device": report.device, "torch_threads": report.torch_threads,
                      "mechanism": report.mechanism, "detail": report.detail, "path": path}))
    return 0


def _batch(handler, largest: int):
    """(run a batch of n samples, which path): V2 ``infer`` when the handler
    gives V2 samples, else ``handle_batch`` on JSON sample bodies."""
    requests = handler.sample_infer(largest) if hasattr(handler, "sample_infer") else None
    if requests:
        return (lambda n: handler.infer(requests[:n], None)), "v2-binary"
    bodies = handler.sample_bodies(largest) if hasattr(handler, "sample_bodies") else [b"{}"] * largest
    events = [SimpleNamespace(body=b, headers={"Content-Type": "application/json"}, method="POST", query={}, path="/")
              for b in bodies]
    return (lambda n: handler.handle_batch(events[:n], None)), "json"


def _check(results, name):
    """Every sample answered as the runtime would send a 2xx: a body (dict,
    bytes, str) or a dict with a 2xx statusCode; an exception or an error
    status is a failed measurement."""
    def ok(r):
        if isinstance(r, BaseException):
            return False
        status = r.get("statusCode", 200) if isinstance(r, dict) else 200
        return isinstance(status, int) and 200 <= status < 300
    bad = [r for r in results if r is None or not ok(r)]
    if bad:
        raise SystemExit(f"{name}: the handler answered a sample request with {bad[0]!r}")


def _synchronizer():
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.synchronize
    except ImportError:
        pass
    return lambda: None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
