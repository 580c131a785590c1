"""Actuators: apply only what differs between the desired and the current
state of each function, and report each change.

- ``openfaas-kubernetes``: the function's Deployment. Replicas through the
  scale subresource; the GPU share through the pod template (env
  ``ESG_GPU_SHARE`` and ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``, or HAMi's
  ``nvidia.com/gpucores`` and ``nvidia.com/gpumem`` limits) — re-applied
  whenever a redeploy with faas-cli has wiped it; batch size and timeout as
  Deployment annotations (no restart) and pushed live to every pod's
  ``/_esg/config``.
- ``knative``: the Knative Service's ``autoscaling.knative.dev/min-scale``
  and ``max-scale`` and the container env.
- ``openfaas-gateway``: replicas only, ``POST /system/scale-function/<name>``.
- ``dry-run``: remembers and reports, changes nothing.

Conflicts (409) are retried after re-reading, transient failures (5xx,
timeouts) with exponential backoff; 404 means the function is gone.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from .decider import FunctionState

log = logging.getLogger("esg.scaler")

ANNOTATION_BATCH = "com.esg.batch-size"
ANNOTATION_WAIT = "com.esg.max-wait-ms"
SHARE_ENV = ("ESG_GPU_SHARE", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")


@dataclass(frozen=True)
class Change:
    function: str
    kind: str
    """replicas, gpu_share, batching, gone, error."""
    before: object
    after: object


class Actuator:
    name = "actuator"

    def current(self, functions: list[str]) -> dict[str, FunctionState]:  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, desired: Mapping[str, FunctionState]) -> list[Change]:  # pragma: no cover - interface
        raise NotImplementedError


def diff_states(fn: str, cur: Optional[FunctionState], want: FunctionState) -> list[Change]:
    if cur is None:
        return [Change(fn, "replicas", None, want.replicas), Change(fn, "gpu_share", None, want.gpu_share),
                Change(fn, "batching", None, (want.batch_size, want.max_wait_ms))]
    out = []
    if cur.replicas != want.replicas:
        out.append(Change(fn, "replicas", cur.replicas, want.replicas))
    if cur.gpu_share != want.gpu_share:
        out.append(Change(fn, "gpu_share", cur.gpu_share, want.gpu_share))
    if (cur.batch_size, cur.max_wait_ms) != (want.batch_size, want.max_wait_ms):
        out.append(Change(fn, "batching", (cur.batch_size, cur.max_wait_ms), (want.batch_size, want.max_wait_ms)))
    return out


class DryRunActuator(Actuator):
    name = "dry-run"

    def __init__(self) -> None:
        self.state: dict[str, FunctionState] = {}

    def current(self, functions):
        return {f: self.state[f] for f in functions if f in self.state}

    def apply(self, desired):
        changes = []
        for fn, want in desired.items():
            for change in diff_states(fn, self.state.get(fn), want):
                log.info("dry-run: %s %s %s -> %s", fn, change.kind, change.before, change.after)
                changes.append(change)
            self.state[fn] = want
        return changes


def retrying(call: Callable, is_conflict: Callable[[Exception], bool], is_transient: Callable[[Exception], bool],
             attempts: int = 4, backoff_s: float = 0.1, on_conflict: Optional[Callable[[], None]] = None):
    """Run ``call``; retry conflicts (after ``on_conflict``) and transient
    failures with exponential backoff; re-raise anything else."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:
            if attempt + 1 == attempts or not (is_conflict(err) or is_transient(err)):
                raise
            if is_conflict(err) and on_conflict is not None:
                on_conflict()
            time.sleep(backoff_s * (2 ** attempt))


def read_states(functions: list[str], read: Callable[[str], FunctionState]) -> dict[str, FunctionState]:
    """The current state of each function that can be read; one that is gone
    (404) is left out quietly, any other failure is logged and left out."""
    out = {}
    for fn in functions:
        try:
            out[fn] = read(fn)
        except Exception as err:
            if getattr(err, "status", None) != 404:
                log.warning("reading %s failed: %s", fn, err)
    return out


class KubernetesActuator(Actuator):
    """OpenFaaS functions as Deployments, through the official client."""

    name = "openfaas-kubernetes"

    def __init__(self, api_client, namespace: str, share_mode: str = "env", gpu_memory_mb: int = 16000,
                 function_port: int = 8080, function_token: Optional[str] = None, push_timeout_s: float = 1.0):
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.share_mode = share_mode
        self.gpu_memory_mb = gpu_memory_mb
        self.function_port = function_port
        self.function_token = function_token
        self.push_timeout_s = push_timeout_s

    # --- errors ------------------------------------------------------------
    @staticmethod
    def _status(err: Exception) -> Optional[int]:
        return getattr(err, "status", None)

    def _conflict(self, err):
        return self._status(err) == 409

    def _transient(self, err):
        status = self._status(err)
        if status is not None:
            return status >= 500 or status == 429
        import urllib3

        return isinstance(err, (urllib3.exceptions.HTTPError, OSError))

    def _call(self, call):
        return retrying(call, self._conflict, self._transient)

    # --- reading -----------------------------------------------------------
    def _read(self, fn: str):
        return self._call(lambda: self.apps.read_namespaced_deployment(fn, self.namespace))

    def _state_of(self, deployment) -> FunctionState:
        container = deployment.spec.template.spec.containers[0]
        env = {e.name: e.value for e in (container.env or [])}
        annotations = deployment.metadata.annotations or {}
        if self.share_mode == "hami":
            limits = (container.resources.limits or {}) if container.resources else {}
            share = int(limits.get("nvidia.com/gpucores", 100))
        else:
            share = int(env.get("ESG_GPU_SHARE", 100))
        return FunctionState(
            replicas=int(deployment.spec.replicas or 0),
            batch_size=int(annotations.get(ANNOTATION_BATCH, env.get("ESG_MAX_BATCH_SIZE", 1))),
            max_wait_ms=float(annotations.get(ANNOTATION_WAIT, env.get("ESG_MAX_WAIT_MS", 0))),
            gpu_share=share,
        )

    def current(self, functions):
        return read_states(functions, lambda fn: self._state_of(self._read(fn)))

    # --- writing -----------------------------------------------------------
    def apply(self, desired):
        changes = []
        for fn, want in desired.items():
            try:
                deployment = self._read(fn)
            except Exception as err:
                if self._status(err) == 404:
                    changes.append(Change(fn, "gone", None, None))
                else:
                    changes.append(Change(fn, "error", None, f"read: {err}"))
                continue
            cur = self._state_of(deployment)
            for change in diff_states(fn, cur, want):
                try:
                    self._apply_one(fn, deployment, change, want)
                    changes.append(change)
                except Exception as err:
                    kind = "gone" if self._status(err) == 404 else "error"
                    changes.append(Change(fn, kind, change.kind, str(err).splitlines()[0]))
        return changes

    def _apply_one(self, fn, deployment, change: Change, want: FunctionState) -> None:
        if change.kind == "replicas":
            self._call(lambda: self.apps.patch_namespaced_deployment_scale(
                fn, self.namespace, {"spec": {"replicas": want.replicas}}))
        elif change.kind == "gpu_share":
            container = deployment.spec.template.spec.containers[0].name
            patch_container: dict = {"name": container}
            if self.share_mode == "hami":
                memory = int(self.gpu_memory_mb * want.gpu_share / 100)
                patch_container["resources"] = {"limits": {"nvidia.com/gpucores": str(want.gpu_share),
                                                           "nvidia.com/gpumem": str(memory)}}
            patch_container["env"] = [{"name": n, "value": str(want.gpu_share)} for n in SHARE_ENV]
            self._call(lambda: self.apps.patch_namespaced_deployment(
                fn, self.namespace, {"spec": {"template": {"spec": {"containers": [patch_container]}}}}))
        elif change.kind == "batching":
            self._call(lambda: self.apps.patch_namespaced_deployment(fn, self.namespace, {"metadata": {"annotations": {
                ANNOTATION_BATCH: str(want.batch_size), ANNOTATION_WAIT: str(want.max_wait_ms)}}}))
            self._push_live(fn, want)

    def _push_live(self, fn: str, want: FunctionState) -> None:
        """PUT /_esg/config on every running pod of the function (best effort:
        a pod that starts later reads the annotations through its env at the
        next redeploy, and is pushed to at the next change)."""
        try:
            pods = self._call(lambda: self.core.list_namespaced_pod(self.namespace,
                                                                    label_selector=f"faas_function={fn}"))
        except Exception as err:
            log.warning("listing pods of %s failed: %s", fn, err)
            return
        body = json.dumps({"max_batch_size": want.batch_size, "max_wait_ms": want.max_wait_ms}).encode()
        for pod in pods.items:
            ip = pod.status.pod_ip if pod.status else None
            if not ip:
                continue
            request = urllib.request.Request(f"http://{ip}:{self.function_port}/_esg/config", data=body, method="PUT",
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {self.function_token or ''}"})
            try:
                urllib.request.urlopen(request, timeout=self.push_timeout_s).read()
            except (urllib.error.URLError, OSError) as err:
                log.warning("pushing batch settings to %s (%s) failed: %s", fn, ip, err)


class KnativeActuator(Actuator):
    """Knative Services: min-scale = max-scale = replicas, env on the template."""

    name = "knative"
    GROUP, VERSION, PLURAL = "serving.knative.dev", "v1", "services"

    def __init__(self, api_client, namespace: str):
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def _read(self, fn):
        return self.custom.get_namespaced_custom_object(self.GROUP, self.VERSION, self.namespace, self.PLURAL, fn)

    @staticmethod
    def _state_of(svc) -> FunctionState:
        template = svc.get("spec", {}).get("template", {})
        annotations = template.get("metadata", {}).get("annotations", {}) or {}
        container = (template.get("spec", {}).get("containers") or [{}])[0]
        env = {e.get("name"): e.get("value") for e in container.get("env", []) or []}
        return FunctionState(int(annotations.get("autoscaling.knative.dev/min-scale", 1)),
                             int(env.get("ESG_MAX_BATCH_SIZE", 1)), float(env.get("ESG_MAX_WAIT_MS", 0)),
                             int(env.get("ESG_GPU_SHARE", 100)))

    def current(self, functions):
        return read_states(functions, lambda fn: self._state_of(self._read(fn)))

    def apply(self, desired):
        changes = []
        for fn, want in desired.items():
            try:
                svc = self._read(fn)
            except Exception as err:
                changes.append(Change(fn, "gone" if getattr(err, "status", None) == 404 else "error", None, str(err)))
                continue
            diff = diff_states(fn, self._state_of(svc), want)
            if not diff:
                continue
            containers = svc["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e for e in containers[0].get("env", []) or []}
            for name, value in (("ESG_MAX_BATCH_SIZE", want.batch_size), ("ESG_MAX_WAIT_MS", want.max_wait_ms),
                                ("ESG_GPU_SHARE", want.gpu_share), ("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", want.gpu_share)):
                env[name] = {"name": name, "value": str(value)}
            containers[0]["env"] = list(env.values())
            patch = {"spec": {"template": {
                "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": str(want.replicas),
                                             "autoscaling.knative.dev/max-scale": str(want.replicas)}},
                "spec": {"containers": containers}}}}
            try:
                # custom resources take JSON merge patches, not strategic merge
                self.custom.patch_namespaced_custom_object(self.GROUP, self.VERSION, self.namespace, self.PLURAL,
                                                           fn, patch, _content_type="application/merge-patch+json")
                changes.extend(diff)
            except Exception as err:
                changes.append(Change(fn, "error", None, str(err).splitlines()[0]))
        return changes


class GatewayActuator(Actuator):
    """Replicas only, through the OpenFaaS gateway's REST API."""

    name = "openfaas-gateway"

    def __init__(self, url: str, user: Optional[str] = None, password: Optional[str] = None, timeout_s: float = 5.0):
        self.url = url.rstrip("/")
        self.auth = None
        if user is not None:
            self.auth = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, body: Optional[dict] = None):
        headers = {"Content-Type": "application/json"}
        if self.auth:
            headers["Authorization"] = self.auth
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            text = response.read()
            return json.loads(text) if text else None

    def current(self, functions):
        out = {}
        for fn in functions:
            try:
                doc = self._request("GET", f"/system/function/{fn}")
                out[fn] = FunctionState(int(doc.get("replicas", 0)), 1, 0.0, 100)
            except (urllib.error.URLError, OSError, ValueError) as err:
                log.warning("reading %s failed: %s", fn, err)
        return out

    def apply(self, desired):
        changes = []
        current = self.current(list(desired))
        for fn, want in desired.items():
            before = current.get(fn)
            if before is not None and before.replicas == want.replicas:
                continue

            def scale(fn=fn, replicas=want.replicas):
                return self._request("POST", f"/system/scale-function/{fn}", {"serviceName": fn,
                                                                                "replicas": replicas})
            try:
                retrying(scale, lambda e: getattr(e, "code", None) == 409,
                         lambda e: getattr(e, "code", 500) >= 500 or isinstance(e, OSError))
                changes.append(Change(fn, "replicas", before.replicas if before else None, want.replicas))
            except urllib.error.HTTPError as err:
                changes.append(Change(fn, "gone" if err.code == 404 else "error", None, f"HTTP {err.code}"))
            except (urllib.error.URLError, OSError) as err:
                changes.append(Change(fn, "error", None, str(err)))
        return changes
