"""A delay window, as Knative's autoscaler has for scale-down: a condition
must hold continuously for ``delay_s`` before it is acted on. The one type
for every such delay (the law's scale-down, the OpenFaaS-style baselines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class DelayWindow:
    delay_s: float
    since_s: Optional[float] = None

    def update(self, holds: bool, now_s: float, keep: bool = False) -> bool:
        """Record whether the condition holds now; True once it has held for
        the whole delay. Then the window starts again, unless ``keep``: the
        caller may act later and calls :meth:`reset` when it does."""
        if not holds:
            self.since_s = None
            return False
        if self.since_s is None:
            self.since_s = now_s
        if now_s - self.since_s >= self.delay_s:
            if not keep:
                self.since_s = None
            return True
        return False

    def reset(self) -> None:
        self.since_s = None

    @property
    def waiting(self) -> bool:
        return self.since_s is not None
