"""What every actuator shares: the change report, the interface, diffing,
retries, and the dry run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from ...model import FunctionState
from .errors import ApiError, NotFound, api_error

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

    def gpu_room(self) -> Optional[tuple[int, ...]]:
        """Each GPU's free share in percent, where the platform records it
        (the control law's ``Observation.gpu_free_pct``); None: not known."""
        return None


def ready_count(value) -> Optional[int]:
    """A platform's count of ready replicas, believed only as a whole
    number in [0, 10⁶]; else None (not known)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        return None
    return value


def unschedulable(pods, label: str) -> dict[str, int]:
    """Per function (the value of each pod's ``label``), its pods the
    scheduler found no room for: ``PodScheduled`` false, reason
    ``Unschedulable`` (pods of a list, the kubernetes client's objects)."""
    counts: dict[str, int] = {}
    for pod in pods:
        fn = (pod.metadata.labels or {}).get(label) if pod.metadata else None
        conditions = (pod.status.conditions or []) if pod.status else []
        if fn is not None and any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                                  for c in conditions):
            counts[fn] = counts.get(fn, 0) + 1
    return counts


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


def retrying(call: Callable, attempts: int = 4, backoff_s: float = 0.1,
             sleep: Callable[[float], None] = time.sleep):
    """Run ``call``; when it fails with an error a retry can mend (a
    conflict, a busy or absent server: ``ApiError.retry``), run it again
    after an exponential backoff. ``call`` must read what it patches, so a
    retry after a conflict re-reads. Raises the named :class:`ApiError`
    (or a non-API exception unchanged)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as raw:
            err = api_error(raw)
            if err is None:
                raise
            if attempt + 1 == attempts or not err.retry:
                raise err from raw
            sleep(backoff_s * (2 ** attempt))


def read_states(functions: list[str], read: Callable[[str], FunctionState]) -> dict[str, FunctionState]:
    """The current state of each function that can be read; one that is gone
    (NotFound) is left out quietly, any other API failure is logged and left out."""
    out = {}
    for fn in functions:
        try:
            out[fn] = read(fn)
        except ApiError as err:
            if not isinstance(err, NotFound):
                log.warning("reading %s failed: %s", fn, err)
    return out


def reported(fn: str, err: ApiError, what: object = None) -> Change:
    """A failed change as the loop reports it: GONE for a missing function."""
    return Change(fn, GONE, what, None) if isinstance(err, NotFound) else Change(fn, ERROR, what, str(err))


class ApiActuator(Actuator):
    """An actuator over API objects: ``_read(fn)`` one object, ``_state_of``
    its state. Reading every function and, before a change, each one."""

    def _read(self, fn: str):  # pragma: no cover - interface
        raise NotImplementedError

    def _state_of(self, obj) -> FunctionState:  # pragma: no cover - interface
        raise NotImplementedError

    def current(self, functions):
        return read_states(functions, lambda fn: self._state_of(retrying(lambda: self._read(fn))))

    def _read_or_report(self, fn: str, changes: list[Change]):
        """The object, or None after reporting why it cannot be read (gone, or an error)."""
        try:
            return retrying(lambda: self._read(fn))
        except ApiError as err:
            changes.append(reported(fn, err, "read"))
            return None
