"""The embedded platform's gateway, OpenFaaS-compatible on loopback:
``/function/<name>`` (round robin over the function's workers; a refused
connection is tried once on another), ``/system/functions``,
``/system/function/<name>``, ``/system/scale-function/<name>`` (the
platform's token, JSON, a bounded count), ``/healthz`` and ``/metrics``
with OpenFaaS's names and labels: ``gateway_function_invocation_total{function_name, code}``,
``gateway_function_invocation_started{function_name}``,
``gateway_functions_seconds{function_name, code}``,
``gateway_service_count{function_name}``; ``function_name`` is
``name.openfaas-fn``."""

from __future__ import annotations

import base64
import hmac
import http.client
import json
import time
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..jsonhttp import BadBody, JsonHTTPServer, JsonRequestHandler, bearer_matches
from ..jsontext import loads_json
from ..runtime import contract as C
from .platform import LocalFunction, LocalPlatform, PlatformError, call_worker

NAMESPACE = "openfaas-fn"
"""The functions' namespace in their labels, as faas-netes names it."""
FORWARDED = ("Content-Type", C.DEADLINE_HEADER, C.REQUEST_ID_HEADER, "Authorization")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.invocations = Counter("gateway_function_invocation", "Function invocations.", ["function_name", "code"],
                                   registry=r)
        # OpenFaaS exposes this counter without the _total suffix, which the
        # Python client adds to counters: a monotonic gauge keeps the name.
        self.started = Gauge("gateway_function_invocation_started", "Function invocations started.",
                             ["function_name"], registry=r)
        self.seconds = Histogram("gateway_functions_seconds", "Function time taken.", ["function_name", "code"],
                                 registry=r)
        self.replicas = Gauge("gateway_service_count", "Current count of replicas for function.", ["function_name"],
                              registry=r)


def authorised(header: str, token: str) -> bool:
    """``Bearer <token>``, or HTTP Basic with the token as the password (as
    OpenFaaS's gateway takes its admin password), compared in constant time."""
    if header.startswith("Bearer "):
        return bearer_matches(header, token)
    if header.startswith("Basic "):
        try:
            _, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), token.encode())
    return False


def make_gateway_server(platform: LocalPlatform, host: str = "127.0.0.1", port: int = 0,
                        metrics: Optional[GatewayMetrics] = None) -> JsonHTTPServer:
    metrics = metrics or GatewayMetrics()

    def forward(name: str, method: str, path: str, body: bytes, headers: dict) -> tuple[int, list, bytes]:
        """One call to a worker; a refused connection (the request never
        reached a process, e.g. one that crashed) is tried once on another."""
        tried = None
        for _attempt in range(2):
            worker = platform.acquire(name, avoid=tried)
            if worker is None:
                return 503, [], json.dumps({"error": f"{name} has no replicas"}).encode()
            try:
                return call_worker(worker.port, method, path, body, headers)
            except ConnectionRefusedError as err:
                tried, error = worker, err
            except (OSError, http.client.HTTPException) as err:
                return 502, [], json.dumps({"error": f"{name}: {err or type(err).__name__}"}).encode()
            finally:
                platform.release(worker)
        return 502, [], json.dumps({"error": f"{name}: {error}"}).encode()

    class Handler(JsonRequestHandler):
        def _function(self, method: str) -> None:
            rest = self.path[len("/function/"):]
            name, _, sub = rest.partition("/")
            name, query = name.split("?", 1) if "?" in name else (name, "")
            forward_path = "/" + sub if sub else "/" + (f"?{query}" if query else "")
            label = f"{name}.{NAMESPACE}"
            if name not in platform.functions:
                return self._json(404, {"error": f"no function {name!r}"})
            try:
                body = self._body()
            except BadBody as err:
                return self._refuse(err)
            metrics.started.labels(function_name=label).inc()
            started = time.perf_counter()
            headers_in = {k: self.headers[k] for k in FORWARDED if self.headers.get(k)}
            code, headers, out = forward(name, method, forward_path, body, headers_in)
            metrics.invocations.labels(function_name=label, code=str(code)).inc()
            metrics.seconds.labels(function_name=label, code=str(code)).observe(time.perf_counter() - started)
            self._send(code, out, headers=headers)

        def _describe(self, fn: LocalFunction) -> dict:
            return {"name": fn.name, "namespace": NAMESPACE, "replicas": fn.state.replicas,
                    "availableReplicas": len(fn.workers), "image": "local", "labels": fn.labels,
                    "annotations": fn.annotations, "envVars": fn.env}

        def do_GET(self):  # noqa: N802
            if self.path.startswith("/function/"):
                return self._function("GET")
            if self.path == "/healthz":
                return self._json(200, {"status": "ok"})
            if self.path == "/metrics":
                for fn in platform.functions.values():
                    metrics.replicas.labels(function_name=f"{fn.name}.{NAMESPACE}").set(len(fn.workers))
                return self._send(200, generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)
            if self.path == "/system/functions":
                return self._json(200, [self._describe(fn) for fn in platform.functions.values()])
            if self.path.startswith("/system/function/"):
                fn = platform.functions.get(self.path.rsplit("/", 1)[-1])
                return self._json(200, self._describe(fn)) if fn else self._json(404, {"error": "no such function"})
            self._json(404, {"error": f"no such path {self.path}"})

        def do_POST(self):  # noqa: N802
            if self.path.startswith("/function/"):
                return self._function("POST")
            if self.path.startswith("/system/scale-function/"):
                if not authorised(self.headers.get("Authorization", ""), platform.token):
                    self.send_response(401)
                    body = json.dumps({"error": "the gateway's mutating endpoints need its token: "
                                                "'Authorization: Bearer <token>' or Basic with it as the password"})
                    self.send_header("WWW-Authenticate", 'Basic realm="esg gateway"')
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.wfile.write(body.encode())
                if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
                    return self._json(415, {"error": "the body must be JSON (Content-Type: application/json)"})
                name = self.path.rsplit("/", 1)[-1]
                if name not in platform.functions:
                    return self._json(404, {"error": f"no function {name!r}"})
                try:
                    replicas = loads_json(self._body(64 * 1024))["replicas"]
                    if isinstance(replicas, bool) or not isinstance(replicas, int) \
                            or not 0 <= replicas <= platform.max_replicas:
                        raise ValueError
                except BadBody as err:
                    return self._refuse(err)
                except (ValueError, KeyError, TypeError):
                    return self._json(400, {"error": f"expected {{\"replicas\": n}} with n an integer in "
                                                     f"0..{platform.max_replicas}"})
                try:
                    platform.scale(name, replicas)
                except PlatformError as err:
                    return self._json(503 if platform.closed else 500, {"error": str(err)})
                return self._send(202, b"")  # accepted: the rollout acts, as faas-netes's Deployment does
            self._json(404, {"error": f"no such path {self.path}"})

    return JsonHTTPServer((host, port), Handler)
