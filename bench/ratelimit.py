"""The entry's rate limit (``control.admission.RateLimit``) against random
arrivals: the share of Poisson arrivals it refuses when they come at a
given fraction of its rate, with a one-second bucket (the old default) and
with the default bucket (``RATE_BURST_S`` of the rate, at least
``RATE_MIN_BURST``).

    python bench/ratelimit.py [--arrivals 200000] [--seed 1]

Pure arithmetic on a simulated clock: the figures depend on the seed only.
"""

from __future__ import annotations

import argparse
import random

from esg_plugin.control.admission import RateLimit
from esg_plugin.limits import flag

RATES_RPS = (1.2, 1.6, 2.0, 5.0, 10.0, 20.0)
LOADS = (0.6, 0.8, 0.9)


def refused(rate_rps: float, load: float, burst, arrivals: int, seed: int) -> float:
    rng = random.Random(seed)
    limit = RateLimit(rate_rps, now_s=0.0, burst=burst)
    t, n = 0.0, 0
    for _ in range(arrivals):
        t += rng.expovariate(load * rate_rps)
        n += not limit.admit(t)
    return n / arrivals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arrivals", type=flag(int, 1, 100_000_000), default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print("share of Poisson arrivals refused; arrivals at load x the limit's rate")
    print(f"{'rate rps':>9} {'load':>5} {'1 s bucket':>11} {'default':>8}")
    for rate in RATES_RPS:
        for load in LOADS:
            one = refused(rate, load, max(1.0, rate), args.arrivals, args.seed)
            default = refused(rate, load, None, args.arrivals, args.seed)
            print(f"{rate:>9.1f} {load:>5.1f} {one:>10.1%} {default:>8.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
