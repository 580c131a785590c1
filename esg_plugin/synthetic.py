"""Synthetic, clearly labelled profiles for examples, tests and benchmarks.

Not measurements. The shape follows how DNN inference behaves on a shared
GPU: a batch costs a fixed part plus a part per item, and a share of
``g`` percent slows the parallel part of the work by ``100 / g`` (Amdahl),
where larger batches are more parallel and so suffer more from a small share:

    e(b, g) = (fixed_ms + per_item_ms · b) · ((1 − p_b) + p_b · 100 / g)
    p_b     = parallel · b / (b + half_batch)

Configurations whose memory need ``mem_base_mb + mem_per_item_mb · b``
exceeds ``g``% of ``gpu_mem_mb`` are null (out of memory), as MPS memory
limits would make them.

Run ``python -m esg_plugin.synthetic`` to print the example profile file.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Optional, Sequence

from .model import FunctionProfile, ProfileSet

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
GPU_SHARES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
SYNTHETIC_DEVICE = "synthetic (not measured): a model of a 16 GB GPU for examples and tests"


@dataclass(frozen=True)
class SyntheticFunction:
    name: str
    fixed_ms: float
    per_item_ms: float
    parallel: float = 0.9
    half_batch: float = 4.0
    mem_base_mb: float = 800.0
    mem_per_item_mb: float = 40.0
    cold_start_ms: float = 2000.0


def synthetic_profile(
    fn: SyntheticFunction,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    gpu_shares: Sequence[int] = GPU_SHARES,
    gpu_mem_mb: float = 16000.0,
) -> FunctionProfile:
    rows = []
    for b in batch_sizes:
        p = fn.parallel * b / (b + fn.half_batch)
        need_mb = fn.mem_base_mb + fn.mem_per_item_mb * b
        row: list[Optional[float]] = []
        for g in gpu_shares:
            if need_mb > gpu_mem_mb * g / 100.0:
                row.append(None)
            else:
                row.append(round((fn.fixed_ms + fn.per_item_ms * b) * ((1 - p) + p * 100.0 / g), 3))
        rows.append(tuple(row))
    memory = tuple(fn.mem_base_mb + fn.mem_per_item_mb * b for b in batch_sizes)
    return FunctionProfile(fn.name, tuple(batch_sizes), tuple(gpu_shares), tuple(rows), memory, fn.cold_start_ms)


#: The functions of the example workflows; figures loosely in the range of
#: the real models of issue 5 on a data-centre GPU, not measured.
EXAMPLE_FUNCTIONS = (
    SyntheticFunction("preprocess", fixed_ms=1.5, per_item_ms=0.4, parallel=0.5, mem_base_mb=300, mem_per_item_mb=10),
    SyntheticFunction("superres", fixed_ms=6.0, per_item_ms=3.0, parallel=0.9, mem_base_mb=900, mem_per_item_mb=120),
    SyntheticFunction("resnet50", fixed_ms=5.0, per_item_ms=1.8, parallel=0.92, mem_base_mb=1200, mem_per_item_mb=60),
    SyntheticFunction("resnet18", fixed_ms=2.5, per_item_ms=0.7, parallel=0.9, mem_base_mb=700, mem_per_item_mb=30),
    SyntheticFunction("ssd", fixed_ms=8.0, per_item_ms=2.5, parallel=0.9, mem_base_mb=1500, mem_per_item_mb=80),
    SyntheticFunction("decode", fixed_ms=1.0, per_item_ms=0.6, parallel=0.3, mem_base_mb=200, mem_per_item_mb=20),
    SyntheticFunction("aggregate", fixed_ms=0.5, per_item_ms=0.1, parallel=0.2, mem_base_mb=150, mem_per_item_mb=2),
    SyntheticFunction("denoise", fixed_ms=3.0, per_item_ms=1.2, parallel=0.85, mem_base_mb=600, mem_per_item_mb=50),
    SyntheticFunction("caption", fixed_ms=9.0, per_item_ms=2.2, parallel=0.88, mem_base_mb=2000, mem_per_item_mb=90),
    SyntheticFunction("langid", fixed_ms=1.0, per_item_ms=0.2, parallel=0.6, mem_base_mb=200, mem_per_item_mb=4),
    SyntheticFunction("translate", fixed_ms=12.0, per_item_ms=3.5, parallel=0.9, mem_base_mb=1800, mem_per_item_mb=70),
    SyntheticFunction("sentiment", fixed_ms=3.0, per_item_ms=0.9, parallel=0.9, mem_base_mb=500, mem_per_item_mb=20),
)


def example_profiles() -> ProfileSet:
    return ProfileSet(
        device=SYNTHETIC_DEVICE,
        functions={fn.name: synthetic_profile(fn) for fn in EXAMPLE_FUNCTIONS},
        share_unit="percent of one GPU (MPS active-thread %)",
        metadata={"synthetic": True, "generator": "python -m esg_plugin.synthetic"},
    )


def random_function(rng: random.Random, name: str) -> SyntheticFunction:
    """A random but plausible function, for property tests and benchmarks."""
    return SyntheticFunction(
        name=name,
        fixed_ms=rng.uniform(0.5, 15.0),
        per_item_ms=rng.uniform(0.1, 4.0),
        parallel=rng.uniform(0.2, 0.95),
        half_batch=rng.uniform(1.0, 8.0),
        mem_base_mb=rng.uniform(100.0, 2000.0),
        mem_per_item_mb=rng.uniform(1.0, 120.0),
    )


def random_monotone_profile(
    rng: random.Random, name: str, batch_sizes: Sequence[int], gpu_shares: Sequence[int], null_rate: float = 0.1
) -> FunctionProfile:
    """Any profile whose latency rises with batch size and falls with share
    (not necessarily the Amdahl shape above); the largest batch at the
    smallest share is sometimes null (out of memory)."""
    per_batch = []
    value = rng.uniform(1.0, 20.0)
    for _ in batch_sizes:
        per_batch.append(value)
        value *= rng.uniform(1.05, 2.2)
    per_share = []
    value = 1.0
    for _ in gpu_shares:
        per_share.append(value)
        value *= rng.uniform(0.45, 0.98)
    rows = []
    for i, _ in enumerate(batch_sizes):
        row: list[Optional[float]] = [round(per_batch[i] * per_share[j], 3) for j in range(len(gpu_shares))]
        rows.append(row)
    if len(batch_sizes) > 1 and rng.random() < null_rate:
        rows[-1][0] = None
    return FunctionProfile(name, tuple(batch_sizes), tuple(gpu_shares), tuple(tuple(r) for r in rows))


def random_axes(rng: random.Random) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """2–4 batch sizes out of 1..32 and 2–5 shares out of 10..100."""
    batches = sorted(rng.sample([1, 2, 4, 8, 16, 32], rng.randint(2, 4)))
    shares = sorted(rng.sample(list(GPU_SHARES), rng.randint(2, 5)))
    return tuple(batches), tuple(shares)


def random_dag_edges(rng: random.Random, n: int, chain: bool, extra_edge_p: float = 0.25) -> list[tuple[int, int]]:
    """Edges of a random connected DAG on stages 0..n-1 (a path if ``chain``).

    Each stage after the first gets one random predecessor, plus each earlier
    stage with probability ``min(extra_edge_p, 1.5 / j)``: dense for small
    DAGs, about 1.5 extra inputs per stage for large ones, as in real
    workflows.
    """
    if chain:
        return [(i, i + 1) for i in range(n - 1)]
    edges = set()
    for j in range(1, n):
        edges.add((rng.randrange(j), j))
        p = min(extra_edge_p, 1.5 / j)
        for i in range(j):
            if rng.random() < p:
                edges.add((i, j))
    return sorted(edges)


def random_case(
    rng: random.Random,
    n_stages: int,
    chain: bool,
    slo_factor: tuple[float, float] = (0.6, 3.0),
    rate_rps: tuple[float, float] = (1.0, 400.0),
    full_axes: bool = False,
):
    """A random (workflow, profiles, rate) planning case.

    The SLO is drawn between ``slo_factor`` times the latency of the fastest
    plan, so that some cases are infeasible. ``full_axes`` uses the 6 batch
    sizes x 10 shares of the benchmarks instead of random small axes.
    """
    from .model import Stage, Workflow, all_options, path_latency_ms  # local: keeps module import light

    rate = round(rng.uniform(*rate_rps), 2)
    hop_ms = rng.choice([0.0, 1.0, 2.0, 5.0])
    edges = random_dag_edges(rng, n_stages, chain)
    functions = {}
    for i in range(n_stages):
        batches, shares = (BATCH_SIZES, GPU_SHARES) if full_axes else random_axes(rng)
        functions[f"f{i}"] = random_monotone_profile(rng, f"f{i}", batches, shares)
    fanouts = [1 if chain or rng.random() < 0.8 else 2 for _ in range(n_stages)]
    stages = [
        Stage(f"s{i}", f"f{i}", tuple(f"s{a}" for a, b in edges if b == i), fanouts[i]) for i in range(n_stages)
    ]
    draft = Workflow.build("random", 1.0, stages, hop_ms)
    fastest = {
        f"s{i}": min(o.latency_ms for o in all_options(functions[f"f{i}"], rate * fanouts[i])) for i in range(n_stages)
    }
    slo = round(path_latency_ms(draft, fastest) * rng.uniform(*slo_factor), 3)
    workflow = Workflow.build("random", slo, stages, hop_ms)
    return workflow, ProfileSet(device="synthetic-random", functions=functions), rate


def main() -> None:  # pragma: no cover - prints the example file
    print(json.dumps(example_profiles().to_dict(), indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()
