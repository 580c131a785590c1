"""What the esg-python3 runtime costs and what batching gains.

    python bench/runtime.py [--requests 2000] [--seconds 5] [--skip-torch]

1. Latency added at batch size 1: p50/p99 of sequential requests to a
   no-op handler on the runtime (the template folder, `python index.py`)
   against the same handler in a plain Flask app (werkzeug's threaded
   server); both open one connection per request.
2. The highest request rate of a no-op handler: 16 client threads for
   --seconds against the runtime (clients share the machine's 2 cores with
   the server, so this is a lower bound).
3. Throughput of a real PyTorch model on CPU (a small ResNet in plain torch,
   deterministic random weights) at ESG_MAX_BATCH_SIZE=8 over 1, with 16
   concurrent clients (needs torch==2.13.0: pip install 'esg-plugin[torch]').
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from esg_plugin.local.platform import free_port
from esg_plugin.runtime import contract as C
from esg_plugin.limits import flag

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template/esg-python3"

NOOP = '''
def handle(event, context):
    return {"statusCode": 200, "body": "ok"}
'''

FLASK_APP = '''
import sys
from types import SimpleNamespace
from flask import Flask, request
sys.path.insert(0, sys.argv[2])
from handler import handle

app = Flask(__name__)

@app.route("/", methods=["GET", "POST"])
def call():
    event = SimpleNamespace(body=request.get_data(), headers=dict(request.headers), method=request.method,
                            query=dict(request.args), path=request.path)
    res = handle(event, None)
    return res["body"], res["statusCode"]

from werkzeug.serving import make_server
make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
'''

MODEL = '''
import json, torch
from torch import nn

torch.manual_seed(0)


def block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


MODEL = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), block(32, 32, 1), block(32, 64, 2), block(64, 128, 2),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)).eval()
IMAGE = torch.rand(3, 96, 96)


def handle_batch(events, context):
    with torch.inference_mode():
        logits = MODEL(IMAGE.expand(len(events), -1, -1, -1).contiguous())
    return [{"statusCode": 200, "body": {"class": int(i)}} for i in logits.argmax(1)]
'''


def get(port: int, path: str = "/", body: bytes = b"") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_ready(port: int, path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status in (200, 405):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def start_runtime(tmp: Path, handler: str, **env) -> tuple[subprocess.Popen, int]:
    folder = tmp / f"fn-{len(list(tmp.iterdir()))}"
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "function/handler.py").write_text(handler)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "index.py"], cwd=folder, stderr=subprocess.DEVNULL,
                            env={**os.environ, C.ENV_PORT: str(port), **{k: str(v) for k, v in env.items()}})
    wait_ready(port, C.HEALTH_PATH)
    return proc, port


def latencies_ms(port: int, count: int) -> list[float]:
    for _ in range(50):
        get(port)
    out = []
    for _ in range(count):
        started = time.perf_counter()
        get(port)
        out.append((time.perf_counter() - started) * 1000.0)
    return out


def rate_rps(port: int, clients: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            if get(port) == 200:
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=flag(int, 1, 10_000_000), default=2000)
    parser.add_argument("--seconds", type=flag(float, 0.1, 86_400.0), default=5.0)
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runtime, runtime_port = start_runtime(tmp, NOOP)
        handler_dir = tmp / "flask-handler"
        handler_dir.mkdir()
        (handler_dir / "handler.py").write_text(NOOP)
        (tmp / "flask_app.py").write_text(FLASK_APP)
        flask_port = free_port()
        flask = subprocess.Popen([sys.executable, str(tmp / "flask_app.py"), str(flask_port), str(handler_dir)],
                                 stderr=subprocess.DEVNULL)
        try:
            wait_ready(flask_port, "/")
            ours = latencies_ms(runtime_port, args.requests)
            theirs = latencies_ms(flask_port, args.requests)
            print(f"1. no-op handler, batch size 1, {args.requests} sequential requests (one connection each):")
            print(f"   esg runtime  p50 {statistics.median(ours):.3f} ms  p99 {p(ours, 0.99):.3f} ms")
            print(f"   plain Flask  p50 {statistics.median(theirs):.3f} ms  p99 {p(theirs, 0.99):.3f} ms")
            print(f"   added by the runtime at p50: {statistics.median(ours) - statistics.median(theirs):+.3f} ms "
                  f"(goal: under 1 ms)")
            print(f"2. highest rate of a no-op handler, 16 clients for {args.seconds:g} s: "
                  f"{rate_rps(runtime_port, 16, args.seconds):,.0f} requests/s")
        finally:
            for proc in (runtime, flask):
                proc.terminate()
                proc.wait()
        if args.skip_torch:
            return 0
        try:
            import torch  # noqa: F401
        except ImportError:
            print("3. skipped: torch is not installed (pip install 'esg-plugin[torch]')")
            return 0
        rates = {}
        for batch in (1, 8):
            proc, port = start_runtime(tmp, MODEL, ESG_MAX_BATCH_SIZE=batch, ESG_MAX_WAIT_MS=20)
            try:
                rate_rps(port, 16, 1.0)  # warm up
                rates[batch] = rate_rps(port, 16, args.seconds)
            finally:
                proc.terminate()
                proc.wait()
        print(f"3. small ResNet on CPU (torch {torch.__version__}, {torch.get_num_threads()} threads), 16 clients:")
        print(f"   batch 1: {rates[1]:,.0f} requests/s   batch 8: {rates[8]:,.0f} requests/s   "
              f"gain {rates[8] / rates[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
