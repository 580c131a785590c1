"""One profiling process: one function, one share, every batch size.

Run by :mod:`esg_plugin.profiler.run` as
``python -m esg_plugin.profiler.worker FOLDER NAME SHARE SIZES REPS WARMUP``.
It applies the share first (before torch is imported, as the runtime does),
then imports the handler folder as the ``function`` package with
``ESG_FUNCTION=NAME``, and prints one JSON line: the median and raw
execution times of ``handle_batch`` per batch size, and how long the import
took (the process's share of a cold start).
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

    report = apply_share(share_pct, os.environ)
    handler = load_handler(folder)
    import_ms = (time.perf_counter() - started) * 1000.0
    bodies = handler.sample_bodies(max(batch_sizes)) if hasattr(handler, "sample_bodies") else [b"{}"] * max(batch_sizes)
    events = [SimpleNamespace(body=b, headers={"Content-Type": "application/json"}, method="POST", query={}, path="/")
              for b in bodies]
    sync = _synchronizer()
    medians, raw = {}, {}
    for b in batch_sizes:
        batch = events[:b]
        for _ in range(warmups):
            _check(handler.handle_batch(batch, None), name)
        times = []
        for _ in range(repetitions):
            sync()
            t0 = time.perf_counter()
            results = handler.handle_batch(batch, None)
            sync()
            times.append((time.perf_counter() - t0) * 1000.0)
            _check(results, name)
        medians[b] = statistics.median(times)
        raw[b] = [round(t, 4) for t in times]
    print(json.dumps({"name": name, "share": share_pct, "median_ms": medians, "raw_ms": raw,
                      "import_ms": import_ms, "device": report.device, "torch_threads": report.torch_threads}))
    return 0


def _check(results, name):
    """Every sample answered as the runtime would send a 2xx: a body (dict,
    bytes, str) or a dict with a 2xx statusCode; an exception or an error
    status is a failed measurement."""
    def ok(r):
        if isinstance(r, BaseException):
            return False
        status = r.get("statusCode", 200) if isinstance(r, dict) else 200
        return isinstance(status, int) and 200 <= status < 300
    bad = [r for r in results if not ok(r)]
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
