"""Seeded fuzzing of the surfaces hostile input reaches (issue 14): the
command line, the function runtime's HTTP surface, the scaler's metrics,
the router, gateway and runtime over sockets, the Lease's record, and what
the Kubernetes API says of the GPUs and of a function.
FUZZ_CASES sets the cases per surface (default: a few hundred, for `make
test`; `make fuzz` runs thousands and prints the figures)."""

import json
import os
import random
import re
import sys
import types

import pytest

from esg_plugin.control import MAX_RATE_RPS
from esg_plugin.runtime.app import RuntimeApp
from esg_plugin.runtime.settings import RuntimeSettings

from .. import fuzzing

CASES = int(os.environ.get("FUZZ_CASES", "0"))
SEED = int(os.environ.get("FUZZ_SEED", "14"))


def report(surface: str, runs: int, failures: list, slow: int = 0) -> None:
    print(f"\nfuzz {surface}: {runs} cases, {len(failures)} failures" + (f", {slow} over 10 s" if slow else ""),
          file=sys.stderr)
    for failure in failures[:20]:
        print("  " + failure, file=sys.stderr)


def test_the_command_line_never_tracebacks_hangs_or_succeeds_wrongly(tmp_path):
    rng = random.Random(SEED)
    failures, slow, runs = [], 0, CASES or 400
    cases = fuzzing.cli_cases(rng, tmp_path)
    for _ in range(runs):
        argv, what = next(cases)
        failure, seconds = fuzzing.check_cli(argv, what)
        slow += seconds > 10
        if failure:
            failures.append(failure)
    report("cli", runs, failures, slow)
    assert not failures


@pytest.fixture
def runtime_app():
    handler = types.ModuleType("fuzz_handler")
    exec(fuzzing.HANDLER_SOURCE, handler.__dict__)
    app = RuntimeApp(handler, RuntimeSettings(max_batch_size=4, max_queue=64, config_token="t0ken"))
    app.start()
    yield app
    app.drain(timeout_s=30)


def test_the_runtime_answers_every_hostile_request_with_a_status_and_a_reason(runtime_app):
    rng = random.Random(SEED)
    failures, runs = [], CASES * 5 or 3000
    requests = fuzzing.runtime_requests(rng, "t0ken")
    for _ in range(runs):
        environ, body, what = next(requests)
        failure = fuzzing.check_runtime(runtime_app, environ, body, what)
        if failure:
            failures.append(failure)
    # still serving, with a sane configuration
    status = []
    out = b"".join(runtime_app({"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": "2",
                                "wsgi.input": __import__("io").BytesIO(b"hi")}, lambda s, h: status.append(s)))
    assert status[0].startswith("200") and json.loads(out) == {"echo": "hi"}
    config = runtime_app.live.get()
    assert 1 <= config.max_batch_size <= 4096 and 0 <= config.max_wait_ms <= 60_000
    assert runtime_app.batcher.failure is None
    report("runtime", runs, failures)
    assert not failures


def test_the_scaler_believes_no_implausible_metric(monkeypatch):
    from esg_plugin.scaler import sources
    from esg_plugin.scaler.sources import GatewayScrape

    rng = random.Random(SEED)
    pages = fuzzing.metric_pages(rng)
    current = {}
    monkeypatch.setattr(sources, "_fetch", lambda url, timeout_s: current.get(url))
    source = GatewayScrape("http://gw/metrics", window_s=30.0, replicas=lambda: {"a": ["http://r1"]})
    # and as the sidecar reads several gateway replicas (gateway_pods): the page before is the other's
    several = GatewayScrape("http://gw/metrics", window_s=30.0, gateways=lambda: ["http://gw/metrics", "http://gw2"])
    failures, runs = [], CASES * 2 or 1000
    for i in range(runs):
        gateway, replica, what = next(pages)
        current.update({"http://gw/metrics": gateway, "http://r1": replica,
                        "http://gw2": current.get("http://gw/metrics")})
        try:
            seen = source.observe(float(i))
            sums = several.observe(float(i))
        except Exception as err:  # noqa: BLE001
            failures.append(f"{what}: {type(err).__name__}: {err}")
            continue
        if sums is not None:
            for rate in (*sums.rates_rps.values(), *sums.recent_rps.values()):
                if not 0 <= rate <= MAX_RATE_RPS:
                    failures.append(f"{what}: believed a rate of {rate} from several gateways")
        if seen is None:
            continue
        for rate in (*seen.rates_rps.values(), *seen.recent_rps.values()):
            if not 0 <= rate <= MAX_RATE_RPS:
                failures.append(f"{what}: believed a rate of {rate}")
        for codes in seen.codes.values():
            if any(not 0 <= v < float("inf") for v in codes.values()):
                failures.append(f"{what}: believed answers {codes}")
        for reading in seen.functions.values():
            for value in (reading.queue, reading.exec_ms, reading.batch_mean):
                if value is not None and not 0 <= value < float("inf"):
                    failures.append(f"{what}: believed a reading {reading}")
    report("metrics", runs, failures)
    assert not failures


def test_the_router_the_gateway_and_the_runtime_answer_hostile_requests_and_never_hang(tmp_path):
    """Raw hostile requests over real sockets to the workflow router, the
    embedded gateway (no function running: calls get 503) and a function
    runtime's server; afterwards each still answers a valid request."""
    import threading
    import urllib.request

    from esg_plugin.local import LocalPlatform, make_gateway_server
    from esg_plugin.router import Router, make_router_server
    from esg_plugin.scaler import Topology

    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "handler.py").write_text("def handle(event, context):\n    return 'x'\n")
    stack = {"functions": {"echo": {"lang": "esg-python3", "handler": "echo",
                                    "annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "100"}}}}
    platform = LocalPlatform(stack, tmp_path, tmp_path / "work")
    gateway = make_gateway_server(platform)
    router = make_router_server(Router(Topology.from_stack(stack), f"http://127.0.0.1:{gateway.server_address[1]}"))
    from wsgiref.simple_server import make_server

    from esg_plugin.runtime.server import QuietHandler, ThreadingWSGIServer

    handler = types.ModuleType("fuzz_handler")
    exec(fuzzing.HANDLER_SOURCE, handler.__dict__)
    app = RuntimeApp(handler, RuntimeSettings(max_batch_size=4, max_queue=64, config_token="t0ken"))
    app.start()
    function = make_server("127.0.0.1", 0, app, ThreadingWSGIServer, QuietHandler)
    servers = [gateway, router, function]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    rng = random.Random(SEED)
    runs = CASES or 150
    failures = []
    try:
        for server, paths in [(gateway, ["/function/echo", "/system/scale-function/echo", "/system/functions",
                                         "/metrics", "/healthz"]),
                              (router, ["/workflow/w", "/workflow/nope", "/metrics", "/healthz"]),
                              (function, ["/", "/_esg/config", "/_esg/health", "/_esg/metrics"])]:
            requests = fuzzing.raw_requests(rng, paths)
            for i in range(runs):
                data, what = next(requests)
                failure = fuzzing.check_raw(server.server_address[1], data, what)
                if failure:
                    failures.append(failure)
                if server is function and i % 10 == 0:  # valid requests among them: each answered, correctly
                    body = f"valid-{i}".encode()
                    request = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}/", data=body,
                                                     method="POST")
                    with urllib.request.urlopen(request, timeout=30) as r:
                        if json.loads(r.read()) != {"echo": body.decode()}:
                            failures.append(f"valid request {i}: a wrong answer")
            health = "/_esg/health" if server is function else "/healthz"
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}{health}", timeout=30) as r:
                assert r.status == 200
        assert platform.functions["echo"].state.replicas == 1  # nothing unauthorised changed it
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        app.drain(timeout_s=30)
    report("router, gateway and runtime over sockets", 3 * runs, failures)
    assert not failures


def test_a_hostile_lease_record_is_never_believed_out_of_range():
    """The Lease's record of what the law learned (``esg.io/learned``) may be
    written by anyone with the Lease's patch right: a real record mutated
    (hostile values, deletions, deep nesting) or text that is not a record,
    read as the scaler that takes the lease reads it — never an exception,
    and every value the law resumes inside its range."""
    from esg_plugin.control import ControlLaw, ControlSettings
    from esg_plugin.control.feedback import MAX_ROLLBACK_DOUBLINGS, WAIT_FACTOR_MAX
    from esg_plugin.model import Stage, Workflow
    from esg_plugin.scaler.actuators.lease import Lease
    from esg_plugin.synthetic import example_profiles

    rng = random.Random(SEED)
    workflow = Workflow.build("w", 80.0, [Stage("a", "resnet18"), Stage("b", "resnet50", ("a",))], hop_ms=1.0)
    law = ControlLaw([workflow], example_profiles(), ControlSettings())
    s = law.settings
    record = {"w": {"margin": 0.3, "boost": 1.44, "wait_factor": 2.0, "rollbacks": 2, "down_hold_s": 60.0,
                    "down_hold_rps": 120.0, "margin_rollbacks": 1, "margin_hold_s": 20.0}}
    lease = Lease(None, None, "openfaas-fn", "esg-scaler", 15.0, candidate="fuzz")
    failures, runs = [], CASES or 2000
    for i in range(runs):
        lease.said = fuzzing.raw_hostile_text(rng) if rng.random() < 0.2 else \
            fuzzing.dump(rng, fuzzing.mutate(rng, record), "json")
        what = f"case {i}: {lease.said[:80]!r}"
        state = law.new_state()
        try:
            parsed = lease.learned_record()
            if parsed is not None:
                law.resume(state, parsed, 100.0)
        except Exception as err:  # noqa: BLE001
            failures.append(f"{what}: {type(err).__name__}: {err}")
            continue
        ws = state.workflows.get("w")
        if ws is None:
            continue
        if not (s.slo_margin <= ws.margin <= s.max_margin and 1.0 <= ws.boost <= s.max_boost
                and 1.0 <= ws.wait_factor <= WAIT_FACTOR_MAX and 0 <= ws.rollbacks <= MAX_ROLLBACK_DOUBLINGS
                and isinstance(ws.rollbacks, int) and ws.down_hold_until_s <= 100.0 + 240.0
                and (ws.down_hold_rps is None or 0 < ws.down_hold_rps <= MAX_RATE_RPS)
                and 0 <= ws.margin_rollbacks <= MAX_ROLLBACK_DOUBLINGS and isinstance(ws.margin_rollbacks, int)
                and ws.margin_hold_until_s <= 100.0 + 240.0):
            failures.append(f"{what}: believed {ws}")
    report("lease record", runs, failures)
    assert not failures


def test_a_hostile_gpu_record_or_object_is_never_believed_out_of_range():
    """What the Kubernetes API says of the GPUs and of a function — HAMi's
    node registrations and pod allocations (annotations anyone who can
    annotate writes), a Deployment's replicas, batch settings and share —
    real records mutated (hostile values, deletions, deep nesting, fields
    replaced, cut or repeated) or text that is not a record, read as the actuators
    read them: a refusal (``Unreadable``) or values in range, never
    another exception."""
    from esg_plugin.limits import MAX_REPLICAS
    from esg_plugin.model import FunctionState
    from esg_plugin.runtime import contract as C
    from esg_plugin.runtime.settings import MAX_WAIT_MS_LIMIT
    from esg_plugin.scaler.actuators.base import said_state
    from esg_plugin.scaler.actuators.errors import Unreadable
    from esg_plugin.scaler.actuators.gpu_room import CORES, NODE_REGISTER, POD_ALLOCATED, free_pct

    rng = random.Random(SEED)
    listed = [{"id": "GPU-0", "count": 10, "devmem": 81920, "devcore": 100, "health": True, "type": "H100"},
              {"id": "GPU-1", "count": 4, "devmem": 32768, "devcore": 300, "health": True}]
    colon = "GPU-2,10,32768,100,NVIDIA-V100,0,true:GPU-3,10,81920,100,NVIDIA-H100,1,true,0,hami-core:"
    allocation = "GPU-0,NVIDIA,3000,30:GPU-2,NVIDIA,1000,50:;GPU-3,NVIDIA,1,100:;"
    # each range's edges and just past them: replicas, batch size, batch wait (ms), share (%)
    edges = [3, "4", 2.0, "12.5", 0, 1, 100, 101, "101", C.MAX_BATCH_SIZE, C.MAX_BATCH_SIZE + 1, MAX_REPLICAS,
             MAX_REPLICAS + 1, MAX_WAIT_MS_LIMIT, MAX_WAIT_MS_LIMIT + 0.5, -0.5, "0x10", " 7 "]

    def hostile_text(text: str) -> str:
        """``text`` with a field (between , : ;) replaced by a hostile value's text, cut, or doubled."""
        if rng.random() < 0.2:
            return fuzzing.raw_hostile_text(rng)
        parts = re.split(r"([,:;])", text)
        i = rng.randrange(len(parts))
        kind = rng.random()
        if kind < 0.6:
            parts[i] = str(rng.choice(fuzzing.HOSTILE_VALUES))
        elif kind < 0.8:
            del parts[i]
        else:
            parts.insert(i, parts[i] * rng.choice([2, 1000]))
        return "".join(parts)

    def node() -> object:
        if rng.random() < 0.5:
            return {NODE_REGISTER: fuzzing.dump(rng, fuzzing.mutate(rng, listed), "json")}
        return {NODE_REGISTER: hostile_text(colon)} if rng.random() < 0.9 else rng.choice([None, {}, {"x": "y"}])

    failures, runs = [], CASES or 2000
    for i in range(runs):
        nodes = [node() for _ in range(rng.randint(1, 3))]
        pods = [(rng.choice(["Running", "Pending", "Succeeded", None, "x" * 100]),
                 {POD_ALLOCATED: hostile_text(allocation) if rng.random() < 0.7 else allocation})
                for _ in range(rng.randint(0, 3))]
        memory = rng.choice([None, 16000, 1, 10**12])
        what = f"case {i}: nodes {str(nodes)[:80]!r} pods {str(pods)[:60]!r}"
        try:
            room = free_pct(nodes, pods, memory)
        except Unreadable:
            room = None
        except Exception as err:  # noqa: BLE001
            failures.append(f"{what}: {type(err).__name__}: {err}")
            continue
        if room is not None and not (isinstance(room, tuple) and all(
                isinstance(pct, int) and not isinstance(pct, bool) and 0 <= pct <= 100 for pct in room)):
            failures.append(f"{what}: believed {room!r}")
        # a function's object: what each place it is said says
        said = [rng.choice(fuzzing.HOSTILE_VALUES + edges) for _ in range(5)]
        as_text = [str(v) if rng.random() < 0.5 else v for v in said]
        try:
            state = said_state(("spec.replicas", as_text[0]), ("batch", as_text[1]), ("wait", as_text[2]),
                               rng.choice(["env", "hami"]), {CORES: as_text[3]}, {C.ENV_GPU_SHARE_PCT: as_text[4]})
        except Unreadable:
            continue
        except Exception as err:  # noqa: BLE001
            failures.append(f"case {i}: {as_text!r}: {type(err).__name__}: {err}")
            continue
        if not (isinstance(state, FunctionState) and 0 <= state.replicas <= MAX_REPLICAS
                and 1 <= state.batch_size <= C.MAX_BATCH_SIZE and 0 <= state.max_wait_ms <= MAX_WAIT_MS_LIMIT
                and 1 <= state.gpu_share <= 100):
            failures.append(f"case {i}: {as_text!r}: believed {state}")
    report("GPU records and function objects", runs, failures)
    assert not failures
