"""A CPU worker's share changed live, through the local platform: what the
change costs and what it does.

    python bench/live_share.py [--function image-classify] [--requests 30] [--cpus 2]

Starts one function of ``stack.yml`` (default the ResNet-50 classifier) on
the embedded platform at 50% of ``--cpus`` (ESG_CPU_THREADS: torch gets
that share of them as intra-op threads), times ``--requests`` sequential
requests on its worker (the runtime's execution-time header), moves it to 100%
and back to 50% with ``set_share`` — as the scaler's local actuator does —
and times again after each. Prints, per share, the median execution time,
the threads the worker reports, how long the platform took to converge, and
whether the worker process stayed the same (a live change starts no
process); then the same with live shares off, where a share change rolls
a new worker (a restart: torch and the model loaded again). Last, at 100%
(threads that fill the cores), the median alone and beside one busy
process (``while True: pass``) for each OpenMP wait setting: the runtime's
bounded spin (``gpu.OMP_SPIN_COUNT``), libgomp's default (300,000 spins),
1,000 spins, and no spinning (``OMP_WAIT_POLICY=PASSIVE``); and at 50%
(one thread) for comparison; ``--neighbour-requests`` of them (a
collapsed worker takes seconds a batch).
Needs torch==2.13.0 (pip install 'esg-plugin[torch]').
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from esg_plugin.loaders import read_yaml
from esg_plugin.local import LocalPlatform
from esg_plugin.local.platform import call_worker
from esg_plugin.runtime import contract as C
from esg_plugin.limits import flag

ROOT = Path(__file__).resolve().parents[1]


def sample_body(stack: dict, name: str) -> bytes:
    """One valid request for the function (its stage's own sample)."""
    import os

    os.environ[C.ENV_FUNCTION] = stack["functions"][name]["environment"][C.ENV_FUNCTION]
    sys.path.insert(0, str(ROOT / "functions"))
    sys.path.insert(0, str(ROOT / "template/esg-python3"))
    from dnn import handler

    return handler.sample_bodies(1)[0]


def exec_ms(port: int, body: bytes, count: int) -> float:
    times = []
    for _ in range(count):
        status, headers, _ = call_worker(port, "POST", "/", body, {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"the function answered {status}")
        times.append(float(dict(headers)[C.EXEC_MS_HEADER]))
    return statistics.median(times)


def run(stack: dict, name: str, body: bytes, count: int, cpus: float, live: bool) -> None:
    one = {"functions": {name: stack["functions"][name]}}
    env = {C.ENV_CPU_THREADS: str(cpus), C.ENV_LIVE_SHARE: "1" if live else "0"}
    with tempfile.TemporaryDirectory(prefix="esg-live-share-") as work:
        platform = LocalPlatform(one, ROOT, Path(work), extra_env=env)
        try:
            platform.start()
            platform.set_share(name, 50)
            platform.wait_converged(name)
            fn = platform.functions[name]
            exec_ms(fn.workers[0].port, body, 3)  # warm
            print(f"{C.ENV_LIVE_SHARE}={int(live)}")
            for share in (50, 100, 50):
                started = time.monotonic()
                platform.set_share(name, share)
                platform.wait_converged(name)
                took_s = time.monotonic() - started
                worker = fn.workers[0]
                config = json.loads(call_worker(worker.port, "GET", C.CONFIG_PATH)[2])
                print(f"  share {share:>3}%: converged in {took_s:5.2f} s, pid {worker.proc.pid}, "
                      f"worker says {config[C.CONFIG_GPU_SHARE_PCT]}%, "
                      f"median exec {exec_ms(worker.port, body, count):6.1f} ms over {count}")
        finally:
            platform.shutdown()


SPIN_SETTINGS = (("the runtime's bound", 100, {}), ("libgomp's default", 100, {"GOMP_SPINCOUNT": "300000"}),
                 ("1,000 spins", 100, {"GOMP_SPINCOUNT": "1000"}), ("passive", 100, {"OMP_WAIT_POLICY": "PASSIVE"}),
                 ("one thread (50%)", 50, {}))


def beside_a_neighbour(stack: dict, name: str, body: bytes, count: int, cpus: float) -> None:
    one = {"functions": {name: stack["functions"][name]}}
    print(f"at 100% of {cpus:g} CPUs, alone and beside one busy process (median exec over {count}):")
    for label, share, extra in SPIN_SETTINGS:
        with tempfile.TemporaryDirectory(prefix="esg-spin-") as work:
            platform = LocalPlatform(one, ROOT, Path(work), extra_env={C.ENV_CPU_THREADS: str(cpus), **extra})
            try:
                platform.start()
                platform.set_share(name, share)
                platform.wait_converged(name)
                port = platform.functions[name].workers[0].port
                exec_ms(port, body, 3)
                alone = exec_ms(port, body, count)
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    beside = exec_ms(port, body, count)
                finally:
                    busy.kill()
                    busy.wait()
            finally:
                platform.shutdown()
        print(f"  {label:<20} alone {alone:7.1f} ms   beside it {beside:7.1f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", default="image-classify")
    parser.add_argument("--requests", type=flag(int, 1, 100_000), default=30)
    parser.add_argument("--cpus", type=flag(float, 0.01, 1_024.0), default=2.0)
    parser.add_argument("--neighbour-requests", type=flag(int, 0, 100_000), default=10)
    args = parser.parse_args(argv)
    stack = read_yaml(ROOT / "stack.yml")
    if args.function not in stack["functions"]:
        print(f"no function {args.function!r} in stack.yml", file=sys.stderr)
        return 2
    body = sample_body(stack, args.function)
    for live in (True, False):
        run(stack, args.function, body, args.requests, args.cpus, live)
    beside_a_neighbour(stack, args.function, body, args.neighbour_requests, args.cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
