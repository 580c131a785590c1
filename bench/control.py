"""Time of one control step for 50 functions (the law of esg_plugin/control).

    python bench/control.py [--workflows 10] [--stages 5] [--ticks 300] [--seed 1] [--calibrated] [--misses]
                            [--no-freeze]
    python bench/control.py --memory 4000

Ten random workflows of five stages (chains and DAGs, random monotone
profiles on the full 6 batch sizes x 10 shares, seeded), one observation per
workflow per tick from a rate that wanders and steps. Prints the time of a
step in three cases: a quiet tick (nothing re-planned), a tick that
re-plans as many workflows as one tick may (``max_replans_per_tick``, 3: the
worst case; a step on every workflow spreads over four ticks), and the whole
run's median and p99, and how many ticks took longer than the goal: a
step for 50 functions within 20 ms.
``ESG_BENCH_SETTINGS`` (a Python dict literal of ControlSettings fields,
read as a literal, never run) overrides
settings, e.g. ``"{'max_replans_per_tick': 10}"`` for all at once.
``--calibrated``: each observation also carries every function's observed
over profiled execution time (a ratio that drifts between 1.05 and 1.35,
as the scaler's and the simulator's with ``--noise`` do), so that every
re-plan prices calibrated profiles — the law's case in a deployment, and
a slower one: scaled profiles are new objects, whose option arrays are
not in the cache.
``--misses``: every observation also says that 5% of the answers
missed and that each stage's requests waited 50 ms, so that the miss
feedback acts at every cooldown — the queue's factor on the cv², with
the search that tests whether its plan meets the budget (for at most
``max_replans_per_tick`` workflows a tick, as re-plans), then the
margin, then the capacity step: the law's busiest case.
``--memory TICKS``: the law's memory over a long run instead (a scaler's
life): the same world at a steady rate, each function's execution-time
ratio a random walk (5% a tick, within 0.6–2.5); prints the process's
peak resident memory every 1,000 ticks — flat once the law's caches are
full.
Times are wall-clock; the re-planning ticks are also given in the CPU time
of the step's thread (``time.thread_time``), which leaves out the time a
busy host gives to other processes (the machine is shared) but counts the
step's own work, garbage collection included.
As ``esg scaler`` and ``esg up`` do once they have started, the heap built
before the ticks is frozen out of the garbage collector's reach
(``freeze_start_up_heap``); the collections that fall within the ticks
are printed (how many, the longest). ``--no-freeze``: without it — a full
collection then scans every object of the process, about 12 ms here on a
fast host, within whichever tick allocates when one is due.
"""

from __future__ import annotations

import argparse
import ast
import gc
import os
import random
import resource
import statistics
import sys
import time

import numpy as np

from esg_plugin.control import ControlLaw, ControlSettings, Observation, WorkflowObservation
from esg_plugin.model import ProfileSet, Stage, Workflow
from esg_plugin.scaler import freeze_start_up_heap
from esg_plugin.synthetic import BATCH_SIZES, GPU_SHARES, random_dag_edges, random_monotone_profile
from esg_plugin.limits import flag


MAX_WORKFLOWS, MAX_STAGES, MAX_TICKS = 1_000, 16, 10_000_000
"""The most the bench takes: a thousand workflows of sixteen stages (the
generator's longest), ten million ticks (a scaler's four months)."""


def world(workflows: int, stages: int, seed: int):
    rng = random.Random(seed)
    functions, flows = {}, []
    for w in range(workflows):
        edges = random_dag_edges(rng, stages, chain=rng.random() < 0.5)
        steps = []
        for i in range(stages):
            fn = f"w{w}-f{i}"
            functions[fn] = random_monotone_profile(rng, fn, BATCH_SIZES, GPU_SHARES)
            steps.append(Stage(f"s{i}", fn, tuple(f"s{a}" for a, b in edges if b == i)))
        flows.append(Workflow.build(f"w{w}", rng.uniform(100.0, 400.0), steps, hop_ms=1.0))
    return flows, ProfileSet("bench", functions)


def memory(flows, profiles, ticks: int, seed: int) -> int:
    law = ControlLaw(flows, profiles, ControlSettings())
    state = law.new_state()
    rng = np.random.default_rng(seed)
    ratio = {fn: 1.2 for fn in profiles.functions}
    print(f"control law's memory, {len(ratio)} functions, execution times drifting, {ticks} ticks")
    for t in range(ticks):
        out = {wf.name: WorkflowObservation(20.0, 20.0, 2.0, 1.0, 0.0, 40, 0) for wf in flows}
        ratio = {fn: min(2.5, max(0.6, r * float(np.exp(rng.normal(0.0, 0.05))))) for fn, r in ratio.items()}
        law.step(Observation(float(t), out, ratio), state, float(t))
        if (t + 1) % 1000 == 0 or t + 1 == ticks:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            print(f"  after {t + 1:>6} ticks: peak resident memory {peak_mb:.0f} MB", flush=True)
    return 0


GOAL_MS = 20.0
"""The control step's goal for 50 functions (issue 12)."""


def percentile(values, q):
    return float(np.percentile(values, q))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=flag(int, 1, MAX_WORKFLOWS), default=10)
    parser.add_argument("--stages", type=flag(int, 1, MAX_STAGES), default=5)
    parser.add_argument("--ticks", type=flag(int, 1, MAX_TICKS), default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calibrated", action="store_true",
                        help="observations carry execution-time ratios, as a deployment's do")
    parser.add_argument("--misses", action="store_true",
                        help="observations carry 5%% misses and 50-ms waits at every stage: the feedback acts")
    parser.add_argument("--memory", type=flag(int, 1, MAX_TICKS), metavar="TICKS",
                        help="print the peak resident memory over a long run with drifting execution times")
    parser.add_argument("--no-freeze", action="store_true",
                        help="leave the start-up heap to the garbage collector (the scaler freezes it)")
    args = parser.parse_args(argv)
    flows, profiles = world(args.workflows, args.stages, args.seed)
    if args.memory:
        return memory(flows, profiles, args.memory, args.seed)
    try:  # a dict literal, read as one (never run as code)
        settings = ControlSettings(**ast.literal_eval(os.environ.get("ESG_BENCH_SETTINGS", "{}")))
    except (ValueError, SyntaxError, TypeError) as e:  # a ControlError is a ValueError
        parser.error(f"ESG_BENCH_SETTINGS: {e}")
    law = ControlLaw(flows, profiles, settings)
    state = law.new_state()
    rng = np.random.default_rng(args.seed)
    base = {wf.name: float(rng.uniform(5.0, 80.0)) for wf in flows}

    def observe(t, factor=1.0):
        out = {}
        for wf in flows:
            rate = base[wf.name] * factor * (1 + 0.1 * np.sin(t / 20.0))
            short = rng.poisson(rate * 2.0) / 2.0
            answers = int(rate * 2)
            if args.misses:
                late = max(1, answers // 20)
                waits = {stage: (float(answers), 50.0 * answers) for stage in wf.stage_names}
                out[wf.name] = WorkflowObservation(rate, short, 2.0, 1.0, 0.0, answers - late, late, stage_wait=waits)
            else:
                out[wf.name] = WorkflowObservation(rate, short, 2.0, 1.0, 0.0, answers, 0)
        if not args.calibrated:
            return Observation(float(t), out)
        ratio = {fn: 1.2 + 0.15 * np.sin(t / 15.0 + k) for k, fn in enumerate(profiles.functions)}
        return Observation(float(t), out, ratio)

    def timed(observation, t):
        started, started_cpu = time.perf_counter(), time.thread_time()
        decision = law.step(observation, state, float(t))
        return (time.perf_counter() - started) * 1000.0, (time.thread_time() - started_cpu) * 1000.0, decision

    if not args.no_freeze:
        freeze_start_up_heap()
    pauses = []  # [start, generation], then [ms, generation]

    def on_gc(phase, info):
        if phase == "start":
            pauses.append([time.perf_counter(), info["generation"]])
        elif pauses:
            pauses[-1][0] = (time.perf_counter() - pauses[-1][0]) * 1000.0

    gc.callbacks.append(on_gc)
    all_ms, quiet_ms, replanned, replanned_cpu = [], [], [], []
    for t in range(args.ticks):
        factor = 4.0 if args.ticks // 3 <= t < 2 * args.ticks // 3 else 1.0
        ms, cpu_ms, decision = timed(observe(t, factor), t)
        all_ms.append(ms)
        if not decision.changed:
            quiet_ms.append(ms)
        if len(decision.changed) == min(len(flows), law.settings.max_replans_per_tick):
            replanned.append(ms)
            replanned_cpu.append(cpu_ms)
    functions = sum(len(wf.stage_names) for wf in flows)
    print(f"control step, {functions} functions in {len(flows)} workflows, {args.ticks} ticks "
          f"(a rate that wanders, x4 for the middle third{'; execution times observed' if args.calibrated else ''}"
          f"{'; 5% missing, 50-ms waits' if args.misses else ''})")
    print(f"  quiet tick (nothing re-planned): median {statistics.median(quiet_ms):.2f} ms "
          f"({len(quiet_ms)} ticks)" if quiet_ms else "  no quiet tick")
    if replanned:
        most = min(len(flows), law.settings.max_replans_per_tick)
        print(f"  {most} workflows re-planned (the most one tick does): median {statistics.median(replanned):.2f} ms, "
              f"max {max(replanned):.2f} ms ({len(replanned)} ticks)")
        print(f"    the same ticks in CPU time of the step's thread: median {statistics.median(replanned_cpu):.2f} ms, "
              f"max {max(replanned_cpu):.2f} ms")
    print(f"  all ticks:                       median {statistics.median(all_ms):.2f} ms, "
          f"p99 {percentile(all_ms, 99):.2f} ms, max {max(all_ms):.2f} ms; "
          f"over the {GOAL_MS:g}-ms goal: {sum(ms > GOAL_MS for ms in all_ms)} of {len(all_ms)}")
    gc.callbacks.remove(on_gc)
    full = [ms for ms, generation in pauses if generation == 2]
    print(f"  garbage collections within the ticks: {len(pauses)}, longest {max((p[0] for p in pauses), default=0):.2f} ms;"
          f" full ones {len(full)}" + (f", longest {max(full):.2f} ms" if full else "")
          + (" (start-up heap not frozen)" if args.no_freeze else " (start-up heap frozen, as the scaler does)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
