"""Calibration: the profiles corrected by the execution times observed.

Each function's observed over profiled execution time
(``Observation.exec_ratio``), bounded to :data:`EXEC_FACTOR_RANGE` and
smoothed, per function and, for :data:`SHARE_FACTOR_MEMORY_S`, per share
and batch size it was observed at; how busy its share's cores were while it ran
(``cpu_ratio``, for a time-shared node). The factors live in the caller's
:class:`ControlState`; :class:`Calibration` keeps only the calibrated
copies of the profiles it priced, for reuse (``docs/control.md``, point
5). Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Mapping, Optional

from ..limits import is_number
from ..model import ProfileSet, Workflow
from .observation import Observation
from .settings import ControlSettings
from .state import ControlState, WorkflowState

EXEC_FACTOR_RANGE = (0.5, 3.0)
CPU_FACTOR_RANGE = (0.02, 10.0)
"""A function's processor time over its execution time, per core its share
allots, outside this is not believed (a share below one core may run one
whole thread: up to 1 / share of the cores)."""
EXEC_FACTOR_SMOOTHING = 0.3
"""Weight of a new observed/profiled ratio in the smoothed factor."""
SHARE_FACTOR_MEMORY_S = 300.0
"""A factor observed at one share (and batch size) is believed for that
share (and batch size) this long after it was last observed; after that it
gets the share's, else the function's latest factor again (contention on a
node comes and goes)."""
SCALED_PROFILES_PER_FUNCTION = 8
"""Calibrated copies of the profiles kept for reuse, per function (at least
``SCALED_PROFILES_MIN``), the least recently used dropped first: factors
drift, and a copy kept for every set of factors ever seen grew without end
in a long-running scaler — peak resident memory 96 MB after 1,000 ticks
of drifting execution times for 50 functions, 138 MB after 4,000, and
rising (``python bench/control.py --memory 4000``; 61 MB flat with this
bound)."""
SCALED_PROFILES_MIN = 256
EXEC_FACTOR_REPLAN = 0.1
"""Re-plan a workflow when a factor it was planned with moved by more than this (relative)."""


class Calibration:
    """The law's calibration (one per :class:`ControlLaw`): ``observe``
    moves the factors at each tick, ``moved`` says whether a plan's factors
    moved enough to re-plan, ``profiles_for`` gives a workflow's profiles
    with the factors applied."""

    def __init__(self, profiles: ProfileSet, settings: ControlSettings):
        self.profiles = profiles
        self.settings = settings
        self.scaled: OrderedDict[tuple[str, tuple], object] = OrderedDict()
        """Calibrated copies of profiles, by (function, factors), least recently used first."""
        self._scaled_kept = max(SCALED_PROFILES_MIN, SCALED_PROFILES_PER_FUNCTION * len(profiles.functions))

    def observe(self, observation: Observation, state: ControlState, shares: Mapping[str, int],
                now_s: float) -> None:
        """Each function's factor, and its factor at the share it runs at
        (``shares``): a share that fills a shared node's cores slows down
        beside a busy neighbour far more than a smaller one (two threads on
        two cores: 3x, one thread: 1.1x; docs/runtime.md), so one factor
        per function would price the other shares wrongly. Not without
        ``exec_calibration``: the profiles are believed as they are."""
        if not self.settings.exec_calibration:
            return
        for function, ratio in observation.cpu_ratio.items():
            if function in self.profiles and is_number(ratio) \
                    and CPU_FACTOR_RANGE[0] <= ratio <= CPU_FACTOR_RANGE[1]:  # else not believed
                state.cpu_factor[function] = _smoothed(state.cpu_factor.get(function), float(ratio))
        low, high = EXEC_FACTOR_RANGE
        for function, ratio in observation.exec_ratio.items():
            if function not in self.profiles or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) \
                    or ratio <= 0:
                continue  # no number outside its range is believed
            ratio = min(high, max(low, float(ratio)))
            state.exec_factor[function] = _smoothed(state.exec_factor.get(function), ratio)
            share = shares.get(function)
            if share is None:
                continue
            keys = [(state.share_factor, (function, share))]
            batch = observation.exec_batch.get(function)
            if isinstance(batch, (int, float)) and math.isfinite(batch) and batch > 0:
                sizes = self.profiles[function].batch_sizes
                keys.append((state.batch_factor, (function, share,
                                                  min(sizes, key=lambda b: abs(math.log(b / batch))))))
            for memory, key in keys:
                before = memory.get(key)
                fresh = before is not None and now_s - before[1] <= SHARE_FACTOR_MEMORY_S
                memory[key] = (_smoothed(before[0] if fresh else None, ratio), now_s)

    def moved(self, workflow: Workflow, ws: WorkflowState, state: ControlState) -> bool:
        """Has a factor the workflow's plan was made with moved by more than
        :data:`EXEC_FACTOR_REPLAN` since?"""
        for st in workflow.stages:
            now = state.exec_factor.get(st.function, 1.0)
            then = ws.factors.get(st.function, 1.0)
            if abs(now / then - 1.0) > EXEC_FACTOR_REPLAN:
                return True
        return False

    def profiles_for(self, workflow: Workflow, state: ControlState, now_s: float) -> ProfileSet:
        """The profiles with each function's latencies times its factor — at
        a share and batch size observed within ``SHARE_FACTOR_MEMORY_S``,
        that cell's; else at a share so observed, that share's; else the
        function's — rounded to 1%, so that similar factors share one scaled
        copy."""
        functions = dict(self.profiles.functions)
        scaled = False

        def believed(memory, key, otherwise):
            seen = memory.get(key)
            return seen[0] if seen is not None and now_s - seen[1] <= SHARE_FACTOR_MEMORY_S else otherwise

        for st in workflow.stages:
            p = self.profiles[st.function]
            base = state.exec_factor.get(st.function, 1.0)
            per_share = [believed(state.share_factor, (st.function, share), base) for share in p.gpu_shares]
            rounded = [round(f, 2) for f in per_share]  # a cell with no factor of its own takes its share's
            factors = tuple(tuple(round(believed(state.batch_factor, (st.function, share, batch), f), 2)
                                  if (st.function, share, batch) in state.batch_factor else f_rounded
                                  for share, f, f_rounded in zip(p.gpu_shares, per_share, rounded))
                            for batch in p.batch_sizes)
            if self.settings.busy_capacity is not None:
                factors = self._no_faster_unseen(st.function, p, factors, state, now_s)
            if all(f == 1.0 for row in factors for f in row):
                continue
            key = (st.function, factors)
            if key in self.scaled:
                self.scaled.move_to_end(key)
            else:
                rows = tuple(tuple(None if v is None else v * f for v, f in zip(row, row_factors))
                             for row, row_factors in zip(p.latency_ms, factors))
                self.scaled[key] = dataclasses.replace(p, latency_ms=rows)
                if len(self.scaled) > self._scaled_kept:
                    self.scaled.popitem(last=False)
            functions[st.function] = self.scaled[key]
            scaled = True
        return dataclasses.replace(self.profiles, functions=functions) if scaled else self.profiles

    def _no_faster_unseen(self, function: str, profile, factors, state: ControlState, now_s: float):
        """On a time-shared node, a larger share never observed is believed no
        faster than the running share runs now, once that runs slower than
        profiled (contention): a busy CPU gives a worker no more time for its
        having more threads — two threads beside busy neighbours ran 2–4 ×
        slower than profiled, where one ran 1.1 × (``docs/runtime.md``). What
        was observed at that share (within ``SHARE_FACTOR_MEMORY_S``) stands."""
        running = state.running_shares.get(function)
        seen = state.share_factor.get((function, running)) if running is not None else None
        if seen is None or now_s - seen[1] > SHARE_FACTOR_MEMORY_S or seen[0] <= 1.0 + EXEC_FACTOR_REPLAN \
                or running not in profile.gpu_shares:
            return factors
        j = profile.gpu_shares.index(running)
        out = []
        for i, row in enumerate(factors):
            at_running = profile.latency_ms[i][j]
            cells = []
            for k, (share, f) in enumerate(zip(profile.gpu_shares, row)):
                own = profile.latency_ms[i][k]
                fresh = state.share_factor.get((function, share))
                unseen = fresh is None or now_s - fresh[1] > SHARE_FACTOR_MEMORY_S
                if share > running and unseen and own and at_running:
                    f = max(f, round(factors[i][j] * at_running / own, 2))
                cells.append(f)
            out.append(tuple(cells))
        return tuple(out)


def _smoothed(before: Optional[float], ratio: float) -> float:
    return ratio if before is None else before + EXEC_FACTOR_SMOOTHING * (ratio - before)
