"""What every actuator shares: the change report, the interface, diffing,
retries, and the dry run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from ..decider import FunctionState

log = logging.getLogger("esg.scaler")


#: What a change is to (Change.kind): the plan's field names.
REPLICAS, GPU_SHARE, BATCHING = "replicas", "gpu_share", "batching"
#: ... or what went wrong: the function is not there, or the call failed.
GONE, ERROR = "gone", "error"


@dataclass(frozen=True)
class Change:
    function: str
    kind: str
    """REPLICAS, GPU_SHARE, BATCHING, GONE or ERROR."""
    before: object
    after: object


class Actuator:
    name = "actuator"

    def current(self, functions: list[str]) -> dict[str, FunctionState]:  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, desired: Mapping[str, FunctionState]) -> list[Change]:  # pragma: no cover - interface
        raise NotImplementedError


def diff_states(fn: str, cur: Optional[FunctionState], want: FunctionState) -> list[Change]:
    if cur is None:
        return [Change(fn, REPLICAS, None, want.replicas), Change(fn, GPU_SHARE, None, want.gpu_share),
                Change(fn, BATCHING, None, (want.batch_size, want.max_wait_ms))]
    out = []
    if cur.replicas != want.replicas:
        out.append(Change(fn, REPLICAS, cur.replicas, want.replicas))
    if cur.gpu_share != want.gpu_share:
        out.append(Change(fn, GPU_SHARE, cur.gpu_share, want.gpu_share))
    if (cur.batch_size, cur.max_wait_ms) != (want.batch_size, want.max_wait_ms):
        out.append(Change(fn, BATCHING, (cur.batch_size, cur.max_wait_ms), (want.batch_size, want.max_wait_ms)))
    return out


class DryRunActuator(Actuator):
    name = "dry-run"

    def __init__(self) -> None:
        self.state: dict[str, FunctionState] = {}

    def current(self, functions):
        return {f: self.state[f] for f in functions if f in self.state}

    def apply(self, desired):
        changes = []
        for fn, want in desired.items():
            for change in diff_states(fn, self.state.get(fn), want):
                log.info("dry-run: %s %s %s -> %s", fn, change.kind, change.before, change.after)
                changes.append(change)
            self.state[fn] = want
        return changes


def retrying(call: Callable, is_conflict: Callable[[Exception], bool], is_transient: Callable[[Exception], bool],
             attempts: int = 4, backoff_s: float = 0.1, on_conflict: Optional[Callable[[], None]] = None):
    """Run ``call``; retry conflicts (after ``on_conflict``) and transient
    failures with exponential backoff; re-raise anything else."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:
            if attempt + 1 == attempts or not (is_conflict(err) or is_transient(err)):
                raise
            if is_conflict(err) and on_conflict is not None:
                on_conflict()
            time.sleep(backoff_s * (2 ** attempt))


def read_states(functions: list[str], read: Callable[[str], FunctionState]) -> dict[str, FunctionState]:
    """The current state of each function that can be read; one that is gone
    (404) is left out quietly, any other failure is logged and left out."""
    out = {}
    for fn in functions:
        try:
            out[fn] = read(fn)
        except Exception as err:
            if getattr(err, "status", None) != 404:
                log.warning("reading %s failed: %s", fn, err)
    return out


class ApiActuator(Actuator):
    """An actuator over API objects: ``_read(fn)`` one object, ``_state_of``
    its state. Reading every function and, before a change, each one."""

    def _read(self, fn: str):  # pragma: no cover - interface
        raise NotImplementedError

    def _state_of(self, obj) -> FunctionState:  # pragma: no cover - interface
        raise NotImplementedError

    def current(self, functions):
        return read_states(functions, lambda fn: self._state_of(self._read(fn)))

    def _read_or_report(self, fn: str, changes: list[Change]):
        """The object, or None after reporting why it cannot be read (404: gone)."""
        try:
            return self._read(fn)
        except Exception as err:
            gone = getattr(err, "status", None) == 404
            changes.append(Change(fn, GONE if gone else ERROR, None, None if gone else f"read: {err}"))
            return None
