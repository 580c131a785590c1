"""The function runtime under hostile load (issue 14): many concurrent large
bodies, slow-loris connections, and a SIGTERM with idle connections open.
Prints the runtime's peak resident memory, what each client got, and how
long the process took to exit.

    .venv/bin/python bench/hostile.py [--clients 24] [--body-mb 60] [--loris 50]

It starts the esg-python3 template with a trivial handler on loopback
(batch 4, queue 64), as `esg up` does. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from esg_plugin.local.platform import free_port
from esg_plugin.runtime import contract as C
from esg_plugin.limits import flag

ROOT = Path(__file__).resolve().parents[1]
HANDLER = "def handle(event, context):\n    return {'statusCode': 200, 'body': {'bytes': len(event.body)}}\n"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def post(port: int, body_mb: int) -> str:
    """One POST of body_mb MB, sent in 1 MB pieces; the status, or the error."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {body_mb << 20}\r\n\r\n".encode())
        piece = b"x" * (1 << 20)
        try:
            for _ in range(body_mb):
                sock.sendall(piece)
        except OSError:
            pass  # refused before the body: read the answer
        answer = sock.recv(200)
        return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else f"closed {answer[:20]!r}"
    except OSError as err:
        return type(err).__name__
    finally:
        sock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=flag(int, 1, 1_000), default=24)
    ap.add_argument("--body-mb", type=flag(int, 1, 4_096), default=60)
    ap.add_argument("--loris", type=flag(int, 0, 10_000), default=50,
                    help="connections that send half a request head and stall")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="esg-hostile-"))
    folder = work / "fn"
    shutil.copytree(ROOT / "template/esg-python3", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "function/handler.py").write_text(HANDLER)
    port = free_port()
    env = {**os.environ, C.ENV_PORT: str(port), C.ENV_MAX_BATCH_SIZE: "4", C.ENV_MAX_QUEUE: "64"}
    proc = subprocess.Popen([sys.executable, "index.py"], cwd=folder, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{C.HEALTH_PATH}", timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        idle_mb = rss_mb(proc.pid)
        peak = [idle_mb]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], rss_mb(proc.pid))

        threading.Thread(target=sample, daemon=True).start()
        loris = []
        for _ in range(args.loris):
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            loris.append(s)
        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            statuses = list(pool.map(lambda _: post(port, args.body_mb), range(args.clients)))
        took = time.monotonic() - started
        cut = 0
        for s in loris:
            s.settimeout(30)
            try:
                cut += s.recv(1) == b""
            except OSError:
                cut += 1
        stop.set()
        idle = socket.create_connection(("127.0.0.1", port), timeout=30)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        exit_s = time.monotonic() - t0
        idle.close()
        counts = {s: statuses.count(s) for s in sorted(set(statuses))}
        print(f"{args.clients} clients x {args.body_mb} MB bodies: answers {counts} in {took:.1f} s; "
              f"runtime RSS {idle_mb:.0f} MB idle, {peak[0]:.0f} MB peak "
              f"(the bodies offered: {args.clients * args.body_mb} MB)")
        print(f"{args.loris} slow-loris connections: {cut} cut by the server")
        print(f"SIGTERM with an idle connection open: exit {code} after {exit_s:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
