"""Admission at a workflow's entry: shed with 429 rather than let every
request time out when the load exceeds what the machine can serve.

An adaptive limit on the workflow's requests in flight, additive increase
and multiplicative decrease (as TCP's congestion window, Netflix's
``concurrency-limits`` and Envoy's adaptive concurrency filter):

- a request is admitted while fewer than ``limit`` are in flight; else it
  is refused at once (the router answers 429 with ``Retry-After``);
- the answers of admitted requests are judged ``window`` at a time: when
  more than ``target_miss`` of them missed the SLO (late, 504, or 429 from
  a stage), the limit falls to ``decrease`` times the most that were in
  flight during that window (or the limit, if lower);
- every answer within the SLO raises the limit by 1/limit (one more
  request in flight per "round trip" of answers), up to ``max_limit``.

The limit starts at ``max_limit``: a machine that keeps up never refuses a
request. Pure: no clock, no I/O; the router owns one per workflow and calls
it under its lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionSettings:
    target_miss: float = 0.1
    """A window of answers with more misses than this lowers the limit."""
    window: int = 20
    """Answers per judgement."""
    decrease: float = 0.75
    """The limit's factor after a bad window."""
    min_limit: int = 1
    max_limit: int = 1024

    def __post_init__(self) -> None:
        if not (0 <= self.target_miss < 1 and self.window >= 1 and 0 < self.decrease < 1
                and 1 <= self.min_limit <= self.max_limit):
            raise ValueError("admission settings: need 0 <= target_miss < 1, window >= 1, 0 < decrease < 1, "
                             "1 <= min_limit <= max_limit")


class ConcurrencyLimit:
    """The adaptive in-flight limit of one workflow (see the module)."""

    def __init__(self, settings: AdmissionSettings = AdmissionSettings()):
        self.settings = settings
        self.limit = float(settings.max_limit)
        self.judged = 0
        self.missed = 0
        self.peak = 0
        """The most requests in flight since the last judgement."""

    def admit(self, in_flight: int) -> bool:
        """Whether one more request may start while ``in_flight`` are running."""
        if in_flight >= math.floor(self.limit):
            return False
        self.peak = max(self.peak, in_flight + 1)
        return True

    def record(self, missed: bool) -> None:
        """The answer to an admitted request: within the SLO or not."""
        s = self.settings
        if not missed:
            self.limit = min(float(s.max_limit), self.limit + 1.0 / self.limit)
        self.judged += 1
        self.missed += missed
        if self.judged < s.window:
            return
        if self.missed > s.target_miss * self.judged:
            self.limit = max(float(s.min_limit), min(self.limit, float(self.peak)) * s.decrease)
        self.judged = self.missed = self.peak = 0
