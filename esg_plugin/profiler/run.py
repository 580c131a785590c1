"""``esg profile``: measure how long each function takes per batch size and share.

For every function and every share, a fresh worker process
(:mod:`esg_plugin.profiler.worker`) applies the share before the framework
initialises, warms up, and times each batch size ``repetitions`` times; the
profile keeps the median. On a GPU machine, shares are enforced through MPS
when ``nvidia-cuda-mps-control`` is available (the daemon is started if it
is not running); otherwise only the memory fraction applies, and the profile
records which. The result is SPEC §1 JSON with device metadata and the raw
timings.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence
from ..errors import ESGError
from ..runtime import contract as C
from ..runtime.gpu import cpu_allotment
from ..runtime.settings import SHARE_MECHANISMS


class ProfileError(ESGError, ValueError):
    """Bad arguments, or a function that cannot be profiled."""


@dataclass(frozen=True)
class ProfileRequest:
    folder: Path
    """A handler folder (functions/dnn) or a folder of them."""
    names: Sequence[str]
    batch_sizes: Sequence[int]
    shares: Sequence[int]
    repetitions: int = 7
    warmup: int = 2
    share_mechanism: str = "auto"
    """On a GPU: auto (MPS when its daemon runs or starts, else green contexts), mps or green-context."""


def discover(functions_dir: Path) -> dict[str, Path]:
    """name -> handler folder. A folder's handler.py may list several names
    in PROFILE_NAMES (picked with ESG_FUNCTION); otherwise the folder's name.
    In a folder of folders, a handler without ``handle_batch`` (a plain
    function such as functions/router) is passed over: there is no batch to
    time."""
    if not functions_dir.is_dir():
        raise ProfileError(f"{functions_dir}: no such folder")
    if (functions_dir / "handler.py").is_file():
        if not _defines_handle_batch(functions_dir / "handler.py"):
            raise ProfileError(f"{functions_dir}/handler.py defines no handle_batch(events, context): "
                               "nothing to profile")
        folders = [functions_dir]
    else:
        handlers = sorted(p for p in functions_dir.iterdir() if (p / "handler.py").is_file())
        if not handlers:
            raise ProfileError(f"{functions_dir}: no handler.py here or in its subfolders")
        folders = [p for p in handlers if _defines_handle_batch(p / "handler.py")]
        if not folders:
            raise ProfileError(f"{functions_dir}: no handler.py defines handle_batch(events, context)")
    found = {}
    for folder in folders:
        names = _declared_names(folder / "handler.py") or [folder.name]
        for name in names:
            found[name] = folder
    return found


def _module(handler: Path):
    """The handler's syntax tree, read without importing it (importing would
    load torch into this process)."""
    import ast

    try:
        return ast.parse(handler.read_text())
    except (SyntaxError, UnicodeDecodeError, ValueError) as err:
        raise ProfileError(f"{handler}: not Python: {err}") from None


def _defines_handle_batch(handler: Path) -> bool:
    import ast

    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "handle_batch"
               for node in _module(handler).body)


def _declared_names(handler: Path) -> list[str]:
    """PROFILE_NAMES, a literal list."""
    import ast

    for node in _module(handler).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(getattr(t, "id", None) == "PROFILE_NAMES" for t in targets):
            try:
                return [str(n) for n in ast.literal_eval(node.value)]
            except ValueError:
                raise ProfileError(f"{handler}: PROFILE_NAMES must be a literal list of names") from None
    return []


def device_metadata() -> dict:
    meta = {"cpu_model": _cpu_model(), "cores": os.cpu_count(), "cores_allotted": round(cpu_allotment(), 2),
            "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        import torch

        meta["torch_version"] = torch.__version__
    except ImportError:
        meta["torch_version"] = None
    gpu = _nvidia_smi()
    if gpu:
        meta.update(gpu)
    return meta


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nvidia_smi() -> Optional[dict]:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    name, driver, memory = [x.strip() for x in out.stdout.strip().splitlines()[0].split(",")]
    return {"gpu_name": name, "gpu_driver": driver, "gpu_memory": memory}


def ensure_mps() -> str:
    """'mps' when shares are enforced by an MPS server, else what applies."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        return "memory-fraction only (nvidia-cuda-mps-control not found)"
    probe = subprocess.run([control], input="get_server_list\n", capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        started = subprocess.run([control, "-d"], capture_output=True, text=True, timeout=10)
        if started.returncode != 0:
            return f"memory-fraction only (MPS daemon did not start: {started.stderr.strip()})"
    return f"mps ({C.ENV_MPS_SHARE_PCT}) + memory fraction"


def profile(request: ProfileRequest, progress: Callable[[str], None] = lambda line: None) -> dict:
    _validate(request)
    available = discover(request.folder)
    unknown = [n for n in request.names if n not in available]
    if unknown:
        raise ProfileError(f"unknown function(s) {', '.join(unknown)}; found: {', '.join(sorted(available))}")
    meta = device_metadata()
    gpu = "gpu_name" in meta
    if gpu and request.share_mechanism != "green-context":
        progress(f"MPS: {ensure_mps()}")
    functions, failed, mechanisms, paths = {}, {}, set(), {}
    for name in request.names:
        rows = {b: {} for b in request.batch_sizes}
        raw = {b: {} for b in request.batch_sizes}
        import_ms = []
        try:
            for share in request.shares:
                progress(f"profiling {name} at share {share}%")
                result = _run_worker(available[name], name, share, request)
                for b in request.batch_sizes:
                    rows[b][share] = round(result["median_ms"][str(b)], 4)
                    raw[b][share] = result["raw_ms"][str(b)]
                import_ms.append(result["import_ms"])
                mechanisms.add(result.get("mechanism", "?") + (f" ({result['detail']})" if result.get("detail") else ""))
                paths[name] = result.get("path", "json")
        except ProfileError as err:  # one function's failure loses nothing measured for the others
            progress(f"failed: {err}")
            failed[name] = str(err)
            continue
        functions[name] = {
            "batch_sizes": list(request.batch_sizes),
            "gpu_shares": list(request.shares),
            "latency_ms": [[rows[b][g] for g in request.shares] for b in request.batch_sizes],
            "cold_start_ms": round(max(import_ms), 1),
            "raw_latency_ms": {str(b): {str(g): raw[b][g] for g in request.shares} for b in request.batch_sizes},
        }
    if not functions:
        raise ProfileError("nothing measured: " + "; ".join(failed.values()))
    device = meta.get("gpu_name") or f"cpu-{meta['cores_allotted']:g}core"  # the cores it was measured on
    measured_by = {"command": "esg profile " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["profile"] else None,
                   "repetitions": request.repetitions, "warmup": request.warmup, "statistic": "median",
                   "share_mechanism": ", ".join(sorted(mechanisms)), "paths": paths, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if failed:
        measured_by["failed"] = failed
    return {
        "device": device,
        "share_unit": ("percent of one GPU (MPS active-thread %, or a green context's SMs)" if gpu
                       else "percent of the node's cores (torch threads)"),
        "measured_by": measured_by,
        "device_info": meta,
        "functions": functions,
    }


def _validate(request: ProfileRequest) -> None:
    for what, values, low, high in (("batch sizes", request.batch_sizes, 1, C.MAX_BATCH_SIZE),
                                    ("shares", request.shares, 1, 100)):
        if not values:
            raise ProfileError(f"no {what} given")
        if any(v < low or v > high for v in values):
            raise ProfileError(f"{what} must lie in {low}..{high}, got {str(list(values))[:80]}")
        if any(b <= a for a, b in zip(values, values[1:])):
            raise ProfileError(f"{what} must be strictly increasing, got {list(values)}")
    if request.repetitions < 1 or request.warmup < 0:
        raise ProfileError("repetitions must be at least 1 and warmup at least 0")
    if request.share_mechanism not in SHARE_MECHANISMS:
        raise ProfileError(f"share mechanism must be one of {', '.join(SHARE_MECHANISMS)}, got {request.share_mechanism!r}")
    if not request.names:
        raise ProfileError("no function names given")


def _run_worker(folder: Path, name: str, share: int, request: ProfileRequest) -> dict:
    args = [sys.executable, "-m", "esg_plugin.profiler.worker", str(folder), name, str(share),
            ",".join(map(str, request.batch_sizes)), str(request.repetitions), str(request.warmup)]
    env = dict(os.environ, **{C.ENV_GPU_SHARE_MECHANISM: request.share_mechanism})
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=3600, env=env)
    except subprocess.TimeoutExpired:
        raise ProfileError(f"profiling {name} at share {share}% took over an hour") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProfileError(f"profiling {name} at share {share}% failed: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])
