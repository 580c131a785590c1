"""The keep-alive client the router and the gateway call functions with
(esg_plugin/runtime/client.py), against real HTTP/1.1 servers on loopback."""

import http.server
import threading

import pytest

from esg_plugin.runtime.client import ConnectionPool

pytestmark = pytest.mark.integration


class Server:
    """A threaded HTTP/1.1 server counting the connections it accepted;
    ``close_after_answer``: it closes each connection after one answer
    without saying so (as a server closing an idle connection does)."""

    def __init__(self, close_after_answer: bool = False):
        outer = self
        self.connections = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                with outer.lock:
                    outer.connections += 1
                super().setup()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 500 if body == b"fail" else 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = close_after_answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/x"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    made = []

    def start(**kw):
        made.append(Server(**kw))
        return made[-1]

    yield start
    for s in made:
        s.stop()


def test_requests_in_turn_share_one_connection_and_any_status_is_an_answer(server):
    srv = server()
    pool = ConnectionPool()
    for i in range(10):
        r = pool.request("POST", srv.url, f"b{i}".encode())
        assert (r.status, r.body) == (200, f"b{i}".encode())
    assert pool.request("POST", srv.url, b"fail").status == 500
    assert srv.connections == 1
    pool.close()


def test_a_connection_the_server_closed_is_replaced_and_the_request_sent_again(server):
    srv = server(close_after_answer=True)
    pool = ConnectionPool()
    for i in range(4):
        assert pool.request("POST", srv.url, b"x").body == b"x"
    assert srv.connections == 4  # each stale connection failed, then a new one answered


def test_an_idle_connection_past_its_time_is_not_reused(server):
    srv = server()
    pool = ConnectionPool(idle_timeout_s=0.0)
    for _ in range(3):
        pool.request("POST", srv.url, b"x")
    assert srv.connections == 3


def test_no_server_is_an_error_not_a_retry_loop(server):
    srv = server()
    url = srv.url
    srv.stop()
    with pytest.raises(OSError):
        ConnectionPool().request("POST", url, b"x", timeout_s=5)
    with pytest.raises(ValueError):
        ConnectionPool().request("POST", "ftp://127.0.0.1/x")


def test_an_answer_longer_than_the_pool_reads_is_an_error_and_its_connection_is_not_reused(server):
    """``max_answer_bytes`` (by default the contract's ``MAX_BODY_BYTES``,
    what a function takes in a request): a longer answer raises
    ``AnswerTooLarge`` — an ``OSError``, as a failed call — without being
    read whole, and the next request goes on a new connection."""
    from esg_plugin.runtime.client import AnswerTooLarge
    from esg_plugin.runtime.contract import MAX_BODY_BYTES

    assert ConnectionPool().max_answer_bytes == MAX_BODY_BYTES
    s = server()
    pool = ConnectionPool(max_answer_bytes=1000)
    assert pool.request("POST", s.url, b"a" * 1000).body == b"a" * 1000  # at the limit: an answer
    with pytest.raises(AnswerTooLarge) as err:
        pool.request("POST", s.url, b"a" * 100_000)
    assert isinstance(err.value, OSError) and "1000 bytes" in str(err.value)
    assert pool.request("POST", s.url, b"ok").body == b"ok"
    assert s.connections == 2  # the cut connection was closed, not given back
