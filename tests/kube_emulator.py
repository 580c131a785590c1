"""A Kubernetes API emulator over real HTTP, for the scaler's tests.

Implements what the scaler uses: apps/v1 Deployments (GET, PATCH with
strategic merge — containers and env merged by name — or JSON merge),
their scale subresource (GET, PATCH), and pod lists; resourceVersion
conflicts (409) and injected failures (any status for the next N requests).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MERGE_KEYS = {"containers": "name", "env": "name", "initContainers": "name", "ports": "containerPort",
              "volumes": "name", "volumeMounts": "mountPath"}


def strategic_merge(target, patch, key=None):
    if isinstance(target, dict) and isinstance(patch, dict):
        out = copy.deepcopy(target)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(target, list) and isinstance(patch, list) and key in MERGE_KEYS:
        name = MERGE_KEYS[key]
        out = copy.deepcopy(target)
        index = {item.get(name): i for i, item in enumerate(out) if isinstance(item, dict)}
        for item in patch:
            if item.get(name) in index:
                out[index[item[name]]] = strategic_merge(out[index[item[name]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


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


def deployment(name, namespace="openfaas-fn", replicas=1, env=None, image="localhost:5000/esg/fn:latest"):
    """A Deployment as faas-netes creates one for a function."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"faas_function": name},
                     "annotations": {}, "resourceVersion": "1"},
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
    }


class KubeEmulator:
    def __init__(self):
        self.deployments: dict[tuple[str, str], dict] = {}
        self.knative: dict[tuple[str, str], dict] = {}
        self.pod_ips: dict[str, list[str]] = {}
        """function name -> IPs of its running pods (label faas_function)."""
        self.lock = threading.Lock()
        self.failures: list[int] = []
        self.conflicts = 0
        self.requests: list[tuple[str, str]] = []
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, doc = emulator.handle(method, self.path, self.headers.get("Content-Type", ""), body)
                self._send(code, doc)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_PATCH(self):  # noqa: N802
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def add(self, obj):
        self.deployments[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    def get(self, name, namespace="openfaas-fn"):
        return self.deployments[(namespace, name)]

    def fail_next(self, count, status=500):
        self.failures.extend([status] * count)

    @staticmethod
    def status(code, reason, message):
        return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                      "message": message, "code": code}

    def handle(self, method, path, content_type, body):
        with self.lock:
            self.requests.append((method, path))
            if self.failures:
                code = self.failures.pop(0)
                return self.status(code, "InternalError" if code >= 500 else "Failure", "injected failure")
            match = re.match(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/?]+)(/scale)?(\?.*)?$", path)
            if match:
                namespace, name, scale = match.group(1), match.group(2), match.group(3)
                obj = self.deployments.get((namespace, name))
                if obj is None:
                    return self.status(404, "NotFound", f'deployments.apps "{name}" not found')
                if method == "GET":
                    return 200, self._scale(obj) if scale else obj
                patch = json.loads(body or b"{}")
                if self.conflicts:
                    self.conflicts -= 1
                    return self.status(409, "Conflict", "the object has been modified")
                wanted_version = (patch.get("metadata") or {}).get("resourceVersion")
                if wanted_version is not None and wanted_version != obj["metadata"]["resourceVersion"]:
                    return self.status(409, "Conflict", "the object has been modified; please apply your changes "
                                                        "to the latest version and try again")
                if scale:
                    replicas = (patch.get("spec") or {}).get("replicas")
                    if not isinstance(replicas, int) or replicas < 0:
                        return self.status(422, "Invalid", "spec.replicas must be a non-negative integer")
                    obj["spec"]["replicas"] = replicas
                else:
                    merged = (strategic_merge(obj, patch) if "strategic" in content_type else merge_patch(obj, patch))
                    obj.clear()
                    obj.update(merged)
                obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
                return 200, self._scale(obj) if scale else obj
            match = re.match(r"^/apis/serving.knative.dev/v1/namespaces/([^/]+)/services/([^/?]+)$", path)
            if match:
                obj = self.knative.get((match.group(1), match.group(2)))
                if obj is None:
                    return self.status(404, "NotFound", f'services.serving.knative.dev "{match.group(2)}" not found')
                if method == "GET":
                    return 200, obj
                if "merge-patch" not in content_type:
                    return self.status(415, "UnsupportedMediaType",
                                       "strategic merge patch is not supported for custom resources")
                merged = merge_patch(obj, json.loads(body or b"{}"))
                obj.clear()
                obj.update(merged)
                obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
                return 200, obj
            if re.match(r"^/api/v1/namespaces/[^/]+/pods", path):
                selected = re.search(r"labelSelector=faas_function%3D([^&]+)", path)
                ips = self.pod_ips.get(selected.group(1), []) if selected else []
                items = [{"metadata": {"name": f"pod-{i}"}, "status": {"podIP": ip, "phase": "Running"}}
                         for i, ip in enumerate(ips)]
                return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
            return self.status(404, "NotFound", f"no route {path}")

    @staticmethod
    def _scale(obj):
        meta = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "resourceVersion": meta["resourceVersion"]},
                "spec": {"replicas": obj["spec"]["replicas"]}, "status": {"replicas": obj["spec"]["replicas"]}}
