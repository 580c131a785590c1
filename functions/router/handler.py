"""The workflow router as an esg-python3 function (stack.yml: `router`).

POST /function/router/workflow/<name> runs one request through the workflow,
calling each stage through the gateway, exactly as `esg_plugin.router` does
beside the embedded platform: fan-out, joins ({"inputs": {stage: output}}),
X-ESG-Deadline-Ms and X-ESG-Request-Id on every call, X-ESG-Downstream-Ms
(the executions after the stage: here, with no plan at hand, what the later
stages' answers reported, X-ESG-Exec-Ms, averaged, with the hops — where
esg_plugin.router sends the control law's planned ones), each stage's queue and
execution time in the answer (``stages_ms``), 502 naming a failing
stage, 504 when a stage shed the request because its deadline had passed,
429 with Retry-After when a stage is overloaded.
The workflows come from the com.esg.* annotations of the deployed functions
(GET /system/functions, read again every 30 s; once read, no request waits
for a new read, and while the gateway cannot list them what was read is
served: ``workflows``).

The Open Inference Protocol for a whole workflow, as `esg_plugin.router`
answers it: POST /function/router/v2/models/<workflow>/infer (JSON or binary
tensors) runs a chain of stages with binary tensors between them, each at
/v2/models/<its model>/infer; GET /v2/models/<workflow>[/ready], /v2,
/v2/health/live|ready. A workflow that is not a chain is refused with 400.

Metrics, on the runtime's /_esg/metrics beside its own (``METRICS_REGISTRY``),
as ``esg_plugin.router`` exports them: ``esg_workflow_requests_total{workflow,
slo}`` (``met``, ``missed`` — late or a stage's 504 —, ``rejected`` — a
stage's 429 — or ``error``), and the gaps between each workflow's arrivals
(``esg_workflow_arrival_gap_seconds`` and
``esg_workflow_arrival_gap_squared_seconds_total``), from which the scaler
reads how bursty they are, and the time a hop between stages took
(``esg_workflow_hop_seconds``), which the law plans with; the job in ``deploy/prometheus/`` scrapes them
with the functions'.

Self-contained on purpose (the standard library and the runtime's own
prometheus_client): the function image carries the template's runtime and
this folder, not the esg_plugin package.
Environment: gateway_url (default http://gateway.openfaas:8080),
gateway_user / gateway_password for the system API when it needs auth;
function_url, where a stage's function is called, ``{name}`` standing for
the function (default ``<gateway_url>/function/{name}``);
workflows_from, where the workflows are read: ``gateway`` (the default, the
functions' annotations at /system/functions) or ``knative`` (the Knative
Services' annotations in knative_namespace, default openfaas-fn, listed
through the Kubernetes API as the pod's service account: the role
``esg-router`` of deploy/knative grants that list and nothing else;
kubernetes_url and service_account_dir stand in for the cluster's
``KUBERNETES_SERVICE_HOST`` and the mounted account where the router runs
outside a cluster). Under Knative Serving, with no OpenFaaS gateway
(``deploy/minikube/knative_services.py`` sets them): function_url
``http://{name}.openfaas-fn.svc.cluster.local`` — each Service's address
inside the cluster — and workflows_from ``knative``. A setting it cannot
use stops the function at start with one line (exit 2).
"""

import base64
import http.client
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

from esg_runtime import contract as C  # the template's runtime: the wire contract, spelled once
from esg_runtime import v2
from esg_runtime.client import ConnectionPool
from esg_runtime.metrics import WorkflowMetrics
from esg_runtime.settings import SettingsError

SERVES_V2_PATHS = True
"""The runtime hands /v2 paths to handle(): each workflow is a model."""

GATEWAY = os.environ.get("gateway_url", "http://gateway.openfaas:8080").rstrip("/")
FUNCTION_URL = os.environ.get("function_url") or GATEWAY + "/function/{name}"
"""Where a stage's function is called, ``{name}`` standing for the function."""
WORKFLOWS_FROM = os.environ.get("workflows_from") or "gateway"
KNATIVE_NAMESPACE = os.environ.get("knative_namespace") or "openfaas-fn"
SERVICE_ACCOUNT_DIR = os.environ.get("service_account_dir") or "/var/run/secrets/kubernetes.io/serviceaccount"
SOURCES = ("gateway", "knative")


def _check_settings():
    """SettingsError (the runtime says it in one line and exits 2) for a setting the router cannot use."""
    if not FUNCTION_URL.startswith(("http://", "https://")) or FUNCTION_URL.count("{name}") != 1:
        raise SettingsError(f"function_url must be an http(s) URL with {{name}} once for the function, "
                            f"got {FUNCTION_URL[:200]!r}")
    if WORKFLOWS_FROM not in SOURCES:
        raise SettingsError(f"workflows_from must be one of {', '.join(SOURCES)}, got {WORKFLOWS_FROM[:60]!r}")
    if WORKFLOWS_FROM == "knative" and not _is_dns_label(KNATIVE_NAMESPACE):
        raise SettingsError(f"knative_namespace must be a namespace's name, got {KNATIVE_NAMESPACE[:80]!r}")


def _is_dns_label(text):
    return 0 < len(text) <= 63 and all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in text) \
        and text[0].isalnum() and text[-1].isalnum()


_check_settings()
POOL = ThreadPoolExecutor(64)
CONNECTIONS = ConnectionPool(max_idle_per_host=64)
"""Keep-alive connections to the gateway, reused across stage calls."""
WORKFLOWS_FRESH_S = 30.0
"""The workflows read are believed this long before they are read again."""
WORKFLOWS_RETRY_S = 5.0
"""A read that failed is tried again after this, the workflows read before served meanwhile."""
_cache = {"at": -1e18, "workflows": None, "reading": False, "retry_at": -1e18, "error": ""}
"""The workflows last read (None: never), when, whether a read is under way, when a failed one is retried
and why it failed."""
_lock = threading.Lock()
_first_read = threading.Lock()
"""Held by the one request that reads the workflows while none were ever read: the others wait for it."""
_observed = {"exec_ms": {}, "hop_ms": {}}
"""Per (workflow, stage) the batch execution its answers reported (X-ESG-Exec-Ms),
per workflow one hop: each a moving average (``OBSERVED_WEIGHT``), for X-ESG-Downstream-Ms."""
OBSERVED_WEIGHT = 0.2

METRICS = WorkflowMetrics()
METRICS_REGISTRY = METRICS.registry
"""Served by the runtime on /_esg/metrics beside its own (see the module)."""


def counted(name, status, met=False):
    """Counts one answered request by its SLO outcome, as esg_plugin.router does."""
    slo = ("met" if met else "missed") if status in (200, 504) else "rejected" if status == 429 else "error"
    METRICS.requests.labels(workflow=name, slo=slo).inc()


def _headers():
    user = os.environ.get("gateway_user")
    if not user:
        return {}
    token = base64.b64encode(f"{user}:{os.environ.get('gateway_password', '')}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def workflows():
    """{workflow: {"slo_ms", "stages": {stage: {"function", "after", "fanout", "model"}}}} from the
    functions' com.esg.* annotations, read from ``workflows_from`` every ``WORKFLOWS_FRESH_S``.
    Once read, a request never waits for a read: the one that finds them stale reads them again
    while the others are served what was read before; a read that fails keeps that (tried again
    after ``WORKFLOWS_RETRY_S``) — the gateway or the Kubernetes API down for a while stops no
    workflow. Before a read succeeds, its error is raised (503 at ``handle``) — at once, without
    reading again, until the retry."""
    with _lock:
        known, now = _cache["workflows"], time.monotonic()
        if known is not None and (now - _cache["at"] < WORKFLOWS_FRESH_S or _cache["reading"]
                                  or now < _cache["retry_at"]):
            return known
        _cache["reading"] = known is not None
    if known is None:
        with _first_read:  # one read at a time until there are workflows to serve meanwhile
            with _lock:
                if _cache["workflows"] is not None:
                    return _cache["workflows"]
                if time.monotonic() < _cache["retry_at"]:
                    raise OSError(_cache["error"])
            return _read_workflows(None)
    return _read_workflows(known)


def _read_workflows(known):
    """Read the workflows and keep them; where the read fails, ``known`` (raised where None)."""
    try:
        found = _parse_workflows(_knative_functions() if WORKFLOWS_FROM == "knative" else _gateway_functions())
    except (urllib.error.URLError, OSError, ValueError) as err:
        with _lock:
            _cache.update(reading=False, retry_at=time.monotonic() + WORKFLOWS_RETRY_S, error=str(err))
        if known is None:
            raise
        return known
    with _lock:
        _cache.update(at=time.monotonic(), workflows=found, reading=False)
    return found


def _parse_workflows(functions):
    """The workflows of [(function, its annotations)]; ValueError for an annotation that is no number."""
    found = {}
    for name, ann in functions:
        workflow = ann.get(C.ANNOTATION_WORKFLOW)
        if not workflow:
            continue
        wf = found.setdefault(workflow, {"slo_ms": None, "stages": {}})
        if ann.get(C.ANNOTATION_SLO_MS):
            wf["slo_ms"] = float(ann[C.ANNOTATION_SLO_MS])
        after = [a.strip() for a in ann.get(C.ANNOTATION_AFTER, "").split(",") if a.strip()]
        wf["stages"][ann.get(C.ANNOTATION_STAGE, name)] = {
            "function": name, "after": after, "fanout": int(ann.get(C.ANNOTATION_FANOUT, 1)),
            "model": ann.get(C.ANNOTATION_PROFILE, name)}
    return found


LIST_MAX_BYTES = 16 << 20
"""A list of functions or Services longer than this is not read (a cluster's lists are far shorter)."""


def _listed(request, context=None):
    """The JSON a list request answers; ValueError where it is longer than ``LIST_MAX_BYTES``, not JSON,
    or nested deeper than the parser follows."""
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        body = response.read(LIST_MAX_BYTES + 1)
    if len(body) > LIST_MAX_BYTES:
        raise ValueError(f"the list is longer than {LIST_MAX_BYTES} bytes")
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("the list is nested too deeply") from None


def _gateway_functions():
    """[(function, its annotations)] of the functions the OpenFaaS gateway lists."""
    return _named(_listed(urllib.request.Request(f"{GATEWAY}/system/functions", headers=_headers())))


def _knative_functions():
    """[(function, its annotations)] of the Knative Services in ``knative_namespace`` that are not being
    deleted, listed through the Kubernetes API with the pod's service account (its token and CA)."""
    base = os.environ.get("kubernetes_url")
    if not base:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        if not host:
            raise ValueError("not in a cluster (no KUBERNETES_SERVICE_HOST) and no kubernetes_url set")
        host = f"[{host}]" if ":" in host else host
        base = f"https://{host}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
    headers = {"Accept": "application/json"}
    token = os.path.join(SERVICE_ACCOUNT_DIR, "token")
    if os.path.exists(token):  # read again each time: the kubelet rotates it
        with open(token) as f:
            headers["Authorization"] = f"Bearer {f.read().strip()}"
    ca = os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt")
    context = ssl.create_default_context(cafile=ca) if base.startswith("https://") and os.path.exists(ca) else None
    url = f"{base.rstrip('/')}/apis/serving.knative.dev/v1/namespaces/{KNATIVE_NAMESPACE}/services"
    listed = _listed(urllib.request.Request(url, headers=headers), context)
    items = listed.get("items") if isinstance(listed, dict) else None
    if not isinstance(items, list):
        raise ValueError("the Kubernetes API answered no list of Services")
    return _named([item.get("metadata") for item in items if isinstance(item, dict)
                   and isinstance(item.get("metadata"), dict) and not item["metadata"].get("deletionTimestamp")])


def _named(entries):
    """[(name, annotations)] of ``entries`` (a gateway's functions, or Services' metadata); ValueError
    for one without a name or with annotations that are not a mapping of strings."""
    if not isinstance(entries, list):
        raise ValueError("the function list is not a list")
    out = []
    for entry in entries:
        name, ann = (entry.get("name"), entry.get("annotations") or {}) if isinstance(entry, dict) else (None, None)
        if not isinstance(name, str) or not name or not isinstance(ann, dict) \
                or not all(isinstance(v, str) for v in ann.values()):
            raise ValueError(f"a function without a name or with annotations that are not text: {str(entry)[:120]}")
        out.append((name, ann))
    return out


class Failed(Exception):
    def __init__(self, stage, status, detail):
        super().__init__(f"stage '{stage}' failed: HTTP {status} {detail}")
        self.stage, self.status = stage, status


def post(stage, function, body, headers, path=""):
    """(body, response headers) of one call to a stage's function; Failed."""
    try:
        response = CONNECTIONS.request("POST", FUNCTION_URL.replace("{name}", function) + path, body, headers,
                                       timeout_s=60)
    except (OSError, http.client.HTTPException) as err:
        raise Failed(stage, 0, str(err) or type(err).__name__) from None
    if not 200 <= response.status < 300:
        raise Failed(stage, response.status, response.body[:300].decode("utf-8", "replace"))
    return response.body, response.headers


def call(stage, function, body, headers):
    """(the stage's JSON answer, the answer's headers: its queue and execution time among them)."""
    answer, answer_headers = post(stage, function, body, headers)
    return json.loads(answer or b"null"), answer_headers


def _failed(err):
    if err.status == 504:
        return 504, {"error": f"deadline exceeded at stage '{err.stage}'", "stage": err.stage}
    if err.status == 429:
        return 429, {"error": f"stage '{err.stage}' is overloaded, retry later", "stage": err.stage}
    return 502, {"error": str(err), "stage": err.stage}


def run(name, wf, body, content_type):
    started = time.time()
    base = {C.REQUEST_ID_HEADER: uuid.uuid4().hex,
            C.DEADLINE_HEADER: str(int(started * 1000 + (wf["slo_ms"] or 60_000)))}
    stages, outputs, timing, done = wf["stages"], {}, {}, set()
    downstream = _downstream_headers(name, stages)
    while len(done) < len(stages):
        ready = [s for s in stages if s not in done and all(a in done for a in stages[s]["after"])]
        if not ready:
            return 500, {"error": f"workflow {name!r} has a cycle or an unknown 'after'"}
        calls = {}
        for s in ready:
            after = stages[s]["after"]
            if not after:
                payload, ctype = body, content_type or "application/octet-stream"
            elif len(after) == 1:
                payload, ctype = json.dumps(outputs[after[0]]).encode(), "application/json"
            else:
                payload, ctype = json.dumps({"inputs": {a: outputs[a] for a in after}}).encode(), "application/json"
            headers = {**base, "Content-Type": ctype, **downstream[s]}
            calls[s] = [POOL.submit(call, s, stages[s]["function"], payload, headers)
                        for _ in range(stages[s]["fanout"])]
        try:
            for s, futures in calls.items():
                answers = [f.result() for f in futures]
                results = [answer for answer, _ in answers]
                outputs[s] = results[0] if len(results) == 1 else {"outputs": results}
                timing[s] = C.stage_timing([h for _, h in answers])
                done.add(s)
        except Failed as err:
            return _failed(err)
    exits = [s for s in stages if not any(s in stages[t]["after"] for t in stages)]
    latency_ms = (time.time() - started) * 1000
    output = outputs[exits[0]] if len(exits) == 1 else {s: outputs[s] for s in exits}
    met = wf["slo_ms"] is None or latency_ms <= wf["slo_ms"]
    _count_hop(name, stages, latency_ms, timing)
    return 200, {"workflow": name, "latency_ms": round(latency_ms, 3), "slo_met": met, "stages_ms": timing,
                 "output": output}


def _longest(stages, weight):
    """The heaviest entry-to-exit path's weight (each stage's ``weight``)."""
    finish = {}

    def at(stage):
        if stage not in finish:
            finish[stage] = max((at(a) for a in stages[stage]["after"]), default=0.0) + weight(stage)
        return finish[stage]

    return max(at(s) for s in stages)


def _count_hop(name, stages, latency_ms, timing):
    """The time a hop between stages took for this request, as esg_plugin.router
    counts it: latency less the stages' queue and execution along the longest
    path, over the edges of the longest path (a one-stage workflow has none);
    learnt with the stages' executions for X-ESG-Downstream-Ms."""
    if set(timing) != set(stages) or not all("exec_ms" in t for t in timing.values()):
        return
    edges = round(_longest(stages, lambda s: 1.0)) - 1
    hop_ms = None
    if edges >= 1:
        in_stages = _longest(stages, lambda s: timing[s].get("queue_ms", 0.0) + timing[s]["exec_ms"])
        hop_ms = max(0.0, latency_ms - in_stages) / edges
        METRICS.hops.labels(workflow=name).observe(hop_ms / 1000.0)
    with _lock:
        for s, t in timing.items():
            _average(_observed["exec_ms"], (name, s), t["exec_ms"])
        if hop_ms is not None:
            _average(_observed["hop_ms"], name, hop_ms)


def _average(memory, key, value):
    old = memory.get(key)
    memory[key] = value if old is None else old + OBSERVED_WEIGHT * (value - old)


def _downstream_headers(name, stages):
    """Per stage, the headers that carry ``X-ESG-Downstream-Ms`` for its
    calls (made once per request): the executions the answers reported for
    the stages after it, with the hops, on the longest path — what the plan's
    executions are where a plan runs them (under ``esg up`` the control law
    sends its own figure); none until each of those stages has answered once
    (the batcher then counts nothing)."""
    with _lock:
        executions = {stage: _observed["exec_ms"].get((name, stage)) for stage in stages}
        hop_ms = _observed["hop_ms"].get(name, 0.0)
    after = {}

    def at(s):
        if s not in after:
            later = [t for t in stages if s in stages[t]["after"]]
            if any(executions[t] is None for t in later):
                after[s] = None
            else:
                paths = [at(t) for t in later]
                after[s] = None if None in paths else \
                    max((hop_ms + executions[t] + p for t, p in zip(later, paths)), default=0.0)
        return after[s]

    return {s: {C.DOWNSTREAM_HEADER: f"{ms:.1f}"} if ms and 0 <= ms <= C.MAX_DOWNSTREAM_MS else {}
            for s, ms in ((s, at(s)) for s in stages)}


def run_v2(name, wf, body, header_length):
    """(status, body bytes, headers): one infer request through a chain of stages."""
    try:
        order = v2.chain_order({s: st["after"] for s, st in wf["stages"].items()},
                               {s: st["fanout"] for s, st in wf["stages"].items()})
        request = v2.parse_infer(name, body, header_length)
    except v2.ProtocolError as err:
        return 400, {"error": f"workflow '{name}': {err}"}, {}
    started = time.time()
    request.id = request.id or uuid.uuid4().hex
    headers = {C.REQUEST_ID_HEADER: request.id,
               C.DEADLINE_HEADER: str(int(started * 1000 + (wf["slo_ms"] or 60_000)))}
    stages = wf["stages"]
    downstream = _downstream_headers(name, stages)

    def call_stage(stage, model, payload, extra):
        return post(stage, stages[stage]["function"], payload, {**extra, **downstream[stage]},
                    f"/v2/models/{model}/infer")

    try:
        tensors = v2.infer_chain(request.inputs, [(s, stages[s]["model"]) for s in order], call_stage, headers)
        payload, extra = v2.encode_response(request, tensors)
    except Failed as err:
        status, doc = _failed(err)
        return status, doc, {"Retry-After": "1"} if status == 429 else {}
    except v2.ProtocolError as err:
        return 502, {"error": str(err)}, {}
    return 200, payload, extra


def _v2(event, path, known):
    """The Open Inference Protocol's paths."""
    if path in ("v2", "v2/health/live", "v2/health/ready"):
        doc = v2.server_metadata("esg-router") if path == "v2" else {path.rsplit("/", 1)[1]: True}
        return {"statusCode": 200, "body": doc}
    target = v2.model_path(path)
    if target is None:
        return {"statusCode": 404, "body": {"error": f"no such path /{path}"}}
    name, rest = target
    if name not in known:
        return {"statusCode": 404, "body": {"error": f"no workflow {name!r}; known: {', '.join(sorted(known))}"}}
    if rest in ([], ["ready"]) and event.method in ("GET", "HEAD"):
        doc = {"ready": True} if rest else v2.metadata(name, {}, platform="esg-workflow")
        return {"statusCode": 200, "body": doc}
    if rest != ["infer"]:
        return {"statusCode": 404, "body": {"error": f"no such path /{path}"}}
    if event.method != "POST":
        return {"statusCode": 405, "body": {"error": f"{event.method} is not allowed on infer (POST)"},
                "headers": {"Allow": "POST"}}
    length = next((v for k, v in event.headers.items() if k.lower() == v2.HEADER.lower()), None)
    METRICS.arrived(name, time.monotonic())
    started = time.time()
    status, body, headers = run_v2(name, known[name], event.body or b"", length)
    slo_ms = known[name]["slo_ms"]
    counted(name, status, slo_ms is None or (time.time() - started) * 1000 <= slo_ms)
    return {"statusCode": status, "body": body, "headers": headers}


def handle(event, context):
    path = (event.path or "/").strip("/")
    speaks_v2 = path == "v2" or path.startswith("v2/")
    if not speaks_v2 and not path.startswith("workflow/"):
        return {"statusCode": 404, "body": {"error": "POST /workflow/<name> or /v2/models/<name>/infer"}}
    if path in ("v2", "v2/health/live", "v2/health/ready"):
        return _v2(event, path, {})
    try:
        known = workflows()
    except (urllib.error.URLError, OSError, ValueError) as err:
        source = f"Knative (namespace {KNATIVE_NAMESPACE})" if WORKFLOWS_FROM == "knative" else "the gateway"
        return {"statusCode": 503, "body": {"error": f"cannot read the workflows from {source}: {err}"}}
    if speaks_v2:
        return _v2(event, path, known)
    name = path[len("workflow/"):]
    if name not in known:
        return {"statusCode": 404, "body": {"error": f"no workflow {name!r}; known: {', '.join(sorted(known))}"}}
    content_type = next((v for k, v in event.headers.items() if k.lower() == "content-type"), "")
    METRICS.arrived(name, time.monotonic())
    status, doc = run(name, known[name], event.body, content_type)
    counted(name, status, status == 200 and doc.get("slo_met", False))
    return {"statusCode": status, "body": doc, "headers": {"Retry-After": "1"} if status == 429 else {}}
