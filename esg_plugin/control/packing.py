"""Whether instances of given GPU shares fit on a cluster's GPUs: each GPU
holds 100% of share, an instance lives on one GPU, placed first fit
decreasing by share (as the simulator's cluster places a reconfiguration's
new instances). The total of the shares fitting is not enough: 80% of free
share as 40% on each of two GPUs holds no 70% instance.

Pure: share counts in, a yes or no (or the room left) out."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence


def fits_on_gpus(instances_by_share_pct: Mapping[int, int], gpus: float) -> bool:
    """Do ``instances_by_share_pct`` (share in percent → how many) fit on
    ``gpus`` GPUs (a fraction of one counts as a GPU with that much share),
    each placed on the first GPU with room, the largest shares first?"""
    if _count(instances_by_share_pct) <= int(gpus + 1e-9):
        return True  # a GPU each
    return _free_after_placing(instances_by_share_pct, gpus) is not None


def room_after(instances_by_share_pct: Mapping[int, int], free_pct: Sequence[int],
               partly: bool = False) -> Optional[list[int]]:
    """The room each GPU has free (``free_pct``, in percent) once
    ``instances_by_share_pct`` are placed in it as :func:`fits_on_gpus`
    places them, or None where one finds no room (``partly``: those that
    find none are left out, as a platform leaves them pending)."""
    free = list(free_pct)
    for share in sorted(instances_by_share_pct, reverse=True):
        left = instances_by_share_pct[share]
        if left <= 0 or share <= 0:
            continue  # none, or holding no share: fits anywhere
        for i, room in enumerate(free):
            placed = min(left, room // share)
            free[i] -= placed * share
            left -= placed
            if left == 0:
                break
        if left and not partly:
            return None
    return free


def most_room_pct(instances_by_share_pct: Mapping[int, int], gpus: float) -> int:
    """The most share one GPU has free once ``instances_by_share_pct`` are
    placed as :func:`fits_on_gpus` places them (0 where they do not fit)."""
    if _count(instances_by_share_pct) < int(gpus + 1e-9):
        return 100  # a GPU is left empty
    free = _free_after_placing(instances_by_share_pct, gpus)
    return max(free, default=0) if free is not None else 0


def _count(instances_by_share_pct: Mapping[int, int]) -> int:
    return sum(n for share, n in instances_by_share_pct.items() if share > 0 and n > 0)


def _free_after_placing(instances_by_share_pct: Mapping[int, int], gpus: float) -> Optional[list[int]]:
    """Each GPU's free share after placing the instances, or None where one
    finds no room. Called with no more whole GPUs than instances (a
    capacity may be large; the callers answer the other case first)."""
    whole = int(gpus + 1e-9)
    rest_pct = round((gpus - whole) * 100)
    return room_after(instances_by_share_pct, [100] * whole + ([rest_pct] if rest_pct > 0 else []))
