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
