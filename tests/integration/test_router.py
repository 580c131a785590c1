"""The standalone workflow router against a gateway-like HTTP server."""

import contextlib
import importlib.util
import json
import threading
import urllib.error
import urllib.request
import time
import types
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from esg_plugin.runtime import contract as C

from esg_plugin.jsonhttp import JsonRequestHandler
from esg_plugin.router import Router, make_router_server
from esg_plugin.scaler import Topology

pytestmark = pytest.mark.integration


def gateway(shared: bool = False):
    """/function/<name>: answers {"path": [...stages seen...]}, after 20 ms
    (``shared``: 20 ms per call in flight, as calls sharing one processor)."""
    busy = [0]
    lock = threading.Lock()

    class Handler(JsonRequestHandler):
        def do_POST(self):  # noqa: N802
            name = self.path.rsplit("/", 1)[-1]
            doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            with lock:
                busy[0] += 1
                running = busy[0]
            time.sleep(0.02 * (running if shared else 1))
            with lock:
                busy[0] -= 1
            if name.startswith("answers-"):  # a stage that fails with the status in its name
                return self._json(int(name.rsplit("-", 1)[1]), {"error": "as asked"})
            if name == "deep":  # a stage whose answer is JSON nested deeper than json.loads follows
                return self._send(200, b"[" * 3000 + b"]" * 3000)
            if name == "join":  # a fan-out branch arrives as {"outputs": [...]}
                branches = [b.get("path") or b["outputs"][0]["path"] for b in doc["inputs"].values()]
                seen = sorted(s for path in branches for s in path)
            elif "outputs" in doc:
                seen = doc["outputs"][0]["path"]
            else:
                seen = doc.get("path", [])
            # as the runtime: the request's time in the queue and its batch's execution
            self._send(200, json.dumps({"path": seen + [name]}).encode(),
                       headers=[(C.QUEUE_MS_HEADER, "1.5"), (C.EXEC_MS_HEADER, str(len(name)))])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_small_pool_never_deadlocks_under_concurrent_fan_out():
    stack = {"functions": {
        "head": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "10000"}},
        "left": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "head", "com.esg.fanout": "2"}},
        "right": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "head"}},
        "join": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "left,right"}},
    }}
    server = gateway()
    router = Router(Topology.from_stack(stack), f"http://127.0.0.1:{server.server_address[1]}", threads=2)
    try:
        with ThreadPoolExecutor(8) as clients:
            futures = [clients.submit(router.run, "w", b'{"path": []}', "application/json") for _ in range(8)]
            results = [f.result(timeout=60) for f in futures]  # nested waits on a 2-thread pool would hang here
        for status, doc in results:
            assert status == 200
            assert doc["output"]["path"] == ["head", "head", "left", "right", "join"]
            # where the time went, per stage: the runtime's queue and execution times
            assert doc["stages_ms"] == {s: {"queue_ms": 1.5, "exec_ms": float(len(s))}
                                        for s in ("head", "left", "right", "join")}
        # the rest is the hops: per request, latency less the stages along the longest path, over its 2 edges
        from esg_plugin.scaler.sources import HOP_COUNTERS, parse_samples

        from prometheus_client import generate_latest

        samples = {name: value for name, labels, value in parse_samples(generate_latest(router.registry).decode())
                   if name in HOP_COUNTERS and labels.get("workflow") == "w"}
        in_stages_ms = (1.5 + 4) + (1.5 + 5) + (1.5 + 4)  # head, then right (5 > left's 4), then join
        hops_ms = [(doc["latency_ms"] - in_stages_ms) / 2 for _, doc in results]
        assert samples[HOP_COUNTERS[0]] == 8.0
        assert samples[HOP_COUNTERS[1]] * 1000.0 == pytest.approx(sum(max(0.0, h) for h in hops_ms), abs=0.01)
    finally:
        server.shutdown()
        server.server_close()


FAILURES = [  # what a stage answers -> what the client gets, and the SLO label
    (500, 502, "error"),
    (504, 504, "missed"),
    (429, 429, "rejected"),
]


def head_then(tail_function: str) -> dict:
    """A stack of two stages, ``head`` then ``tail`` (run by ``tail_function``)."""
    return {"functions": {
        "head": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "10000"}},
        tail_function: {"annotations": {"com.esg.workflow": "w", "com.esg.stage": "tail", "com.esg.after": "head"}},
    }}


@contextlib.contextmanager
def routed(stack: dict):
    """The router over ``stack``, in front of :func:`gateway`: its base URL."""
    server = gateway()
    router = Router(Topology.from_stack(stack), f"http://127.0.0.1:{server.server_address[1]}")
    front = make_router_server(router)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{front.server_address[1]}"
    finally:
        front.shutdown()
        front.server_close()
        server.shutdown()
        server.server_close()


def refused(url: str) -> urllib.error.HTTPError:
    """The error answer to a request for workflow ``w`` at ``url``."""
    request = urllib.request.Request(f"{url}/workflow/w", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    return caught.value


@pytest.mark.parametrize("stage_status, client_status, slo", FAILURES)
def test_a_failing_stage_is_named_with_the_status_the_client_expects(stage_status, client_status, slo):
    with routed(head_then(f"answers-{stage_status}")) as url:
        error = refused(url)
        assert error.code == client_status
        answer = json.loads(error.read())
        assert answer["stage"] == "tail"
        assert answer.get(C.REJECTED_BY) == (C.REJECTED_BY_STAGE if client_status == 429 else None)
        assert (error.headers.get("Retry-After") is not None) == (client_status == 429)
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=30).read()
        assert f'esg_workflow_requests_total{{slo="{slo}",workflow="w"}} 1.0' in metrics.decode()


def test_a_stage_answering_json_nested_too_deeply_to_parse_gets_a_502_with_a_reason():
    """A stage's answer that ``json.loads`` cannot follow (its
    ``RecursionError``: ``jsontext.py``) is a stage that answered invalid
    JSON — 502 with a JSON reason — not a request left without an answer."""
    with routed(head_then("deep")) as url:
        error = refused(url)
        assert error.code == 502 and "invalid JSON" in json.loads(error.read())["error"]


@pytest.mark.parametrize("stage_status, client_status, slo", FAILURES)
def test_the_router_function_answers_a_failing_stage_the_same_way(stage_status, client_status, slo, monkeypatch):
    server = gateway()
    monkeypatch.setenv("gateway_url", f"http://127.0.0.1:{server.server_address[1]}")
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "template/esg-python3"))  # esg_runtime, as in the function's image
    path = root / "functions/router/handler.py"
    spec = importlib.util.spec_from_file_location("router_function", path)
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    workflow = {"slo_ms": 10000, "stages": {
        "head": {"function": "head", "after": [], "fanout": 1},
        "tail": {"function": f"answers-{stage_status}", "after": ["head"], "fanout": 1}}}
    try:
        status, doc = handler.run("w", workflow, b"{}", "application/json")
        assert status == client_status and doc["stage"] == "tail"
    finally:
        server.shutdown()
        server.server_close()


def test_admission_sheds_at_the_entry_with_429_when_answers_come_late():
    """A stage that serves calls in 20 ms each, sharing its processor (20 ms
    per call in flight), against a 50 ms SLO: alone a request takes 20 ms;
    8 at once are late because of each other — the admission limit falls,
    and requests beyond it are refused at once with Retry-After, without
    reaching a stage."""
    from esg_plugin.control.admission import AdmissionSettings

    stack = {"functions": {"head": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "50"}}}}
    server = gateway(shared=True)
    router = Router(Topology.from_stack(stack), f"http://127.0.0.1:{server.server_address[1]}",
                    admission=AdmissionSettings(window=4, max_limit=8))
    router_server = make_router_server(router)
    threading.Thread(target=router_server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{router_server.server_address[1]}/workflow/w"
    try:
        for _ in range(4):  # one at a time: the latency without load
            router.run("w", b"{}", "application/json")
        with ThreadPoolExecutor(8) as clients:
            for _ in range(6):  # late answers from up to 8 in flight: the limit shrinks
                list(clients.map(lambda _: router.run("w", b"{}", "application/json"), range(8)))
        limit = router.limits[router.admission.scope_of("w")]
        assert limit.limit < 8
        held = [limit.admit(i) for i in range(8)]
        assert held.count(True) == int(limit.limit)
        router.in_flight["w"] = 8  # as if 8 were running: the next is shed at the entry
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=30)
            raise AssertionError("expected 429")
        except urllib.error.HTTPError as err:
            assert err.code == 429 and err.headers["Retry-After"] == "1"
            answer = json.loads(err.read())
            assert "admission limit" in answer["error"] and answer[C.REJECTED_BY] == C.REJECTED_BY_IN_FLIGHT
        finally:
            router.in_flight["w"] = 0
        metrics = urllib.request.urlopen(url.replace("/workflow/w", "/metrics"), timeout=30).read().decode()
        assert 'esg_workflow_requests_total{slo="shed",workflow="w"}' in metrics
        assert 'esg_workflow_admission_limit{workflow="w"}' in metrics
    finally:
        router_server.shutdown()
        router_server.server_close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("scope, partitioned", [("machine", True), ("machine", False), ("workflow", True)])
def test_one_limit_for_the_machine_sheds_every_workflow_that_shares_it(scope, partitioned):
    """With the machine's scope, requests in flight of one workflow count
    against the other's admission too — but a workflow below its part of
    the shared limit is admitted at it (``partitioned``); with the
    workflow's scope, they do not count."""
    from esg_plugin.control.admission import AdmissionSettings

    stack = {"functions": {"a": {"annotations": {"com.esg.workflow": "wa", "com.esg.slo-ms": "1000"}},
                           "b": {"annotations": {"com.esg.workflow": "wb", "com.esg.slo-ms": "1000"}}}}
    server = gateway()
    router = Router(Topology.from_stack(stack), f"http://127.0.0.1:{server.server_address[1]}",
                    admission=AdmissionSettings(window=4, max_limit=4, scope=scope, partitioned=partitioned))
    try:
        router.in_flight["wa"] = 4  # workflow wa's burst fills the limit of 4
        status, doc = router.run("wb", b"{}", "application/json")
        if scope == "machine" and not partitioned:
            assert status == 429 and "the workflows are at the admission limit of 4" in doc["error"]
        else:
            assert status == 200, doc  # wb had none of its part (2 of 4) in flight, or a limit of its own
        router.in_flight["wb"] = 2  # wb holds its part now
        status, doc = router.run("wb", b"{}", "application/json")
        if scope == "machine":
            assert status == 429 and "the workflows are at the admission limit of 4" in doc["error"]
            assert ("workflow 'wb' holds its part of it (2)" in doc["error"]) == partitioned
        else:
            assert status == 200, doc
        router.in_flight["wa"] = 1  # below the limit: anyone, beyond its part too
        assert router.run("wb", b"{}", "application/json")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_a_v2_request_for_a_workflow_that_is_not_a_chain_is_refused_with_a_reason():
    stack = {"functions": {
        "head": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "1000"}},
        "left": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "head"}},
        "right": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "head"}},
        "join": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "left,right"}},
    }}
    server = gateway()
    router = Router(Topology.from_stack(stack), f"http://127.0.0.1:{server.server_address[1]}")
    router_server = make_router_server(router)
    threading.Thread(target=router_server.serve_forever, daemon=True).start()
    try:
        body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}'
        request = urllib.request.Request(f"http://127.0.0.1:{router_server.server_address[1]}/v2/models/w/infer",
                                         data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30)
            raise AssertionError("expected 400")
        except urllib.error.HTTPError as err:
            assert err.code == 400 and "not a chain" in json.loads(err.read())["error"]
    finally:
        router_server.shutdown()
        router_server.server_close()
        server.shutdown()
        server.server_close()


def one_stage_router(server, now: list) -> Router:
    """A router for workflow "w" (one stage, a 1-s SLO) through ``server``, on the clock ``now[0]``."""
    stack = {"functions": {"a": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "1000"}}}}
    return Router(Topology.from_stack(stack), f"http://127.0.0.1:{server.server_address[1]}", clock=lambda: now[0])


def test_a_workflow_over_the_nodes_capacity_admits_the_planned_rate_and_sheds_the_rest_with_429():
    """``set_admit_rates`` (the control law's ``admit_rps`` under ``esg up``):
    beyond the rate, 429 at once with the reason, counted as shed (offered
    load the scaler still sees); without it, everything is admitted again."""
    server = gateway()
    now = [100.0]
    router = one_stage_router(server, now)
    try:
        router.set_admit_rates({"w": 2.0, "unknown": 5.0, "nan": float("nan")})
        assert set(router.rate_limits) == {"w"}
        burst = int(router.rate_limits["w"].burst)
        codes = [router.run("w", b"{}", "application/json") for _ in range(burst + 2)]
        assert [c for c, _ in codes] == [200] * burst + [429, 429]  # the bucket, then nothing until time passes
        assert "over what the node can serve" in codes[-1][1]["error"] and codes[-1][1]["retry_after_s"] >= 1
        assert codes[-1][1][C.REJECTED_BY] == C.REJECTED_BY_RATE
        now[0] += 0.5
        assert router.run("w", b"{}", "application/json")[0] == 200
        from prometheus_client import generate_latest

        metrics = generate_latest(router.registry).decode()
        assert 'esg_workflow_requests_total{slo="shed",workflow="w"} 2.0' in metrics
        router.set_admit_rates({})
        assert all(router.run("w", b"{}", "application/json")[0] == 200 for _ in range(4))
    finally:
        server.shutdown()
        server.server_close()


def test_the_router_counts_the_gaps_between_arrivals_admitted_or_shed():
    """The gaps between a workflow's arrivals (count, sum, sum of squares),
    shed requests included, are what the scaler reads its burstiness from:
    their cv² from the exported counters is the gaps' own."""
    from prometheus_client import generate_latest

    from esg_plugin.control import gap_cv2
    from esg_plugin.scaler.sources import GAP_COUNTERS, parse_samples

    server = gateway()
    now = [100.0]
    router = one_stage_router(server, now)
    try:
        router.set_admit_rates({"w": 1.0})  # most of the bursts are shed: they still arrived
        gaps = ([0.0] * 4 + [2.0]) * 6  # bursts of five every two seconds
        for gap in gaps:
            now[0] += gap
            router.run("w", b"{}", "application/json")
        samples = {name: value for name, labels, value in parse_samples(generate_latest(router.registry).decode())
                   if name in GAP_COUNTERS and labels.get("workflow") == "w"}
        count, total, squares = (samples[name] for name in GAP_COUNTERS)
        assert count == len(gaps) - 1  # the first arrival has no gap before it
        mean = sum(gaps[1:]) / len(gaps[1:])
        variance = sum((g - mean) ** 2 for g in gaps[1:]) / len(gaps[1:])
        assert gap_cv2(count, total, squares) == pytest.approx(variance / mean ** 2)
        assert gap_cv2(count, total, squares) > 3.0  # Poisson would be 1
    finally:
        server.shutdown()
        server.server_close()


def test_the_router_function_exports_the_workflow_counters_beside_the_runtimes(monkeypatch):
    """The cluster's router (a function on the esg-python3 runtime) counts
    what ``esg_plugin.router`` counts — answers by SLO outcome and the gaps
    between arrivals — on the runtime's /_esg/metrics, beside the runtime's
    own, where the job in deploy/prometheus scrapes every function."""
    import io

    from esg_plugin.scaler.sources import GAP_COUNTERS, HOP_COUNTERS, parse_samples

    server = gateway()
    monkeypatch.setenv("gateway_url", f"http://127.0.0.1:{server.server_address[1]}")
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "template/esg-python3"))  # esg_runtime, as in the function's image
    spec = importlib.util.spec_from_file_location("router_function_metrics", root / "functions/router/handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    from esg_runtime.app import RuntimeApp
    from esg_runtime.settings import RuntimeSettings

    def stages(tail):
        return {"head": {"function": "head", "after": [], "fanout": 1},
                "tail": {"function": tail, "after": ["head"], "fanout": 1}}

    monkeypatch.setattr(handler, "workflows", lambda: {"w": {"slo_ms": 10000, "stages": stages("tail")},
                                                        "v": {"slo_ms": 10000, "stages": stages("answers-504")}})
    app = RuntimeApp(handler, RuntimeSettings())
    app.start()

    def call(method, path, body=b""):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
        status = []
        out = b"".join(app(environ, lambda s, headers: status.append(int(s.split()[0]))))
        return status[0], out

    try:
        answers = [call("POST", "/workflow/w", b"{}") for _ in range(3)]
        assert [code for code, _ in answers] == [200] * 3
        # each stage's queue and execution time, as the runtime reported them (as esg_plugin.router answers)
        assert json.loads(answers[0][1])["stages_ms"] == {"head": {"queue_ms": 1.5, "exec_ms": 4.0},
                                                          "tail": {"queue_ms": 1.5, "exec_ms": 4.0}}
        assert call("POST", "/workflow/v", b"{}")[0] == 504
        code, page = call("GET", "/_esg/metrics")
        assert code == 200
        samples = {(name, tuple(sorted(labels.items()))): value for name, labels, value in parse_samples(page.decode())}
        assert samples[("esg_workflow_requests_total", (("slo", "met"), ("workflow", "w")))] == 3.0
        assert samples[("esg_workflow_requests_total", (("slo", "missed"), ("workflow", "v")))] == 1.0
        assert samples[(GAP_COUNTERS[0], (("workflow", "w"),))] == 2.0  # three arrivals, two gaps
        assert samples[(GAP_COUNTERS[2], (("workflow", "w"),))] >= 0.0
        assert samples[(HOP_COUNTERS[0], (("workflow", "w"),))] == 3.0  # each answer's hop over the one edge
        assert 0.0 <= samples[(HOP_COUNTERS[1], (("workflow", "w"),))] * 1000.0 <= sum(
            json.loads(out)["latency_ms"] for _, out in answers)
        assert any(name == "esg_requests_total" for name, _ in samples)  # the runtime's own metrics still there
    finally:
        app.drain(5)
        server.shutdown()
        server.server_close()


def test_each_stage_call_carries_the_downstream_the_plan_expects_after_it():
    """``set_downstream_ms`` (the control law's ``Decision.downstream_ms``):
    each stage's call carries what is planned after it; a stage not named, a
    stage not in the topology or a number out of range sends none."""
    seen = {}

    class Handler(JsonRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            seen[self.path.rsplit("/", 1)[-1]] = self.headers.get(C.DOWNSTREAM_HEADER)
            self._send(200, b'{"ok": true}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack = {"functions": {
        "head": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "10000", "com.esg.stage": "a"}},
        "tail": {"annotations": {"com.esg.workflow": "w", "com.esg.stage": "b", "com.esg.after": "a"}},
    }}
    router = Router(Topology.from_stack(stack), f"http://127.0.0.1:{server.server_address[1]}")
    try:
        router.set_downstream_ms({("w", "a"): 42.25, ("w", "b"): -1.0, ("w", "nowhere"): 5.0})
        assert router.run("w", b"{}", "application/json")[0] == 200
        assert seen == {"head": "42.2", "tail": None}
        router.set_downstream_ms({})
        assert router.run("w", b"{}", "application/json")[0] == 200
        assert seen == {"head": None, "tail": None}
    finally:
        server.shutdown()
        server.server_close()


def test_the_router_function_sends_each_stage_the_executions_observed_after_it(monkeypatch):
    """In a cluster the router function has no plan: it sends each stage the
    executions the later stages' answers reported (``X-ESG-Exec-Ms``), with
    the hops, on the longest path — none until each later stage has answered."""
    seen = []

    class Handler(JsonRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            name = self.path.rsplit("/", 1)[-1]
            seen.append((name, self.headers.get(C.DOWNSTREAM_HEADER)))
            self._send(200, b'{"ok": true}', headers=[(C.QUEUE_MS_HEADER, "0"),
                                                      (C.EXEC_MS_HEADER, {"head": "5", "mid": "30", "tail": "12"}[name])])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("gateway_url", f"http://127.0.0.1:{server.server_address[1]}")
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "template/esg-python3"))
    spec = importlib.util.spec_from_file_location("router_function_downstream", root / "functions/router/handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    workflow = {"slo_ms": 10000, "stages": {
        "head": {"function": "head", "after": [], "fanout": 1},
        "mid": {"function": "mid", "after": ["head"], "fanout": 1},
        "tail": {"function": "tail", "after": ["mid"], "fanout": 1}}}
    try:
        assert handler.run("w", workflow, b"{}", "application/json")[0] == 200
        assert dict(seen) == {"head": None, "mid": None, "tail": None}  # nothing observed yet
        hop_ms = handler._observed["hop_ms"]["w"]  # what the second request's headers are made from
        seen.clear()
        assert handler.run("w", workflow, b"{}", "application/json")[0] == 200
        sent = {name: float(value) if value else None for name, value in seen}
        assert sent["head"] == pytest.approx(30 + 12 + 2 * hop_ms, abs=0.1)
        assert sent["mid"] == pytest.approx(12 + hop_ms, abs=0.1)
        assert sent["tail"] is None  # nothing after it
    finally:
        server.shutdown()
        server.server_close()


def router_function(monkeypatch, name: str, **env):
    """The router function (functions/router/handler.py) loaded as its image runs it, with ``env``."""
    for key in ("gateway_url", "function_url", "workflows_from", "knative_namespace", "kubernetes_url",
                "service_account_dir"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "template/esg-python3"))  # esg_runtime, as in the function's image
    spec = importlib.util.spec_from_file_location(name, root / "functions/router/handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    return handler


def test_under_knative_the_router_function_reads_the_services_and_calls_each_stage_at_its_address(
        monkeypatch, tmp_path):
    """With no OpenFaaS gateway (Knative Serving): the workflows come from the
    Knative Services' annotations, listed through the Kubernetes API as the
    router's service account with the Role deploy/knative grants it — and
    nothing else is asked —, a Service being deleted is no stage, and each
    stage is called at ``function_url`` with its name in it (the Service's
    address in the cluster: here a real HTTP server that answers by name)."""
    from ..kube_emulator import KubeEmulator

    root = Path(__file__).resolve().parents[2]
    role = next(d for d in yaml.safe_load_all((root / "deploy/knative/rbac.yaml").read_text())
                if d and d["kind"] == "Role" and d["metadata"]["name"] == "esg-router")

    def ksvc(name, annotations, deleting=False):
        metadata = {"name": name, "namespace": role["metadata"]["namespace"], "annotations": annotations}
        if deleting:
            metadata["deletionTimestamp"] = "2026-12-06T12:00:00Z"
        return {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": metadata,
                "spec": {"template": {"spec": {"containers": [{"image": "esg/fn:dev"}]}}}}

    stages = gateway()
    (tmp_path / "token").write_text("router-token\n")
    try:
        with KubeEmulator(token="router-token", rules=role["rules"],
                          user="system:serviceaccount:openfaas-fn:esg-router") as kube:
            kube.add_knative(ksvc("w-head", {C.ANNOTATION_WORKFLOW: "w", C.ANNOTATION_STAGE: "head",
                                             C.ANNOTATION_SLO_MS: "10000"}))
            kube.add_knative(ksvc("w-tail", {C.ANNOTATION_WORKFLOW: "w", C.ANNOTATION_STAGE: "tail",
                                             C.ANNOTATION_AFTER: "head"}))
            kube.add_knative(ksvc("w-old", {C.ANNOTATION_WORKFLOW: "w", C.ANNOTATION_STAGE: "old",
                                            C.ANNOTATION_AFTER: "tail"}, deleting=True))
            kube.add_knative(ksvc("router", {}))  # no stage of any workflow
            handler = router_function(
                monkeypatch, "router_function_knative", workflows_from="knative",
                knative_namespace=role["metadata"]["namespace"], kubernetes_url=kube.url,
                service_account_dir=str(tmp_path),
                function_url=f"http://127.0.0.1:{stages.server_address[1]}/{{name}}")
            event = types.SimpleNamespace(path="/workflow/w", method="POST", body=b"{}",
                                          headers={"Content-Type": "application/json"})
            answer = handler.handle(event, None)
            assert answer["statusCode"] == 200, answer
            assert answer["body"]["output"] == {"path": ["w-head", "w-tail"]}  # each stage at its own address
            assert set(handler.workflows()["w"]["stages"]) == {"head", "tail"}
            asked = {(verb, group, resource, namespace) for verb, group, resource, namespace in kube.verbs}
            assert asked == {("list", "serving.knative.dev", "services", role["metadata"]["namespace"])}
            # a token the API refuses: the workflows read before are served meanwhile ...
            (tmp_path / "token").write_text("another-token")
            handler._cache["at"] = -1e18
            assert handler.handle(event, None)["statusCode"] == 200
            assert len(kube.verbs) == 2  # read again, refused (401), and what was read is served
            # ... and a router that never read them answers 503 with a reason that names where they are read
            fresh = router_function(
                monkeypatch, "router_function_knative_refused", workflows_from="knative",
                knative_namespace=role["metadata"]["namespace"], kubernetes_url=kube.url,
                service_account_dir=str(tmp_path), function_url=f"http://127.0.0.1:{stages.server_address[1]}/{{name}}")
            refused = fresh.handle(event, None)
            assert refused["statusCode"] == 503 and "Knative" in refused["body"]["error"]
    finally:
        stages.shutdown()
        stages.server_close()


@pytest.mark.parametrize("env, says", [
    ({"function_url": "http://stage.example/fn"}, "function_url"),                 # no {name}
    ({"function_url": "stage.example/{name}"}, "function_url"),                    # not http(s)
    ({"function_url": "http://{name}.{name}.svc"}, "function_url"),                # twice
    ({"workflows_from": "consul"}, "workflows_from"),
    ({"workflows_from": "knative", "knative_namespace": "Not_A_Namespace"}, "knative_namespace"),
])
def test_the_router_function_refuses_a_setting_it_cannot_use_at_start(monkeypatch, env, says):
    """The runtime turns a SettingsError raised as the handler loads into one line and exit 2."""
    with pytest.raises(ValueError) as err:
        router_function(monkeypatch, "router_function_refused", **env)
    assert type(err.value).__name__ == "SettingsError" and says in str(err.value)


def test_the_router_function_serves_the_workflows_it_read_while_the_gateway_cannot_list_them(monkeypatch):
    """The gateway's /system/functions failing or hanging for a while stops no
    workflow: the router serves what it read before (a failed read tried again
    after ``WORKFLOWS_RETRY_S``, not at every request), and while one request
    reads them again the others are not kept waiting."""
    listing = {"mode": "ok", "asked": 0}
    asked, release = threading.Event(), threading.Event()
    functions = [{"name": "w-head", "annotations": {C.ANNOTATION_WORKFLOW: "w", C.ANNOTATION_STAGE: "head"}}]

    class Handler(JsonRequestHandler):
        def do_GET(self):  # noqa: N802
            listing["asked"] += 1
            asked.set()
            if listing["mode"] == "fail":
                return self._json(500, {"error": "as asked"})
            if listing["mode"] == "hang":
                release.wait(60)
            self._json(200, functions)

        def do_POST(self):  # noqa: N802
            self._send(200, json.dumps({"path": [self.path.rsplit("/", 1)[-1]]}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        handler = router_function(monkeypatch, "router_function_stale",
                                  gateway_url=f"http://127.0.0.1:{server.server_address[1]}")
        event = types.SimpleNamespace(path="/workflow/w", method="POST", body=b"{}",
                                      headers={"Content-Type": "application/json"})
        listing["mode"] = "fail"  # never read yet: 503, and the next request is answered so at once
        for _ in range(3):
            refused = handler.handle(event, None)
            assert refused["statusCode"] == 503 and "gateway" in refused["body"]["error"]
        assert listing["asked"] == 1
        listing["mode"], listing["asked"] = "ok", 0
        handler._cache["retry_at"] = -1e18
        assert handler.handle(event, None)["statusCode"] == 200 and listing["asked"] == 1
        listing["mode"] = "fail"  # the gateway's system API fails once the workflows are stale
        handler._cache["at"] = -1e18
        for _ in range(4):
            answer = handler.handle(event, None)
            assert answer["statusCode"] == 200 and answer["body"]["output"] == {"path": ["w-head"]}
        assert listing["asked"] == 2  # one read failed: the next is after the retry delay, not at each request
        listing["mode"] = "hang"  # a read that hangs: one request waits for it, the others do not
        handler._cache["retry_at"] = -1e18
        asked.clear()
        reader = ThreadPoolExecutor(1).submit(handler.handle, event, None)
        assert asked.wait(60)
        assert handler.handle(event, None)["statusCode"] == 200 and not reader.done()
        release.set()
        assert reader.result(timeout=60)["statusCode"] == 200
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("body, says", [(b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
                                        (b"[" + b" " * (17 << 20) + b"]", "longer than"),
                                        (b"{}", "not a list"),
                                        (b'[{"name": "f", "annotations": {"com.esg.workflow": 7}}]', "not text")])
def test_a_function_list_the_router_function_cannot_believe_is_a_503_with_a_reason(monkeypatch, body, says):
    """A gateway (or API) answering a list nested past the parser, longer than any cluster's, of the
    wrong shape or with annotations that are not text: a 503 that says so, not a 500 or a process
    holding the whole answer."""
    class Handler(JsonRequestHandler):
        def do_GET(self):  # noqa: N802
            self._send(200, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        handler = router_function(monkeypatch, "router_function_hostile_list",
                                  gateway_url=f"http://127.0.0.1:{server.server_address[1]}")
        event = types.SimpleNamespace(path="/workflow/w", method="POST", body=b"{}", headers={})
        answer = handler.handle(event, None)
        assert answer["statusCode"] == 503 and says in answer["body"]["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_stage_answering_more_than_a_function_takes_is_a_502_naming_it(monkeypatch):
    """A stage whose answer is longer than any next stage would take (the
    contract's ``MAX_BODY_BYTES``; here the pool's limit made small) is a
    failed stage, 502 naming it — the router does not hold the answer."""
    class Handler(JsonRequestHandler):
        def do_POST(self):  # noqa: N802
            self._send(200, b'"' + b"x" * 100_000 + b'"')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        handler = router_function(monkeypatch, "router_function_long_answer",
                                  gateway_url=f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setattr(handler.CONNECTIONS, "max_answer_bytes", 1000)
        workflow = {"slo_ms": 10000, "stages": {"head": {"function": "head", "after": [], "fanout": 1}}}
        status, doc = handler.run("w", workflow, b"{}", "application/json")
        assert status == 502 and doc["stage"] == "head" and "exceeds 1000 bytes" in doc["error"]
    finally:
        server.shutdown()
        server.server_close()
