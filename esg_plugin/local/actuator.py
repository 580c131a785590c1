"""The scaler's actuator for the embedded platform (see ``platform.py``):
it sets each function's desired state and returns; the function's rollout
converges processes for replicas, live ``/_esg/config`` for batch
settings, a rolling restart one replica at a time for a share (on a CPU,
the share of the cores becomes torch's threads), while the control loop
keeps observing and deciding."""

from __future__ import annotations

import dataclasses

from ..scaler.actuators import ERROR, GONE, Actuator, Change, diff_states
from .platform import LocalPlatform, PlatformError


class LocalActuator(Actuator):
    """The scaler's actuator for the embedded platform: it sets the desired
    state and returns at once; the platform's rollouts act. A function whose
    last rollout step failed reports an ``error`` change with the reason."""

    name = "local"

    def __init__(self, platform: LocalPlatform):
        self.platform = platform

    def current(self, functions):
        return {f: dataclasses.replace(fn.state, ready_replicas=len(fn.workers))
                for f, fn in ((f, self.platform.functions.get(f)) for f in functions) if fn is not None}

    def apply(self, desired):
        changes = []
        for name, want in desired.items():
            fn = self.platform.functions.get(name)
            if fn is None:
                changes.append(Change(name, GONE, None, None))
                continue
            if fn.last_error:
                changes.append(Change(name, ERROR, "rollout", fn.last_error))
            diff = diff_states(name, fn.state, want)
            if not diff:
                continue
            try:
                self.platform.desire(name, want)
                changes.extend(diff)
            except PlatformError as err:
                changes.append(Change(name, ERROR, "desire", str(err)))
        return changes
