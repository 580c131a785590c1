"""How closely the control law's reading of the load follows the true rate.

    python bench/tracking.py [--rates 1,2,6] [--runs 5] [--step F] [--misses P] [--tick-s S]
                              [--duration-s S] [--skip-s S] [--short-s S] [--cumulative]
                              [--arrivals REQUESTS_JSON --workflow NAME] [--settings JSON]

A Poisson stream at each rate (seeded: run k is seed k), observed as the
scaler observes it — a 30-s long window and a 5-s short one
(``--short-s``; ``esg up``'s short window is the time since its last
scrape: its tick), a tick every ``--tick-s`` (5 s; ``esg up``'s default
``--interval-s`` is 2) for 20 minutes (``--duration-s``) — and fed to
the law (``esg_plugin/control``) for one random workflow
(``random_workload(681)``'s first). With ``--step F`` the rate is
multiplied by F at 300 s (the ``esg up`` workloads' steps are 3x). After
the first minute (``--skip-s``), and not within the long window after the
step (the window itself is then not at steady state), each tick's
``estimate_rps`` (the offered rate the plan was made for) is compared with
the window's rate, with the true rate and with the arrivals' own mean over
the stretch of constant rate the tick lies in (as ``esg up``'s report
does): the median ratio and the share of ticks within 15%, over the whole
run and, with a step, after it; and the share of runs whose own median
against their arrivals' mean is within 15% (the report's figure for one
``esg up`` run).

``--duration-s 80 --skip-s 20 --tick-s 2 --short-s 2`` is an ``esg up``
run's length, warm-up, tick and short window: the first plan then comes
from the first tick's two seconds of arrivals. ``--cumulative`` scores,
instead of the law's estimate, the arrivals' mean since the start: a
reading with no hysteresis and no window (for a constant rate the best
there is), against which the law's can be read. ``--arrivals
DIR/requests.json --workflow NAME`` replays one ``esg up --out DIR``
run's arrivals of one workflow through the law instead (with
``--duration-s 80 --skip-s 20 --tick-s 2 --short-s 2``: as that run
observed them, up to the moments of its scrapes). With ``--misses P`` each
answer is late with probability P whatever the plan (a host that is
slower than any plan: ``esg up`` beside other work). ``--settings``
changes ControlSettings fields, e.g. ``'{"rise_z": 0}'`` for the law
without the rise test.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import statistics
from typing import Optional

from esg_plugin.control import ControlLaw, ControlSettings, Observation, WorkflowObservation
from esg_plugin.limits import flag, flags
from esg_plugin.sim.generate import random_workload

LONG_S, SHORT_S, DURATION_S, SKIP_S, STEP_AT_S = 30.0, 5.0, 1200.0, 60.0, 300.0
MAX_DURATION_S, MAX_RATE_RPS, MAX_RUNS, MAX_STEP = 86_400.0, 1_000.0, 1_000, 100.0
"""The largest stream, rate, number of streams and step the bench takes (a
stream of a day at 1,000 rps is 86 million arrivals: more is a typo)."""


def run(rate_rps: float, seed: int, settings: ControlSettings, step: float = 1.0,
        tick_s: float = 5.0, misses: float = 0.0, duration_s: float = DURATION_S,
        skip_s: float = SKIP_S, short_s: float = SHORT_S, cumulative: bool = False,
        arrivals: Optional[list[float]] = None) -> list[tuple[float, float, float, bool]]:
    """(estimate / window rate, estimate / true rate, estimate / the
    arrivals' own mean over the stretch of constant rate, after the step)
    per tick at steady state: after ``skip_s``, not within the long window
    after the step. ``arrivals`` (sorted seconds): this stream instead of
    a seeded Poisson one."""
    case = random_workload(681)
    workflow = case.workload.workflows[0].workflow
    law = ControlLaw([workflow], case.profiles, settings)
    state = law.new_state()
    rng = random.Random(seed)
    if arrivals is None:
        arrivals, t = [], 0.0
        top = max(step, 1.0)
        while t < duration_s:  # the step's rate by thinning a stream at the larger rate
            t += rng.expovariate(rate_rps * top)
            if top == 1.0 or rng.random() * top < (step if t >= STEP_AT_S else 1.0):
                arrivals.append(t)
    out = []
    stepped = step != 1.0 and duration_s > STEP_AT_S
    stretches = [(0.0, STEP_AT_S), (STEP_AT_S, duration_s)] if stepped else [(0.0, duration_s)]
    own = [(bisect.bisect_left(arrivals, b) - bisect.bisect_left(arrivals, a)) / (b - a) for a, b in stretches]
    for k in range(1, int(duration_s / tick_s) + 1):
        now = k * tick_s
        end = bisect.bisect_left(arrivals, now)  # arrivals are sorted: counts in [now - window, now)
        long_count = end - bisect.bisect_left(arrivals, now - LONG_S)
        window_s = min(short_s, now)  # the short window since the start, at the first ticks
        short_count = end - bisect.bisect_left(arrivals, now - window_s)
        late = sum(rng.random() < misses for _ in range(short_count)) if misses else 0
        obs = WorkflowObservation(long_count / min(LONG_S, now), short_count / window_s, window_s,
                                  ok=short_count - late, late=late, long_window_s=min(LONG_S, now))
        law.step(Observation(now, {workflow.name: obs}), state, now)
        estimate = end / now if cumulative else state.workflows[workflow.name].estimate_rps
        after = step != 1.0 and now >= STEP_AT_S
        settling = after and now < STEP_AT_S + LONG_S
        true_rps = rate_rps * (step if after else 1.0)
        mean_rps = own[1 if after else 0]
        if now >= skip_s and long_count and mean_rps and not settling:
            out.append((estimate / (long_count / min(LONG_S, now)), estimate / true_rps, estimate / mean_rps,
                        after))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=flags(float, 1e-3, MAX_RATE_RPS), default="1,2,6")
    parser.add_argument("--runs", type=flag(int, 1, MAX_RUNS), default=5)
    parser.add_argument("--step", type=flag(float, 1e-3, MAX_STEP), default=1.0,
                        help="multiply the rate by this at 300 s")
    parser.add_argument("--misses", type=flag(float, 0.0, 1.0), default=0.0,
                        help="the share of answers late whatever the plan")
    parser.add_argument("--tick-s", type=float, default=5.0, help="seconds between ticks")
    parser.add_argument("--duration-s", type=float, default=DURATION_S, help="each stream's length")
    parser.add_argument("--skip-s", type=float, default=SKIP_S, help="ticks before this are not scored")
    parser.add_argument("--short-s", type=float, default=SHORT_S, help="the short window")
    parser.add_argument("--cumulative", action="store_true",
                        help="score the arrivals' mean since the start instead of the law's estimate: "
                             "a reading with no hysteresis and no window, for a constant rate the best there is")
    parser.add_argument("--arrivals", default=None, metavar="REQUESTS_JSON",
                        help="replay one run's arrivals instead (esg up --out DIR writes DIR/requests.json)")
    parser.add_argument("--workflow", default=None, help="with --arrivals: whose arrivals")
    parser.add_argument("--settings", default=None, help="ControlSettings fields as JSON")
    args = parser.parse_args(argv)
    replayed = None
    if (args.arrivals is None) != (args.workflow is None):
        parser.error("--arrivals and --workflow go together")
    if args.arrivals is not None:
        replayed = _replayed(args.arrivals, args.workflow, args.duration_s)
        if isinstance(replayed, str):
            parser.error(replayed)
    if not 0 < args.tick_s <= args.skip_s < args.duration_s <= MAX_DURATION_S or not 0 < args.short_s <= LONG_S:
        parser.error(f"need 0 < --tick-s <= --skip-s < --duration-s <= {MAX_DURATION_S:g} "
                     f"and 0 < --short-s <= {LONG_S:g}")
    try:
        settings = ControlSettings(**(json.loads(args.settings) if args.settings else {}))
    except (ValueError, TypeError) as e:  # a ControlError is a ValueError
        parser.error(f"--settings: {e}")
    stepped = f", x{args.step:g} at {STEP_AT_S:g} s" if args.step != 1.0 else ""
    stepped += f", {args.misses:.0%} of answers late" if args.misses else ""
    scored = "the arrivals' mean since the start" if args.cumulative else "law's estimate"
    print(f"{scored} against the window's rate and the true rate, {args.runs} streams of "
          f"{args.duration_s:g} s per rate (scored after {args.skip_s:g} s){stepped}, "
          f"a tick every {args.tick_s:g} s (rise_z {settings.rise_z:g})")
    within = lambda xs: sum(0.85 <= x <= 1.15 for x in xs) / len(xs)  # noqa: E731
    rates = [len(replayed) / args.duration_s] if replayed is not None else args.rates
    for rate in rates:
        runs = [run(rate, seed, settings, args.step, args.tick_s, args.misses, args.duration_s, args.skip_s,
                    args.short_s, args.cumulative, replayed) for seed in range(1 if replayed else args.runs)]
        rows = [row for rows in runs for row in rows]
        # as ``esg up``'s report reads one run: the median over its steady ticks, against its arrivals' mean
        medians = [statistics.median(r[2] for r in rows) for rows in runs if rows]
        line = f"  {rate:g} rps: runs whose median /arrivals' mean is within 15% " \
               f"{within(medians):.1%} of {len(medians)}" if medians else f"  {rate:g} rps: no steady tick"
        if replayed is not None and medians:
            line = f"  {args.workflow}, {len(replayed)} arrivals ({rate:.3f} rps): " \
                   f"median /arrivals' mean {medians[0]:.3f}"
        for label, part in (("", rows), (" after the step", [r for r in rows if r[3]])):
            if not part or (label and args.step == 1.0):
                continue
            window, true, own = [r[0] for r in part], [r[1] for r in part], [r[2] for r in part]
            line += f"{label}: /window median {statistics.median(window):.3f}, within 15% {within(window):.0%}; " \
                    f"/true median {statistics.median(true):.3f}, within 15% {within(true):.0%}; " \
                    f"/arrivals' mean {statistics.median(own):.3f}, within 15% {within(own):.0%}"
        print(line)
    return 0


def _replayed(path: str, workflow: str, duration_s: float):
    """The sorted arrival times (``sent_s``) of ``workflow`` within
    ``duration_s`` in an ``esg up`` run's requests.json, or a one-line
    reason why not."""
    try:
        with open(path) as f:
            requests = json.load(f)
        sent = sorted(float(r["sent_s"]) for r in requests if r["workflow"] == workflow)
    except (OSError, ValueError, TypeError, KeyError) as e:
        return f"--arrivals {path}: not an esg up requests.json ({e})"
    sent = [t for t in sent if 0.0 <= t < duration_s]
    return sent or f"--arrivals {path}: no arrival of workflow {workflow!r} within {duration_s:g} s"


if __name__ == "__main__":
    raise SystemExit(main())
