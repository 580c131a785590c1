"""The planner's queueing wait against a simulated queue, for bursty arrivals.

    python bench/queueing_wait.py [--cv2 1,4,10] [--rho 0.1,0.3,0.6] [--servers 1,2] [--requests 200000] [--seed 1]

The planner prices a stage's wait for an instance with the M/M/c wait
scaled by Allen–Cunneen's (c_a² + c_s²) / 2 (``queueing_delays_ms`` in
``esg_plugin/model/config.py``; deterministic service, batch size 1). This
bench feeds the same stage — ``c`` replicas of a fixed execution time, one
queue — with renewal arrivals whose gaps are gamma-distributed at the
squared coefficient of variation asked (cv² 1 is Poisson; the bursty
arrivals of ``bench/robustness.py`` and ``bench/up_random.py`` are gamma
gaps of cv 2–4, cv² 4–16), runs the queue request by request (each takes
the first free replica), and prints the mean and 99th-percentile wait
beside the planner's mean and beside the second model of that module,
the GI/M/c wait for gamma gaps (``model="renewal"``: its mean and its
99% quantile), all in units of the execution time. It is there to say
where a model is wrong, not to tune it: at cv² 1 they agree; for bursty
arrivals at a low utilisation Allen–Cunneen's wait is a fraction of the
simulated one, because Erlang C's probability of waiting (about ρ^c)
knows nothing of requests that arrive in clusters; the renewal model
follows the simulated queue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esg_plugin.model.config import DEFAULT_QUEUEING_MODEL, queueing_delays_ms  # noqa: E402
from esg_plugin.limits import flag, flags  # noqa: E402


def simulated_waits(cv2: float, utilisation: float, servers: int, requests: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Waits (in execution times) of ``requests`` arrivals with gamma gaps
    of squared coefficient of variation ``cv2`` at a rate that keeps
    ``servers`` replicas of execution time 1 busy ``utilisation`` of the time."""
    rate = utilisation * servers
    shape = 1.0 / cv2
    arrivals = np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), requests))
    free = np.zeros(servers)
    waits = np.empty(requests)
    for i, at in enumerate(arrivals):
        j = int(free.argmin())
        start = max(at, free[j])
        waits[i] = start - at
        free[j] = start + 1.0
    return waits


def model_wait(cv2: float, utilisation: float, servers: int, quantile: float | None = None,
               model: str = DEFAULT_QUEUEING_MODEL) -> float:
    """A model's wait at batch size 1 (its mean, or its ``quantile``), in execution times."""
    exec_ms = 1000.0  # a 1-s execution: the wait comes out in seconds, i.e. in execution times
    rate_rps = utilisation * servers  # requests per second that keep the replicas that busy
    return float(queueing_delays_ms(rate_rps, np.array([1]), np.array([exec_ms]), np.array([servers]), cv2,
                                    quantile, model)[0]) / exec_ms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv2", type=flags(float, 0.0, 1_000.0), default="1,4,10")
    parser.add_argument("--rho", type=flags(float, 1e-3, 0.999), default="0.1,0.3,0.6",
                        help="utilisations, each below 1 (a queue at 1 or more grows for good)")
    parser.add_argument("--servers", type=flags(int, 1, 1_000), default="1,2")
    parser.add_argument("--requests", type=flag(int, 100, 100_000_000), default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"wait for a replica, in execution times; gamma gaps, {args.requests} requests per row (seed {args.seed})")
    print("| cv² | utilisation | replicas | simulated mean | planner's mean, Allen–Cunneen (/ simulated) "
          "| renewal mean (/ simulated) | simulated p99 | renewal p99 (/ simulated) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ratio = lambda model, simulated: f"{model / simulated:.2f}" if simulated > 0 else "-"  # noqa: E731
    for cv2 in args.cv2:
        for rho in args.rho:
            for servers in args.servers:
                waits = simulated_waits(cv2, rho, servers, args.requests, rng)
                mean, p99 = float(waits.mean()), float(np.quantile(waits, 0.99))
                planner, renewal = model_wait(cv2, rho, servers), model_wait(cv2, rho, servers, model="renewal")
                renewal_p99 = model_wait(cv2, rho, servers, quantile=0.99, model="renewal")
                print(f"| {cv2:g} | {rho:g} | {servers} | {mean:.3f} | {planner:.3f} ({ratio(planner, mean)}) | "
                      f"{renewal:.3f} ({ratio(renewal, mean)}) | {p99:.2f} | {renewal_p99:.2f} "
                      f"({ratio(renewal_p99, p99)}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
