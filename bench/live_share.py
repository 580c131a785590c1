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
a new worker (a restart: torch and the model loaded again).
Needs torch==2.13.0 (pip install 'esg-plugin[torch]').
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from esg_plugin.loaders import read_yaml
from esg_plugin.local import LocalPlatform
from esg_plugin.local.platform import call_worker
from esg_plugin.runtime import contract as C

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", default="image-classify")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--cpus", type=float, default=2.0)
    args = parser.parse_args(argv)
    stack = read_yaml(ROOT / "stack.yml")
    if args.function not in stack["functions"]:
        print(f"no function {args.function!r} in stack.yml", file=sys.stderr)
        return 2
    body = sample_body(stack, args.function)
    for live in (True, False):
        run(stack, args.function, body, args.requests, args.cpus, live)
    return 0


if __name__ == "__main__":
    sys.exit(main())
