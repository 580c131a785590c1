"""The threaded WSGI server of a function, and its start-up order.

Start-up: settings from the environment, then the C heap's thresholds
(``memory.py``: a batch's activations reuse freed memory instead of fresh
pages), then the GPU share (before the
handler is imported, so before any framework initialises CUDA), then the
handler, then its warm-up (``warmup(batch_sizes, context)`` when the
handler defines it: a batch of each size it will be given, so that the
first requests do not pay for lazy initialisation — as Triton's model
warm-up), then the server: ``/_esg/health`` answers only once warm. A thread per connection gives every request of a
batch its own thread, so batches up to ``ESG_MAX_QUEUE`` can form.

SIGTERM (what Kubernetes sends before it kills a pod): new requests get
503, connections that have not sent a whole request head are closed, every
queued and running batch finishes, every response is written, then the
process exits 0.

The server is the standard library's threaded WSGI server, guarded
(issue 14): a request head must arrive within ``HEAD_TIMEOUT_S`` in all
(slow-loris), any one read or write on a connection within
``connection.IO_TIMEOUT_S``. Connections persist as HTTP/1.1 says
(keep-alive, as the OpenFaaS gateway's and Triton's clients expect: no
connect and no new thread per request, issue 15): the next request is read
on the same connection when the client spoke HTTP/1.1 without
``Connection: close``, its body was read to the end by Content-Length, and
the answer has a Content-Length; otherwise the answer says
``Connection: close`` and the connection is closed gracefully, even when the
body was not read (a 429 before the body). An idle connection waits for its
next request head under the same ``HEAD_TIMEOUT_S``, and is closed at once
when the function drains. Bodies, chunked or not, their size and the memory
they hold are the application's (``app.read_body``). A production server
with a fixed thread pool (waitress) was not taken: a batch forms only when
each of its requests has its own thread waiting, and waitress reads every
body before the application can refuse it.

If the batching thread dies (a bug), ``/_esg/health`` answers 503 and the
process exits 1, so the platform restarts it: never a silent hang.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from typing import Callable, Mapping, MutableMapping, Optional
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

from .app import Context, RuntimeApp
from .connection import JsonRefusals, body_read_whole
from .gpu import GpuTelemetry, apply_share
from .memory import keep_heap
from .settings import RuntimeSettings, SettingsError


HEAD_TIMEOUT_S = 10.0
"""The request line and headers must arrive within this, in all."""
LINGER_S = 2.0
"""After the answer, how long the server reads what the client still sends before it closes."""


class Connections:
    """The open connections and when each began to wait for its request head.

    A connection waiting for a head belongs either to its thread or to the
    reaper, never to both: the reaper shuts a connection down under the same
    lock under which its thread, head in hand, takes it back. A head that
    arrives as the reaper takes the connection is not run (its client sees
    the connection closed, as at any keep-alive close, and nothing ran);
    one taken back first runs to its answer on a connection nobody shuts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[socket.socket, float] = {}

    def waiting(self, sock: socket.socket) -> None:
        with self._lock:
            self._waiting[sock] = time.monotonic()

    def done_waiting(self, sock: socket.socket) -> bool:
        """Take the connection back from the waiting; False when the reaper
        shut it down first."""
        with self._lock:
            return self._waiting.pop(sock, None) is not None

    def close_waiting(self, older_than_s: float = 0.0) -> int:
        """Shut down connections that have waited for a head longer than
        ``older_than_s``: their thread's read fails at once."""
        now = time.monotonic()
        with self._lock:
            stale = [s for s, since in self._waiting.items() if now - since >= older_than_s]
            for sock in stale:
                del self._waiting[sock]
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(stale)


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False
    block_on_close = True  # server_close() waits for every request thread
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, *args, **kwargs):
        self.connections = Connections()
        super().__init__(*args, **kwargs)

    def handle_error(self, request, client_address) -> None:
        pass  # a client that went away or timed out is not the server's error; the app answers its own


class CountingBody:
    """A request's ``wsgi.input``: the connection's reader, counting what the
    application read, so the server knows whether the next request on the
    connection starts where the reader stands."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.taken = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.taken += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size)
        self.taken += len(data)
        return data


class ResponseHandler(ServerHandler):
    """wsgiref's handler answering HTTP/1.1, with ``Connection: close`` when
    the connection will not carry another request."""

    http_version = "1.1"
    keep_alive = False

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        self.keep_alive = "Content-Length" in self.headers and self.request_handler.may_keep_alive()
        if not self.keep_alive:
            self.headers["Connection"] = "close"


class QuietHandler(JsonRefusals, WSGIRequestHandler):
    """Requests on one connection, in turn, with the guards above (and those
    of ``connection.py``); no access log on stderr (the watchdog logs requests)."""

    protocol_version = "HTTP/1.1"  # its refusals, and 100 Continue to a client that expects it
    disable_nagle_algorithm = True  # a persistent connection's small writes must not wait for an ACK

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass

    def handle(self) -> None:
        while self._read_head():
            body = CountingBody(self.rfile)
            handler = ResponseHandler(body, self.wfile, self.get_stderr(), self.get_environ(), multithread=True)
            handler.request_handler = self
            self.body = body
            try:
                handler.run(self.server.get_app())
            except OSError:
                return
            if not handler.keep_alive:
                break
        self._linger()

    def _read_head(self) -> bool:
        """The next request's line and headers; False when the connection
        ends (closed, timed out, reaped, or a head refused with its error)."""
        connections = self.server.connections
        connections.waiting(self.connection)
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414)
                return False
            head = bool(self.raw_requestline) and self.parse_request()
        except OSError:  # timed out, or closed by the reaper or at shutdown
            return False
        finally:
            ours = connections.done_waiting(self.connection)
        return head and ours  # a head read as the reaper shut the connection is not run: no answer could reach it

    def may_keep_alive(self) -> bool:
        """Whether the connection may carry another request after this one:
        HTTP/1.1 without ``Connection: close``, the body read to its
        Content-Length (none chunked), and the function not draining."""
        if self.request_version != "HTTP/1.1" or self.server.get_app().draining:
            return False
        if "close" in self.headers.get("Connection", "").lower():
            return False
        return body_read_whole(self.headers, self.body.taken)

    def _linger(self) -> None:
        """Close as a server should when the client may still be sending a
        body it did not read (a 429 before the body): stop writing, read
        what comes for a moment, then close — an abrupt close with unread
        data resets the connection and the client may lose the answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_S)
            deadline = time.monotonic() + LINGER_S
            while time.monotonic() < deadline and self.connection.recv(65536):
                pass
        except OSError:
            pass


def build(handler_module: str, env: MutableMapping[str, str]) -> tuple[RuntimeApp, RuntimeSettings]:
    settings = RuntimeSettings.from_env(env)
    print(f"esg runtime: C heap: {keep_heap(settings.heap_retain_mb)}", file=sys.stderr)
    share = apply_share(settings.gpu_share_pct, env, settings.cpu_threads, settings.share_mechanism)
    if share.device == "cuda":
        print(f"esg runtime: GPU share {share.share_pct}% limited by {share.mechanism}"
              + (f" ({share.detail})" if share.detail else ""), file=sys.stderr)
    handler = importlib.import_module(handler_module)
    if hasattr(handler, "warmup"):
        def warm() -> None:
            with share.limit():
                handler.warmup(warmup_sizes(settings.max_batch_size), Context(socket.gethostname()))
        in_passing_thread(warm)
    app = RuntimeApp(handler, settings, telemetry=GpuTelemetry(), limit=share.limit,
                     reshare=share.reshare if settings.live_share else None, cpu_cores=share.cpu_allotment)
    return app, settings


def in_passing_thread(work: Callable[[], None]) -> None:
    """Run ``work`` in a thread of its own that ends with it (its exception
    re-raised here). Torch's OpenMP keeps a team of threads for each thread
    that ran parallel work; a warm-up in the main thread left a team there,
    idle while the batch thread ran its own, and ResNet-50 at two threads
    on two cores took 42–46 ms a batch instead of 22–25 (1 thread: 33–36
    ms) — `bench/live_share.py` with the warm-up put back in the main
    thread; docs/runtime.md. A team whose thread has ended is gone."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as err:  # re-raised in the caller's thread
            failure.append(err)

    thread = threading.Thread(target=run, name="esg-warmup")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def warmup_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, ... below the largest batch, and the largest."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_size]


def serve(app: RuntimeApp, settings: RuntimeSettings,
          on_ready: Optional[Callable[[ThreadingWSGIServer], None]] = None) -> int:
    server = make_server(settings.host, settings.port, app, ThreadingWSGIServer, QuietHandler)
    app.start()
    stopping = threading.Event()

    def shutdown() -> None:
        server.connections.close_waiting()  # idle connections would hold server_close() forever
        app.drain()           # stop intake, finish queued batches
        server.shutdown()     # stop accepting connections
        server.connections.close_waiting()

    def reap() -> None:
        while True:  # a daemon: it ends with the process
            time.sleep(1.0)
            server.connections.close_waiting(older_than_s=0.0 if stopping.is_set() else HEAD_TIMEOUT_S)

    failed: list[BaseException] = []

    def on_failure(err: BaseException) -> None:
        print(f"esg runtime: the batching thread failed ({err!r}); exiting so that the platform restarts "
              f"the function", file=sys.stderr, flush=True)
        failed.append(err)
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, name="esg-shutdown").start()

    app.batcher.on_failure = on_failure

    threading.Thread(target=reap, name="esg-reaper", daemon=True).start()

    def on_sigterm(signum, frame) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=shutdown, name="esg-shutdown").start()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID`: every thread's stack on stderr, the process runs on
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    if on_ready is not None:
        on_ready(server)
    host, port = server.server_address[:2]
    print(f"esg runtime listening on http://{host}:{port} (batch {settings.max_batch_size}, "
          f"wait {settings.max_wait_ms:g} ms, queue {settings.max_queue}, share {settings.gpu_share_pct}%)",
          file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()     # wait until every response is written
    return 1 if failed else 0


def main(handler_module: str = "function.handler", env: Optional[Mapping[str, str]] = None) -> int:
    environment = os.environ if env is None else dict(env)
    try:
        app, settings = build(handler_module, environment)
    except SettingsError as err:
        print(f"esg runtime: {err}", file=sys.stderr)
        return 2
    return serve(app, settings)
