"""Calling functions over HTTP/1.1 with persistent connections (issue 15).

A ``ConnectionPool`` keeps the connections it opened, per host, and sends
the next request on an idle one, as the OpenFaaS gateway's Go client and
Triton's clients do: no TCP connect, and on the function's side no new
thread, per request. The router (``esg_plugin.router`` and the ``router``
function), the embedded gateway and the benchmarks call functions through
it.

- A connection goes back to the pool only when its response was read to
  the end and the server did not say ``Connection: close``; at most
  ``max_idle_per_host`` wait per host.
- An idle connection older than ``idle_timeout_s`` is closed, not used:
  the runtime closes a connection that waits longer than its
  ``HEAD_TIMEOUT_S`` (10 s) for a request head, and a pool must give up
  first.
- A reused connection that the server closed meanwhile fails before any
  answer; the request is then sent once more on a new connection (it
  cannot have been read: the server closes only idle connections). A
  failure on a new connection is the caller's.
- An answer longer than ``max_answer_bytes`` (the contract's
  ``MAX_BODY_BYTES``, what a function takes in a request) is not read to
  its end: ``AnswerTooLarge``, an ``OSError`` as a failed call is, and
  the connection is closed — a runaway function does not make its caller
  hold gigabytes.

Standard library only: the runtime stays self-contained.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from .contract import MAX_BODY_BYTES

IDLE_TIMEOUT_S = 5.0
"""An idle connection older than this is closed rather than reused (below the runtime's 10 s)."""
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
"""How a reused connection that the server had closed fails."""


class AnswerTooLarge(OSError):
    """An answer longer than the pool reads (``max_answer_bytes``)."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class ConnectionPool:
    def __init__(self, max_idle_per_host: int = 64, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 max_answer_bytes: int = MAX_BODY_BYTES) -> None:
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout_s = idle_timeout_s
        self.max_answer_bytes = max_answer_bytes
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[tuple[http.client.HTTPConnection, float]]] = {}

    def request(self, method: str, url: str, body: bytes = b"", headers: Optional[dict] = None,
                timeout_s: float = 60.0) -> Response:
        """One request; any status is an answer (no exception for 4xx/5xx);
        ``OSError`` (and ``http.client.HTTPException``) when none came."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn, reused = self._take(key, timeout_s)
        while True:
            try:
                return self._send(key, conn, method, path, body, headers or {})
            except BaseException as err:
                conn.close()
                if not (reused and isinstance(err, STALE)):
                    raise
            conn, reused = self._new(key, timeout_s), False  # the server had closed it: once more, anew

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()

    def _send(self, key, conn: http.client.HTTPConnection, method: str, path: str, body: bytes,
              headers: dict) -> Response:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(self.max_answer_bytes + 1)
        if len(data) > self.max_answer_bytes:
            conn.close()  # the rest unread: the connection cannot carry another request
            raise AnswerTooLarge(f"the answer exceeds {self.max_answer_bytes} bytes")
        if response.will_close:
            conn.close()
        else:
            self._give(key, conn)
        return Response(response.status, response.msg, data)

    def _take(self, key, timeout_s: float) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        stale = []
        found = None
        with self._lock:
            conns = self._idle.get(key, [])
            while conns:
                conn, since = conns.pop()
                if now - since <= self.idle_timeout_s:
                    found = conn
                    break
                stale.append(conn)
        for conn in stale:
            conn.close()
        if found is None:
            return self._new(key, timeout_s), False
        found.timeout = timeout_s
        if found.sock is not None:
            found.sock.settimeout(timeout_s)
        return found, True

    def _new(self, key, timeout_s: float) -> http.client.HTTPConnection:
        scheme, host, port = key
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        return kind(host, port, timeout=timeout_s)

    def _give(self, key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if len(conns) < self.max_idle_per_host:
                conns.append((conn, time.monotonic()))
                return
        conn.close()
