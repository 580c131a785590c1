"""The WSGI app and the GPU-share hooks, without a server."""

import io
import json
import os
import sys
import threading
import types

import pytest

from esg_plugin.runtime.app import RuntimeApp
from esg_plugin.runtime.settings import RuntimeSettings
from esg_plugin.runtime.gpu import (GpuTelemetry, GreenContextLimit, apply_share, choose_mechanism, cpu_allotment,
                                    sms_for, threads_for)
from esg_plugin.runtime.settings import SettingsError


def call(app, method="POST", path="/", body=b"", headers=None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "a=1&b=2",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    for key, value in (headers or {}).items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    captured = {}

    def start_response(status, headers):
        captured["status"], captured["headers"] = int(status.split()[0]), dict(headers)

    out = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], out


def handler_module(**functions):
    module = types.ModuleType("handler")
    for name, fn in functions.items():
        setattr(module, name, fn)
    return module


@pytest.fixture
def make_app():
    apps = []

    def make(handler, **env):
        app = RuntimeApp(handler, RuntimeSettings.from_env({k: str(v) for k, v in env.items()}))
        app.start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.drain(5)


@pytest.mark.parametrize("result, status, content_type, body", [
    ({"statusCode": 201, "body": {"ok": True}, "headers": {"X-Thing": "1"}}, 201, "application/json", b'{"ok": true}'),
    ("plain text", 200, "text/plain; charset=utf-8", b"plain text"),
    (b"\x00\x01", 200, "application/octet-stream", b"\x00\x01"),
    ([1, 2], 200, "application/json", b"[1, 2]"),
    (None, 200, "text/plain", b""),
    ({"statusCode": 302, "body": "", "headers": {"Content-Type": "text/html", "Location": "/x"}}, 302, "text/html", b""),
])
def test_results_are_formatted_as_python3_http_does(make_app, result, status, content_type, body):
    app = make_app(handler_module(handle=lambda event, context: result))
    code, headers, out = call(app)
    assert (code, headers["Content-Type"], out) == (status, content_type, body)
    assert headers["X-ESG-Batch-Size"] == "1"


def test_handle_sees_the_event_and_an_exception_fails_only_its_request(make_app):
    seen = []

    def handle(event, context):
        seen.append(event)
        if event.body == b"boom":
            raise RuntimeError("kaboom")
        return event.body.upper()

    app = make_app(handler_module(handle=handle))
    assert call(app, body=b"hi", headers={"X-Trace": "t1"})[2] == b"HI"
    code, _, out = call(app, body=b"boom")
    assert code == 500 and json.loads(out) == {"error": "RuntimeError: kaboom"}
    event = seen[0]
    assert (event.method, event.path, event.query, event.headers["X-Trace"]) == ("POST", "/", {"a": "1", "b": "2"}, "t1")


def test_a_handler_without_entry_points_is_refused():
    with pytest.raises(TypeError, match="neither handle_batch"):
        RuntimeApp(handler_module(), RuntimeSettings())


def test_reserved_paths(make_app):
    app = make_app(handler_module(handle=lambda e, c: "x"))
    assert call(app, "GET", "/_esg/health")[0] == 200
    assert call(app, "GET", "/_esg/nothing")[0] == 404
    code, headers, _ = call(app, "DELETE", "/_esg/config")
    assert code == 405 and headers["Allow"] == "GET, PUT"
    app.drain(5)
    assert call(app, "GET", "/_esg/health")[0] == 503
    assert call(app)[0] == 503


def test_put_config_validation(make_app):
    app = make_app(handler_module(handle=lambda e, c: "x"), ESG_CONFIG_TOKEN="tok")
    auth = {"Authorization": "Bearer tok"}
    for body, message in [(b"not json", "JSON object"), (b"{}", "non-empty"), (b'{"colour": 1}', "unknown field"),
                          (b'{"max_wait_ms": -1}', "max_wait_ms"), (b'{"gpu_share": 101}', "gpu_share")]:
        code, _, out = call(app, "PUT", "/_esg/config", body, auth)
        assert code == 400 and message in json.loads(out)["error"], body
    code, _, out = call(app, "PUT", "/_esg/config", b'{"max_wait_ms": 7}', auth)
    assert code == 200 and json.loads(out) == {
        "config": {"max_batch_size": 1, "max_wait_ms": 7.0, "gpu_share": 100, "max_queue": 1024},
        "restart_required": False}


def test_a_cpu_share_changes_live_in_the_thread_that_runs_the_batches():
    from esg_plugin.runtime.gpu import CpuShare

    calls = []

    class FakeTorch:
        @staticmethod
        def set_num_threads(n):
            calls.append((threading.current_thread().name, n))

    share = CpuShare(50, 4.0, FakeTorch)
    assert share.set(100) == 4 and calls == []  # nothing until the next batch ...

    def batches():
        for _ in range(3):
            with share():
                pass
    worker = threading.Thread(target=batches, name="batcher")
    worker.start()
    worker.join()
    assert calls == [("batcher", 4)]  # ... then once, in the batch's thread (torch's count is per thread)
    with share():
        pass
    assert calls[-1] == (threading.current_thread().name, 4)  # another thread sets its own count
    assert share.set(10) == 1  # at least one thread


def test_the_warm_up_runs_in_a_thread_that_ends_and_its_failure_reaches_the_caller():
    from esg_plugin.runtime.server import in_passing_thread

    seen = []
    in_passing_thread(lambda: seen.append(threading.current_thread()))
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()

    def broken():
        raise RuntimeError("model file missing")
    with pytest.raises(RuntimeError, match="model file missing"):
        in_passing_thread(broken)


def test_a_connection_waiting_for_a_head_is_either_reaped_or_taken_back_never_both():
    """The race CI met: a head read as the drain reaped its connection was run,
    and its answer went to a socket already shut down."""
    import socket
    from esg_plugin.runtime.server import Connections

    connections = Connections()
    reaped, reaped_peer = socket.socketpair()
    kept, kept_peer = socket.socketpair()
    with reaped, reaped_peer, kept, kept_peer:
        connections.waiting(reaped)
        connections.waiting(kept)
        assert connections.done_waiting(kept) is True     # head in hand first: the request is the thread's
        assert connections.close_waiting() == 1           # the reaper takes only the one still waiting
        assert connections.done_waiting(reaped) is False  # its head, if any came, must not run
        assert reaped_peer.recv(1) == b""                 # its client sees the close
        kept.sendall(b"HTTP/1.1 200 OK")                  # the kept one still answers
        assert kept_peer.recv(64) == b"HTTP/1.1 200 OK"
        assert connections.close_waiting() == 0


@pytest.mark.parametrize("reaped", [False, True])
def test_a_head_read_as_its_connection_is_reaped_is_not_run(reaped):
    """The server's side of the handoff above: the reaper firing between a
    request head's arrival and its thread taking the connection back (the
    race, made certain by reaping inside ``parse_request``) makes the head
    no request; without the reaper the same head is one."""
    import socket
    import types
    from esg_plugin.runtime.server import Connections, QuietHandler

    a, b = socket.socketpair()
    with a, b:
        handler = object.__new__(QuietHandler)  # no __init__: it would serve the connection at once
        handler.server = types.SimpleNamespace(connections=Connections())
        handler.connection, handler.rfile = a, a.makefile("rb")

        def parse_request(self):
            head = QuietHandler.parse_request(self)
            if reaped:
                self.server.connections.close_waiting()
            return head
        handler.parse_request = types.MethodType(parse_request, handler)
        b.sendall(b"POST / HTTP/1.1\r\nHost: esg\r\nContent-Length: 0\r\n\r\n")
        assert handler._read_head() is (not reaped)
        handler.rfile.close()


def test_a_share_put_is_live_where_the_runtime_can_reshare_and_a_restart_elsewhere():
    handler = handler_module(handle=lambda e, c: "x")
    auth = {"Authorization": "Bearer tok"}
    given = []
    live = RuntimeApp(handler, RuntimeSettings.from_env({"ESG_CONFIG_TOKEN": "tok", "ESG_GPU_SHARE": "50"}),
                      reshare=lambda pct: given.append(pct) or 1)
    code, _, out = call(live, "PUT", "/_esg/config", b'{"gpu_share": 20}', auth)
    doc = json.loads(out)
    assert code == 200 and doc["restart_required"] is False and doc["config"]["gpu_share"] == 20 and given == [20]
    assert "esg_gpu_share_percent 20.0" in call(live, "GET", "/_esg/metrics")[2].decode()
    fixed = RuntimeApp(handler, RuntimeSettings.from_env({"ESG_CONFIG_TOKEN": "tok", "ESG_GPU_SHARE": "50"}))
    doc = json.loads(call(fixed, "PUT", "/_esg/config", b'{"gpu_share": 20}', auth)[2])
    assert doc["restart_required"] is True and doc["config"]["gpu_share"] == 50 and doc["config"]["pending_gpu_share"] == 20
    with pytest.raises(SettingsError, match="ESG_LIVE_SHARE"):
        RuntimeSettings.from_env({"ESG_LIVE_SHARE": "yes"})
    assert RuntimeSettings.from_env({}).live_share and not RuntimeSettings.from_env({"ESG_LIVE_SHARE": "0"}).live_share


def test_openmp_threads_spin_briefly_unless_the_environment_says_otherwise(monkeypatch):
    from esg_plugin.runtime.gpu import OMP_SPIN_COUNT

    for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    env = {}
    apply_share(50, env, cpu_count=2)
    assert env["GOMP_SPINCOUNT"] == str(OMP_SPIN_COUNT)
    monkeypatch.delenv("GOMP_SPINCOUNT")
    env = {"OMP_WAIT_POLICY": "PASSIVE"}  # the user's choice stands
    apply_share(50, env, cpu_count=2)
    assert "GOMP_SPINCOUNT" not in env


def test_gpu_share_hooks_without_a_gpu(monkeypatch):
    env = {}
    if "torch" in sys.modules or _has_torch():
        report = apply_share(50, env, cpu_count=4)
        import torch

        if torch.cuda.is_available():  # pragma: no cover - only on a GPU machine
            assert report.device == "cuda" and report.torch_memory_fraction == 0.5
        else:
            assert report.device == "cpu" and report.torch_threads == 2 and torch.get_num_threads() == 2
    else:
        report = apply_share(50, env)
        assert report.device == "none"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == str(threads_for(50, 4)) == "2"
    telemetry = GpuTelemetry()
    if not telemetry.available:
        assert telemetry.read() is None


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_threads_follow_the_cpu_allotment(tmp_path):
    assert [threads_for(s, 2) for s in (10, 50, 99, 100)] == [1, 1, 1, 2]
    assert threads_for(100, 0.5) == 1 and threads_for(50, 8) == 4
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # a Kubernetes limit of 1.5 CPUs
    assert cpu_allotment(str(quota)) == min(1.5, len(os.sched_getaffinity(0)))
    quota.write_text("max 100000\n")
    assert cpu_allotment(str(quota)) == len(os.sched_getaffinity(0))
    assert cpu_allotment(str(tmp_path / "absent")) == len(os.sched_getaffinity(0))


def test_health_is_503_once_the_batching_thread_died(make_app):
    app = make_app(handler_module(handle=lambda e, c: "x"))
    assert call(app, "GET", "/_esg/health")[0] == 200
    app.batcher.failure = RuntimeError("boom")  # as the supervisor records it
    code, _, out = call(app, "GET", "/_esg/health")
    assert code == 503 and "batching thread died" in json.loads(out)["error"]
    code, _, out = call(app, "POST", "/", b"{}")
    assert code == 503 and "batching thread failed" in json.loads(out)["error"]


def test_bodies_in_flight_are_bounded(make_app, monkeypatch):
    """Bodies held at once are bounded: a request whose body would pass the
    budget gets 429 before its body is read; a full queue too."""
    from esg_plugin.runtime.contract import MAX_BODY_BYTES

    app = make_app(handler_module(handle=lambda e, c: "x"), ESG_MAX_QUEUE=1)
    app.bodies.limit_bytes = 100
    app.bodies.take(90)  # others hold 90 bytes
    stream = io.BytesIO(b"y" * 50)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": "50", "wsgi.input": stream}
    status = []
    out = b"".join(app(environ, lambda s, h: status.append((s, dict(h)))))
    assert status[0][0].startswith("429") and status[0][1]["Retry-After"] == "1"
    assert stream.tell() == 0 and "bodies in flight" in json.loads(out)["error"]  # not read
    app.bodies.give(90)
    assert call(app, "POST", "/", b"y" * 50)[0] == 200
    assert app.bodies.held_bytes == 0  # given back after the request
    code, _, out = call(app, "POST", "/", b"z" * (MAX_BODY_BYTES + 1))
    assert code == 413


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND"])
def test_methods_the_handler_does_not_take_get_405(make_app, method):
    app = make_app(handler_module(handle=lambda e, c: "x"))
    code, headers, out = call(app, method, "/")
    assert code == 405 and "POST" in headers["Allow"] and "not allowed" in json.loads(out)["error"]


def test_a_chunked_body_is_decoded_and_a_malformed_one_is_400(make_app):
    app = make_app(handler_module(handle=lambda e, c: {"statusCode": 200, "body": {"got": e.body.decode()}}))
    for body, code in [(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", 200), (b"zz\r\nhello", 400),
                       (b"5\r\nhel", 400)]:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "HTTP_TRANSFER_ENCODING": "chunked",
                   "wsgi.input": io.BytesIO(body)}
        status = []
        out = b"".join(app(environ, lambda s, h: status.append(s)))
        assert int(status[0].split()[0]) == code, (body, out)
        if code == 200:
            assert json.loads(out) == {"got": "hello world"}


@pytest.mark.parametrize("requested, share, mps, green, chosen", [
    ("auto", 30, True, True, "mps"),                 # an MPS server runs: it limits the kernels
    ("auto", 30, False, True, "green-context"),      # no daemon: the share's SMs in-process
    ("auto", 30, False, False, "memory-fraction"),   # neither: say that nothing limits the kernels
    ("auto", 100, False, True, "memory-fraction"),   # the whole GPU: nothing to partition
    ("mps", 30, False, True, "mps"),                 # asked for by name
    ("green-context", 30, True, False, "green-context"),  # asked for by name (fails at start if unsupported)
])
def test_the_share_mechanism_on_a_gpu(requested, share, mps, green, chosen):
    assert choose_mechanism(requested, share, mps, green) == chosen


def test_a_share_asks_for_its_part_of_the_multiprocessors_rounded_up():
    assert [sms_for(s, 132) for s in (1, 10, 20, 30, 50, 100)] == [2, 14, 27, 40, 66, 132]
    assert sms_for(1, 10) == 1 and sms_for(100, 10) == 10


def test_an_unknown_share_mechanism_is_refused():
    with pytest.raises(SettingsError, match="ESG_GPU_SHARE_MECHANISM must be one of auto, mps, green-context"):
        RuntimeSettings.from_env({"ESG_GPU_SHARE_MECHANISM": "vgpu"})
    assert RuntimeSettings.from_env({}).share_mechanism == "auto"


class _FakeTorch:
    """Torch's green-context API in its two shapes: a stream of the context
    (2.12 on) or pushing the context on the thread (2.8-2.11)."""

    def __init__(self, with_stream):
        self.log = []
        log = self.log

        class Context:
            if with_stream:
                def Stream(self):  # noqa: N802 - torch's name
                    return "green-stream"
            else:
                def set_context(self):
                    log.append("push")

                def pop_context(self):
                    log.append("pop")

        class GreenContext:
            @staticmethod
            def create(num_sms, device_id):
                log.append(("create", num_sms, device_id))
                return Context()

        class Cuda:
            green_contexts = types.SimpleNamespace(GreenContext=GreenContext)

            @staticmethod
            def stream(s):
                import contextlib

                @contextlib.contextmanager
                def on():
                    log.append(("enter", s))
                    try:
                        yield
                    finally:
                        log.append(("leave", s))
                return on()

        self.cuda = Cuda


@pytest.mark.parametrize("with_stream", [True, False])
def test_a_green_context_wraps_each_batch_whichever_torch_api(with_stream):
    torch = _FakeTorch(with_stream)
    limit = GreenContextLimit(torch, 40)
    with limit():
        torch.log.append("kernels")
    inside = [("enter", "green-stream"), "kernels", ("leave", "green-stream")] if with_stream else ["push", "kernels", "pop"]
    assert torch.log == [("create", 40, 0)] + inside
    with pytest.raises(RuntimeError):  # an error in the batch still leaves the context
        with limit():
            raise RuntimeError("boom")
    assert torch.log[-1] == (("leave", "green-stream") if with_stream else "pop")


def test_the_runtime_runs_every_batch_inside_the_share_limit(make_app):
    import contextlib

    seen = []

    @contextlib.contextmanager
    def limit():
        seen.append("in")
        yield
        seen.append("out")

    def handle_batch(events, context):
        seen.append(len(events))
        return ["ok"] * len(events)

    from esg_plugin.runtime.app import Context, batch_runner

    run = batch_runner(handler_module(handle_batch=handle_batch), Context("h"), limit)
    assert run(["a", "b"]) == ["ok", "ok"] and seen == ["in", 2, "out"]


def test_a_cuda_process_dispatches_with_its_cpu_threads_or_one():
    from esg_plugin.runtime.gpu import gpu_host_threads

    assert gpu_host_threads(None) == 1 and gpu_host_threads(4) == 4 and gpu_host_threads(2.5) == 2
    assert gpu_host_threads(0.5) == 1


def test_a_cpu_instance_says_how_busy_its_share_cores_were_while_it_executed():
    """``esg_exec_cpu_seconds``: the processor time of the batches over the
    cores the share allots — a handler that burns the CPU for its whole
    batch at a 50% share of 2 cores counts about its execution time; one
    that waits (sleeps) counts next to nothing. A GPU instance exports none."""
    import time as clock

    def burn(event, context):
        end = clock.thread_time() + 0.05
        while clock.thread_time() < end:
            pass
        return "burnt"

    def wait(event, context):
        clock.sleep(0.05)
        return "waited"

    def counted(app):
        text = app.metrics.render()[0].decode()
        values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                  if line.startswith(("esg_exec_cpu_seconds_total", "esg_exec_seconds_sum"))}
        return values.get("esg_exec_cpu_seconds_total"), values["esg_exec_seconds_sum"]

    apps = []
    try:
        for handle, cores in ((burn, 2.0), (wait, 2.0), (burn, None)):
            app = RuntimeApp(handler_module(handle=handle), RuntimeSettings.from_env({"ESG_GPU_SHARE": "50"}),
                             cpu_cores=cores)
            app.start()
            apps.append(app)
            for _ in range(3):
                assert call(app, body=b"x")[0] == 200
        burnt, waited, gpu = (counted(app) for app in apps)
        # the burn's processor time is its own (the test's other threads may add a little)
        assert 0.1 <= burnt[0] and burnt[0] <= burnt[1] * 1.5
        assert waited[0] < 0.5 * waited[1]
        assert gpu[0] in (None, 0.0)
    finally:
        for app in apps:
            app.drain(timeout_s=5.0)


@pytest.mark.parametrize("value, status", [("12.5", 200), ("0", 200), ("-1", 400), ("nan", 400), ("soon", 400),
                                           ("1e12", 400)])
def test_the_downstream_header_is_a_number_of_ms_in_range_or_a_400(make_app, value, status):
    """``X-ESG-Downstream-Ms`` (what the plan expects after this stage) is
    believed only as a number of milliseconds in [0, an hour]; anything else
    is a 400 with a JSON reason, and the request is not queued."""
    app = make_app(handler_module(handle=lambda event, context: "ok"))
    code, _, body = call(app, body=b"x", headers={"X-ESG-Downstream-Ms": value})
    assert code == status
    if status == 400:
        assert "X-ESG-Downstream-Ms" in json.loads(body)["error"]
