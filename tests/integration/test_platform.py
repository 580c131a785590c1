"""The embedded platform's gateway and its workers: a worker leaves the
rotation before it is stopped, and a refused connection is tried again."""

import http.client
import json
import threading
import time
from pathlib import Path

import pytest

from esg_plugin.local import LocalPlatform, make_gateway_server
from esg_plugin.local.platform import PlatformError

pytestmark = pytest.mark.integration

HANDLER = '''
import json, os

try:  # a test breaks the next worker to start by creating this file
    os.unlink(os.environ["BROKEN_MARKER"])
    raise RuntimeError("broken on purpose")
except FileNotFoundError:
    pass

def handle_batch(events, context):
    return [{"statusCode": 200, "body": {"ok": True}} for e in events]
'''


@pytest.fixture
def platform(tmp_path):
    handler = tmp_path / "echo"
    handler.mkdir()
    (handler / "handler.py").write_text(HANDLER)
    stack = {"functions": {"echo": {"lang": "esg-python3", "handler": str(handler),
                                    "environment": {"ESG_MAX_BATCH_SIZE": "1", "ESG_GPU_SHARE": "100",
                                                    "BROKEN_MARKER": str(tmp_path / "broken")}}}}
    platform = LocalPlatform(stack, tmp_path, tmp_path / "work")
    platform.start()
    platform.scale("echo", 2)
    yield platform
    platform.shutdown()


def post(port, path="/"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_worker_leaving_the_rotation_answers_what_it_was_sent_before_it_stops(platform):
    fn = platform.functions["echo"]
    leaving = fn.workers[1]  # scaling to 1 removes the second worker
    worker = platform.acquire("echo")
    while worker is not leaving:  # round robin: the next one is the leaving worker
        platform.release(worker)
        worker = platform.acquire("echo")
    scaler = threading.Thread(target=platform.scale, args=("echo", 1))
    scaler.start()
    wait_until(lambda: leaving not in fn.workers)
    # out of the rotation, but not stopped while the gateway still has a request for it
    assert leaving.proc.poll() is None
    status, body = post(leaving.port)
    assert status == 200 and json.loads(body) == {"ok": True}
    assert scaler.is_alive()  # still waiting for that request
    platform.release(worker)
    scaler.join(timeout=60)
    assert not scaler.is_alive() and leaving.proc.poll() is not None
    picked = [platform.acquire("echo") for _ in range(3)]
    for w in picked:
        platform.release(w)
    assert picked == [fn.workers[0]] * 3


def test_the_gateway_tries_another_worker_when_one_refuses_the_connection(platform):
    gateway = make_gateway_server(platform)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        crashed = platform.functions["echo"].workers[0]
        crashed.proc.kill()  # a crash: still in the rotation, nothing listens on its port
        crashed.proc.wait()
        statuses = [post(gateway.server_address[1], "/function/echo")[0] for _ in range(4)]
        assert statuses == [200] * 4
        assert all(w.in_flight == 0 for w in platform.functions["echo"].workers)
    finally:
        gateway.shutdown()
        gateway.server_close()


def gone(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_when_one_new_worker_fails_to_start_none_is_left_running(platform, tmp_path):
    before = list(platform.spawned)
    (tmp_path / "broken").touch()
    with pytest.raises(PlatformError, match="exited at start: RuntimeError: broken on purpose"):
        platform.scale("echo", 4)
    started = [pid for pid in platform.spawned if pid not in before]
    assert len(started) == 2 and all(gone(pid) for pid in started)  # the healthy one was stopped too
    assert len(platform.functions["echo"].workers) == 2 and platform.functions["echo"].state.replicas == 2


def test_nothing_starts_after_shutdown(platform):
    platform.shutdown()
    count = len(platform.spawned)
    with pytest.raises(PlatformError, match="shut down"):
        platform.scale("echo", 3)
    with pytest.raises(PlatformError, match="shut down"):
        platform.set_share("echo", 50)
    assert len(platform.spawned) == count and all(gone(pid) for pid in platform.spawned)


def test_the_gateway_answers_a_scale_it_cannot_carry_out_with_a_json_reason(platform):
    gateway = make_gateway_server(platform)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        platform.shutdown()
        conn = http.client.HTTPConnection("127.0.0.1", gateway.server_address[1], timeout=30)
        conn.request("POST", "/system/scale-function/echo", body=b'{"replicas": 2}')
        response = conn.getresponse()
        assert response.status == 503 and "shut down" in json.loads(response.read())["error"]
        conn.close()
    finally:
        gateway.shutdown()
        gateway.server_close()
