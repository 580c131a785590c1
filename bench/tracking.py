"""How closely the control law's reading of the load follows the true rate.

    python bench/tracking.py [--rates 1,2,6] [--runs 5] [--step F] [--misses P] [--tick-s S]
                              [--settings JSON]

A Poisson stream at each rate (seeded), observed as ``esg up`` observes
it — a 30-s long window and a 5-s short one, a tick every ``--tick-s``
(5 s; ``esg up``'s default ``--interval-s`` is 2) for 20 minutes — and
fed to the law (``esg_plugin/control``) for one random workflow
(``random_workload(681)``'s first). With ``--step F`` the rate is
multiplied by F at 300 s (the ``esg up`` workloads' steps are 3x). After
the first minute, and not within the long window after the step (the
window itself is then not at steady state), each tick's ``estimate_rps``
(the offered rate the plan was made for) is compared with the window's
rate and with the true rate: the median ratio and the share of ticks
within 15%, over the whole run and, with a step, after it. With
``--misses P`` each answer is late with probability P whatever the plan
(a host that is slower than any plan: ``esg up`` beside other work).
``--settings`` changes ControlSettings fields, e.g. ``'{"rise_z": 0}'``
for the law without the rise test.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import statistics

from esg_plugin.control import ControlLaw, ControlSettings, Observation, WorkflowObservation
from esg_plugin.sim.generate import random_workload

LONG_S, SHORT_S, DURATION_S, SKIP_S, STEP_AT_S = 30.0, 5.0, 1200.0, 60.0, 300.0


def run(rate_rps: float, seed: int, settings: ControlSettings, step: float = 1.0,
        tick_s: float = 5.0, misses: float = 0.0) -> list[tuple[float, float, bool]]:
    """(estimate / window rate, estimate / true rate, after the step) per
    tick at steady state: after the first minute, not within the long
    window after the step."""
    case = random_workload(681)
    workflow = case.workload.workflows[0].workflow
    law = ControlLaw([workflow], case.profiles, settings)
    state = law.new_state()
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    top = max(step, 1.0)
    while t < DURATION_S:  # the step's rate by thinning a stream at the larger rate
        t += rng.expovariate(rate_rps * top)
        if top == 1.0 or rng.random() * top < (step if t >= STEP_AT_S else 1.0):
            arrivals.append(t)
    out = []
    for k in range(1, int(DURATION_S / tick_s)):
        now = k * tick_s
        end = bisect.bisect_left(arrivals, now)  # arrivals are sorted: counts in [now - window, now)
        long_count = end - bisect.bisect_left(arrivals, now - LONG_S)
        short_count = end - bisect.bisect_left(arrivals, now - SHORT_S)
        late = sum(rng.random() < misses for _ in range(short_count)) if misses else 0
        obs = WorkflowObservation(long_count / min(LONG_S, now), short_count / SHORT_S, SHORT_S,
                                  ok=short_count - late, late=late, long_window_s=min(LONG_S, now))
        law.step(Observation(now, {workflow.name: obs}), state, now)
        estimate = state.workflows[workflow.name].estimate_rps
        after = step != 1.0 and now >= STEP_AT_S
        settling = after and now < STEP_AT_S + LONG_S
        true_rps = rate_rps * (step if after else 1.0)
        if now >= SKIP_S and long_count and not settling:
            out.append((estimate / (long_count / LONG_S), estimate / true_rps, after))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,2,6")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--step", type=float, default=1.0, help="multiply the rate by this at 300 s")
    parser.add_argument("--misses", type=float, default=0.0, help="the share of answers late whatever the plan")
    parser.add_argument("--tick-s", type=float, default=5.0, help="seconds between ticks")
    parser.add_argument("--settings", default=None, help="ControlSettings fields as JSON")
    args = parser.parse_args(argv)
    settings = ControlSettings(**(json.loads(args.settings) if args.settings else {}))
    stepped = f", x{args.step:g} at {STEP_AT_S:g} s" if args.step != 1.0 else ""
    stepped += f", {args.misses:.0%} of answers late" if args.misses else ""
    print(f"law's estimate against the window's rate and the true rate, {args.runs} streams of "
          f"{DURATION_S:g} s per rate{stepped}, a tick every {args.tick_s:g} s (rise_z {settings.rise_z:g})")
    within = lambda xs: sum(0.85 <= x <= 1.15 for x in xs) / len(xs)  # noqa: E731
    for rate in (float(r) for r in args.rates.split(",")):
        rows = [row for seed in range(args.runs) for row in run(rate, seed, settings, args.step, args.tick_s,
                                                                 args.misses)]
        line = f"  {rate:g} rps"
        for label, part in (("", rows), (" after the step", [r for r in rows if r[2]])):
            if not part or (label and args.step == 1.0):
                continue
            window, true = [r[0] for r in part], [r[1] for r in part]
            line += f"{label}: /window median {statistics.median(window):.3f}, within 15% {within(window):.0%}; " \
                    f"/true median {statistics.median(true):.3f}, within 15% {within(true):.0%}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
