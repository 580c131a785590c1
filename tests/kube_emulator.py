"""A Kubernetes API emulator over real HTTP, for the scaler's tests.

What it serves: apps/v1 Deployments (GET, POST, PATCH) and their scale
subresource (GET, PATCH); serving.knative.dev/v1 Services (GET, list, POST,
PATCH) and Revisions (GET, list); core/v1 pod lists (a namespace's, or every
namespace's) and node lists. Where it matters to a client, it behaves as a
real kube-apiserver (checked against v1.36 by hand, see issue 17):

- **Server-kept metadata**: ``uid``, ``creationTimestamp``,
  ``resourceVersion`` (new on every write), ``generation`` (a Deployment's
  grows when its spec *or its annotations* change, as the deployment
  strategy does; a custom resource with a status subresource, when its spec
  changes).
- **Optimistic concurrency**: a write that carries
  ``metadata.resourceVersion`` different from the object's answers 409
  Conflict; a write without one never conflicts. ``interleave`` lets a test
  play another writer between a client's read and its write.
- **Create**: 409 AlreadyExists for an existing name; a body that carries a
  ``resourceVersion`` answers 500, as the real server does.
- **Patches** by content type: strategic merge (typed resources only; a
  custom resource answers 415), JSON merge (RFC 7386), JSON patch (RFC
  6902, a list of operations). Strategic merge follows apimachinery's
  rules: lists with a patch merge key (containers, env, ports, volumes, ...)
  merged by key — the items the patch names in the patch's order, items
  only on the server woven in by their old positions, new items last — and
  the directives ``$patch`` (replace, delete, merge),
  ``$retainKeys``, ``$setElementOrder/<list>`` and
  ``$deleteFromPrimitiveList/<list>``, none of which is left in the object.
- **Validation**: the result of every write to a typed resource is checked
  with ``kubernetes-validate`` (the API's OpenAPI schema): an error answers
  422 Invalid in the server's wording (``Deployment.apps "x" is invalid:
  spec.replicas: Invalid value: ...``); an unknown field is accepted with a
  ``Warning: 299 - "unknown field ..."`` header (the server's default field
  validation, Warn). A scale below zero answers the server's 422.
- **Authorization** (when given a token and Role rules): no or another
  bearer token answers 401; a verb the rules do not grant answers 403 with
  the server's message. ``verbs`` logs every (verb, group, resource,
  namespace) asked, for comparing with a Role.

Not emulated: controllers (a Deployment's ``status`` does not follow its
spec), watches, admission webhooks, managedFields and server-side apply;
semantic validation beyond the schema (the real server checks more, e.g.
that a selector matches its template's labels).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qs, unquote, urlparse

import kubernetes_validate

#: Lists merged by key in a strategic merge patch (their ``patchMergeKey``).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "ports": "containerPort",
              "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name"}
KUBERNETES_VERSION = "1.30"
CREATED = "2026-11-30T00:00:00Z"
_DELETE = object()
"""A map a ``$patch: delete`` directive removes."""


# --- strategic merge patch ----------------------------------------------------
def _without_directives(value):
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value if not (isinstance(v, dict) and set(v) == {"$patch"})]
    return copy.deepcopy(value)


def _merge_sorted(server_only: list, patched: list, server_order: list, key: str) -> list:
    """Weave the items only on the server into the patched items: each
    list keeps its relative order; a patched item goes before a server item
    only when both were on the server and it stood before it there, so new
    items come last (``kubectl patch`` appends) and the patch's own order
    wins among the items it names."""
    def position(item):
        name = item.get(key) if isinstance(item, dict) else None
        return server_order.index(name) if name in server_order else -1

    out, i, j = [], 0, 0
    while i < len(server_only) or j < len(patched):
        if j >= len(patched):
            out.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            out.append(patched[j])
            j += 1
        else:
            left, right = position(server_only[i]), position(patched[j])
            if left >= 0 and right >= 0 and right < left:
                out.append(patched[j])
                j += 1
            else:
                out.append(server_only[i])
                i += 1
    return out


def _merge_list(original: list, items: list, key: str, element_order: Optional[list]) -> list:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in items):
        return _without_directives([i for i in items if not (isinstance(i, dict) and "$patch" in i)])
    deleted = {i.get(key) for i in items if isinstance(i, dict) and i.get("$patch") == "delete"}
    by_key = {o.get(key): o for o in original if isinstance(o, dict)}
    patched = []
    for item in items:
        if not isinstance(item, dict) or item.get("$patch") == "delete":
            continue
        name = item.get(key)
        patched.append(strategic_merge(by_key[name], item) if name in by_key else _without_directives(item))
    if element_order is not None:  # $setElementOrder: the order the client wants for its items
        wanted = [e.get(key) for e in element_order if isinstance(e, dict)]
        patched.sort(key=lambda p: wanted.index(p.get(key)) if p.get(key) in wanted else len(wanted))
    names = {p.get(key) for p in patched}
    server_only = [o for o in original if isinstance(o, dict) and o.get(key) not in names | deleted]
    return _merge_sorted(server_only, patched, [o.get(key) for o in original if isinstance(o, dict)], key)


def strategic_merge(original, patch):
    """``original`` with a strategic merge ``patch`` applied (see the module)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _without_directives(patch)
    if patch.get("$patch") == "delete":
        return _DELETE
    out = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            out[key] = _merge_list(out.get(key) or [], value, MERGE_KEYS[key], patch.get(f"$setElementOrder/{key}"))
        elif isinstance(value, dict):
            merged = strategic_merge(out.get(key), value)
            if merged is _DELETE:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = _without_directives(value)
    for key, values in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            out[field] = [v for v in out.get(field) or [] if v not in values]
    if isinstance(patch.get("$retainKeys"), list):
        out = {k: v for k, v in out.items() if k in patch["$retainKeys"]}
    return out


# --- JSON merge patch (RFC 7386) and JSON patch (RFC 6902) --------------------------
def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class PatchFailed(ValueError):
    pass


def _pointer(path: str) -> list:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchFailed(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(document, operations):
    doc = copy.deepcopy(document)
    if not isinstance(operations, list):
        raise PatchFailed("a JSON patch is a list of operations")
    for op in operations:
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "test", "move", "copy"):
            raise PatchFailed(f"unknown operation {op!r}")
        *parents, last = _pointer(op.get("path", "")) or [None]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
            if node is None:
                raise PatchFailed(f"missing path {op['path']!r}")
        kind = op["op"]
        if kind == "test":
            current = node[int(last)] if isinstance(node, list) else node.get(last)
            if current != op.get("value"):
                raise PatchFailed(f"test failed at {op['path']!r}")
        elif kind in ("add", "replace"):
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                node.insert(index, op["value"]) if kind == "add" else node.__setitem__(index, op["value"])
            elif kind == "replace" and last not in node:
                raise PatchFailed(f"replace of a missing path {op['path']!r}")
            else:
                node[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            try:
                del node[int(last) if isinstance(node, list) else last]
            except (KeyError, IndexError):
                raise PatchFailed(f"remove of a missing path {op['path']!r}") from None
        else:
            raise PatchFailed(f"{kind} is not emulated")
    return doc


# --- objects ---------------------------------------------------------------------------
def _labelled(items: list, selector: str) -> list:
    """The objects a one-term label selector picks: a label's existence
    (``key``) or value (``key=value``); all where there is none."""
    if not selector:
        return items
    key, equals, value = selector.partition("=")
    labels = [(item, item["metadata"].get("labels") or {}) for item in items]
    return [item for item, have in labels if key in have and (not equals or have[key] == value)]


def deployment(name, namespace="openfaas-fn", replicas=1, env=None, image="localhost:5000/esg/fn:latest"):
    """A Deployment as faas-netes creates one for a function."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"faas_function": name}, "annotations": {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"faas_function": name}},
            "template": {
                "metadata": {"labels": {"faas_function": name}},
                "spec": {"containers": [{
                    "name": name, "image": image,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": k, "value": str(v)} for k, v in (env or {}).items()],
                }]},
            },
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "observedGeneration": 1},
    }


ROUTES = [  # (pattern, group, resource, subresource)
    (r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments(?:/(?P<name>[^/]+))?(?P<sub>/scale)?$",
     "apps", "deployments"),
    (r"^/apis/serving\.knative\.dev/v1/namespaces/(?P<ns>[^/]+)/services(?:/(?P<name>[^/]+))?$",
     "serving.knative.dev", "services"),
    (r"^/apis/serving\.knative\.dev/v1/namespaces/(?P<ns>[^/]+)/revisions(?:/(?P<name>[^/]+))?$",
     "serving.knative.dev", "revisions"),
    (r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?$", "", "pods"),
    (r"^/api/v1/pods$", "", "pods"),  # every namespace's
    (r"^/api/v1/nodes$", "", "nodes"),
    (r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<ns>[^/]+)/leases(?:/(?P<name>[^/]+))?$",
     "coordination.k8s.io", "leases"),
]
VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
KINDS = {"deployments": "Deployment", "services": "Service", "revisions": "Revision", "pods": "Pod", "nodes": "Node",
         "leases": "Lease"}


class KubeEmulator:
    def __init__(self, token: Optional[str] = None, rules: Optional[list] = None,
                 user: str = "system:serviceaccount:openfaas:esg-scaler"):
        self.deployments: dict[tuple[str, str], dict] = {}
        self.knative: dict[tuple[str, str], dict] = {}
        self.revisions: dict[tuple[str, str], dict] = {}
        self.leases: dict[tuple[str, str], dict] = {}
        """Leases (``coordination.k8s.io/v1``), as the scalers write them: leader election."""
        """Knative Revisions, as a test writes them (Knative's controllers make them)."""
        self.pod_ips: dict[str, list[str]] = {}
        """function name -> IPs of its running pods (label faas_function)."""
        self.unschedulable: dict[str, int] = {}
        """function name -> its pods the scheduler found no room for (``Pending``, ``Unschedulable``)."""
        self.pulling: dict[str, int] = {}
        """function name -> its pods scheduled and not yet running (``Pending``, pulling an image)."""
        self.stalled: Optional[threading.Event] = None
        """While set to an event, every request waits for it and is then closed unanswered (a stalled server)."""
        self.stalled_requests = 0
        """Requests that arrived while the server was stalled."""
        self.nodes: list[dict] = []
        """Node objects as a test writes them (a device plugin's annotations)."""
        self.pods: list[dict] = []
        """Pod objects of any namespace as a test writes them, beside the function pods above."""
        self.lock = threading.Lock()
        self.failures: list[int] = []
        self.requests: list[tuple[str, str]] = []
        self.verbs: list[tuple[str, str, str, str]] = []
        """(verb, API group, resource[/subresource], namespace) of every request."""
        self.token, self.rules, self.user = token, rules, user
        self.interleaved: dict[tuple[str, str, str], Callable[[dict], None]] = {}
        self.version = 100
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method):
                stalled = emulator.stalled
                if stalled is not None:  # an API server that does not answer: not these requests, ever
                    with emulator.lock:
                        emulator.stalled_requests += 1
                    stalled.wait(60.0)
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, doc, headers = emulator.handle(method, self.path, self.headers.get("Content-Type", ""), body,
                                                     self.headers.get("Authorization", ""))
                payload = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_PATCH(self):  # noqa: N802
                self._handle("PATCH")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # --- what a test does out of band --------------------------------------------
    def add(self, obj):
        """Write a Deployment as another client would (faas-netes creating or
        replacing a function): the server's metadata is kept or made."""
        with self.lock:
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            self._store(self.deployments, key, copy.deepcopy(obj), self.deployments.get(key))

    def add_knative(self, obj):
        with self.lock:
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            self._store(self.knative, key, copy.deepcopy(obj), self.knative.get(key))

    def add_revision(self, service: str, name: str, actual_replicas: Optional[int], namespace: str = "default",
                     ready: bool = True):
        """What Knative's controllers do once a Service's template changes:
        a Revision ``name`` (its ``status.actualReplicas``, the ready pods its
        PodAutoscaler counts, left out while not known), named the Service's
        latest created revision, and its latest ready one where ``ready``."""
        with self.lock:
            status = {} if actual_replicas is None else {"actualReplicas": actual_replicas}
            self.revisions[(namespace, name)] = {"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
                                                 "metadata": {"name": name, "namespace": namespace, "labels": {
                                                     "serving.knative.dev/service": service}},
                                                 "status": status}
            svc_status = self.knative[(namespace, service)].setdefault("status", {})
            svc_status["latestCreatedRevisionName"] = name
            if ready:
                svc_status["latestReadyRevisionName"] = name

    def get(self, name, namespace="openfaas-fn"):
        return self.deployments[(namespace, name)]

    def set_ready(self, name: str, ready: int, namespace: str = "openfaas-fn"):
        """What a Deployment controller reports once ``ready`` pods pass their
        readiness probes (this emulator runs no controller): the status's
        ``readyReplicas``, left out while zero as the real server does."""
        with self.lock:
            status = self.deployments[(namespace, name)].setdefault("status", {})
            status.pop("readyReplicas", None)
            if ready:
                status["readyReplicas"] = ready

    def fail_next(self, count, status=500):
        self.failures.extend([status] * count)

    def interleave(self, resource: str, name: str, change: Callable[[dict], None], namespace: str = "openfaas-fn"):
        """Another writer changes the object just before the next write to it
        arrives (between a client's read and its write)."""
        self.interleaved[(resource, namespace, name)] = change

    # --- the server ------------------------------------------------------------------
    def _store(self, table, key, obj, old):
        meta = obj.setdefault("metadata", {})
        self.version += 1
        meta["resourceVersion"] = str(self.version)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = CREATED
            meta["generation"] = 1
        else:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            changed = obj.get("spec") != old.get("spec")
            if obj.get("kind") == "Deployment":  # the deployment strategy also counts annotation changes
                changed = changed or meta.get("annotations") != old["metadata"].get("annotations")
            meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
        table[key] = obj

    @staticmethod
    def status(code, reason, message, details=None):
        doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
               "reason": reason, "code": code}
        if details:
            doc["details"] = details
        return code, doc, []

    def _authorize(self, verb, group, resource, namespace, name, authorization):
        if self.token is None:
            return None
        if authorization != f"Bearer {self.token}":
            return self.status(401, "Unauthorized", "Unauthorized")
        if self.rules is None or any(
                group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
                and verb in rule.get("verbs", []) for rule in self.rules):
            return None
        base = resource.split("/")[0]
        subject = f'{base}.{group} "{name}"' if group and name else (f'{base} "{name}"' if name else
                                                                     (f"{base}.{group}" if group else base))
        return self.status(403, "Forbidden", f'{subject} is forbidden: User "{self.user}" cannot {verb} resource '
                                             f'"{resource}" in API group "{group}" in the namespace "{namespace}"',
                           {"name": name, "group": group, "kind": base})

    def _invalid(self, obj, group):
        """422 for a schema error, or the warnings for unknown fields."""
        kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=False)
        except kubernetes_validate.ValidationError as err:
            field = ".".join(str(p) for p in err.path)
            message = f'{kind}.{group} "{name}" is invalid: {field}: Invalid value: {json.dumps(err.instance)}: ' \
                      f"{err.message}"
            return self.status(422, "Invalid", message, {"name": name, "group": group, "kind": kind,
                                                         "causes": [{"reason": "FieldValueInvalid",
                                                                     "message": err.message, "field": field}]}), []
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            unknown = re.findall(r"'([^']+)' was unexpected", err.message) or [err.message]
            prefix = ".".join(str(p) for p in err.path)
            return None, [f'299 - "unknown field \\"{prefix + "." if prefix else ""}{u}\\""' for u in unknown]
        return None, []

    def handle(self, method, raw_path, content_type, body, authorization=""):
        with self.lock:
            self.requests.append((method, raw_path))
            url = urlparse(raw_path)
            for pattern, group, resource in ROUTES:
                match = re.match(pattern, url.path)
                if match:
                    break
            else:
                return self.status(404, "NotFound", "the server could not find the requested resource")
            groups = match.groupdict()
            namespace, name, sub = groups.get("ns"), unquote(groups.get("name") or ""), groups.get("sub")
            verb = VERBS.get(method, method.lower())
            if method == "GET" and not name:
                verb = "watch" if parse_qs(url.query).get("watch") == ["true"] else "list"
            full = resource + ("/scale" if sub else "")
            self.verbs.append((verb, group, full, namespace))
            denied = self._authorize(verb, group, full, namespace, name, authorization)
            if denied:
                return denied
            if self.failures:
                code = self.failures.pop(0)
                return self.status(code, "InternalError" if code >= 500 else "Failure", "injected failure")
            if resource == "pods":
                return self._pods(url, namespace)
            if resource == "revisions" and method == "GET" and not name:
                items = [r for (ns, _), r in self.revisions.items() if ns == namespace]
                return 200, {"kind": "RevisionList", "apiVersion": "serving.knative.dev/v1",
                             "metadata": {"resourceVersion": str(self.version)},
                             "items": copy.deepcopy(_labelled(items, parse_qs(url.query).get("labelSelector",
                                                                                               [""])[0]))}, []
            if resource == "services" and method == "GET" and not name:  # a namespace's Knative Services
                items = [svc for (ns, _), svc in self.knative.items() if ns == namespace]
                return 200, {"kind": "ServiceList", "apiVersion": "serving.knative.dev/v1",
                             "metadata": {"resourceVersion": str(self.version)}, "items": copy.deepcopy(items)}, []
            if resource == "nodes":
                return 200, {"kind": "NodeList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(self.version)},
                             "items": copy.deepcopy(self.nodes)}, []
            table = {"deployments": self.deployments, "revisions": self.revisions,
                     "leases": self.leases}.get(resource, self.knative)
            return self._object(table, method, group, resource, namespace, name, sub, content_type, body)

    def _pods(self, url, namespace: Optional[str]):
        """The function pods (label ``faas_function``, in ``openfaas-fn``) and
        the test's own (``pods``), of the namespace asked or all, that match
        the list's label selector (one label's existence, or ``key=value``)
        and field selector (``status.phase=PHASE`` or ``!=``, terms joined by
        commas), as the real server filters."""
        query = parse_qs(url.query)
        selector = query.get("labelSelector", [""])[0]
        fields = [term for term in query.get("fieldSelector", [""])[0].split(",") if term]
        pods = [{"metadata": {"name": f"{fn}-{i}", "labels": {"faas_function": fn}},
                 "status": {"podIP": ip, "phase": "Running"}}
                for fn, ips in self.pod_ips.items() for i, ip in enumerate(ips)]
        pods += [{"metadata": {"name": f"{fn}-pending-{i}", "labels": {"faas_function": fn}},
                  "status": {"phase": "Pending", "conditions": [{
                      "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpucores."}]}}
                 for fn, count in self.unschedulable.items() for i in range(count)]
        pods += [{"metadata": {"name": f"{fn}-pulling-{i}", "labels": {"faas_function": fn}},
                  "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}
                 for fn, count in self.pulling.items() for i in range(count)]
        for pod in pods:
            pod["metadata"]["namespace"] = "openfaas-fn"
        pods += copy.deepcopy(self.pods)
        if namespace is not None:
            pods = [p for p in pods if p["metadata"].get("namespace") == namespace]
        pods = _labelled(pods, selector)
        for term in fields:
            key, negated, value = re.match(r"^([^!=]+)(!?)==?(.*)$", term).groups()
            if key != "status.phase":
                return self.status(400, "BadRequest", f'"{key}" is not a known field selector: only "status.phase"')
            pods = [p for p in pods if (p["status"].get("phase") == value) != bool(negated)]
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.version)},
                     "items": pods}, []

    def _object(self, table, method, group, resource, namespace, name, sub, content_type, body):
        what = f"{resource}.{group}"
        typed = resource in ("deployments", "leases")  # built-in kinds: validated, strategic merge
        if method == "POST":
            if name:
                return self.status(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                            "resource")
            try:
                obj = json.loads(body or b"null")
            except ValueError as err:
                return self.status(400, "BadRequest", f"the body of the request was in an unknown format: {err}")
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            if not isinstance(meta, dict) or not meta.get("name"):
                return self.status(422, "Invalid", f"{KINDS[resource]}.{group} \"\" is invalid: metadata.name: "
                                                   "Required value: name or generateName is required")
            if meta.get("resourceVersion"):
                return self.status(500, "InternalError", "resourceVersion should not be set on objects to be created")
            key = (namespace, meta["name"])
            if key in table:
                return self.status(409, "AlreadyExists", f'{what} "{meta["name"]}" already exists',
                                   {"name": meta["name"], "group": group, "kind": resource})
            meta["namespace"] = namespace
            if typed:
                refused, warnings = self._invalid(obj, group)
                if refused:
                    return refused
            else:
                warnings = []
            self._store(table, key, obj, None)
            return 201, obj, [("Warning", w) for w in warnings]
        obj = table.get((namespace, name))
        if obj is None:
            return self.status(404, "NotFound", f'{what} "{name}" not found',
                               {"name": name, "group": group, "kind": resource})
        if method == "GET":
            return 200, self._scale(obj) if sub else obj, []
        if method != "PATCH":
            return self.status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        change = self.interleaved.pop((resource, namespace, name), None)
        if change is not None:  # another writer, between the client's read and this write
            other = copy.deepcopy(obj)
            change(other)
            self._store(table, (namespace, name), other, obj)
            obj = other
        try:
            patch = json.loads(body or b"null")
        except ValueError as err:
            return self.status(400, "BadRequest", f"error decoding patch: {err}")
        current = self._scale(obj) if sub else obj
        try:
            if "json-patch" in content_type:
                patched = json_patch(current, patch)
            elif "strategic-merge-patch" in content_type:
                if not typed:
                    return self.status(415, "UnsupportedMediaType", "the body of the request was in an unknown "
                                       "format - accepted media types include: application/json-patch+json, "
                                       "application/merge-patch+json, application/apply-patch+yaml")
                patched = strategic_merge(current, patch)
            elif "merge-patch" in content_type:
                patched = merge_patch(current, patch)
            else:
                return self.status(415, "UnsupportedMediaType", f"the media type {content_type!r} is not a patch")
        except PatchFailed as err:
            return self.status(422, "Invalid", f"the server rejected our request due to an error in our request: {err}")
        if not isinstance(patched, dict):
            return self.status(400, "BadRequest", "a patch must leave an object")
        wanted_version = (patched.get("metadata") or {}).get("resourceVersion")
        if wanted_version is not None and wanted_version != obj["metadata"]["resourceVersion"]:
            return self.status(409, "Conflict", f'Operation cannot be fulfilled on {what} "{name}": the object has '
                                                "been modified; please apply your changes to the latest version and "
                                                "try again", {"name": name, "group": group, "kind": resource})
        if sub:
            replicas = (patched.get("spec") or {}).get("replicas")
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                return self.status(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid '
                                                   f"value: {json.dumps(replicas)}: must be greater than or equal to 0")
            new = copy.deepcopy(obj)
            new["spec"]["replicas"] = replicas
            warnings = []
        else:
            new = patched
            for field in ("uid", "creationTimestamp", "name", "namespace"):  # the server keeps its own
                new.setdefault("metadata", {})[field] = obj["metadata"][field]
            warnings = []
            if typed:
                refused, warnings = self._invalid(new, group)
                if refused:
                    return refused
        self._store(table, (namespace, name), new, obj)
        return 200, self._scale(new) if sub else new, [("Warning", w) for w in warnings]

    @staticmethod
    def _scale(obj):
        meta = obj["metadata"]
        labels = obj["spec"].get("selector", {}).get("matchLabels", {})
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                             "resourceVersion": meta["resourceVersion"],
                             "creationTimestamp": meta["creationTimestamp"]},
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}
