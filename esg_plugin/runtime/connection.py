"""What every HTTP handler of the project does with a connection — the
function runtime's (``server.py``) and the small services' (``jsonhttp.py``:
the router, the scaler's endpoint, the embedded gateway): a timeout on each
read and write, HTTP/0.9 refused, and the standard library's own refusals
(a request line it cannot read, headers too long, a method no ``do_``
takes) answered as JSON with a status line, as every other error.

Standard library only: the runtime stays self-contained."""

from __future__ import annotations

import json
from typing import Optional

IO_TIMEOUT_S = 30.0
"""Any one read or write on a connection (a stalled body, a client that does not read)."""


def body_read_whole(headers, taken_bytes: int) -> bool:
    """Whether a request's body was read to its end, so that the next
    request on a kept connection starts where the reader stands: not chunked
    (a chunked body ends the connection), and exactly its Content-Length
    (none: 0) taken."""
    if headers.get("Transfer-Encoding"):
        return False
    try:
        return int(headers.get("Content-Length") or 0) == taken_bytes
    except ValueError:
        return False


class JsonRefusals:
    """A mixin for a ``BaseHTTPRequestHandler``, before it in the bases."""

    timeout = IO_TIMEOUT_S  # socketserver sets it on the socket: each read and write

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # a line without a version: no status, no headers
            self.send_error(400, "HTTP/0.9 requests are not served; send HTTP/1.0 or 1.1")
            return False
        return True

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """The standard library's errors as JSON; an unknown method (its 501)
        is 405 with ``Allow``."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a request line it could not read: answer with a status anyway
        headers = []
        if code == 501:  # the stdlib's answer to a method without a do_ handler
            allowed = sorted(name[3:] for name in dir(self) if name.startswith("do_"))
            message = f"method {self.command!r} is not allowed ({', '.join(allowed)})"
            headers, code = [("Allow", ", ".join(allowed))], 405
        body = json.dumps({"error": message or self.responses.get(code, ("error",))[0]}).encode()
        try:
            self.send_response(code)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", "") != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except OSError:
            pass
