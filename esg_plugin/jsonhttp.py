"""The server and request handler the project's small HTTP services share
(the router, the scaler's endpoint, the embedded gateway): a thread per
connection with a deep listen backlog, no access log, and helpers that
answer bytes or JSON with a Content-Length."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Optional

_SET_BY_US = ("content-length", "date", "server", "connection")


class JsonHTTPServer(ThreadingHTTPServer):
    """The standard library's listen backlog is 5 connections: a burst beyond
    it waits for TCP's one-second SYN retry. 1024, as the function runtime."""

    request_queue_size = 1024


class JsonRequestHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json",
              headers: Optional[Iterable[tuple[str, str]]] = None) -> None:
        """Answer ``body``; ``headers`` (e.g. an upstream's) pass through,
        except those this server sets itself."""
        self.send_response(code)
        sent = set()
        for key, value in headers or ():
            if key.lower() in _SET_BY_US:
                continue
            self.send_header(key, value)
            sent.add(key.lower())
        if "content-type" not in sent:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, doc: Any) -> None:
        self._send(code, json.dumps(doc, default=str).encode())
