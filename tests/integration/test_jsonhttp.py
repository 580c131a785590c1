"""The shared HTTP server of the router, the gateway and the scaler."""

import socket

import pytest

from esg_plugin.jsonhttp import JsonHTTPServer, JsonRequestHandler

pytestmark = pytest.mark.integration


def test_a_burst_of_connections_is_queued_not_dropped():
    # nothing accepts yet: every connection must still complete its handshake
    # in the listen backlog (the standard library's 5 would drop the rest)
    server = JsonHTTPServer(("127.0.0.1", 0), JsonRequestHandler)
    clients = []
    try:
        for _ in range(64):
            clients.append(socket.create_connection(server.server_address, timeout=2.0))
        assert len(clients) == 64
    finally:
        for c in clients:
            c.close()
        server.server_close()


@pytest.fixture
def echo_server():
    """A JsonHTTPServer whose POST / echoes its body and whose POST /early
    answers without reading it."""
    import threading

    from esg_plugin.jsonhttp import BadBody

    class Echo(JsonRequestHandler):
        def do_POST(self):  # noqa: N802
            if self.path == "/early":
                return self._json(403, {"error": "not wanted"})
            try:
                body = self._body(1024)
            except BadBody as err:
                return self._refuse(err)
            self._send(200, body)

    server = JsonHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_connection_carries_request_after_request(echo_server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", echo_server, timeout=30)
    try:
        first = None
        for i in range(4):
            conn.request("POST", "/", body=f"b{i}".encode())
            resp = conn.getresponse()
            assert (resp.status, resp.read(), resp.getheader("Connection")) == (200, f"b{i}".encode(), None)
            first = first or conn.sock
            assert conn.sock is first
    finally:
        conn.close()


@pytest.mark.parametrize("path, length", [("/early", 5), ("/", 5000)])
def test_a_body_not_read_ends_the_connection_so_it_is_never_taken_for_a_request(echo_server, path, length):
    body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".ljust(length, b" ")
    with socket.create_connection(("127.0.0.1", echo_server), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.split()[1] in (b"403", b"413") and b"\r\nConnection: close" in head
    assert b"HTTP/1" not in rest  # one answer: the body was not parsed as a request
