"""Plain-text tables for the terminal."""

from __future__ import annotations

from typing import Sequence

from ..model import Plan
from ..planner import Rejection


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_plan(plan: Plan) -> str:
    header = ["stage", "function", "batch", "share%", "replicas", "wait_ms", "exec_ms", "latency_ms", "cost"]
    right = [False, False] + [True] * 7
    rows = [
        [name, sp.function, str(sp.batch_size), str(sp.gpu_share), str(sp.replicas),
         f"{sp.max_wait_ms:.1f}", f"{sp.exec_ms:.1f}", f"{sp.latency_ms:.1f}", f"{sp.cost:.2f}"]
        for name, sp in plan.stages.items()
    ]
    rows.append(["total", "", "", "", str(sum(sp.replicas for sp in plan.stages.values())), "", "",
                 f"{plan.latency_ms:.1f}", f"{plan.cost:.2f}"])
    verdict = "meets" if plan.feasible else "MISSES (no plan meets it; this is the fastest plan)"
    s = plan.stats
    optimality = "proven optimal" if s.proven_optimal else "not proven optimal"
    lines = [
        f"workflow {plan.workflow}  policy {plan.policy}  rate {plan.rate_rps:g} rps  SLO {plan.slo_ms:g} ms",
        "",
        format_table(header, rows, right),
        "",
        f"end-to-end latency {plan.latency_ms:.1f} ms {verdict} the SLO; cost {plan.cost:.2f} GPU-equivalents",
        f"search: {s.elapsed_ms:.2f} ms, {s.expanded} expanded, {s.generated} generated, "
        f"pruned {s.pruned_by_latency} by latency / {s.pruned_by_cost} by cost / "
        f"{s.pruned_by_dominance} by dominance, {s.segments} segment(s), {optimality}",
    ]
    return "\n".join(lines)


def render_explain(explained: dict[str, list[Rejection]]) -> str:
    blocks = ["cheaper configurations and why they were rejected:"]
    for stage, rejections in explained.items():
        if not rejections:
            blocks.append(f"  {stage}: none cheaper (the chosen configuration is the stage's cheapest)")
            continue
        blocks.append(f"  {stage}:")
        header = ["batch", "share%", "latency_ms", "cost", "rejected by", "why"]
        rows = [
            [str(r.option.config.batch_size), str(r.option.config.gpu_share), f"{r.option.latency_ms:.1f}",
             f"{r.option.cost:.2f}", {"latency": "latency blade", "cost": "cost blade"}.get(r.reason, r.reason),
             r.detail]
            for r in rejections
        ]
        table = format_table(header, rows, [True, True, True, True, False, False])
        blocks.append("\n".join("    " + line for line in table.splitlines()))
    return "\n".join(blocks)
