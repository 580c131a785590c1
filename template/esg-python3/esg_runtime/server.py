"""The threaded WSGI server of a function, and its start-up order.

Start-up: settings from the environment, then the GPU share (before the
handler is imported, so before any framework initialises CUDA), then the
handler, then its warm-up (``warmup(batch_sizes, context)`` when the
handler defines it: a batch of each size it will be given, so that the
first requests do not pay for lazy initialisation — as Triton's model
warm-up), then the server: ``/_esg/health`` answers only once warm. A thread per connection gives every request of a
batch its own thread, so batches up to ``ESG_MAX_QUEUE`` can form.

SIGTERM (what Kubernetes sends before it kills a pod): new requests get
503, every queued and running batch finishes, every response is written,
then the process exits 0.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import socketserver
import sys
import threading
from typing import Callable, Mapping, MutableMapping, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .app import Context, RuntimeApp
from .gpu import GpuTelemetry, apply_share
from .settings import RuntimeSettings, SettingsError


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False
    block_on_close = True  # server_close() waits for every request thread
    allow_reuse_address = True
    request_queue_size = 1024


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the watchdog logs requests)."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass


def build(handler_module: str, env: MutableMapping[str, str]) -> tuple[RuntimeApp, RuntimeSettings]:
    settings = RuntimeSettings.from_env(env)
    apply_share(settings.gpu_share_pct, env, settings.cpu_threads)
    handler = importlib.import_module(handler_module)
    if hasattr(handler, "warmup"):
        handler.warmup(warmup_sizes(settings.max_batch_size), Context(socket.gethostname()))
    app = RuntimeApp(handler, settings, telemetry=GpuTelemetry())
    return app, settings


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
        app.drain()           # stop intake, finish queued batches
        server.shutdown()     # stop accepting connections

    def on_sigterm(signum, frame) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=shutdown, name="esg-shutdown").start()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    if on_ready is not None:
        on_ready(server)
    host, port = server.server_address[:2]
    print(f"esg runtime listening on http://{host}:{port} (batch {settings.max_batch_size}, "
          f"wait {settings.max_wait_ms:g} ms, queue {settings.max_queue}, share {settings.gpu_share_pct}%)",
          file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()     # wait until every response is written
    return 0


def main(handler_module: str = "function.handler", env: Optional[Mapping[str, str]] = None) -> int:
    environment = os.environ if env is None else dict(env)
    try:
        app, settings = build(handler_module, environment)
    except SettingsError as err:
        print(f"esg runtime: {err}", file=sys.stderr)
        return 2
    return serve(app, settings)
