"""Random workloads nobody tuned for: the robustness evaluation's generator.

``random_workload(seed)`` draws one workload from a seeded generator, varied
the way real deployments vary, so that a policy is judged on cases it was
never tuned on:

- one or two workflows, each a chain or a DAG of 2–8 stages (random
  connected DAGs with fan-in and, sometimes, fan-out 2);
- random monotone profiles (``synthetic.random_monotone_profile``): slower
  with a larger batch, faster with a larger share, with random curvature;
  half of the functions on the full 6 batch sizes x 10 shares, half on a
  random subset (2–4 batch sizes, 2–5 shares); cold starts of 0.5–3 s;
- an SLO of 1.2–3.0 times the workflow's fastest latency at its mean rate;
- arrivals, one kind per workflow: Poisson; bursty gamma gaps with cv 2–4;
  a step up by 3–6x and back down; or diurnal (amplitude 50–90% of the mean);
- a mean rate log-uniform in 5–150 rps, lowered until the cheapest plan
  for the peak rate needs at most 4 GPUs, on a 16-GPU cluster — so that
  capacity is not the limit, the control loop is.

The draw depends only on the seed and the family. ``python -m
esg_plugin.sim.generate [--family wide] SEED...`` prints workloads'
descriptions.

**Families** (:data:`FAMILIES`): ``standard`` draws from the ranges above
(the development and held-out sets of ``docs/EVALUATION.md``); ``wide``
from wider ones that no constant of the law was ever tried on — one to
three workflows of 2–12 stages, SLOs 1.1–4.0 times the fastest latency,
mean rates 2–400 rps, gamma cv 1.5–5, steps of 2–8x, diurnal amplitudes
30–95%, cold starts 0.2–8 s, each workflow's peak within 5 GPUs (15 of
the 16 for three) — to see how far the law holds beyond what it was
developed on (:class:`Ranges`); ``extreme`` from ranges wider still, at
both ends — chains and DAGs of up to 16 stages, SLOs from 1.05 to 6
times the fastest latency, mean rates from 0.3 to 600 rps, gamma cv
1.2–6, steps of 1.5–10x, diurnal amplitudes 10–99%, cold starts
0.1–15 s, each workflow's peak within 6 GPUs (one or two workflows) —
nothing of the law was tried on it before its first use
(``docs/EVALUATION.md``, the forty-fifth session).

``profile_errors(seed, functions, spread)`` draws a persistent error of
the profiles for the simulator (``SimConfig.exec_factors``): each
function's real execution time is its profile's times a factor
log-uniform in [1/spread, spread] — profiles measured on another machine,
or alone where neighbours now run; the policies plan with the profiles as
they are.

``random_live_workload(seed, mean_rps)`` draws the same kinds of arrivals
for ``esg up``, whose workflows are the stack's (their profiles measured,
not drawn): each workflow's mean rate 0.5–2 times its rate in the default
workload (``mean_rps``) times ``scale``, one arrival kind per workflow, for
a workload file (``bench/up_random.py`` runs them).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import dataclass

from ..model import ProfileSet, Stage, Workflow, all_options, path_latency_ms
from ..planner import plan_workflow
from ..synthetic import BATCH_SIZES, GPU_SHARES, random_axes, random_dag_edges, random_monotone_profile
from .workload import Arrivals, Workload, WorkflowLoad, WorkloadError

GPUS = 16
DURATION_S = 300.0
WARMUP_S = 60.0
ARRIVAL_KINDS = ("poisson", "gamma", "steps", "diurnal")


@dataclass(frozen=True)
class Ranges:
    """What :func:`random_workload` draws from (a family of workloads)."""

    workflows: tuple[int, ...] = (1, 1, 2)
    """The workflow count is drawn from this tuple (repeats weigh)."""
    stages: tuple[int, int] = (2, 8)
    slo_factor: tuple[float, float] = (1.2, 3.0)
    """The SLO over the workflow's fastest latency at its mean rate."""
    mean_rps: tuple[float, float] = (5.0, 150.0)
    """Log-uniform, then lowered until the peak fits ``peak_cost_limit_gpus``."""
    gamma_cv: tuple[float, float] = (2.0, 4.0)
    step_factor: tuple[float, float] = (3.0, 6.0)
    diurnal_amplitude: tuple[float, float] = (0.5, 0.9)
    """Of the mean rate."""
    cold_start_ms: tuple[float, float] = (500.0, 3000.0)
    peak_cost_limit_gpus: float = 4.0


STANDARD = Ranges()
WIDE = Ranges(workflows=(1, 2, 3), stages=(2, 12), slo_factor=(1.1, 4.0), mean_rps=(2.0, 400.0),
              gamma_cv=(1.5, 5.0), step_factor=(2.0, 8.0), diurnal_amplitude=(0.3, 0.95),
              cold_start_ms=(200.0, 8000.0), peak_cost_limit_gpus=5.0)
EXTREME = Ranges(workflows=(1, 1, 2), stages=(2, 16), slo_factor=(1.05, 6.0), mean_rps=(0.3, 600.0),
                 gamma_cv=(1.2, 6.0), step_factor=(1.5, 10.0), diurnal_amplitude=(0.1, 0.99),
                 cold_start_ms=(100.0, 15000.0), peak_cost_limit_gpus=6.0)
FAMILIES = {"standard": STANDARD, "wide": WIDE, "extreme": EXTREME}


@dataclass(frozen=True)
class RandomCase:
    seed: int
    workload: Workload
    profiles: ProfileSet
    description: str


def _arrivals(rng: random.Random, kind: str, mean_rps: float, duration_s: float,
              ranges: Ranges = STANDARD) -> tuple[Arrivals, float, str]:
    """The arrival process, its peak rate, and a few words about it."""
    if kind == "poisson":
        return Arrivals("poisson", {"rate_rps": mean_rps}), mean_rps, f"Poisson {mean_rps:.1f} rps"
    if kind == "gamma":
        cv = round(rng.uniform(*ranges.gamma_cv), 2)
        return (Arrivals("gamma", {"rate_rps": mean_rps, "cv": cv}), mean_rps * 1.5,
                f"gamma {mean_rps:.1f} rps cv {cv}")
    if kind == "steps":
        factor = rng.uniform(*ranges.step_factor)
        low = mean_rps / factor * 1.5
        high = low * factor
        up = round(rng.uniform(0.25, 0.45) * duration_s, 1)
        down = round(up + rng.uniform(0.25, 0.4) * duration_s, 1)
        steps = ((0.0, round(low, 2)), (up, round(high, 2)), (down, round(low, 2)))
        return (Arrivals("steps", {"steps": steps}), high,
                f"steps {low:.1f} -> {high:.1f} rps at {up:g} s -> {low:.1f} at {down:g} s (x{factor:.1f})")
    amplitude = mean_rps * rng.uniform(*ranges.diurnal_amplitude)
    period = round(duration_s / rng.choice((0.5, 1.0, 1.5)), 1)
    return (Arrivals("diurnal", {"mean_rps": mean_rps, "amplitude_rps": amplitude, "period_s": period}),
            mean_rps + amplitude, f"diurnal {mean_rps:.1f} ± {amplitude:.1f} rps, period {period:g} s")


def _workflow(rng: random.Random, name: str, functions: dict, ranges: Ranges) -> tuple[list[Stage], float]:
    n = rng.randint(*ranges.stages)
    chain = rng.random() < 0.5
    hop_ms = rng.choice([0.0, 1.0, 2.0, 5.0])
    edges = random_dag_edges(rng, n, chain)
    stages = []
    for i in range(n):
        fn = f"{name}-f{i}"
        batches, shares = (BATCH_SIZES, GPU_SHARES) if rng.random() < 0.5 else random_axes(rng)
        profile = random_monotone_profile(rng, fn, batches, shares, null_rate=0.2)
        functions[fn] = _with_cold_start(profile, rng.uniform(*ranges.cold_start_ms))
        fanout = 1 if chain or rng.random() < 0.85 else 2
        stages.append(Stage(f"s{i}", fn, tuple(f"s{a}" for a, b in edges if b == i), fanout))
    return stages, hop_ms


def _with_cold_start(profile, cold_start_ms: float):
    from dataclasses import replace

    return replace(profile, cold_start_ms=round(cold_start_ms, 1))


def workload_name(seed: int, family: str = "standard") -> str:
    """The name of :func:`random_workload`'s workload for ``seed`` in ``family``."""
    return f"random-{seed}" if family == "standard" else f"random-{family}-{seed}"


def random_workload(seed: int, duration_s: float = DURATION_S, warmup_s: float = WARMUP_S,
                    family: str = "standard") -> RandomCase:
    """The workload of ``seed`` in ``family`` (:data:`FAMILIES`)."""
    if family not in FAMILIES:
        raise WorkloadError(f"unknown workload family {family!r} (one of {', '.join(FAMILIES)})")
    ranges = FAMILIES[family]
    rng = random.Random(seed)
    functions: dict = {}
    loads = []
    words = []
    for w in range(rng.choice(ranges.workflows)):
        name = f"w{w}"
        stages, hop_ms = _workflow(rng, name, functions, ranges)
        profiles = ProfileSet(device="synthetic-random (not measured)", functions=dict(functions))
        kind = rng.choice(ARRIVAL_KINDS)
        mean_rps = math.exp(rng.uniform(*(math.log(x) for x in ranges.mean_rps)))
        slo_factor = rng.uniform(*ranges.slo_factor)
        draft = Workflow.build(name, 1.0, stages, hop_ms)
        for _ in range(40):  # lower the rate until the peak fits the cost limit
            arrivals, peak_rps, said = _arrivals(random.Random(rng.random()), kind, mean_rps, duration_s, ranges)
            fastest = {s.name: min(o.latency_ms for o in all_options(profiles[s.function], mean_rps * s.fanout))
                       for s in stages}
            slo_ms = round(path_latency_ms(draft, fastest) * slo_factor, 2)
            workflow = Workflow.build(name, slo_ms, stages, hop_ms)
            plan = plan_workflow(workflow, profiles, peak_rps)
            if plan.cost <= ranges.peak_cost_limit_gpus or mean_rps < 1.0:
                break
            mean_rps *= 0.7
        loads.append(WorkflowLoad(workflow, arrivals))
        shape = "chain" if all(len(s.after) <= 1 for s in stages) and len(workflow.exits) == 1 else "DAG"
        words.append(f"{name}: {shape} of {len(stages)} stages, SLO {slo_ms:g} ms "
                     f"({slo_factor:.2f}x fastest), {said}")
    workload = Workload(workload_name(seed, family), GPUS, duration_s, tuple(loads), warmup_s=warmup_s)
    profiles = ProfileSet(device="synthetic-random (not measured)", functions=functions)
    return RandomCase(seed, workload, profiles, "; ".join(words))


def profile_errors(seed: int, functions, spread: float) -> dict[str, float]:
    """Per function (sorted by name): its real over profiled execution
    time, log-uniform in [1/``spread``, ``spread``] (``spread`` ≥ 1; 1: none),
    drawn from ``seed`` alone, apart from the workload's own draws."""
    if not (math.isfinite(spread) and spread >= 1.0):
        raise WorkloadError(f"the profile error's spread must be a number >= 1, got {spread!r}")
    rng = random.Random(f"profile-error {seed}")
    return {name: round(math.exp(rng.uniform(-math.log(spread), math.log(spread))), 4)
            for name in sorted(functions)}


LIVE_DURATION_S = 80.0
LIVE_WARMUP_S = 20.0
LIVE_RATE_RANGE = (0.5, 2.0)
"""Each workflow's mean rate: this range (log-uniform) times its default rate."""


def random_live_workload(seed: int, mean_rps: dict[str, float], scale: float = 1.0,
                         duration_s: float = LIVE_DURATION_S, warmup_s: float = LIVE_WARMUP_S) -> tuple[dict, str]:
    """(a workload file's content, a few words about it) for ``esg up``:
    the workflows of ``mean_rps`` (name → its mean rate in the default
    workload), each with an arrival kind drawn as :func:`random_workload`'s
    are and a mean rate log-uniform in :data:`LIVE_RATE_RANGE` times its
    default rate times ``scale``. Depends only on the arguments."""
    rng = random.Random(seed)
    entries, words = [], []
    for name, default_rps in mean_rps.items():
        kind = rng.choice(ARRIVAL_KINDS)
        low, high = LIVE_RATE_RANGE
        rate = default_rps * scale * math.exp(rng.uniform(math.log(low), math.log(high)))
        arrivals, _, said = _arrivals(random.Random(rng.random()), kind, rate, duration_s)
        params = {k: [list(step) for step in v] if k == "steps" else round(v, 3) for k, v in arrivals.params.items()}
        entries.append({"workflow": name, "arrivals": {"kind": arrivals.kind, **params}})
        words.append(f"{name}: {said}")
    data = {"description": f"random live workload {seed} (x{scale:g})", "gpus": 1, "duration_s": duration_s,
            "warmup_s": warmup_s, "workflows": entries}
    return data, "; ".join(words)


def main(argv=None) -> int:  # pragma: no cover - a printout
    parser = argparse.ArgumentParser(description="Print random workloads' descriptions.")
    parser.add_argument("--family", choices=tuple(FAMILIES), default="standard")
    parser.add_argument("seeds", nargs="*", type=int, default=[1])
    args = parser.parse_args(argv)
    for seed in args.seeds:
        case = random_workload(seed, family=args.family)
        print(f"{case.workload.name}: {case.description}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
