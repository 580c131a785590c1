"""The embedded platform's gateway and its workers: a worker leaves the
rotation before it is stopped, and a refused connection is tried again."""

import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from esg_plugin.local import LocalPlatform, make_gateway_server
from esg_plugin.local.platform import PlatformError, call_worker
from esg_plugin.runtime import contract as C

pytestmark = pytest.mark.integration

HANDLER = '''
import json, os, time

try:  # a test breaks the next worker to start by creating this file
    os.unlink(os.environ["BROKEN_MARKER"])
    raise RuntimeError("broken on purpose")
except FileNotFoundError:
    pass
while os.path.exists(os.environ["HOLD_MARKER"]):  # a test holds new workers in their start-up
    time.sleep(0.05)

def handle_batch(events, context):
    for e in events:
        if e.body and json.loads(e.body).get("loud"):  # a function that logs much: 16 KB a request
            print("log line " + "x" * 16384, file=__import__("sys").stderr, flush=True)
    return [{"statusCode": 200, "body": {"ok": True}} for e in events]
'''


def echo_platform(tmp_path, **env):
    handler = tmp_path / "echo"
    handler.mkdir()
    (handler / "handler.py").write_text(HANDLER)
    stack = {"functions": {"echo": {"lang": "esg-python3", "handler": str(handler),
                                    "environment": {"ESG_MAX_BATCH_SIZE": "1", "ESG_GPU_SHARE": "100",
                                                    "BROKEN_MARKER": str(tmp_path / "broken"),
                                                    "HOLD_MARKER": str(tmp_path / "hold"), **env}}}}
    platform = LocalPlatform(stack, tmp_path, tmp_path / "work", retry_s=(0.5, 1.0))
    platform.start()
    platform.scale("echo", 2)
    platform.wait_converged("echo")
    return platform


@pytest.fixture
def platform(tmp_path):
    # a share change restarts here, as on a GPU (ESG_LIVE_SHARE=0): the rolling restart is what is tested
    platform = echo_platform(tmp_path, ESG_LIVE_SHARE="0")
    yield platform
    platform.shutdown()


def test_a_cpu_share_change_restarts_nothing(tmp_path):
    platform = echo_platform(tmp_path)
    try:
        fn = platform.functions["echo"]
        pids = sorted(w.proc.pid for w in fn.workers)
        spawned = len(platform.spawned)
        platform.set_share("echo", 50)
        platform.wait_converged("echo")
        assert [w.share for w in fn.workers] == [50, 50] and sorted(w.proc.pid for w in fn.workers) == pids
        assert len(platform.spawned) == spawned and not fn.starting
        for w in fn.workers:  # each worker says it runs at the new share
            status, _, body = call_worker(w.port, "GET", "/_esg/config")
            assert status == 200 and json.loads(body)["gpu_share"] == 50
    finally:
        platform.shutdown()


def test_cpu_shares_changed_back_and_forth_under_load_lose_no_request(tmp_path):
    """The live share under traffic: requests flow through the gateway while
    the share goes 100 → 50 → 100 → 50; every one is answered 200 and no
    worker is started or stopped."""
    platform = echo_platform(tmp_path)
    gateway = make_gateway_server(platform)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        fn = platform.functions["echo"]
        pids = sorted(w.proc.pid for w in fn.workers)
        spawned = len(platform.spawned)
        statuses, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                statuses.append(post(gateway.server_address[1], "/function/echo")[0])

        clients = [threading.Thread(target=client) for _ in range(4)]
        for c in clients:
            c.start()
        for share in (50, 100, 50):
            seen = len(statuses)
            platform.set_share("echo", share)
            platform.wait_converged("echo")
            wait_until(lambda: len(statuses) >= seen + 20)  # requests were served at this share
        stop.set()
        for c in clients:
            c.join(60)
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        assert sorted(w.proc.pid for w in fn.workers) == pids and len(platform.spawned) == spawned
        for w in fn.workers:
            assert json.loads(call_worker(w.port, "GET", "/_esg/config")[2])["gpu_share"] == 50
    finally:
        gateway.shutdown()
        gateway.server_close()
        platform.shutdown()


def post(port, path="/", body=b"{}"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
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
    platform.scale("echo", 1)  # returns at once: the rollout acts
    wait_until(lambda: leaving not in fn.workers)
    # out of the rotation, but not stopped while the gateway still has a request for it
    assert leaving.proc.poll() is None
    status, body = post(leaving.port)
    assert status == 200 and json.loads(body) == {"ok": True}
    assert leaving.proc.poll() is None  # still waiting for that request to be released
    platform.release(worker)
    wait_until(lambda: leaving.proc.poll() is not None, 60)
    picked = [platform.acquire("echo") for _ in range(3)]
    for w in picked:
        platform.release(w)
    assert picked == [fn.workers[0]] * 3


def thread_nices(pid):
    """The nice value of every thread of a process (field 19 of /proc's stat)."""
    root = Path(f"/proc/{pid}/task")
    return {int((root / tid / "stat").read_text().rsplit(")", 1)[1].split()[16]) for tid in os.listdir(root)}


def test_a_worker_starts_at_a_lower_priority_and_serves_at_the_platforms(platform):
    """A start (torch, a model) must not take the cores from the replicas that serve."""
    from esg_plugin.local.platform import START_NICE_S, set_nice

    if not platform.start_nice:
        pytest.skip("this process may not raise a priority again (no CAP_SYS_NICE): workers start at its own")
    fn = platform.functions["echo"]
    assert all(thread_nices(w.proc.pid) == {platform.nice} for w in fn.workers)  # ready: serving
    worker = platform._spawn(fn, fn.state)
    try:
        assert thread_nices(worker.proc.pid) == {platform.nice + platform.start_nice}
        assert 0 < worker.niced_until_s - time.monotonic() <= START_NICE_S  # for so long at the most
        platform._wait_ready(fn, [worker])
        assert thread_nices(worker.proc.pid) == {platform.nice} and worker.niced_until_s is None
    finally:
        platform._stop([worker], timeout_s=5.0)
    # a forked worker is reaped by the zygote, not by _stop: its pid lingers
    # (exiting threads) until then; once it is gone, set_nice says so
    deadline = time.monotonic() + 60.0
    while Path(f"/proc/{worker.proc.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set_nice(worker.proc.pid, 0)


def test_set_nice_says_a_process_whose_threads_all_ended_meanwhile_is_gone(monkeypatch):
    """/proc still lists the threads of a process that is exiting (a forked
    worker until the zygote reaps it); when every one has ended before it
    could be changed, the process is gone, not re-niced."""
    from esg_plugin.local.platform import set_nice

    def gone(which, tid, nice):
        raise ProcessLookupError(tid)

    monkeypatch.setattr(os, "setpriority", gone)
    assert not set_nice(os.getpid(), os.getpriority(os.PRIO_PROCESS, 0))


def test_a_request_goes_to_the_worker_with_the_fewest_in_flight(platform):
    """Not behind a busy worker while another is idle, as round robin would
    send every other one (the planner's model: one queue per stage)."""
    busy = platform.acquire("echo")
    picked = []
    for _ in range(4):
        worker = platform.acquire("echo")
        picked.append(worker)
        platform.release(worker)
    platform.release(busy)
    assert busy not in picked and len(set(map(id, picked))) == 1
    # all idle: round robin among equals
    both = []
    for _ in range(2):
        worker = platform.acquire("echo")
        both.append(worker)
        platform.release(worker)
    assert both[0] is not both[1]


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


def test_when_one_new_worker_fails_to_start_none_is_left_running_and_the_rollout_tries_again(platform, tmp_path):
    fn = platform.functions["echo"]
    before = list(platform.spawned)
    (tmp_path / "broken").touch()
    platform.scale("echo", 4)
    wait_until(lambda: fn.errors > 0, 120)
    assert "exited at start: RuntimeError: broken on purpose" in fn.last_error
    started = platform.spawned[len(before):len(before) + 2]
    wait_until(lambda: all(gone(pid) for pid in started))  # the healthy one was stopped too
    assert len(fn.workers) >= 2  # the capacity that ran kept running
    platform.wait_converged("echo")  # the marker is gone: the retry succeeds
    assert len(fn.workers) == 4 and fn.last_error is None


def test_the_loop_keeps_deciding_while_a_restart_is_in_progress(platform, tmp_path):
    from esg_plugin.local import LocalActuator
    from esg_plugin.scaler import FunctionState

    fn = platform.functions["echo"]
    actuator = LocalActuator(platform)
    (tmp_path / "hold").touch()  # new workers stay in their start-up until the test lets them go
    try:
        changes = actuator.apply({"echo": FunctionState(2, 1, 0.0, 50)})  # a share change: a rolling restart
        assert [c.kind for c in changes] == ["gpu_share"]
        wait_until(lambda: len(fn.starting) == 1)  # surge one new worker at the new share ...
        assert [w.share for w in fn.workers] == [100, 100]  # ... while the old ones keep serving
        # the restart is held; the actuator still takes and reports new decisions at once
        changes = actuator.apply({"echo": FunctionState(3, 4, 5.0, 50)})
        assert {c.kind for c in changes} == {"replicas", "batching"} and fn.starting
        assert actuator.current(["echo"])["echo"] == FunctionState(3, 4, 5.0, 50)
        assert actuator.current(["echo"])["echo"].starting == 1  # three wanted, the two old ones serve
    finally:
        (tmp_path / "hold").unlink()
    platform.wait_converged("echo")
    assert [(w.share, w.batching) for w in fn.workers] == [(50, (4, 5.0))] * 3


def test_a_crashed_worker_is_replaced(platform):
    fn = platform.functions["echo"]
    crashed = fn.workers[0]
    crashed.proc.kill()
    wait_until(lambda: crashed not in fn.workers and len(fn.workers) == 2 and not fn.starting, 120)


def test_a_worker_whose_port_was_taken_before_it_bound_it_is_started_on_another(platform, monkeypatch):
    # what esg up met once: the port the platform chose became another
    # socket's before the worker could listen on it, and the start failed
    import esg_plugin.local.platform as module
    fn = platform.functions["echo"]
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1]]
    real = module.free_port
    monkeypatch.setattr(module, "free_port", lambda: ports.pop() if ports else real())
    try:
        platform.scale("echo", 3)
        platform.wait_converged("echo")
    finally:
        taken.close()
    assert len(fn.workers) == 3 and fn.last_error is None
    assert [w.port_attempts for w in fn.workers].count(1) == 1
    assert all(call_worker(w.port, "GET", C.HEALTH_PATH)[0] == 200 for w in fn.workers)


def test_a_workers_port_is_drawn_below_the_kernels_ephemeral_ports():
    from esg_plugin.local.platform import LISTEN_PORTS, ephemeral_ports, free_port
    first, last = ephemeral_ports()
    assert 0 < first <= last
    ports = [free_port() for _ in range(20)]
    if first - LISTEN_PORTS[0] > 1000:
        assert all(LISTEN_PORTS[0] <= port < first for port in ports)
    assert ephemeral_ports("/nonexistent") == (LISTEN_PORTS[1], 60999)


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
        conn.request("POST", "/system/scale-function/echo", body=b'{"replicas": 2}',
                     headers={"Authorization": f"Bearer {platform.token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 503 and "shut down" in json.loads(response.read())["error"]
        conn.close()
    finally:
        gateway.shutdown()
        gateway.server_close()


@pytest.mark.parametrize("headers, body, status", [
    ({"Content-Type": "application/json"}, b'{"replicas": 2}', 401),  # no token
    ({"Content-Type": "application/json", "Authorization": "Bearer wrong"}, b'{"replicas": 2}', 401),
    ({"Content-Type": "text/plain", "Authorization": "TOKEN"}, b'{"replicas": 2}', 415),  # a web form can send this
    ({"Content-Type": "application/json", "Authorization": "TOKEN"}, b'{"replicas": 1e30}', 400),
    ({"Content-Type": "application/json", "Authorization": "TOKEN"}, b'{"replicas": 17}', 400),  # over the bound
    ({"Content-Type": "application/json", "Authorization": "TOKEN"}, b'{"replicas": true}', 400),
    ({"Content-Type": "application/json", "Authorization": "TOKEN"}, b'[' * 10000, 400),
])
def test_the_gateway_refuses_a_scale_without_its_token_as_json_within_bounds(tmp_path, headers, body, status):
    from esg_plugin.local.platform import LocalPlatform

    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "handler.py").write_text(HANDLER)
    platform = LocalPlatform({"functions": {"echo": {"lang": "esg-python3", "handler": "echo"}}}, tmp_path,
                             tmp_path / "work")  # never started: a refusal must change nothing
    gateway = make_gateway_server(platform)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        headers = {k: (f"Bearer {platform.token}" if v == "TOKEN" else v) for k, v in headers.items()}
        conn = http.client.HTTPConnection("127.0.0.1", gateway.server_address[1], timeout=30)
        conn.request("POST", "/system/scale-function/echo", body=body, headers=headers)
        response = conn.getresponse()
        assert response.status == status and "error" in json.loads(response.read())
        assert platform.functions["echo"].state.replicas == 1
        conn.close()
    finally:
        gateway.shutdown()
        gateway.server_close()


def test_a_worker_that_logs_much_keeps_serving_and_its_log_is_kept(platform):
    """Workers write to a file each, not to a pipe nobody reads: 40 requests
    of 16 KB of log each (ten times a pipe's buffer) are all answered, and
    the lines are in the worker's log under the platform's logs folder."""
    gateway = make_gateway_server(platform)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        port = gateway.server_address[1]
        for _ in range(40):
            assert post(port, "/function/echo", b'{"loud": true}')[0] == 200
        logs = list(platform.logs.glob("echo.*.log"))
        assert len(logs) >= 2 and sum(p.read_text().count("log line") for p in logs) == 40
    finally:
        gateway.shutdown()
        gateway.server_close()


def ppid(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_workers_are_forked_from_the_zygote_unless_their_environment_differs_at_import(tmp_path):
    """A worker's start is mostly importing torch: the zygote has done it
    once and forks each worker (its parent); a worker whose environment
    sets a variable read at torch's import differently is a plain process
    of the platform. The workers it forked die with it; the rollout
    replaces them with plain processes."""
    platform = echo_platform(tmp_path)
    other = None
    try:
        fn = platform.functions["echo"]
        zygote = platform.zygote.proc.pid
        assert [ppid(w.proc.pid) for w in fn.workers] == [zygote, zygote]
        assert len(os.listdir(f"/proc/{zygote}/task")) == 1  # torch imported, no thread started: safe to fork
        status, _, body = call_worker(fn.workers[0].port, "GET", "/_esg/config")
        assert status == 200 and json.loads(body)["gpu_share"] == 100  # its own environment, not the zygote's
        forked = [w.proc.pid for w in fn.workers]
        platform.zygote.proc.kill()
        platform.zygote.proc.wait()
        wait_until(lambda: all(gone(pid) for pid in forked), 60)  # they die with it ...
        platform.scale("echo", 3)
        wait_until(lambda: len(fn.workers) == 3 and not fn.starting, 120)  # ... and plain processes take over
        assert all(ppid(w.proc.pid) == os.getpid() for w in fn.workers)
        (tmp_path / "other").mkdir()
        other = echo_platform(tmp_path / "other", OMP_WAIT_POLICY="PASSIVE")
        assert all(ppid(w.proc.pid) == os.getpid() for w in other.functions["echo"].workers)
    finally:
        platform.shutdown()
        if other is not None:
            other.shutdown()
    assert all(gone(pid) for pid in platform.spawned + other.spawned)


def test_a_worker_fits_the_zygote_only_where_every_variable_read_at_import_is_the_same():
    from esg_plugin.local.zygote import fits

    assert fits({"A": "1", "OMP_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "2"})
    assert not fits({"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "2"})
    assert not fits({}, {"GOMP_SPINCOUNT": "10000"}) and not fits({"CUDA_VISIBLE_DEVICES": "0"}, {})
