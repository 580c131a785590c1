"""The function runtime as OpenFaaS runs it: the template folder with a
handler overlaid into function/, `python index.py`, real HTTP."""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from esg_plugin.local.platform import free_port  # a worker's port, as the platform draws it

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template/esg-python3"

HANDLER = '''
import json, os, time

LOG = os.environ.get("TEST_PROCESSED_LOG")


def handle_batch(events, context):
    payloads = [json.loads(e.body) for e in events]
    time.sleep(max(p.get("sleep_ms", 0) for p in payloads) / 1000.0)
    if LOG:
        with open(LOG, "a") as f:
            f.write("".join(f"{p['id']}\\n" for p in payloads))
    return [ValueError(f"item {p['id']} failed") if p.get("fail") else
            {"statusCode": 200, "body": {"id": p["id"], "batch": len(events)}} for p in payloads]
'''


class Function:
    def __init__(self, tmp_path, **env):
        folder = tmp_path / "fn"
        shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("__pycache__"))
        (folder / "function/handler.py").write_text(HANDLER)
        self.port = free_port()
        self.log = tmp_path / "processed.log"
        environment = {**os.environ, "ESG_PORT": str(self.port), "TEST_PROCESSED_LOG": str(self.log),
                       **{k: str(v) for k, v in env.items()}}
        # output to files, not pipes: a pipe nobody reads fills up and blocks the process writing to it
        self.out_path, self.err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "index.py"], cwd=folder, env=environment,
                                         stdout=out, stderr=err)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.get("/_esg/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the function did not start: " + self.stderr())

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def request(self, method, path, body=b"", headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get(self, path):
        return self.request("GET", path)

    def call(self, payload, headers=None):
        return self.request("POST", "/", json.dumps(payload).encode(), headers)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def function(tmp_path):
    made = []

    def start(**env):
        f = Function(tmp_path, **env)
        made.append(f)
        return f

    yield start
    for f in made:
        f.stop()


def test_batches_of_8_form_and_every_response_matches_its_request(function):
    fn = function(ESG_MAX_BATCH_SIZE=8, ESG_MAX_WAIT_MS=200)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: fn.call({"id": i, "sleep_ms": 20}), range(256)))
    sizes = []
    for i, (status, headers, body) in enumerate(results):
        assert status == 200
        assert json.loads(body)["id"] == i
        sizes.append(int(headers["X-ESG-Batch-Size"]))
        assert float(headers["X-ESG-Queue-Ms"]) >= 0 and float(headers["X-ESG-Exec-Ms"]) >= 20
    assert max(sizes) == 8
    assert sizes.count(8) >= len(sizes) * 3 // 4


def test_10000_requests_with_random_failures_each_answered_once_with_the_right_status(function):
    fn = function(ESG_MAX_BATCH_SIZE=8, ESG_MAX_WAIT_MS=5)
    rng = random.Random(42)
    plan = [rng.random() < 0.1 for _ in range(10_000)]
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: fn.call({"id": i, "fail": plan[i]}), range(len(plan))))
    processed = fn.log.read_text().split()
    assert sorted(map(int, processed)) == list(range(len(plan)))  # each ran exactly once
    for i, (status, _, body) in enumerate(results):
        if plan[i]:
            assert status == 500 and f"item {i} failed" in json.loads(body)["error"]
        else:
            assert status == 200 and json.loads(body)["id"] == i
    _, _, metrics = fn.get("/_esg/metrics")
    text = metrics.decode()
    assert f'esg_requests_total{{code="500"}} {float(sum(plan))}' in text
    assert f'esg_requests_total{{code="200"}} {float(len(plan) - sum(plan))}' in text
    assert f"esg_requests_started_total {float(len(plan))}" in text  # every arrival (the /_esg/ pages are not)


def test_overload_beyond_the_queue_gets_429_and_never_hangs(function):
    fn = function(ESG_MAX_BATCH_SIZE=2, ESG_MAX_WAIT_MS=0, ESG_MAX_QUEUE=4)
    started = time.monotonic()
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(lambda i: fn.call({"id": i, "sleep_ms": 100}, ), range(40)))
    assert time.monotonic() - started < 25
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 429}
    assert statuses.count(429) > 0 and statuses.count(200) > 0
    rejected = [r for r in results if r[0] == 429]
    assert all(r[1]["Retry-After"] == "1" and "queue is full" in json.loads(r[2])["error"] for r in rejected)
    assert 'esg_rejections_total{reason="queue_full"}' in fn.get("/_esg/metrics")[2].decode()


def test_sigterm_under_load_loses_no_accepted_request(function):
    fn = function(ESG_MAX_BATCH_SIZE=4, ESG_MAX_WAIT_MS=10)

    def call(i):
        try:
            return fn.call({"id": i, "sleep_ms": 50})
        except OSError as err:  # refused or reset before the server accepted it
            return ("error", str(err), b"")

    with ThreadPoolExecutor(48) as pool:
        futures = [pool.submit(call, i) for i in range(300)]
        time.sleep(0.6)
        fn.proc.send_signal(signal.SIGTERM)
        results = [f.result() for f in futures]
    try:
        code = fn.proc.wait(timeout=120)  # every answer is in: what is left is closing (a busy machine is slow)
    except subprocess.TimeoutExpired:
        fn.proc.send_signal(signal.SIGUSR1)  # the runtime dumps every thread's stack (faulthandler)
        time.sleep(2)
        fn.stop()
        pytest.fail(f"no exit 120 s after SIGTERM, every answer in; its threads:\n{fn.stderr()[-6000:]}")
    assert code == 0, f"exit code {code}: {fn.stderr()[-2000:]}"
    processed = set(map(int, fn.log.read_text().split()))
    answered = {i for i, r in enumerate(results) if r[0] == 200}
    outcomes = {i: (r[0], r[1][:120] if isinstance(r[1], str) else "") for i, r in enumerate(results)}
    # every request that ran was answered with 200 (on a failure, say which and how they ended)
    assert processed == answered, {"ran, not answered 200": {i: outcomes[i] for i in processed - answered},
                                   "answered 200, not logged as run": sorted(answered - processed)}
    assert len(answered) > 0, sorted({str(o) for o in outcomes.values()})
    for i, r in enumerate(results):
        assert r[0] in (200, 503, "error"), r


def test_live_config_change_applies_to_the_next_batch_and_needs_the_token(function):
    fn = function(ESG_MAX_BATCH_SIZE=8, ESG_MAX_WAIT_MS=100, ESG_CONFIG_TOKEN="s3cret")
    status, _, body = fn.request("PUT", "/_esg/config", b'{"max_batch_size": 2}')
    assert status == 401
    status, _, body = fn.request("PUT", "/_esg/config", b'{"max_batch_size": 2, "gpu_share": 30}',
                                 {"Authorization": "Bearer s3cret"})
    assert status == 200
    doc = json.loads(body)
    # no CUDA here: the share is torch's threads, taken live
    assert doc["config"]["max_batch_size"] == 2 and doc["restart_required"] is False
    assert doc["config"]["gpu_share"] == 30
    assert json.loads(fn.get("/_esg/config")[2])["max_batch_size"] == 2
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: fn.call({"id": i, "sleep_ms": 10}), range(32)))
    assert {int(r[1]["X-ESG-Batch-Size"]) for r in results} <= {1, 2}
    assert 2 in {int(r[1]["X-ESG-Batch-Size"]) for r in results}
    status, _, body = fn.request("PUT", "/_esg/config", b'{"max_batch_size": 0}', {"Authorization": "Bearer s3cret"})
    assert status == 400 and "max_batch_size" in json.loads(body)["error"]


def test_without_a_token_every_change_is_refused(function):
    fn = function()
    status, _, body = fn.request("PUT", "/_esg/config", b'{"max_batch_size": 4}', {"Authorization": "Bearer x"})
    assert status == 403 and "ESG_CONFIG_TOKEN is not set" in json.loads(body)["error"]


def test_a_past_deadline_gets_504_without_running_and_a_bad_one_400(function):
    fn = function()
    past = str(int(time.time() * 1000) - 1000)
    status, headers, body = fn.call({"id": 1}, {"X-ESG-Deadline-Ms": past})
    assert status == 504 and headers["X-ESG-Batch-Size"] == "0"
    status, _, body = fn.call({"id": 2}, {"X-ESG-Deadline-Ms": "tomorrow"})
    assert status == 400 and "X-ESG-Deadline-Ms" in json.loads(body)["error"]
    future = str(int(time.time() * 1000) + 10_000)
    assert fn.call({"id": 3}, {"X-ESG-Deadline-Ms": future})[0] == 200
    assert not fn.log.exists() or fn.log.read_text().split() == ["3"]


def test_metrics_expose_the_runtime(function):
    fn = function(ESG_MAX_BATCH_SIZE=4, ESG_GPU_SHARE=50)
    fn.call({"id": 1})
    text = fn.get("/_esg/metrics")[2].decode()
    for name in ("esg_requests_total", "esg_queue_length", "esg_batch_size_bucket", "esg_queue_wait_seconds_bucket",
                 "esg_exec_seconds_bucket", "esg_gpu_share_percent 50.0", "esg_max_batch_size 4.0"):
        assert name in text, name


def test_bad_settings_exit_2_with_one_line(tmp_path):
    folder = tmp_path / "fn"
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "index.py"], cwd=folder, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "ESG_MAX_BATCH_SIZE": "lots"})
    assert result.returncode == 2
    assert result.stderr.strip() == "esg runtime: ESG_MAX_BATCH_SIZE must be an integer, got 'lots'"


def test_a_huge_wait_is_refused_and_the_function_keeps_serving(function):
    """PUT {"max_wait_ms": 1e13} used to answer 200 and kill the batching
    thread: every later request hung while /_esg/health said 200."""
    fn = function(ESG_CONFIG_TOKEN="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    for value in (b"1e13", b"1e999", b"NaN", b"60001"):
        status, _, body = fn.request("PUT", "/_esg/config", b'{"max_wait_ms": ' + value + b"}", auth)
        assert status == 400 and "max_wait_ms must be a number in 0..60000" in json.loads(body)["error"], value
    status, _, body = fn.call({"id": 1})
    assert status == 200 and json.loads(body)["id"] == 1
    assert fn.get("/_esg/health")[0] == 200


def test_an_idle_connection_does_not_keep_the_process_alive_after_sigterm(function):
    """A connection that never sends a request used to hold the server's
    close forever after SIGTERM."""
    fn = function()
    idle = socket.create_connection(("127.0.0.1", fn.port), timeout=30)
    try:
        assert fn.call({"id": 1})[0] == 200  # accepted after the idle one: the server holds both
        fn.proc.send_signal(signal.SIGTERM)
        assert fn.proc.wait(timeout=120) == 0  # before: it never exited
        assert idle.recv(1) == b""  # the server closed it
    finally:
        idle.close()


def test_a_request_head_that_never_ends_is_cut(function):
    """Slow-loris: a head that does not arrive in full within the head
    timeout is closed, whatever trickles in."""
    from esg_plugin.runtime.server import HEAD_TIMEOUT_S

    fn = function()
    sock = socket.create_connection(("127.0.0.1", fn.port), timeout=HEAD_TIMEOUT_S * 6)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < HEAD_TIMEOUT_S * 5:
            try:
                sock.sendall(b"X-A: b\r\n")
            except OSError:
                closed = True
                break
            sock.settimeout(1.0)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
        assert closed
        assert fn.call({"id": 2})[0] == 200
    finally:
        sock.close()


def test_a_chunked_body_reaches_the_handler(function):
    fn = function()
    body = json.dumps({"id": 7}).encode()
    sock = socket.create_connection(("127.0.0.1", fn.port), timeout=30)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}\r\n".encode() + body
                     + b"\r\n0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200" and json.loads(payload)["id"] == 7


@pytest.mark.parametrize("method", ["CONNECT", "TRACE"])
def test_connect_and_trace_are_refused_with_405(function, method):
    fn = function()
    status, headers, body = fn.request(method, "/")
    assert status == 405 and "Allow" in headers
    assert not fn.log.exists()  # the handler never ran


def test_sigusr1_dumps_every_threads_stack_and_the_function_serves_on(function):
    fn = function()
    deadline = time.monotonic() + 60
    # the dump is written a line at a time: wait for the main thread's frames, not its first line;
    # faulthandler walks the other threads while they run, and one dump in a run of `make test`
    # stopped mid-line in a request thread's frames, before the main thread's: the signal is sent
    # again every 5 s until a whole dump is there
    while "serve_forever" not in fn.stderr() and time.monotonic() < deadline:
        fn.proc.send_signal(signal.SIGUSR1)
        resend = time.monotonic() + 5
        while "serve_forever" not in fn.stderr() and time.monotonic() < min(resend, deadline):
            time.sleep(0.05)
    assert "most recent call first" in fn.stderr() and "serve_forever" in fn.stderr()
    assert fn.call({"id": 1})[0] == 200 and fn.proc.poll() is None


def _answer(sock) -> tuple[bytes, bytes]:
    """(head, body) of one response read from a raw socket, by Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole body"
        body += chunk
    return head, body


def test_a_connection_carries_request_after_request_until_the_client_says_close(function):
    """HTTP/1.1 keep-alive (issue 15): the same connection answers each
    request in turn; `Connection: close` is answered with it, then closed."""
    fn = function(ESG_MAX_BATCH_SIZE=4, ESG_MAX_WAIT_MS=0)
    conn = http.client.HTTPConnection("127.0.0.1", fn.port, timeout=30)
    try:
        sock = None
        for i in range(5):
            conn.request("POST", "/", body=json.dumps({"id": i}).encode(), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["id"] == i
            assert resp.version == 11 and resp.getheader("Connection") is None
            sock = sock or conn.sock
            assert conn.sock is sock  # not reconnected
        conn.request("POST", "/", body=json.dumps({"id": 9}).encode(), headers={"Connection": "close"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Connection") == "close" and json.loads(resp.read())["id"] == 9
        assert conn.sock is None  # the client took the answer's word and closed (the raw test below reads the close)
    finally:
        conn.close()


def test_http_1_0_an_unread_body_and_a_chunked_body_end_the_connection(function):
    from esg_plugin.runtime.contract import MAX_BODY_BYTES

    fn = function()
    cases = [
        (b"POST / HTTP/1.0\r\nContent-Length: 9\r\n\r\n{\"id\": 1}", b"200"),
        # refused before its body is read: the rest of the stream is not a request head
        (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(), b"413"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"id\": 2}\r\n0\r\n\r\n", b"200"),
    ]
    for raw, status in cases:
        with socket.create_connection(("127.0.0.1", fn.port), timeout=30) as sock:
            sock.sendall(raw)
            head, _ = _answer(sock)
            assert head.split()[1] == status, head
            assert b"\r\nConnection: close" in head, head
            assert sock.recv(1) == b""


def test_an_idle_kept_connection_is_closed_at_sigterm_and_the_process_exits(function):
    fn = function()
    with socket.create_connection(("127.0.0.1", fn.port), timeout=120) as sock:
        body = json.dumps({"id": 3}).encode()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        head, answer = _answer(sock)
        assert head.split()[1] == b"200" and b"Connection: close" not in head  # kept open
        fn.proc.send_signal(signal.SIGTERM)
        assert fn.proc.wait(timeout=120) == 0
        assert sock.recv(1) == b""
