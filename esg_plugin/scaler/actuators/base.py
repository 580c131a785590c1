"""What every actuator shares: the change report, the interface, diffing,
retries, and the dry run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from ...limits import MAX_REPLICAS
from ...model import FunctionState
from ...runtime import contract as C
from ...runtime.settings import MAX_WAIT_MS_LIMIT
from . import gpu_room
from .errors import ApiError, NotAsked, NotFound, TimedOut, Unavailable, Unreadable, api_error
from .said import said_number

if TYPE_CHECKING:  # the Kubernetes actuator's module imports this one
    from .kubernetes import RoomReader

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

    def new_iteration(self) -> None:
        """An iteration of the loop begins (its calls: :class:`ApiCalls`)."""


def ready_count(value) -> Optional[int]:
    """A platform's count of ready replicas, believed only as a whole
    number in [0, 10⁶]; else None (not known)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        return None
    return value


def said_state(replicas: tuple[str, object], batch_size: tuple[str, object], max_wait_ms: tuple[str, object],
               share_mode: str, limits: Mapping, env: Mapping) -> FunctionState:
    """A function's state from what its object says, each value as (where
    it is said, what it says): replicas in 0..``MAX_REPLICAS``, a batch size
    and a batch wait within what the runtime takes, a share in 1..100 (HAMi's
    ``nvidia.com/gpucores`` limit with ``share_mode: hami``, else the env
    ``ESG_GPU_SHARE``; 100 where unset); :class:`Unreadable` for any other."""
    if share_mode == "hami":
        share = said_number(limits.get(gpu_room.CORES, 100), f"the limit {gpu_room.CORES}", 1, 100)
    else:
        share = said_number(env.get(C.ENV_GPU_SHARE_PCT, 100), f"the env {C.ENV_GPU_SHARE_PCT}", 1, 100)
    return FunctionState(int(said_number(replicas[1], replicas[0], 0, MAX_REPLICAS)),
                         int(said_number(batch_size[1], batch_size[0], 1, C.MAX_BATCH_SIZE)),
                         said_number(max_wait_ms[1], max_wait_ms[0], 0, MAX_WAIT_MS_LIMIT, whole=False), int(share))


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


API_TIMEOUT_S = 10.0
"""How long a call to the platform's API waits for an answer (``ApiCalls``;
``ScalerSettings.api_timeout_s``)."""


class ApiCalls:
    """The calls an actuator makes to the platform's API (Kubernetes', or
    the OpenFaaS gateway's). Each waits at most ``timeout_s`` for an answer
    (the ``kubernetes`` client's ``_request_timeout``: without one it waits
    for ever on a server that took the connection and does not answer),
    and is retried where a retry can mend (:func:`retrying`; one that timed
    out is not: :class:`TimedOut`). Once a call of an iteration got no
    answer at all — none in time, or no connection, its retries spent —
    the iteration's other calls are not made: each fails at once
    (:class:`NotAsked`), so that a stalled or absent server costs an
    iteration one timeout, not one per function and retry.
    :meth:`new_iteration` asks again. The ``kubernetes`` client's own
    retries must be off (:func:`api_client`), or a read is asked up to four
    times over."""

    def __init__(self, timeout_s: float = API_TIMEOUT_S, sleep: Callable[[float], None] = time.sleep,
                 keyword: str = "_request_timeout"):
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.keyword = keyword
        """The keyword a call takes its timeout by (the ``kubernetes`` client's, or the gateway actuator's own)."""
        self.unanswered: Optional[Unavailable] = None
        """What the iteration's first unanswered call met, or None."""

    def new_iteration(self) -> None:
        self.unanswered = None

    def __call__(self, method: Callable, *args, attempts: int = 4, **kwargs):
        """``method(*args, **kwargs)`` with the timeout, retried up to
        ``attempts`` times; its result, or the named :class:`ApiError`."""
        if self.unanswered is not None:
            raise NotAsked(f"not asked: the server did not answer this iteration ({self.unanswered})")
        try:
            return retrying(lambda: method(*args, **{self.keyword: self.timeout_s}, **kwargs), attempts,
                            sleep=self.sleep)
        except Unavailable as err:
            if isinstance(err, TimedOut) or err.status is None:  # no answer at all (429 and 5xx are answers)
                self.unanswered = err
            raise


def api_client(configuration=None):
    """A ``kubernetes`` client for the actuators: a copy of
    ``configuration`` (of the loaded default where None) with urllib3's own
    retries off — they would ask a stalled server up to four times per
    call, each for the whole timeout; :class:`ApiCalls` retries what a
    retry can mend."""
    import copy

    from kubernetes import client

    configuration = copy.deepcopy(configuration) if configuration is not None \
        else client.Configuration.get_default_copy()
    configuration.retries = False
    return client.ApiClient(configuration)


def read_states(functions: list[str], read: Callable[[str], FunctionState]) -> dict[str, FunctionState]:
    """The current state of each function that can be read; one that is gone
    (NotFound) is left out quietly, any other API failure is logged and left
    out (one not asked, after another call went unanswered, only left out:
    that one is logged)."""
    out = {}
    for fn in functions:
        try:
            out[fn] = read(fn)
        except ApiError as err:
            if not isinstance(err, (NotFound, NotAsked)):
                log.warning("reading %s failed: %s", fn, err)
    return out


def reported(fn: str, err: ApiError, what: object = None) -> Change:
    """A failed change as the loop reports it: GONE for a missing function."""
    return Change(fn, GONE, what, None) if isinstance(err, NotFound) else Change(fn, ERROR, what, str(err))


class ApiActuator(Actuator):
    """An actuator over API objects: ``_read(fn)`` one object (through
    ``self.api``: :class:`ApiCalls`), ``_state_of`` its state. Reading
    every function and, before a change, each one."""

    api: ApiCalls
    share_mode: str
    room: RoomReader

    def new_iteration(self) -> None:
        self.api.new_iteration()

    def gpu_room(self) -> Optional[tuple[int, ...]]:
        """With HAMi (``share_mode: hami``), each GPU's free share (the
        ``room``'s read); None under MPS (the device plugin keeps no
        per-GPU record)."""
        return self.room.read() if self.share_mode == "hami" else None

    def _read(self, fn: str):  # pragma: no cover - interface
        raise NotImplementedError

    def _state_of(self, obj) -> FunctionState:  # pragma: no cover - interface
        raise NotImplementedError

    def current(self, functions):
        return read_states(functions, lambda fn: self._state_of(self._read(fn)))

    def _said_or_none(self, fn: str, obj) -> Optional[FunctionState]:
        """``_state_of(obj)``, or None where the object says what is not
        believed (:class:`Unreadable`, logged): every field is then written
        afresh — the actuator owns them, and writing them mends the object."""
        try:
            return self._state_of(obj)
        except Unreadable as err:
            log.warning("%s: %s: its replicas, share and batching are written afresh", fn, err)
            return None

    def _read_or_report(self, fn: str, changes: list[Change]):
        """The object, or None after reporting why it cannot be read (gone, or an error)."""
        try:
            return self._read(fn)
        except ApiError as err:
            changes.append(reported(fn, err, "read"))
            return None
