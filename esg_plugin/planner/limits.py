"""Search limits that turn the exact searches into anytime searches.

The planner never reads the clock itself: a time limit needs a clock handed
in by the caller (``time.perf_counter`` in the CLI, a fake one in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .errors import PlannerError


@dataclass(frozen=True)
class SearchLimits:
    """When to stop searching and return the best plan found so far."""

    max_expansions: Optional[int] = None
    """Stop after this many node expansions (per search; None: no limit)."""
    time_limit_ms: Optional[float] = None
    """Stop after this many milliseconds of the injected clock (None: no limit)."""
    clock_s: Optional[Callable[[], float]] = None
    """A monotonic clock in seconds; required with ``time_limit_ms``."""
    cost_ceiling_pct: Optional[int] = None
    """No plan that holds more than this (in percent of a GPU, as
    ``StageOption.cost_pct``) is wanted: the policy answers None instead,
    and an exact search stops as soon as it proves that none within the
    budget holds less (None: no ceiling). Where a plan within the ceiling
    exists, the plan returned is the one the search gives without it."""

    def __post_init__(self) -> None:
        if self.cost_ceiling_pct is not None and (
                not isinstance(self.cost_ceiling_pct, int) or isinstance(self.cost_ceiling_pct, bool)):
            raise PlannerError(f"cost_ceiling_pct must be an integer, got {self.cost_ceiling_pct!r}")
        if self.max_expansions is not None and self.max_expansions < 1:
            raise PlannerError(f"max_expansions must be at least 1, got {self.max_expansions}")
        if self.time_limit_ms is not None:
            if self.time_limit_ms <= 0:
                raise PlannerError(f"time_limit_ms must be positive, got {self.time_limit_ms:g}")
            if self.clock_s is None:
                raise PlannerError("a time limit needs a clock (SearchLimits.clock_s)")

    def start(self) -> "LimitWatch":
        started = self.clock_s() if self.clock_s is not None else 0.0
        return LimitWatch(self, started)


@dataclass
class LimitWatch:
    """One search's progress against its limits."""

    limits: SearchLimits
    started_s: float

    def exhausted(self, expanded: int) -> bool:
        if self.limits.max_expansions is not None and expanded >= self.limits.max_expansions:
            return True
        if self.limits.time_limit_ms is not None and self.limits.clock_s is not None:
            return (self.limits.clock_s() - self.started_s) * 1000.0 >= self.limits.time_limit_ms
        return False


NO_LIMITS = SearchLimits()
