"""The workflow router: ``POST /workflow/<name>`` runs one request through
the workflow's DAG, calling each stage's function through the gateway.

- Entry stages receive the client's body; a stage with one predecessor
  receives that stage's output; a join receives
  ``{"inputs": {"<stage>": output, ...}}``; a stage with ``fanout f`` is
  called f times with the same input and passes ``{"outputs": [...]}`` on.
- Every call carries ``X-ESG-Deadline-Ms`` (the request's arrival plus the
  SLO, absolute Unix ms) and ``X-ESG-Request-Id``, and, where the control
  law has planned the workflow (``set_downstream_ms``), ``X-ESG-Downstream-Ms``:
  what the executions the plan runs after this stage take (the batcher's
  slack-aware dispatch, and its newest-first order when behind its plan);
  parallel branches run concurrently.
- The answer is the exit stage's output (``{"<stage>": output, ...}`` when
  there are several exits), with ``stages_ms``: per stage, the time its
  request waited in the function's queue and the time its batch executed
  (the runtime's ``X-ESG-Queue-Ms`` and ``X-ESG-Exec-Ms``; the longest
  call of a fan-out) — what the latency beyond them went to is the hops
  (HTTP, the gateway, this router); a failing stage gives 502 naming it; a stage
  that shed the request because its deadline had passed (504) gives 504,
  counted as a missed SLO; an overloaded stage (429, its queue full) gives
  429 with ``Retry-After``, naming it, so the client backs off.
- The Open Inference Protocol (``POST /v2/models/<workflow>/infer``): a
  chain of stages with binary tensors between them (``_run_v2``).
- Admission (optional, ``admission=``): the requests in flight — of all
  workflows together, or of each (the settings' ``scope``) — are limited
  by an adaptive limit (``esg_plugin.control.admission``); beyond it a
  request is answered 429 with ``Retry-After`` at once, before any stage
  runs — shed at the entry rather than time out inside. Every 429's JSON
  names what turned the request away (``contract.REJECTED_BY``: the
  workflow's admitted rate, the in-flight limit, or a stage's full queue).
- Metrics (``GET /metrics``): ``esg_workflow_requests_total{workflow,slo}``
  with slo ``met``, ``missed``, ``rejected`` (429 from a stage), ``shed``
  (429 at the entry) or ``error``, ``esg_workflow_latency_seconds{workflow}``,
  ``esg_workflow_in_flight{workflow}``, the gaps between arrivals
  (``esg_workflow_arrival_gap_seconds{workflow}``, a summary, and the sum of
  their squares, ``esg_workflow_arrival_gap_squared_seconds_total``: the
  scaler reads how bursty the arrivals are from them), the time a hop
  between stages took (``esg_workflow_hop_seconds{workflow}``, per answered
  request: its latency less its stages' times, over the longest path's
  edges; the law plans with it) and, with admission,
  ``esg_workflow_admission_limit{workflow}``.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Optional

import networkx as nx
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..errors import ESGError
from ..jsontext import loads_json
from ..limits import is_number
from ..control.admission import AdmissionSettings, ConcurrencyLimit, RateLimit
from ..jsonhttp import BadBody, JsonHTTPServer, JsonRequestHandler
from ..runtime import v2
from ..runtime import contract as C
from ..runtime.metrics import WorkflowMetrics
from ..runtime.client import ConnectionPool
from ..model import Topology, path_latency_ms

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)


class StageFailed(ESGError):
    def __init__(self, stage: str, detail: str, status: int = 0):
        super().__init__(f"stage '{stage}' failed: {detail}")
        self.stage = stage
        self.status = status


RETRY_AFTER_S = 1


class Router:
    def __init__(self, topology: Topology, gateway_url: str, timeout_s: float = 30.0, threads: int = 64,
                 admission: Optional[AdmissionSettings] = None, clock: Callable[[], float] = time.monotonic):
        self.topology = topology
        self.clock = clock
        self.rate_limits: dict[str, RateLimit] = {}
        """Per workflow the control law holds below its rate (the node is full): the rate it admits."""
        self.downstream_ms: dict[tuple[str, str], float] = {}
        """Per (workflow, stage): the executions the plan runs after it (``X-ESG-Downstream-Ms``)."""
        self.lock = threading.Lock()
        self.in_flight = {name: 0 for name in topology.workflows}
        self.admission = admission
        self.limits: dict[str, ConcurrencyLimit] = {}
        """By scope (``AdmissionSettings.scope_of``): one for the machine, or one per workflow."""
        self.sharing: dict[str, int] = {}
        """By scope: how many workflows share its limit (each has its part: ``ConcurrencyLimit.admit``)."""
        if admission:
            for name in topology.workflows:
                scope = admission.scope_of(name)
                self.limits.setdefault(scope, ConcurrencyLimit(admission))
                self.sharing[scope] = self.sharing.get(scope, 0) + 1
        self.gateway_url = gateway_url.rstrip("/")
        self.timeout_s = timeout_s
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="esg-router")
        self.connections = ConnectionPool(max_idle_per_host=threads)
        """Keep-alive connections to the gateway, reused across stage calls."""
        self.registry = CollectorRegistry()
        self.edges = {name: nx.dag_longest_path_length(wf.graph) for name, wf in topology.workflows.items()}
        """Per workflow, the edges of its longest path (in stages): what a request's hops are spread over."""
        self.workflow_metrics = WorkflowMetrics(self.registry)
        """Requests by SLO outcome and the gaps between arrivals (shared with the router function)."""
        self.requests = self.workflow_metrics.requests
        self.latency = Histogram(C.METRIC_WORKFLOW_LATENCY_SECONDS, "End-to-end latency of workflow requests.",
                                 ["workflow"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight_gauge = Gauge("esg_workflow_in_flight", "Workflow requests running now.", ["workflow"],
                                     registry=self.registry)
        self.limit_gauge = Gauge("esg_workflow_admission_limit", "Workflow requests allowed in flight.",
                                 ["workflow"], registry=self.registry)

    def admission_limits(self) -> dict[str, int]:
        """The requests each admission scope lets in flight now (``"*"``: the
        machine's one limit); empty without admission."""
        with self.lock:
            return {scope: int(limit.limit) for scope, limit in self.limits.items()}

    def set_admit_rates(self, rates_rps: Mapping[str, float]) -> None:
        """The rate each workflow may admit (the control law's ``admit_rps``);
        a workflow not named admits everything again."""
        now = self.clock()
        with self.lock:
            for name in list(self.rate_limits):
                if name not in rates_rps:
                    del self.rate_limits[name]
            for name, rate in rates_rps.items():
                if name not in self.topology.workflows or not (math.isfinite(rate) and rate > 0):
                    continue  # an unknown workflow or an implausible rate limits nothing
                if name in self.rate_limits:
                    self.rate_limits[name].set(rate, now)
                else:
                    self.rate_limits[name] = RateLimit(rate, now)

    def set_downstream_ms(self, downstream_ms: Mapping[tuple[str, str], float]) -> None:
        """What the executions the plan runs after each stage take (the control
        law's ``Decision.downstream_exec_ms``); a stage not named is sent none. A number
        outside [0, an hour] or a stage not in the topology is not believed."""
        kept = {key: float(ms) for key, ms in downstream_ms.items()
                if key in self.topology.functions and is_number(ms) and 0 <= ms <= C.MAX_DOWNSTREAM_MS}
        with self.lock:
            self.downstream_ms = kept

    def _stage_headers(self, workflow_name: str, stage: str, headers: dict) -> dict:
        """``headers`` with the stage's planned downstream, where there is one."""
        downstream = self.downstream_ms.get((workflow_name, stage))
        return headers if downstream is None else {**headers, C.DOWNSTREAM_HEADER: f"{downstream:.1f}"}

    def post_stage(self, stage: str, function: str, body: bytes, headers: dict, path: str = "") -> tuple[bytes, Any]:
        """POST to a stage's function through the gateway: (body, response headers); StageFailed."""
        try:
            response = self.connections.request("POST", f"{self.gateway_url}/function/{function}{path}", body,
                                                headers, timeout_s=self.timeout_s)
        except (OSError, http.client.HTTPException) as err:
            raise StageFailed(stage, f"function {function}: {err or type(err).__name__}") from None
        if not 200 <= response.status < 300:
            detail = response.body[:300].decode("utf-8", "replace")
            raise StageFailed(stage, f"function {function}: HTTP {response.status} {detail}", response.status)
        return response.body, response.headers

    def run(self, workflow_name: str, body: bytes, content_type: str, v2: bool = False,
            v2_header: Optional[str] = None) -> tuple[int, Any]:
        """One request through the workflow, if admitted: (status, JSON
        document); ``v2``: an Open Inference Protocol infer request, whose
        answer, on success, is the document's ``v2`` (body, headers)."""
        scope = self.admission.scope_of(workflow_name) if self.admission else None
        limit = self.limits.get(scope) if scope else None
        with self.lock:
            self.workflow_metrics.arrived(workflow_name, self.clock())
            rate = self.rate_limits.get(workflow_name)
            if rate is not None and not rate.admit(self.clock()):
                self.requests.labels(workflow=workflow_name, slo="shed").inc()
                return 429, {"error": f"workflow '{workflow_name}' is over what the node can serve: it admits "
                                      f"{rate.rate_rps:.2f} requests/s now; retry after {RETRY_AFTER_S} s",
                             "retry_after_s": RETRY_AFTER_S, C.REJECTED_BY: C.REJECTED_BY_RATE}
            others = self._in_flight_in(scope) if limit is not None else 0
            if limit is not None and not limit.admit(others, self.in_flight[workflow_name], self.sharing[scope]):
                self.limit_gauge.labels(workflow=workflow_name).set(limit.limit)
                self.requests.labels(workflow=workflow_name, slo="shed").inc()
                whose = "the workflows are" if scope == "*" else f"workflow '{workflow_name}' is"
                part = limit.part(self.sharing[scope])
                held = f", and workflow '{workflow_name}' holds its part of it ({part})" if part is not None else ""
                return 429, {"error": f"{whose} at the admission limit of {int(limit.limit)} requests in flight"
                                      f"{held}; retry after {RETRY_AFTER_S} s", "retry_after_s": RETRY_AFTER_S,
                             C.REJECTED_BY: C.REJECTED_BY_IN_FLIGHT}
            self.in_flight[workflow_name] += 1
            self.in_flight_gauge.labels(workflow=workflow_name).set(self.in_flight[workflow_name])
        code, doc = 502, {"error": "the router failed"}
        try:
            if v2:
                code, doc = self._run_v2(workflow_name, body, v2_header)
            else:
                code, doc = self._run(workflow_name, body, content_type)
            return code, doc
        finally:
            with self.lock:
                self.in_flight[workflow_name] -= 1
                self.in_flight_gauge.labels(workflow=workflow_name).set(self.in_flight[workflow_name])
                if limit is not None and code != 502:  # a failing stage says nothing about load
                    slo_ms = self.topology.workflows[workflow_name].slo_ms
                    limit.record(doc["latency_ms"] / slo_ms if code == 200 else math.inf, others=others)
                    self.limit_gauge.labels(workflow=workflow_name).set(limit.limit)

    def _in_flight_in(self, scope: str) -> int:
        """The requests in flight that count against a scope's limit."""
        return sum(n for name, n in self.in_flight.items() if self.admission.scope_of(name) == scope)

    def _run(self, workflow_name: str, body: bytes, content_type: str) -> tuple[int, Any]:
        workflow = self.topology.workflows[workflow_name]
        started = time.time()
        deadline_ms = started * 1000.0 + workflow.slo_ms
        request_id = uuid.uuid4().hex
        outputs: dict[str, Any] = {}
        timing: dict[str, dict[str, float]] = {}

        def stage_input(stage_name: str) -> tuple[bytes, str]:
            preds = list(workflow.graph.predecessors(stage_name))
            if not preds:
                return body, content_type or "application/octet-stream"
            if len(preds) == 1:
                return json.dumps(outputs[preds[0]]).encode(), "application/json"
            return json.dumps({"inputs": {p: outputs[p] for p in preds}}).encode(), "application/json"

        try:
            pending = list(workflow.topological_order())
            while pending:
                # the stages whose inputs are all there run together; only the
                # HTTP calls go to the pool, so its threads never wait on it
                ready = [s for s in pending if all(p in outputs for p in workflow.graph.predecessors(s))]
                calls = {}
                for stage_name in ready:
                    payload, ctype = stage_input(stage_name)
                    headers = {"Content-Type": ctype, C.REQUEST_ID_HEADER: request_id,
                               C.DEADLINE_HEADER: str(int(deadline_ms))}
                    function = self.topology.functions[(workflow_name, stage_name)]
                    headers = self._stage_headers(workflow_name, stage_name, headers)
                    calls[stage_name] = [self.pool.submit(self.post_stage, stage_name, function, payload, headers)
                                         for _ in range(workflow.stage(stage_name).fanout)]
                for stage_name, futures in calls.items():
                    answers = [f.result() for f in futures]
                    results = [loads_json(answer or b"null") for answer, _ in answers]
                    outputs[stage_name] = results[0] if len(results) == 1 else {"outputs": results}
                    timing[stage_name] = C.stage_timing([h for _, h in answers])
                pending = [s for s in pending if s not in outputs]
        except StageFailed as err:
            return self._failed(workflow_name, err, request_id)
        except ValueError as err:
            self.requests.labels(workflow=workflow_name, slo="error").inc()
            return 502, {"error": f"a stage answered invalid JSON: {err}", "request_id": request_id}
        exits = workflow.exits
        result = outputs[exits[0]] if len(exits) == 1 else {s: outputs[s] for s in exits}
        answered = self._answered(workflow_name, started, request_id)
        self._hop(workflow, answered["latency_ms"], timing)
        return 200, {**answered, "stages_ms": timing, "output": result}

    def _hop(self, workflow, latency_ms: float, timing: dict) -> None:
        """Counts the time a hop between stages took for this request: its
        latency less its stages' queue and execution along the longest path,
        over that path's edges (a workflow of one stage has none)."""
        edges = self.edges.get(workflow.name, 0)
        in_stages = time_in_stages_ms(workflow, timing)
        if edges < 1 or in_stages is None:
            return
        self.workflow_metrics.hops.labels(workflow=workflow.name).observe(max(0.0, latency_ms - in_stages) / edges
                                                                          / 1000.0)

    def _answered(self, workflow_name: str, started: float, request_id: str) -> dict:
        """Count a request that went through, and its latency."""
        elapsed_s = time.time() - started
        self.latency.labels(workflow=workflow_name).observe(elapsed_s)
        met = elapsed_s * 1000.0 <= self.topology.workflows[workflow_name].slo_ms
        self.requests.labels(workflow=workflow_name, slo="met" if met else "missed").inc()
        return {"workflow": workflow_name, "request_id": request_id, "latency_ms": round(elapsed_s * 1000, 3),
                "slo_met": met}

    def _failed(self, workflow_name: str, err: StageFailed, request_id: str) -> tuple[int, Any]:
        """Count and answer a request a stage failed."""
        if err.status == 504:  # a stage shed it: its deadline had passed
            self.requests.labels(workflow=workflow_name, slo="missed").inc()
            return 504, {"error": f"deadline exceeded at stage '{err.stage}'", "stage": err.stage,
                         "request_id": request_id}
        if err.status == 429:  # a stage's queue is full: the client should back off
            self.requests.labels(workflow=workflow_name, slo="rejected").inc()
            return 429, {"error": f"stage '{err.stage}' is overloaded, retry later", "stage": err.stage,
                         "request_id": request_id, C.REJECTED_BY: C.REJECTED_BY_STAGE}
        self.requests.labels(workflow=workflow_name, slo="error").inc()
        return 502, {"error": str(err), "stage": err.stage, "request_id": request_id}

    def _run_v2(self, workflow_name: str, body: bytes, header_length: Optional[str]) -> tuple[int, Any]:
        """An Open Inference Protocol request through a chain
        (``v2.infer_chain``): each stage called with binary tensors at
        ``/v2/models/<its function>/infer``, its output tensors the next
        stage's inputs (by name); the last stage's outputs answered as the
        client asked (JSON or binary)."""
        workflow = self.topology.workflows[workflow_name]
        try:
            order = v2.chain_order({s: list(workflow.graph.predecessors(s)) for s in workflow.stage_names},
                                   {s: workflow.stage(s).fanout for s in workflow.stage_names})
            request = v2.parse_infer(workflow_name, body, header_length)
        except v2.ProtocolError as err:
            self.requests.labels(workflow=workflow_name, slo="error").inc()
            return 400, {"error": f"workflow '{workflow_name}': {err}"}
        started = time.time()
        request_id = request.id or uuid.uuid4().hex
        headers = {C.REQUEST_ID_HEADER: request_id, C.DEADLINE_HEADER: str(int(started * 1000.0 + workflow.slo_ms))}

        def call(stage: str, model: str, payload: bytes, headers: dict):
            return self.post_stage(stage, self.topology.functions[(workflow_name, stage)], payload,
                                   self._stage_headers(workflow_name, stage, headers), f"/v2/models/{model}/infer")

        try:
            tensors = v2.infer_chain(request.inputs, [(s, workflow.stage(s).function) for s in order], call, headers)
        except StageFailed as err:
            return self._failed(workflow_name, err, request_id)
        except v2.ProtocolError as err:
            self.requests.labels(workflow=workflow_name, slo="error").inc()
            return 502, {"error": str(err), "request_id": request_id}
        request.id = request_id
        try:
            answer = v2.encode_response(request, tensors)
        except v2.ProtocolError as err:
            self.requests.labels(workflow=workflow_name, slo="error").inc()
            return 400, {"error": str(err), "request_id": request_id}
        return 200, {**self._answered(workflow_name, started, request_id), "v2": answer}


def time_in_stages_ms(workflow, timing: Mapping[str, Mapping[str, float]]) -> Optional[float]:
    """A request's time in its stages — queue and execution along the
    workflow's longest path, from its answer's ``stages_ms``; the rest of its
    latency is the hops. None unless every stage reported its execution."""
    if set(timing) != set(workflow.stage_names) or not all("exec_ms" in t for t in timing.values()):
        return None
    return path_latency_ms(dataclasses.replace(workflow, hop_ms=0.0),
                           {s: t.get("queue_ms", 0.0) + t["exec_ms"] for s, t in timing.items()})


def make_router_server(router: Router, host: str = "127.0.0.1", port: int = 0) -> JsonHTTPServer:
    class Handler(JsonRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/metrics":
                self._send(200, generate_latest(router.registry), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/v2/health/live", "/v2/health/ready"):
                self._send(200, b'{"status": "ok"}')
            elif (target := self._v2()) is not None and target[1] in ([], ["ready"]):
                self._json(200, v2.metadata(target[0], {}, platform="esg-workflow") if not target[1]
                           else {"ready": True})
            else:
                self._send(404, json.dumps({"error": f"no such path {self.path}"}).encode())

        def _v2(self) -> Optional[tuple[str, list[str]]]:
            """(workflow, what follows it) of a /v2/models/<workflow>[/versions/<v>]/... path."""
            target = v2.model_path(self.path)
            return target if target is not None and target[0] in router.topology.workflows else None

        def do_POST(self):  # noqa: N802
            target = self._v2()
            if target is not None and target[1] == ["infer"]:
                try:
                    body = self._body()
                except BadBody as err:
                    return self._refuse(err)
                code, doc = router.run(target[0], body, self.headers.get("Content-Type", ""), v2=True,
                                       v2_header=self.headers.get(v2.HEADER))
                if code == 200:
                    payload, headers = doc["v2"]
                    return self._send(code, payload, headers=list(headers.items()))
                return self._send(code, json.dumps(doc).encode(),
                                  headers=[("Retry-After", str(RETRY_AFTER_S))] if code == 429 else None)
            name = self.path[len("/workflow/"):] if self.path.startswith("/workflow/") else None
            if name is None or name not in router.topology.workflows:
                known = ", ".join(sorted(router.topology.workflows))
                self._send(404, json.dumps({"error": f"no workflow {name!r}; known: {known}"}).encode())
                return
            try:
                body = self._body()
            except BadBody as err:
                return self._refuse(err)
            code, doc = router.run(name, body, self.headers.get("Content-Type", ""))
            self._send(code, json.dumps(doc).encode(),
                       headers=[("Retry-After", str(RETRY_AFTER_S))] if code == 429 else None)

    return JsonHTTPServer((host, port), Handler)
