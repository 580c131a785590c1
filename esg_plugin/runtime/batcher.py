"""Dynamic batching: requests queue, batches leave, each request is answered
exactly once.

- One future per request; results are set only if not already done, and a
  request cancelled before its batch runs is dropped (as Ray Serve does).
- A batch leaves when it is full (``max_batch_size``), when its oldest
  request has waited ``max_wait_ms``, or earlier when the oldest request's
  deadline leaves no more slack than the expected execution time of the
  batch so far and the executions planned after this stage (slack-aware
  dispatch, as BentoML's dispatcher learns its latency; the router sends
  what the plan runs downstream, ``X-ESG-Downstream-Ms``, else nothing
  is counted).
- Newest first when the stage is behind its plan (adaptive LIFO, as in
  Facebook's "Fail at Scale"): while the oldest request cannot meet its
  deadline even if this batch and every planned execution after it ran at
  once, a batch takes the newest requests — those with the most slack —
  instead of the oldest, which would miss at a later stage after taking
  this one's capacity; the oldest wait, and are shed once not even the
  fastest path could bring them in. In order again as soon as the oldest
  can make it. Without a downstream figure this never happens: the test
  is then the one that sheds.
- Early shedding: a request that can no longer meet its deadline is
  answered with :class:`DeadlineExceeded` at once, without running: on
  arrival, and wherever it stands in the queue whenever the queue moves.
  "Can no longer" is a lower bound (:func:`earliest_finish_s`): the
  requests ahead of it leave in full batches, each as fast as the fastest
  run of the largest batch size seen that is not larger (the first run of
  each size, a cold start, is not counted), and nothing is running now —
  so a request is never shed that could still have made it. When no batch
  has run for ``PROBE_S``, the next request is a probe, never shed early:
  a worker that sheds everything would otherwise never learn that it got
  faster.
- The queue is bounded: beyond ``max_queue`` :meth:`Batcher.submit` raises
  :class:`QueueFull`.
- Supervised: if the batching thread itself fails (a bug, not a handler's
  exception, which fails only its batch), every queued request is answered
  with :class:`Broken`, new ones are refused with it, ``failure`` says why
  and ``on_failure`` is called — the server then reports unhealthy and
  exits, so that the platform restarts it; nothing waits forever.
- The handler's result list must have one result per request; an exception
  object in it fails that one request.

:func:`decide_dispatch` is the whole dispatch policy as a pure function of the
queue, the config, the expected execution time and ``now``; :meth:`Batcher.step`
applies it, so tests drive the batcher with a fake clock and no threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from .settings import BatchConfig, LiveConfig

_TOLERANCE_S = 1e-9
PROBE_S = 1.0
"""With no batch run for this long, the next request is not shed early (see above)."""


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already."""


class Closed(Exception):
    """The batcher no longer takes requests (shutting down)."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before it could run."""


class Broken(Closed):
    """The batching thread failed; the process must be restarted."""


class BatchSizeMismatch(Exception):
    """The handler returned a different number of results than requests."""


@dataclass
class Request:
    payload: Any
    enqueued_s: float
    deadline_s: Optional[float] = None
    """On the batcher's clock; None: no deadline."""
    downstream_s: float = 0.0
    """What the executions the plan runs after this stage take (0: not known)."""
    future: Future = field(default_factory=Future)
    batch_size: int = 0
    queue_ms: float = 0.0
    exec_ms: float = 0.0
    cpu_ms: float = 0.0
    """The processor time of this process while its batch ran (every thread)."""
    probe: bool = False
    """Not shed before its deadline passes (see the module)."""


@dataclass(frozen=True)
class Dispatch:
    now: bool
    wake_at_s: Optional[float] = None
    """When to look again if not dispatching (None: when a request arrives)."""


def decide_dispatch(queue: Sequence[Request], config: BatchConfig, expected_exec_s: float, now_s: float) -> Dispatch:
    """Whether a batch leaves now, and if not, when to look again."""
    if not queue:
        return Dispatch(False)
    if len(queue) >= config.max_batch_size:
        return Dispatch(True)
    oldest = queue[0]
    due = oldest.enqueued_s + config.max_wait_ms / 1000.0
    if oldest.deadline_s is not None:
        due = min(due, oldest.deadline_s - oldest.downstream_s - expected_exec_s)
    if now_s >= due - _TOLERANCE_S:
        return Dispatch(True)
    return Dispatch(False, due)


def behind_plan(now_s: float, expected_exec_s: float, downstream_s: float, deadline_s: Optional[float]) -> bool:
    """Whether the oldest request (``deadline_s``; ``downstream_s``, the
    executions planned after this stage), run now, would still miss its
    deadline: the stage is behind its plan and serves the newest first (see
    the module). Never without a deadline or a downstream figure. The
    simulator's stages take the same rule (``sim/engine.py``)."""
    return deadline_s is not None and downstream_s > 0 \
        and now_s + expected_exec_s + downstream_s > deadline_s + _TOLERANCE_S


def earliest_finish_s(position: int, max_batch_size: int, estimate: "ExecEstimate", now_s: float) -> float:
    """The earliest a request with ``position`` requests ahead of it in the
    queue can be answered: full batches ahead, then its own."""
    full, rest = divmod(position, max_batch_size)
    return now_s + full * estimate.lower_bound_s(max_batch_size) + estimate.lower_bound_s(rest + 1)


class ExecEstimate:
    """Expected execution time per batch size: an exponentially weighted
    average of what each size took, the nearest known size for others,
    0 until anything is known."""

    def __init__(self, weight: float = 0.2):
        self.weight = weight
        self.by_size: dict[int, float] = {}
        self.fastest: dict[int, float] = {}
        """Per size, the fastest run after the first (for the lower bound)."""

    def observe(self, size: int, seconds: float) -> None:
        old = self.by_size.get(size)
        self.by_size[size] = seconds if old is None else old + self.weight * (seconds - old)
        if old is not None:
            self.fastest[size] = min(self.fastest.get(size, seconds), seconds)

    def expected_s(self, size: int) -> float:
        if size in self.by_size:
            return self.by_size[size]
        if not self.by_size:
            return 0.0
        nearest = min(self.by_size, key=lambda s: (abs(s - size), -s))
        return self.by_size[nearest] * size / nearest if nearest < size else self.by_size[nearest]

    def lower_bound_s(self, size: int) -> float:
        """At least what a batch of ``size`` takes: the fastest run of the
        largest size seen that is not larger (a larger batch is not faster),
        0 if none."""
        known = [s for s in self.fastest if s <= size]
        return self.fastest[max(known)] if known else 0.0


class Batcher:
    """A thread-safe batcher around ``run_batch(payloads) -> results``."""

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        config: LiveConfig,
        max_queue: int,
        clock: Callable[[], float],
        on_batch: Optional[Callable[[list[Request], float], None]] = None,
        on_failure: Optional[Callable[[BaseException], None]] = None,
        cpu_clock: Callable[[], float] = time.process_time,
    ):
        self.run_batch = run_batch
        self.cpu_clock = cpu_clock
        self.config = config
        self.max_queue = max_queue
        self.clock = clock
        self.on_batch = on_batch
        self.on_failure = on_failure
        self.failure: Optional[BaseException] = None
        """Why the batching thread stopped, if it failed."""
        self.estimate = ExecEstimate()
        self._queue: deque[Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._worker: Optional[threading.Thread] = None
        self._last_run_s = float("-inf")
        """When the last batch ended (or the last probe was admitted)."""

    # --- intake ------------------------------------------------------------
    def submit(self, payload: Any, deadline_s: Optional[float] = None, downstream_s: float = 0.0) -> Request:
        with self._cond:
            if self.failure is not None:
                raise Broken(f"the batching thread failed: {self.failure!r}")
            if self._closing:
                raise Closed()
            if len(self._queue) >= self.max_queue:
                raise QueueFull()
            now_s = self.clock()
            probe = now_s - self._last_run_s >= PROBE_S
            if deadline_s is not None and not probe and earliest_finish_s(
                    len(self._queue), self.config.get().max_batch_size, self.estimate, now_s) > deadline_s:
                raise DeadlineExceeded()
            request = Request(payload, now_s, deadline_s, max(0.0, downstream_s), probe=probe)
            if probe:
                self._last_run_s = now_s  # one probe per PROBE_S
            self._queue.append(request)
            self._cond.notify()
            return request

    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue)

    # --- dispatch ----------------------------------------------------------
    def step(self, now_s: Optional[float] = None) -> tuple[Optional[list[Request]], Optional[float]]:
        """Take the next batch if one should leave now: (batch, None), or
        (None, when to look again). Requests cancelled, or that can no
        longer meet their deadline, are answered and dropped on the way."""
        now_s = self.clock() if now_s is None else now_s
        with self._cond:
            config = self.config.get()
            self._shed(now_s, config.max_batch_size)
            queue = self._queue
            expected_s = self.estimate.expected_s(min(len(queue), config.max_batch_size))
            decision = decide_dispatch(queue, config, expected_s, now_s)
            if not decision.now and not (self._closing and queue):
                return None, decision.wake_at_s
            oldest = queue[0]
            take = queue.pop if behind_plan(now_s, expected_s, oldest.downstream_s, oldest.deadline_s) \
                else queue.popleft
            batch = []
            while queue and len(batch) < config.max_batch_size:
                request = take()
                if request.future.set_running_or_notify_cancel():
                    batch.append(request)
            return batch, None

    def _shed(self, now_s: float, max_batch_size: int) -> None:
        """Drop cancelled requests and answer 504 to those that cannot make
        their deadline any more, wherever they stand (caller holds the lock)."""
        kept: deque[Request] = deque()
        for request in self._queue:
            if request.future.cancelled():
                continue
            if request.deadline_s is not None and (
                    request.deadline_s <= now_s or (not request.probe and earliest_finish_s(
                        len(kept), max_batch_size, self.estimate, now_s) > request.deadline_s)):
                _settle(request.future, exception=DeadlineExceeded())
                continue
            kept.append(request)
        self._queue = kept

    def execute(self, batch: list[Request]) -> None:
        """Run one batch and answer each of its requests exactly once."""
        if not batch:
            return
        started, cpu_started = self.clock(), self.cpu_clock()
        try:
            results = list(self.run_batch([r.payload for r in batch]))
            if len(results) != len(batch):
                raise BatchSizeMismatch(f"handler returned {len(results)} results for a batch of {len(batch)}")
        except BaseException as err:  # the whole batch fails, each request learns why
            results = [err] * len(batch)
        elapsed = self.clock() - started
        cpu_ms = max(0.0, self.cpu_clock() - cpu_started) * 1000.0
        self._last_run_s = self.clock()
        self.estimate.observe(len(batch), elapsed)
        for request, result in zip(batch, results):
            request.batch_size = len(batch)
            request.queue_ms = (started - request.enqueued_s) * 1000.0
            request.exec_ms = elapsed * 1000.0
            request.cpu_ms = cpu_ms
            if isinstance(result, BaseException):
                _settle(request.future, exception=result)
            else:
                _settle(request.future, result=result)
        if self.on_batch is not None:
            self.on_batch(batch, elapsed)

    # --- the worker thread -------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._loop, name="esg-batcher", daemon=True)
        self._worker.start()

    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException as err:  # a bug in the loop: fail loudly, never hang
            with self._cond:
                self.failure = err
                self._closing = True
                queued, self._queue = list(self._queue), deque()
            for request in queued:
                _settle(request.future, exception=Broken(f"the batching thread failed: {err!r}"))
            if self.on_failure is not None:
                self.on_failure(err)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue and self._closing:
                    return
            batch, wake_at = self.step()
            if batch is not None:
                self.execute(batch)
                continue
            with self._cond:
                if wake_at is None:
                    self._cond.wait()
                else:
                    timeout = wake_at - self.clock()
                    if timeout > 0:
                        self._cond.wait(timeout)

    def wake(self) -> None:
        """Look at the queue again (after a live config change)."""
        with self._cond:
            self._cond.notify()

    def close(self, timeout_s: Optional[float] = None) -> None:
        """Stop intake, finish every queued request, stop the worker."""
        with self._cond:
            self._closing = True
            # a closing batcher does not wait for batches to fill
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout_s)


def _settle(future: Future, result: Any = None, exception: Optional[BaseException] = None) -> None:
    """Set a future's outcome unless it is already done."""
    if future.done():
        return
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except Exception:  # InvalidStateError: raced with a cancel
        pass
