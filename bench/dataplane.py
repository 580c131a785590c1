"""The data plane's cost (issue 15): per image function, at batch 1 and 8,
the model alone, the handler (the runtime's X-ESG-Exec-Ms), and the HTTP
round trip, for the JSON body with base64 tensors and for the Open
Inference Protocol with binary tensors; and the overhead ratio, (round
trip - model) / model.

    .venv/bin/python bench/dataplane.py [--rounds 40] [--size 56]

Each function runs as `esg up` runs it (the template, python index.py,
loopback), at ESG_GPU_SHARE=50 (one torch thread on this 2-core machine);
the model alone is timed in a separate process with one thread too, its C
heap set as the runtime sets a function's (``runtime/memory.py``: without
it the model alone ran up to 35% slower on a main thread, which flattered
the functions). A
batch of 8 is 8 concurrent requests that the runtime batches; its round
trip is from the first request sent to the last answer; ``v2-tensor`` is
the batch as one request with an [8, 3, H, W] tensor, as a Triton client
sends a batch. Medians of ``--rounds`` rounds. Figures, not pass/fail.

Each client thread keeps its connection (HTTP/1.1 keep-alive, through the
project's ``ConnectionPool``, as the router and the gateway call functions,
and as Triton's clients and the OpenFaaS gateway do);
``--new-connections`` opens one per request instead (what every call cost
before the runtime kept connections).

Two processes timed minutes apart drift by 10% on a shared machine, more
than the goal. ``paired`` is the same ratio with the model alone timed in
its own process just before each round (its median over rounds), so both
see the machine as it is then. A third estimate, ``overhead*``, is composed of parts
each measured against itself: the handler against the model alone in one
process, interleaved round by round (the handler's parsing, stacking and
encoding), plus round trip minus handler time per request (HTTP, the
runtime's parsing and encoding, forming the batch), over the model alone
in that process.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from esg_plugin.local.platform import build_folder, free_port
from esg_plugin.runtime import contract as C
from esg_plugin.runtime.client import ConnectionPool
from esg_plugin.limits import flag

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"espcn": "espcn", "resnet18": "resnet18"}

MODEL_SETUP = """
import os, sys, time, statistics
sys.path.insert(0, {functions!r}); sys.path.insert(0, {template!r})
from esg_runtime.memory import keep_heap
keep_heap()  # as the runtime sets up a function's process
import torch
torch.set_num_threads(1); torch.set_num_interop_threads(1)
os.environ[{env_function!r}] = {stage!r}
from dnn.handler import STAGE
batch = torch.rand({batch}, 3, {size}, {size}, generator=torch.Generator().manual_seed(0))
model = STAGE.model
torch.inference_mode().__enter__()
for _ in range(3):
    model(batch)
"""
"""The model alone in a process set up as the runtime sets up a function's, warm."""

MODEL_ONLY = MODEL_SETUP + """
times = []
for _ in range({rounds}):
    t = time.perf_counter(); model(batch); times.append((time.perf_counter() - t) * 1000)
print(statistics.median(times))
"""

MODEL_PAIRED = MODEL_SETUP + """
print("ready", flush=True)
for _ in sys.stdin:  # one line: one timed call
    t = time.perf_counter(); model(batch); print((time.perf_counter() - t) * 1000, flush=True)
"""


class PairedModel:
    """The model alone in its own process, timed once just before each
    round trip, so that each round's overhead is taken against the model's
    speed at that moment (this machine drifts by more than the goals
    between two runs minutes apart)."""

    def __init__(self, stage: str, batch: int, size: int):
        code = MODEL_PAIRED.format(functions=str(ROOT / "functions"), template=str(ROOT / "template/esg-python3"),
                                   env_function=C.ENV_FUNCTION, stage=stage, batch=batch, size=size)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the model-alone process did not start")

    def ms(self) -> float:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


IN_PROCESS = """
import json, os, statistics, sys, time
sys.path.insert(0, {functions!r}); sys.path.insert(0, {template!r}); sys.path.insert(0, {bench!r})
from esg_runtime.memory import keep_heap
keep_heap()  # as the runtime sets up a function's process
import numpy as np
import torch
torch.set_num_threads(1); torch.set_num_interop_threads(1)
os.environ[{env_function!r}] = {stage!r}
from dnn import handler
from esg_runtime.app import Event
from esg_runtime.v2 import InferRequest, Tensor
from dataplane import json_request  # the very body the HTTP path sends
arrays = [np.random.default_rng(i).random((3, {size}, {size}), dtype=np.float32) for i in range({batch})]
def event(a):
    method, path, body, headers = json_request(a)
    return Event(body, headers, method, {{}}, path)
def infer_request(a):
    return InferRequest({stage!r}, None, {{"image": Tensor("image", "FP32", list(a.shape), a.astype("<f4").tobytes())}})
calls = {{
    "model": lambda: handler.STAGE.model(torch.from_numpy(np.stack(arrays))),
    "json": lambda: handler.handle_batch([event(a) for a in arrays], None),
    "v2-binary": lambda: handler.infer([infer_request(a) for a in arrays], None),
}}
if {batch} > 1:
    calls["v2-tensor"] = lambda: handler.infer([infer_request(np.stack(arrays))], None)
times = {{k: [] for k in calls}}
with torch.inference_mode():
    for r in range({rounds} + 3):
        for name, call in calls.items():  # interleaved: the same machine state for each
            t = time.perf_counter(); call(); took = (time.perf_counter() - t) * 1000
            if r >= 3:
                times[name].append(took)
print(json.dumps({{k: statistics.median(v) for k, v in times.items()}}))
"""


def in_process_ms(stage: str, batch: int, size: int, rounds: int) -> dict[str, float]:
    """Medians, in one process, interleaved round by round: the model alone
    and the handler on each path's inputs (its parsing, stacking and
    encoding included): what the handler adds to the model, free of the
    drift between two processes run at different times."""
    code = IN_PROCESS.format(functions=str(ROOT / "functions"), template=str(ROOT / "template/esg-python3"),
                             bench=str(ROOT / "bench"),
                             env_function=C.ENV_FUNCTION, stage=stage, batch=batch, size=size, rounds=rounds)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_ms(stage: str, batch: int, size: int, rounds: int) -> float:
    code = MODEL_ONLY.format(functions=str(ROOT / "functions"), template=str(ROOT / "template/esg-python3"),
                             env_function=C.ENV_FUNCTION, stage=stage, batch=batch,
                             size=size, rounds=rounds)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return float(out.stdout.strip().splitlines()[-1])


class Function:
    def __init__(self, folder: Path, stage: str, batch: int, keep_alive: bool = True):
        self.port = free_port()
        self.pool = ConnectionPool() if keep_alive else None
        self.proc = subprocess.Popen([sys.executable, "index.py"], cwd=folder, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     env={**os.environ, C.ENV_FUNCTION: stage, C.ENV_PORT: str(self.port),
                                          C.ENV_MAX_BATCH_SIZE: str(batch), C.ENV_MAX_WAIT_MS: "2000",
                                          C.ENV_GPU_SHARE_PCT: "50"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.call("GET", C.HEALTH_PATH, b"", {})[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{stage} did not start")

    def call(self, method, path, body, headers):
        if self.pool is not None:
            r = self.pool.request(method, f"http://127.0.0.1:{self.port}{path}", body, headers, timeout_s=120)
            return r.status, float(r.headers.get(C.EXEC_MS_HEADER) or 0), r.body
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            return r.status, float(r.getheader(C.EXEC_MS_HEADER) or 0), data
        finally:
            conn.close()

    def stop(self):
        if self.pool is not None:
            self.pool.close()
        self.proc.terminate()
        self.proc.wait()


def json_request(array):
    doc = {"image": {"b64": base64.b64encode(array.astype("<f4").tobytes()).decode(), "dtype": "float32",
                     "shape": list(array.shape)}}
    return "POST", "/", json.dumps(doc).encode(), {"Content-Type": "application/json"}


def v2_request(stage, array):
    head = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(array.shape),
                                   "parameters": {"binary_data_size": array.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return "POST", f"/v2/models/{stage}/infer", head + array.astype("<f4").tobytes(), {
        "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}


def measure(fn: Function, stage: str, mode: str, batch: int, size: int, rounds: int,
            paired: PairedModel) -> tuple[float, float, float, float]:
    """(round trip ms, handler ms, round trip - handler ms, paired overhead)
    medians over rounds of ``batch`` concurrent requests, or of one request
    holding the batch (v2-tensor). Round trip - handler is taken per round,
    from the same requests: what HTTP, the runtime's parsing and encoding
    and the batch's forming add to the handler. The paired overhead is
    (round trip - model) / model with the model alone timed just before
    each round (``PairedModel``)."""
    arrays = [np.random.default_rng(i).random((3, size, size), dtype=np.float32) for i in range(batch)]
    if mode == "v2-tensor":
        requests = [v2_request(stage, np.stack(arrays))]
    else:
        requests = [json_request(a) if mode == "json" else v2_request(stage, a) for a in arrays]
    trips, handler, transport, overheads = [], [], [], []
    with ThreadPoolExecutor(len(requests)) as pool:
        for r in range(rounds + 2):
            alone = paired.ms()
            started = time.perf_counter()
            # one request is sent from this thread, as a Triton client sends a batch (no hand-off to a pool)
            answers = [fn.call(*requests[0])] if len(requests) == 1 else list(pool.map(lambda req: fn.call(*req),
                                                                                        requests))
            took = (time.perf_counter() - started) * 1000
            assert all(a[0] == 200 for a in answers), answers[0][2][:200]
            if r >= 2:  # the first rounds warm up
                trips.append(took)
                handler.append(max(a[1] for a in answers))
                transport.append(took - handler[-1])
                overheads.append((took - alone) / alone)
    return (statistics.median(trips), statistics.median(handler), statistics.median(transport),
            statistics.median(overheads))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=flag(int, 1, 100_000), default=40,
                    help="rounds per row; the paired median moves by about 0.03 with 15")
    ap.add_argument("--size", type=flag(int, 8, 4_096), default=56, help="image side (the workflows' preprocess size)")
    ap.add_argument("--new-connections", action="store_true",
                    help="a new connection per request (default: each client thread keeps its own)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="esg-dataplane-"))
    folder = build_folder(ROOT / "template/esg-python3", ROOT / "functions/dnn", work / "fn")
    print(f"{'function':<10} {'batch':>5} {'model ms':>9} | {'path':<9} {'handler ms':>10} {'round trip ms':>13} "
          f"{'overhead':>9} {'paired':>7} | {'in-process: model':>17} {'handler':>8} {'rt-handler':>10} {'overhead*':>9}")
    try:
        for stage in STAGES:
            for batch in (1, 8):
                model = model_ms(stage, batch, args.size, args.rounds)
                inner = in_process_ms(stage, batch, args.size, args.rounds)
                paired = PairedModel(stage, batch, args.size)
                for mode in ("json", "v2-binary") + (("v2-tensor",) if batch > 1 else ()):
                    # one request holding the batch runs at once (batch 1); else the runtime batches
                    fn = Function(folder, stage, 1 if mode == "v2-tensor" else batch,
                                  keep_alive=not args.new_connections)
                    try:
                        trip, handler, transport, paired_overhead = measure(fn, stage, mode, batch, args.size,
                                                                            args.rounds, paired)
                    finally:
                        fn.stop()
                    # overhead*: (what the handler adds to the model, in one process) + (round trip - handler,
                    # per request), over the model alone in that process
                    composed = (inner[mode] - inner["model"] + transport) / inner["model"]
                    print(f"{stage:<10} {batch:>5} {model:>9.2f} | {mode:<9} {handler:>10.2f} {trip:>13.2f} "
                          f"{(trip - model) / model:>9.2f} {paired_overhead:>7.2f} | {inner['model']:>17.2f} {inner[mode]:>8.2f} "
                          f"{transport:>10.2f} {composed:>9.2f}", flush=True)
                paired.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
