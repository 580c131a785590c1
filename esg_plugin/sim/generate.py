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

The draw depends only on the seed. ``python -m esg_plugin.sim.generate SEED``
prints a workload's description.

``random_live_workload(seed, mean_rps)`` draws the same kinds of arrivals
for ``esg up``, whose workflows are the stack's (their profiles measured,
not drawn): each workflow's mean rate 0.5–2 times its rate in the default
workload (``mean_rps``) times ``scale``, one arrival kind per workflow, for
a workload file (``bench/up_random.py`` runs them).
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass

from ..model import ProfileSet, Stage, Workflow, all_options, path_latency_ms
from ..planner import plan_workflow
from ..synthetic import BATCH_SIZES, GPU_SHARES, random_axes, random_dag_edges, random_monotone_profile
from .workload import Arrivals, Workload, WorkflowLoad

GPUS = 16
PEAK_COST_LIMIT_GPUS = 4.0
DURATION_S = 300.0
WARMUP_S = 60.0
ARRIVAL_KINDS = ("poisson", "gamma", "steps", "diurnal")


@dataclass(frozen=True)
class RandomCase:
    seed: int
    workload: Workload
    profiles: ProfileSet
    description: str


def _arrivals(rng: random.Random, kind: str, mean_rps: float, duration_s: float) -> tuple[Arrivals, float, str]:
    """The arrival process, its peak rate, and a few words about it."""
    if kind == "poisson":
        return Arrivals("poisson", {"rate_rps": mean_rps}), mean_rps, f"Poisson {mean_rps:.1f} rps"
    if kind == "gamma":
        cv = round(rng.uniform(2.0, 4.0), 2)
        return (Arrivals("gamma", {"rate_rps": mean_rps, "cv": cv}), mean_rps * 1.5,
                f"gamma {mean_rps:.1f} rps cv {cv}")
    if kind == "steps":
        factor = rng.uniform(3.0, 6.0)
        low = mean_rps / factor * 1.5
        high = low * factor
        up = round(rng.uniform(0.25, 0.45) * duration_s, 1)
        down = round(up + rng.uniform(0.25, 0.4) * duration_s, 1)
        steps = ((0.0, round(low, 2)), (up, round(high, 2)), (down, round(low, 2)))
        return (Arrivals("steps", {"steps": steps}), high,
                f"steps {low:.1f} -> {high:.1f} rps at {up:g} s -> {low:.1f} at {down:g} s (x{factor:.1f})")
    amplitude = mean_rps * rng.uniform(0.5, 0.9)
    period = round(duration_s / rng.choice((0.5, 1.0, 1.5)), 1)
    return (Arrivals("diurnal", {"mean_rps": mean_rps, "amplitude_rps": amplitude, "period_s": period}),
            mean_rps + amplitude, f"diurnal {mean_rps:.1f} ± {amplitude:.1f} rps, period {period:g} s")


def _workflow(rng: random.Random, name: str, functions: dict) -> tuple[list[Stage], float]:
    n = rng.randint(2, 8)
    chain = rng.random() < 0.5
    hop_ms = rng.choice([0.0, 1.0, 2.0, 5.0])
    edges = random_dag_edges(rng, n, chain)
    stages = []
    for i in range(n):
        fn = f"{name}-f{i}"
        batches, shares = (BATCH_SIZES, GPU_SHARES) if rng.random() < 0.5 else random_axes(rng)
        profile = random_monotone_profile(rng, fn, batches, shares, null_rate=0.2)
        functions[fn] = _with_cold_start(profile, rng.uniform(500.0, 3000.0))
        fanout = 1 if chain or rng.random() < 0.85 else 2
        stages.append(Stage(f"s{i}", fn, tuple(f"s{a}" for a, b in edges if b == i), fanout))
    return stages, hop_ms


def _with_cold_start(profile, cold_start_ms: float):
    from dataclasses import replace

    return replace(profile, cold_start_ms=round(cold_start_ms, 1))


def random_workload(seed: int, duration_s: float = DURATION_S, warmup_s: float = WARMUP_S) -> RandomCase:
    rng = random.Random(seed)
    functions: dict = {}
    loads = []
    words = []
    for w in range(rng.choice((1, 1, 2))):
        name = f"w{w}"
        stages, hop_ms = _workflow(rng, name, functions)
        profiles = ProfileSet(device="synthetic-random (not measured)", functions=dict(functions))
        kind = rng.choice(ARRIVAL_KINDS)
        mean_rps = math.exp(rng.uniform(math.log(5.0), math.log(150.0)))
        slo_factor = rng.uniform(1.2, 3.0)
        draft = Workflow.build(name, 1.0, stages, hop_ms)
        for _ in range(40):  # lower the rate until the peak fits the cost limit
            arrivals, peak_rps, said = _arrivals(random.Random(rng.random()), kind, mean_rps, duration_s)
            fastest = {s.name: min(o.latency_ms for o in all_options(profiles[s.function], mean_rps * s.fanout))
                       for s in stages}
            slo_ms = round(path_latency_ms(draft, fastest) * slo_factor, 2)
            workflow = Workflow.build(name, slo_ms, stages, hop_ms)
            plan = plan_workflow(workflow, profiles, peak_rps)
            if plan.cost <= PEAK_COST_LIMIT_GPUS or mean_rps < 1.0:
                break
            mean_rps *= 0.7
        loads.append(WorkflowLoad(workflow, arrivals))
        shape = "chain" if all(len(s.after) <= 1 for s in stages) and len(workflow.exits) == 1 else "DAG"
        words.append(f"{name}: {shape} of {len(stages)} stages, SLO {slo_ms:g} ms "
                     f"({slo_factor:.2f}x fastest), {said}")
    workload = Workload(f"random-{seed}", GPUS, duration_s, tuple(loads), warmup_s=warmup_s)
    profiles = ProfileSet(device="synthetic-random (not measured)", functions=functions)
    return RandomCase(seed, workload, profiles, "; ".join(words))


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
    for arg in (argv if argv is not None else sys.argv[1:]) or ["1"]:
        case = random_workload(int(arg))
        print(f"random-{case.seed}: {case.description}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
