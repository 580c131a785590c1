"""The WSGI application of a function built from ``esg-python3`` (SPEC §6).

Routes:

- ``/_esg/health``: 200 while serving, 503 once draining;
- ``/_esg/metrics``: Prometheus text — the runtime's metrics, and those of
  a handler that defines ``METRICS_REGISTRY`` (a ``prometheus_client``
  ``CollectorRegistry``: the workflow router's counters);
- ``/_esg/config``: ``GET`` the live batching config; ``PUT`` a new one
  (JSON ``max_batch_size``, ``max_wait_ms``, ``gpu_share``) with
  ``Authorization: Bearer <ESG_CONFIG_TOKEN>``. Batch size and wait apply to
  the next batch; a share change is reported as needing a restart. Without
  ``ESG_CONFIG_TOKEN`` every change is refused with 403;
- ``/v2`` and below: the Open Inference Protocol (``v2.py``) for a handler
  that defines ``MODEL`` and ``infer``; a handler that sets
  ``SERVES_V2_PATHS = True`` (the workflow router: one model per workflow)
  gets these paths as plain events instead;
- anything else: the handler, through the batcher.

Handler results follow the OpenFaaS ``python3-http`` template: a dict with
``statusCode``, ``body`` and ``headers``, or a plain body (``str``,
``bytes``, or a dict/list sent as JSON). An exception fails its own request
with 500. Every response carries ``X-ESG-Batch-Size``, ``X-ESG-Queue-Ms``
and ``X-ESG-Exec-Ms``. Errors are JSON ``{"error": reason}``.
"""

from __future__ import annotations

import hmac
import json
import math
import socket
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable, Iterator, Optional
from urllib.parse import parse_qs

from . import contract as C
from .contract import wsgi_header
from .batcher import BatchSizeMismatch, Batcher, Broken, Closed, DeadlineExceeded, QueueFull, Request
from .metrics import RuntimeMetrics
from .v2 import (HEADER as V2_HEADER, InferRequest, ProtocolError, encode_response, metadata, model_path,
                 parse_infer, server_metadata)
from .settings import MAX_WAIT_MS_LIMIT, BatchConfig, LiveConfig, RuntimeSettings, valid_wait_ms

MAX_CONFIG_BYTES = 64 * 1024
"""The largest PUT /_esg/config body."""
MAX_BODIES_IN_FLIGHT_BYTES = 256 * 1024 * 1024
"""Request bodies held by the process at once, all together: beyond, 429
before a body is read (24 clients with 60 MB each took 1.1 GB before)."""
MAX_DEADLINE_UNIX_MS = 32503680000000.0
"""Year 3000: a deadline beyond it (or not a finite number) is refused with 400."""
DEFAULT_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyError(Exception):
    def __init__(self, status: int, message: str, reason: str):
        super().__init__(message)
        self.status = status
        self.reason = reason


class BodyBudget:
    """Bytes of request bodies the process may hold at once (thread-safe)."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            if self.held_bytes + n > self.limit_bytes:
                raise BodyError(429, "too many request bodies in flight; retry later", "queue_full")
            self.held_bytes += n

    def give(self, n: int) -> None:
        with self._lock:
            self.held_bytes -= n


@contextmanager
def read_body(environ: dict, budget: BodyBudget) -> Iterator[bytes]:
    """The request body, by Content-Length or chunked, at most the contract's MAX_BODY_BYTES,
    counted against the budget while the request runs."""
    stream = environ["wsgi.input"]
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    taken = 0
    try:
        if chunked:
            parts = []
            while True:
                line = stream.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BodyError(400, "a malformed chunk in a chunked body", "bad_request") from None
                if size < 0 or taken + size > C.MAX_BODY_BYTES:
                    raise BodyError(413, f"the body exceeds {C.MAX_BODY_BYTES} bytes", "too_large")
                budget.take(size)
                taken += size
                if size == 0:
                    while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                data = stream.read(size)
                if len(data) != size or stream.readline(1024) not in (b"\r\n", b"\n"):
                    raise BodyError(400, "a chunked body ended early", "bad_request")
                parts.append(data)
            body = b"".join(parts)
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise BodyError(400, "Content-Length is not a number", "bad_request") from None
            if length < 0:
                raise BodyError(400, "Content-Length is negative", "bad_request")
            if length > C.MAX_BODY_BYTES:
                raise BodyError(413, f"the body exceeds {C.MAX_BODY_BYTES} bytes", "too_large")
            budget.take(length)
            taken = length
            body = stream.read(length) if length else b""
            if len(body) != length:
                raise BodyError(400, "the body ended before Content-Length", "bad_request")
        yield body
    finally:
        budget.give(taken)


@dataclass
class Event:
    """What a handler receives for one request (as in ``python3-http``)."""

    body: bytes
    headers: dict[str, str]
    method: str
    query: dict[str, str]
    path: str


@dataclass
class Context:
    hostname: str


_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _ms_header(environ: dict, name: str, high_ms: float) -> tuple[Optional[float], str]:
    """A header holding a number of milliseconds: (None, "") when absent,
    (NaN, what it said) when it is not a number in [0, ``high_ms``]."""
    raw = environ.get(wsgi_header(name))
    if raw is None:
        return None, ""
    try:
        value = float(raw)
    except ValueError:
        return math.nan, raw
    return (value if 0 <= value <= high_ms else math.nan), raw


def _status(code: int) -> str:
    return f"{code} {_REASONS.get(code, 'Status')}"


def batch_runner(handler: Any, context: Context,
                 limit: Callable[[], ContextManager] = nullcontext) -> Callable[[list[Any]], list[Any]]:
    """One batch: its Open Inference Protocol requests to ``infer``, the
    others to ``handle_batch`` when the handler has it, else ``handle`` per
    event (an exception then fails only its own event); the whole batch
    inside ``limit()``, the GPU share's hook (``gpu.ShareReport.limit``)."""

    def plain(events: list[Event]) -> list[Any]:
        if hasattr(handler, "handle_batch"):
            return list(handler.handle_batch(events, context))
        results = []
        for event in events:
            try:
                results.append(handler.handle(event, context))
            except Exception as err:
                results.append(err)
        return results

    def run(payloads: list[Any]) -> list[Any]:
        v2 = [i for i, p in enumerate(payloads) if isinstance(p, InferRequest)]
        rest = [i for i, p in enumerate(payloads) if not isinstance(p, InferRequest)]
        results: list[Any] = [None] * len(payloads)
        for indices, call in ((v2, lambda items: list(handler.infer(items, context))), (rest, plain)):
            if not indices:
                continue
            with limit():
                outs = call([payloads[i] for i in indices])
            if len(outs) != len(indices):
                raise BatchSizeMismatch(f"handler returned {len(outs)} results for a batch of {len(indices)}")
            for i, out in zip(indices, outs):
                results[i] = out
        return results

    return run


class RuntimeApp:
    def __init__(self, handler: Any, settings: RuntimeSettings, clock: Callable[[], float] = time.monotonic,
                 metrics: Optional[RuntimeMetrics] = None, telemetry: Any = None,
                 on_failure: Optional[Callable[[BaseException], None]] = None,
                 limit: Callable[[], ContextManager] = nullcontext,
                 reshare: Optional[Callable[[int], int]] = None, cpu_cores: Optional[float] = None):
        if not (hasattr(handler, "handle_batch") or hasattr(handler, "handle")):
            raise TypeError("the handler module defines neither handle_batch(events, context) nor handle(event, context)")
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or RuntimeMetrics()
        self.telemetry = telemetry
        self.live = LiveConfig(BatchConfig(settings.max_batch_size, settings.max_wait_ms))
        self.pending_gpu_share: Optional[int] = None
        self.gpu_share_pct = settings.gpu_share_pct
        """The share this instance runs at now (a CPU instance's changes live)."""
        self.reshare = reshare
        """Applies another share in this process (``gpu.ShareReport.reshare``); None: a share needs a restart."""
        self.cpu_cores = cpu_cores
        """The cores this process may run on (its CPU allotment) when its share is
        a share of them; None: not a CPU instance (no ``esg_exec_cpu_seconds``)."""
        self.methods = frozenset(getattr(handler, "METHODS", DEFAULT_METHODS))
        """The HTTP methods the handler takes (its ``METHODS``, else the usual ones; never CONNECT or TRACE)."""
        self.bodies = BodyBudget(MAX_BODIES_IN_FLIGHT_BYTES)
        self.draining = False
        self.handler = handler
        self.batcher = Batcher(batch_runner(handler, Context(socket.gethostname()), limit), self.live,
                               settings.max_queue, clock, on_batch=self._on_batch, on_failure=on_failure)
        self.metrics.gpu_share.set(self.gpu_share_pct)
        self._publish_config()

    def start(self) -> None:
        self.batcher.start()

    def drain(self, timeout_s: Optional[float] = None) -> None:
        """Stop intake (new requests get 503) and finish everything queued."""
        self.draining = True
        self.batcher.close(timeout_s)

    # --- WSGI --------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        if path.startswith(C.CONTROL_PREFIX):
            code, headers, body = self._reserved(path, environ)
        else:
            self.metrics.started.inc()  # an arrival, counted before it waits (as the gateway's started counter)
            if (path == "/v2" or path.startswith("/v2/")) and not getattr(self.handler, "SERVES_V2_PATHS", False):
                code, headers, body = self._v2(environ, path)
            else:
                code, headers, body = self._invoke(environ, path)
            self.metrics.requests.labels(code=str(code)).inc()
        start_response(_status(code), headers + [("Content-Length", str(len(body)))])
        return [body]

    def _invoke(self, environ: dict, path: str) -> tuple[int, list, bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in self.methods and not self.draining:
            allowed = ", ".join(sorted(self.methods))
            code, hdrs, payload = self._error(405, f"{method} is not allowed ({allowed})", reason="bad_request")
            return code, hdrs + [("Allow", allowed)], payload
        return self._with_body(environ, lambda body: self._run(environ, path, method, body))

    def _with_body(self, environ: dict, serve: Callable[[bytes], tuple[int, list, bytes]]) -> tuple[int, list, bytes]:
        """The intake of every request that runs the handler: 503 while
        draining, 429 when the queue is full (before the body is read), the
        body read within its limits, then ``serve(body)`` while the body
        counts against the budget of bodies in flight."""
        if self.draining:
            return self._error(503, "the function is shutting down", reason="draining")
        if self.batcher.queue_length() >= self.settings.max_queue:  # before the body is read
            code, hdrs, payload = self._error(429, f"the queue is full ({self.settings.max_queue} requests)",
                                              reason="queue_full")
            return code, hdrs + [("Retry-After", "1")], payload
        try:
            with read_body(environ, self.bodies) as body:
                return serve(body)
        except BodyError as err:
            code, hdrs, payload = self._error(err.status, str(err), reason=err.reason)
            return code, hdrs + ([("Retry-After", "1")] if err.status == 429 else []), payload

    # --- the Open Inference Protocol (v2.py) ----------------------------------
    def _v2(self, environ: dict, path: str) -> tuple[int, list, bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        parts = [p for p in path.split("/") if p][1:]  # after "v2"
        model = getattr(self.handler, "MODEL", None)
        name = (model or {}).get("name", "")
        if parts in ([], ["health", "live"], ["health", "ready"]) and method in ("GET", "HEAD"):
            if parts == ["health", "ready"] and (self.draining or self.batcher.failure is not None):
                return self._error(503, "not ready")
            if not parts:
                return self._json(200, server_metadata("esg-python3"))
            return self._json(200, {"live": True} if parts[1] == "live" else {"ready": True})
        target = model_path(path)
        if target is None:
            return self._error(404, f"no such path {path}")
        if model is None:
            return self._error(404, "this function does not serve the Open Inference Protocol "
                                    "(its handler defines no MODEL and infer)")
        asked, rest = target
        if asked != name:
            return self._error(404, f"no model {asked!r}; this function serves {name!r}")
        if rest == [] and method in ("GET", "HEAD"):
            return self._json(200, metadata(name, model))
        if rest == ["ready"] and method in ("GET", "HEAD"):
            ready = not self.draining and self.batcher.failure is None
            return self._json(200, {"ready": True}) if ready else self._error(503, "not ready")
        if rest != ["infer"]:
            return self._error(404, f"no such path {path}")
        if method != "POST":
            code, hdrs, payload = self._error(405, f"{method} is not allowed on infer (POST)")
            return code, hdrs + [("Allow", "POST")], payload
        return self._with_body(environ, lambda body: self._infer(environ, name, body))

    def _infer(self, environ: dict, name: str, body: bytes) -> tuple[int, list, bytes]:
        """One V2 infer request, its body read: parsed, batched, answered."""
        try:
            request = parse_infer(name, body, environ.get("HTTP_" + V2_HEADER.upper().replace("-", "_")))
        except ProtocolError as err:
            return self._error(400, str(err), reason="bad_request")
        code, headers, result = self._submit(environ, request, bad_input=(ValueError,))
        if code != 200:
            return code, headers, result
        if isinstance(result, dict) and all(hasattr(t, "datatype") for t in result.values()):
            try:
                payload, extra = encode_response(request, result)
            except ProtocolError as err:
                return self._error(400, str(err), reason="bad_request")
            return 200, list(extra.items()) + headers, payload
        return self._error(500, f"the handler's infer returned {type(result).__name__}, not a dict of tensors")

    def _run(self, environ: dict, path: str, method: str, body: bytes) -> tuple[int, list, bytes]:
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        code, extra, result = self._submit(environ, Event(body, headers, method, query, path))
        if code != 200:
            return code, extra, result
        return self._format(result, extra)

    def _submit(self, environ: dict, payload: Any, bad_input: tuple = ()) -> tuple[int, list, Any]:
        """Queue one request (a plain event or an infer request) with its
        deadline and wait for its result: (200, timing headers, result), or
        an error answer (code, headers, body)."""
        deadline_s = None
        deadline_unix_ms, raw = _ms_header(environ, C.DEADLINE_HEADER, MAX_DEADLINE_UNIX_MS)
        if deadline_unix_ms is not None:
            if math.isnan(deadline_unix_ms):
                return self._error(400, f"{C.DEADLINE_HEADER} must be a Unix time in ms, got {raw[:40]!r}",
                                   reason="bad_request")
            deadline_s = self.clock() + (deadline_unix_ms - time.time() * 1000.0) / 1000.0
            if deadline_s <= self.clock():
                return self._error(504, "the request's deadline has already passed", reason="deadline")
        downstream_ms, raw = _ms_header(environ, C.DOWNSTREAM_HEADER, C.MAX_DOWNSTREAM_MS)
        if downstream_ms is not None and math.isnan(downstream_ms):
            return self._error(400, f"{C.DOWNSTREAM_HEADER} must be a number of ms in [0, {C.MAX_DOWNSTREAM_MS:g}], "
                                    f"got {raw[:40]!r}", reason="bad_request")
        downstream_s = (downstream_ms or 0.0) / 1000.0
        try:
            request = self.batcher.submit(payload, deadline_s, downstream_s)
        except QueueFull:
            code, hdrs, body = self._error(429, f"the queue is full ({self.settings.max_queue} requests)",
                                           reason="queue_full")
            return code, hdrs + [("Retry-After", "1")], body
        except Broken as err:
            return self._error(503, str(err), reason="broken")
        except Closed:
            return self._error(503, "the function is shutting down", reason="draining")
        except DeadlineExceeded:
            return self._error(504, "the request cannot meet its deadline: the queue ahead of it takes longer",
                               reason="deadline")
        self.metrics.queue_length.set(self.batcher.queue_length())
        try:
            result = request.future.result()
        except DeadlineExceeded:
            return self._error(504, "the request's deadline passed while it waited", reason="deadline",
                               request=request)
        except Broken as err:
            return self._error(503, str(err), reason="broken", request=request)
        except bad_input as err:  # an infer request the model cannot take
            return self._error(400, str(err), reason="bad_request", request=request)
        except Exception as err:
            return self._error(500, f"{type(err).__name__}: {err}", request=request)
        if isinstance(result, BaseException):  # pragma: no cover - the batcher sets exceptions, not results
            return self._error(500, f"{type(result).__name__}: {result}", request=request)
        return 200, self._timing_headers(request), result

    # --- responses ---------------------------------------------------------
    def _timing_headers(self, request: Optional[Request]) -> list[tuple[str, str]]:
        if request is None:
            return [(C.BATCH_SIZE_HEADER, "0"), (C.QUEUE_MS_HEADER, "0"), (C.EXEC_MS_HEADER, "0")]
        return [(C.BATCH_SIZE_HEADER, str(request.batch_size)), (C.QUEUE_MS_HEADER, f"{request.queue_ms:.3f}"),
                (C.EXEC_MS_HEADER, f"{request.exec_ms:.3f}")]

    def _error(self, code: int, message: str, reason: Optional[str] = None,
               request: Optional[Request] = None) -> tuple[int, list, bytes]:
        if reason is not None and code != 500:
            self.metrics.rejections.labels(reason=reason).inc()
        body = json.dumps({"error": message}).encode()
        return code, [("Content-Type", "application/json")] + self._timing_headers(request), body

    def _format(self, result: Any, timing: list) -> tuple[int, list, bytes]:
        code, extra, body = 200, {}, result
        if isinstance(result, dict) and ("statusCode" in result or "body" in result):
            code = int(result.get("statusCode", 200))
            extra = dict(result.get("headers") or {})
            body = result.get("body", "")
        if body is None:
            payload, content_type = b"", "text/plain"
        elif isinstance(body, (bytes, bytearray)):
            payload, content_type = bytes(body), "application/octet-stream"
        elif isinstance(body, str):
            payload, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(body).encode(), "application/json"
        headers = [("Content-Type", str(extra.pop("Content-Type", extra.pop("content-type", content_type))))]
        headers += [(str(k), str(v)) for k, v in extra.items()]
        return code, headers + timing, payload

    # --- reserved paths ----------------------------------------------------
    def _reserved(self, path: str, environ: dict) -> tuple[int, list, bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if path == C.HEALTH_PATH:
            if self.batcher.failure is not None:
                return self._error(503, f"the batching thread died: {self.batcher.failure!r}")
            if self.draining:
                return self._error(503, "draining")
            return 200, [("Content-Type", "application/json")] + self._timing_headers(None), b'{"status": "ok"}'
        if path == C.METRICS_PATH:
            self._refresh_gauges()
            body, content_type = self.metrics.render(getattr(self.handler, "METRICS_REGISTRY", None))
            return 200, [("Content-Type", content_type)] + self._timing_headers(None), body
        if path == C.CONFIG_PATH:
            if method == "GET":
                return self._json(200, self._config_doc())
            if method == "PUT":
                return self._put_config(environ)
            code, headers, body = self._error(405, f"{method} is not allowed on {C.CONFIG_PATH} (GET, PUT)")
            return code, headers + [("Allow", "GET, PUT")], body
        return self._error(404, f"no such path {path}")

    def _json(self, code: int, doc: Any) -> tuple[int, list, bytes]:
        return code, [("Content-Type", "application/json")] + self._timing_headers(None), json.dumps(doc).encode()

    def _config_doc(self) -> dict:
        live = self.live.get()
        doc = {C.CONFIG_MAX_BATCH_SIZE: live.max_batch_size, C.CONFIG_MAX_WAIT_MS: live.max_wait_ms,
               C.CONFIG_GPU_SHARE_PCT: self.gpu_share_pct, C.CONFIG_MAX_QUEUE: self.settings.max_queue}
        if self.pending_gpu_share is not None:
            doc["pending_" + C.CONFIG_GPU_SHARE_PCT] = self.pending_gpu_share
        return doc

    def _put_config(self, environ: dict) -> tuple[int, list, bytes]:
        token = self.settings.config_token
        if token is None:
            return self._error(403, f"live configuration is disabled: {C.ENV_CONFIG_TOKEN} is not set")
        given = environ.get("HTTP_AUTHORIZATION", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
            code, headers, body = self._error(401, "a valid 'Authorization: Bearer <token>' header is required")
            return code, headers + [("WWW-Authenticate", 'Bearer realm="esg"')], body
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self._error(400, "Content-Length is not a number")
        if not 0 <= length <= MAX_CONFIG_BYTES:
            return self._error(413, f"a config body is at most {MAX_CONFIG_BYTES} bytes")
        try:
            doc = json.loads(environ["wsgi.input"].read(length) or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return self._error(400, "the body must be a JSON object")
        if not isinstance(doc, dict) or not doc:
            return self._error(400, "the body must be a non-empty JSON object")
        unknown = set(doc) - set(C.CONFIG_WRITABLE)
        if unknown:
            return self._error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        live = self.live.get()
        batch = doc.get(C.CONFIG_MAX_BATCH_SIZE, live.max_batch_size)
        wait = doc.get(C.CONFIG_MAX_WAIT_MS, live.max_wait_ms)
        share = doc.get(C.CONFIG_GPU_SHARE_PCT)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= C.MAX_BATCH_SIZE:
            return self._error(400, f"{C.CONFIG_MAX_BATCH_SIZE} must be an integer in 1..{C.MAX_BATCH_SIZE}, got {batch!r}")
        if not valid_wait_ms(wait):
            return self._error(400, f"{C.CONFIG_MAX_WAIT_MS} must be a number in 0..{MAX_WAIT_MS_LIMIT:g}, got {wait!r}")
        if share is not None and (isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= 100):
            return self._error(400, f"{C.CONFIG_GPU_SHARE_PCT} must be an integer in 1..100, got {share!r}")
        self.live.set(BatchConfig(batch, float(wait)))
        self._publish_config()
        self.batcher.wake()
        restart = share is not None and share != self.gpu_share_pct
        if restart and self.reshare is not None:  # a CPU share is a thread count: live, at the next batch
            self.reshare(share)
            self.gpu_share_pct, self.pending_gpu_share, restart = share, None, False
            self.metrics.gpu_share.set(share)
        if restart:
            self.pending_gpu_share = share
        doc = {"config": self._config_doc(), C.CONFIG_RESTART_REQUIRED: restart}
        if restart:
            doc["reason"] = "a GPU share applies when the process starts (CUDA reads its limits then)"
        return self._json(200, doc)

    # --- metrics -----------------------------------------------------------
    def _publish_config(self) -> None:
        live = self.live.get()
        self.metrics.max_batch_size.set(live.max_batch_size)
        self.metrics.max_wait.set(live.max_wait_ms / 1000.0)

    def _refresh_gauges(self) -> None:
        self.metrics.queue_length.set(self.batcher.queue_length())
        reading = self.telemetry.read() if self.telemetry is not None else None
        if reading is not None:
            self.metrics.gpu_utilization.set(reading[0])
            self.metrics.gpu_memory_used.set(reading[1])

    def _on_batch(self, batch: list[Request], elapsed_s: float) -> None:
        m = self.metrics
        m.batch_size.observe(len(batch))
        m.exec_time.observe(elapsed_s)
        if self.cpu_cores and batch:
            m.exec_cpu.inc(batch[0].cpu_ms / 1000.0 / (self.gpu_share_pct / 100.0 * self.cpu_cores))
        for request in batch:
            m.queue_wait.observe(request.queue_ms / 1000.0)
        m.queue_length.set(self.batcher.queue_length())
