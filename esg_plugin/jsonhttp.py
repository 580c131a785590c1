"""The server and request handler the project's small HTTP services share
(the router, the scaler's endpoint, the embedded gateway): a thread per
connection with a deep listen backlog, no access log, a timeout on every
read and write of a connection (a client that stalls is dropped, never
held), a bounded body (400 for a bad Content-Length or a chunked body, 413
beyond the limit), and helpers that answer bytes or JSON with a
Content-Length. Connections persist (HTTP/1.1 keep-alive, so the router's
calls through the gateway reuse them) while each request's body was read
whole; a request whose body was not read (refused, or not wanted) is
answered with ``Connection: close`` and its connection closed, so no byte
of an unread body is ever taken for the next request."""

from __future__ import annotations

import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Optional

from .runtime.connection import JsonRefusals, body_read_whole

_SET_BY_US = ("content-length", "date", "server", "connection", "keep-alive", "transfer-encoding")
"""Set by this server, or hop-by-hop (RFC 9110 §7.6.1): never copied from a forwarded answer."""


class JsonHTTPServer(ThreadingHTTPServer):
    """The standard library's listen backlog is 5 connections: a burst beyond
    it waits for TCP's one-second SYN retry. 1024, as the function runtime."""

    request_queue_size = 1024


MAX_BODY_BYTES = 64 * 1024 * 1024


def bearer_matches(header: str, token: str) -> bool:
    """Whether an Authorization header is ``Bearer <token>`` (constant-time)."""
    return header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode())


class BadBody(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class JsonRequestHandler(JsonRefusals, BaseHTTPRequestHandler):
    """A timeout on each read and write, HTTP/0.9 refused, the standard
    library's refusals as JSON (``runtime/connection.py``)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the head and the body are two writes: neither waits for an ACK
    body_taken = 0
    """Bytes of this request's body read (``_body``)."""

    def handle_one_request(self) -> None:
        self.body_taken = 0
        super().handle_one_request()
        if not self._body_read_whole():
            self.close_connection = True  # whatever the answer said: the rest is not a request

    def _body_read_whole(self) -> bool:
        headers = getattr(self, "headers", None)  # none when the request line itself was refused
        return headers is None or body_read_whole(headers, self.body_taken)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # the client stalled past the timeout or went away
            self.close_connection = True

    def _body(self, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
        """The request body by its Content-Length; BadBody (answer it with
        ``_refuse``) when the length is not a number, too large, or chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadBody(411, "send the body with a Content-Length (chunked bodies are not taken here)")
        raw = self.headers.get("Content-Length") or "0"
        try:
            length = int(raw, 10)
        except ValueError:
            raise BadBody(400, f"Content-Length is not a number: {raw[:40]!r}") from None
        if not 0 <= length <= limit_bytes:
            raise BadBody(413 if length > 0 else 400, f"the body must be 0..{limit_bytes} bytes, not {length}")
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise BadBody(400, "the body ended before its Content-Length")
        self.body_taken = length
        return body

    def _refuse(self, err: BadBody) -> None:
        self.close_connection = True  # what is left of the body is not read
        self._json(err.status, {"error": str(err)})

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
        if not self._body_read_whole():
            self.send_header("Connection", "close")  # the body was not read: this connection ends here
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, doc: Any) -> None:
        self._send(code, json.dumps(doc, default=str).encode())
