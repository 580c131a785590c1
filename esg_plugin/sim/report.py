"""Turning simulation runs into figures: the SPEC §7 JSON, a table, a CSV of
per-request latencies and PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ESGError
from .engine import RunResult

_TOLERANCE_MS = 1e-9


def met(latency_ms, slo_ms):
    """Whether a request met its SLO: it finished (latency ≥ 0; -1 is
    unfinished) within it. Numbers or numpy arrays alike."""
    return (latency_ms >= 0) & (latency_ms <= slo_ms + _TOLERANCE_MS)


def summarize(result: RunResult) -> dict[str, Any]:
    """One policy's entry of SPEC §7's ``policies`` object (plus a breakdown
    of the misses: ``late`` finished after the SLO, ``unfinished`` never did,
    ``shed`` of those dropped by a stage once they could no longer meet their
    deadline)."""
    span_s = result.duration_s - result.warmup_s
    names = [r[0] for r in result.requests]
    latency = np.array([r[2] for r in result.requests], dtype=float)
    slo = np.array([result.slo_ms[n] for n in names], dtype=float)
    finished = latency >= 0
    hit = met(latency, slo)
    arrived = len(latency)
    done = latency[finished]
    workflows = {}
    for name in result.slo_ms:
        mine = np.array([n == name for n in names], dtype=bool)
        count = int(mine.sum())
        workflows[name] = {
            "requests": count,
            "slo_hit_rate": round(float(hit[mine].mean()) if count else 0.0, 4),
            "cost": round(result.cost_gpu_s_by_workflow.get(name, 0.0) / span_s, 3),
            "p99_ms": round(float(np.percentile(latency[mine & finished], 99)), 2) if (mine & finished).any() else None,
        }
    return {
        "slo_hit_rate": round(float(hit.mean()) if arrived else 0.0, 4),
        "cost": round(result.cost_gpu_s / span_s, 3),
        "gpu_util": round(result.busy_gpu_s / result.cost_gpu_s, 3) if result.cost_gpu_s > 0 else 0.0,
        "p50_ms": round(float(np.percentile(done, 50)), 2) if len(done) else None,
        "p99_ms": round(float(np.percentile(done, 99)), 2) if len(done) else None,
        "completed": int(hit.sum()),
        "missed": int(arrived - hit.sum()),
        "late": int((finished & ~hit).sum()),
        "unfinished": int((~finished).sum()),
        "shed": result.shed,
        "unplaced_instances": result.unplaced,
        "workflows": workflows,
    }


def document(workload: str, seed: int, duration_s: float, results: Sequence[RunResult]) -> dict[str, Any]:
    """The ``esg simulate --json`` document (SPEC §7)."""
    return {
        "workload": workload,
        "seed": seed,
        "duration_s": duration_s,
        "policies": {r.policy: summarize(r) for r in results},
    }


def render_table(doc: dict[str, Any]) -> str:
    header = ["policy", "slo_hit", "cost_gpus", "gpu_util", "p50_ms", "p99_ms", "completed", "missed"]
    rows = []
    for name, p in doc["policies"].items():
        rows.append([
            name, f"{p['slo_hit_rate']:.2%}", f"{p['cost']:.2f}", f"{p['gpu_util']:.0%}",
            "-" if p["p50_ms"] is None else f"{p['p50_ms']:.1f}",
            "-" if p["p99_ms"] is None else f"{p['p99_ms']:.1f}",
            str(p["completed"]), str(p["missed"]),
        ])
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    title = f"workload {doc['workload']}  seed {doc['seed']}  {doc['duration_s']:g} s"
    return "\n".join([title, "", line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def write_outputs(out_dir: Path, doc: dict[str, Any], results: Sequence[RunResult]) -> list[Path]:
    """``simulation.json``, ``latencies.csv``, ``decisions.csv`` (every
    re-plan of a policy that says why: the control law's) and three PNG
    plots in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    path = out_dir / "simulation.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    written.append(path)
    path = out_dir / "latencies.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["policy", "workflow", "arrival_s", "latency_ms", "slo_ms", "slo_met"])
        for r in results:
            for name, arrival_s, latency_ms in r.requests:
                slo = r.slo_ms[name]
                met = 0 <= latency_ms <= slo + _TOLERANCE_MS
                writer.writerow([r.policy, name, f"{arrival_s:.4f}",
                                 "" if latency_ms < 0 else f"{latency_ms:.3f}", slo, int(met)])
    written.append(path)
    path = out_dir / "decisions.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["policy", "time_s", "workflow", "rate_rps", "estimate_rps", "plan_gpus", "reason"])
        for r in results:
            for d in r.decisions:
                writer.writerow([r.policy, f"{d.time_s:.3f}", d.workflow, f"{d.rate_rps:.3f}",
                                 "" if d.estimate_rps is None else f"{d.estimate_rps:.3f}", f"{d.plan_gpus:.3f}",
                                 d.reason])
    written.append(path)
    written.extend(plot(out_dir, doc, results))
    return written


class PlotsUnavailable(ESGError, RuntimeError):
    """matplotlib is not installed."""


def plot(out_dir: Path, doc: dict[str, Any], results: Sequence[RunResult]) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib: pip install 'esg-plugin[plots]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (name, p) in enumerate(doc["policies"].items()):
        ax.scatter(p["cost"], p["slo_hit_rate"] * 100, s=40)
        ax.annotate(name, (p["cost"], p["slo_hit_rate"] * 100), textcoords="offset points",
                    xytext=(5, 3 if i % 2 == 0 else -10), fontsize=8)
    ax.set_xlabel("cost (average GPUs held)")
    ax.set_ylabel("SLO hit rate (%)")
    ax.set_title(f"{doc['workload']}: SLO hit rate against cost")
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "hit_rate_vs_cost.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in results:
        lat = np.sort(np.array([x[2] for x in r.requests if x[2] >= 0]))
        if len(lat):
            ax.plot(lat, np.arange(1, len(lat) + 1) / len(r.requests), label=r.policy)
    for slo in sorted(set(results[0].slo_ms.values())) if results else []:
        ax.axvline(slo, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency (ms, log scale; dotted: SLOs)")
    ax.set_ylabel("share of requests")
    ax.set_title(f"{doc['workload']}: latency CDF")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "latency_cdf.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in results:
        if r.held_series:
            t, held = zip(*r.held_series)
            ax.step(t, held, where="post", label=r.policy)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("GPUs held")
    ax.set_title(f"{doc['workload']}: GPUs held over time")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "gpus_over_time.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
