"""The simulated cluster: GPUs of 100% share each, where instances are placed
and what holding them costs. Times in ms, shares in percent of one GPU.

The engine (``engine.py``) decides *which* instances to start and in what
order (a stage with none first, then in decreasing order of share); the
cluster answers *where* one fits (``PLACEMENTS``: the first GPU with room,
or the GPU with the least room that fits), counts those that fit nowhere
(``unplaced``) and integrates the GPUs held over the scored period (after
the warm-up, before the end) into ``cost_gpu_s``, in total and per
workflow.
"""

from __future__ import annotations

from typing import Iterable, Optional

#: Where an instance goes among the GPUs with room for its share.
#: ``first-fit``: the first (the lowest index), the default — every
#: figure in the documents unless it says otherwise. ``best-fit``: the one with
#: the least room left that still fits, the lowest index among equals —
#: a GPU-sharing scheduler's "binpack" (the gpushare scheduler extender
#: picks the device with the least free memory that fits; HAMi's
#: ``gpu-scheduler-policy: binpack``), which leaves the large rooms whole.
PLACEMENTS = ("first-fit", "best-fit")


class Cluster:
    def __init__(self, gpus: int, workflows: Iterable[str], scored_from_ms: float, scored_until_ms: float,
                 placement: str = PLACEMENTS[0]):
        if placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {placement!r}; known: {', '.join(PLACEMENTS)}")
        self.best_fit = placement == PLACEMENTS[1]
        self.gpu_free = [100] * gpus
        self.scored_from_ms, self.scored_until_ms = scored_from_ms, scored_until_ms
        self.held_pct = 0
        self.held_pct_by_wf: dict[str, int] = {name: 0 for name in workflows}
        self.last_change_ms = 0.0
        self.cost_gpu_s = 0.0
        self.cost_gpu_s_by_wf = {name: 0.0 for name in self.held_pct_by_wf}
        self.unplaced = 0

    # --- placement ------------------------------------------------------------
    def most_instances(self, share_pct: int) -> int:
        """The most instances of this share the whole cluster could hold."""
        return len(self.gpu_free) * (100 // share_pct)

    def place(self, share_pct: int) -> Optional[int]:
        """The GPU with room for the share that the placement picks, now
        taken; None (and one more ``unplaced``) when none has room."""
        if self.best_fit:
            gpu = min((i for i, free in enumerate(self.gpu_free) if free >= share_pct),
                      key=self.gpu_free.__getitem__, default=None)
        else:
            gpu = next((i for i, free in enumerate(self.gpu_free) if free >= share_pct), None)
        if gpu is None:
            self.unplaced += 1
            return None
        self.gpu_free[gpu] -= share_pct
        return gpu

    def release(self, gpu: int, share_pct: int) -> None:
        self.gpu_free[gpu] += share_pct

    # --- cost -----------------------------------------------------------------------
    def account(self, t_ms: float) -> None:
        """Integrate the GPUs held up to ``t_ms`` (clipped to the scored period)."""
        lo = max(self.last_change_ms, self.scored_from_ms)
        hi = min(t_ms, self.scored_until_ms)
        if hi > lo:
            dt_s = (hi - lo) / 1000.0
            self.cost_gpu_s += self.held_pct / 100.0 * dt_s
            for name, pct in self.held_pct_by_wf.items():
                self.cost_gpu_s_by_wf[name] += pct / 100.0 * dt_s
        self.last_change_ms = t_ms

    def hold(self, workflow: str, share_pct: int, sign: int, t_ms: float) -> None:
        """Start (sign +1) or stop (-1) holding a share for a workflow at ``t_ms``."""
        self.account(t_ms)
        self.held_pct += sign * share_pct
        self.held_pct_by_wf[workflow] += sign * share_pct
