"""How closely the control law's reading of the load follows the true rate.

    python bench/tracking.py [--rates 1,2,6] [--runs 5] [--settings JSON]

A stationary Poisson stream at each rate (seeded), observed as ``esg up``
observes it — a 30-s long window and a 5-s short one, a tick every 5 s for
20 minutes — and fed to the law (``esg_plugin/control``) for one random
workflow (``random_workload(681)``'s first). After the first minute, each
tick's ``estimate_rps`` (the offered rate the plan was made for) is
compared with the window's rate and with the true rate: the median ratio
and the share of ticks within 15%. ``--settings`` changes ControlSettings
fields, e.g. ``'{"rise_z": 0}'`` for the law without the rise test.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import statistics

from esg_plugin.control import ControlLaw, ControlSettings, Observation, WorkflowObservation
from esg_plugin.sim.generate import random_workload

LONG_S, SHORT_S, TICK_S, DURATION_S, SKIP_S = 30.0, 5.0, 5.0, 1200.0, 60.0


def run(rate_rps: float, seed: int, settings: ControlSettings) -> list[tuple[float, float]]:
    """(estimate / window rate, estimate / true rate) per tick after the first minute."""
    case = random_workload(681)
    workflow = case.workload.workflows[0].workflow
    law = ControlLaw([workflow], case.profiles, settings)
    state = law.new_state()
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    while t < DURATION_S:
        t += rng.expovariate(rate_rps)
        arrivals.append(t)
    out = []
    for k in range(1, int(DURATION_S / TICK_S)):
        now = k * TICK_S
        end = bisect.bisect_left(arrivals, now)  # arrivals are sorted: counts in [now - window, now)
        long_count = end - bisect.bisect_left(arrivals, now - LONG_S)
        short_count = end - bisect.bisect_left(arrivals, now - SHORT_S)
        obs = WorkflowObservation(long_count / min(LONG_S, now), short_count / SHORT_S, SHORT_S,
                                  ok=short_count, long_window_s=min(LONG_S, now))
        law.step(Observation(now, {workflow.name: obs}), state, now)
        estimate = state.workflows[workflow.name].estimate_rps
        if now >= SKIP_S and long_count:
            out.append((estimate / (long_count / LONG_S), estimate / rate_rps))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,2,6")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settings", default=None, help="ControlSettings fields as JSON")
    args = parser.parse_args(argv)
    settings = ControlSettings(**(json.loads(args.settings) if args.settings else {}))
    print(f"law's estimate against the window's rate and the true rate, {args.runs} streams of "
          f"{DURATION_S:g} s per rate, a tick every {TICK_S:g} s (rise_z {settings.rise_z:g})")
    for rate in (float(r) for r in args.rates.split(",")):
        rows = [row for seed in range(args.runs) for row in run(rate, seed, settings)]
        window, true = [r[0] for r in rows], [r[1] for r in rows]
        within = lambda xs: sum(0.85 <= x <= 1.15 for x in xs) / len(xs)  # noqa: E731
        print(f"  {rate:g} rps: /window median {statistics.median(window):.3f}, within 15% {within(window):.0%}; "
              f"/true median {statistics.median(true):.3f}, within 15% {within(true):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
