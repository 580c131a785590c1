"""The ``openfaas-kubernetes`` actuator: a function's Deployment (see the
package)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Optional

from ...jsontext import loads_json
from ...model import FunctionState
from ...runtime import contract as C
from . import gpu_room
from .base import API_TIMEOUT_S, BATCHING, GPU_SHARE, REPLICAS, ApiActuator, ApiCalls, Change, diff_states, log, \
    ready_count, reported, said_state, unschedulable
from .errors import ApiError, NotAsked, Unreadable

#: Pods that still hold what they were given: HAMi's count, and ours.
HOLDING_PODS = "status.phase!=Succeeded,status.phase!=Failed"


class RoomReader:
    """Each GPU's free share as HAMi's scheduler records it (``gpu_room.py``;
    memory at ``gpu_memory_mb`` per 100% of share, as the actuators ask it):
    the nodes and every pod not finished, all namespaces (another tenant's
    pods take room too), each list served from the API server's cache
    (``resourceVersion=0``), once each, through the actuator's ``api``
    (:class:`~.base.ApiCalls`: its timeout). None where a list fails or is
    not answered in time or a record cannot be read: said once per reason.
    For the actuators whose pods HAMi places. The lists are read as plain
    JSON, not as the client's models of every pod."""

    def __init__(self, core, gpu_memory_mb: int, api: ApiCalls):
        self.core, self.gpu_memory_mb, self.api = core, gpu_memory_mb, api
        self._failure: Optional[str] = None
        """The last reason the room could not be read, said once."""

    def read(self) -> Optional[tuple[int, ...]]:
        try:
            nodes = self._items(self.core.list_node, resource_version="0")
            pods = self._items(self.core.list_pod_for_all_namespaces, field_selector=HOLDING_PODS,
                               resource_version="0")
            room = gpu_room.free_pct(
                [(n.get("metadata") or {}).get("annotations") for n in nodes],
                [((p.get("status") or {}).get("phase"), (p.get("metadata") or {}).get("annotations")) for p in pods],
                self.gpu_memory_mb)
        except ApiError as err:
            if str(err) != self._failure:
                log.warning("each GPU's free share is not known (the law packs afresh): %s", err)
            self._failure = str(err)
            return None
        self._failure = None
        return room

    def _items(self, method, **query) -> list:
        """A list's items as plain JSON, asked once: the client's models are
        not built for every pod of the cluster (``_preload_content=False``;
        ``bench/gpu_room.py`` prints what a read takes)."""
        answer = self.api(method, attempts=1, _preload_content=False, **query)
        try:
            doc = loads_json(answer.data)
        except ValueError as err:
            raise Unreadable(f"a list that is not JSON: {err}") from None
        items = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise Unreadable("a list without its items")
        return items


class KubernetesActuator(ApiActuator):
    """OpenFaaS functions as Deployments, through the official client."""

    name = "openfaas-kubernetes"

    def __init__(self, api_client, namespace: str, share_mode: str = "env", gpu_memory_mb: int = 16000,
                 function_port: int = 8080, function_token: Optional[str] = None, push_timeout_s: float = 1.0,
                 api_timeout_s: float = API_TIMEOUT_S):
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.share_mode = share_mode
        self.gpu_memory_mb = gpu_memory_mb
        self.function_port = function_port
        self.function_token = function_token
        self.push_timeout_s = push_timeout_s
        self.api = ApiCalls(api_timeout_s)
        self.room = RoomReader(self.core, gpu_memory_mb, self.api)

    # --- reading -----------------------------------------------------------
    def current(self, functions):
        """Each function's Deployment, with its pods the scheduler found no
        room for (one list of the namespace's pending function pods)."""
        states = super().current(functions)
        try:
            pending = self.api(self.core.list_namespaced_pod, self.namespace, label_selector="faas_function",
                               field_selector="status.phase=Pending")
        except ApiError as err:
            if not isinstance(err, NotAsked):  # that one is said with the call that went unanswered
                log.warning("listing pending pods failed: %s", err)
            return states
        counts = unschedulable(pending.items, "faas_function")
        return {fn: replace(state, unplaced_replicas=counts.get(fn, 0)) for fn, state in states.items()}

    def _read(self, fn: str):
        return self.api(self.apps.read_namespaced_deployment, fn, self.namespace)

    def _state_of(self, deployment) -> FunctionState:
        container = deployment.spec.template.spec.containers[0]
        env = {e.name: e.value for e in (container.env or [])}
        annotations = deployment.metadata.annotations or {}
        limits = ((container.resources.limits or {}) if container.resources else {})
        batch = (f"the annotation {C.ANNOTATION_BATCH_SIZE}", annotations[C.ANNOTATION_BATCH_SIZE]) \
            if C.ANNOTATION_BATCH_SIZE in annotations else \
            (f"the env {C.ENV_MAX_BATCH_SIZE}", env.get(C.ENV_MAX_BATCH_SIZE, 1))
        wait = (f"the annotation {C.ANNOTATION_MAX_WAIT_MS}", annotations[C.ANNOTATION_MAX_WAIT_MS]) \
            if C.ANNOTATION_MAX_WAIT_MS in annotations else \
            (f"the env {C.ENV_MAX_WAIT_MS}", env.get(C.ENV_MAX_WAIT_MS, 0))
        state = said_state(("spec.replicas", deployment.spec.replicas or 0), batch, wait, self.share_mode, limits, env)
        # a Deployment's status leaves readyReplicas out while it is zero
        return replace(state, ready_replicas=ready_count(
            (deployment.status.ready_replicas or 0) if deployment.status else None))

    # --- writing -----------------------------------------------------------
    def apply(self, desired):
        changes = []
        for fn, want in desired.items():
            deployment = self._read_or_report(fn, changes)
            if deployment is None:
                continue
            for change in diff_states(fn, self._said_or_none(fn, deployment), want):
                try:
                    self._apply_one(fn, deployment, change, want)
                    changes.append(change)
                except ApiError as err:
                    changes.append(reported(fn, err, change.kind))
        return changes

    def _apply_one(self, fn, deployment, change: Change, want: FunctionState) -> None:
        """One patch. Deployment patches carry no resourceVersion, on purpose:
        each sets absolute values on keys the server merges by name (the
        replicas, one env entry, one annotation), so a concurrent writer's
        other fields survive and the last writer wins on ours, as with
        ``kubectl scale``. The Knative actuator, which writes a whole list,
        does carry one and re-reads on a conflict."""
        if change.kind == REPLICAS:
            self.api(self.apps.patch_namespaced_deployment_scale, fn, self.namespace,
                     {"spec": {"replicas": want.replicas}})
        elif change.kind == GPU_SHARE:
            container = deployment.spec.template.spec.containers[0].name
            patch_container: dict = {"name": container}
            if self.share_mode == "hami":
                # requests equal to limits: an extended resource must have them equal when a
                # function already requests it (a limits-only patch was refused with 422)
                hami = gpu_room.resources(want.gpu_share, self.gpu_memory_mb)
                patch_container["resources"] = {"limits": hami, "requests": dict(hami)}
            patch_container["env"] = [{"name": n, "value": str(want.gpu_share)} for n in C.SHARE_ENVS]
            self.api(self.apps.patch_namespaced_deployment, fn, self.namespace,
                     {"spec": {"template": {"spec": {"containers": [patch_container]}}}})
        elif change.kind == BATCHING:
            self.api(self.apps.patch_namespaced_deployment, fn, self.namespace, {"metadata": {"annotations": {
                C.ANNOTATION_BATCH_SIZE: str(want.batch_size), C.ANNOTATION_MAX_WAIT_MS: str(want.max_wait_ms)}}})
            self._push_live(fn, want)

    def _push_live(self, fn: str, want: FunctionState) -> None:
        """PUT /_esg/config on every running pod of the function (best effort:
        a pod that starts later reads the annotations through its env at the
        next redeploy, and is pushed to at the next change)."""
        try:
            pods = self.api(self.core.list_namespaced_pod, self.namespace, label_selector=f"faas_function={fn}")
        except ApiError as err:
            if not isinstance(err, NotAsked):
                log.warning("listing pods of %s failed: %s", fn, err)
            return
        body = json.dumps(C.config_update(want.batch_size, want.max_wait_ms)).encode()
        for pod in pods.items:
            ip = pod.status.pod_ip if pod.status else None
            if not ip:
                continue
            request = urllib.request.Request(f"http://{ip}:{self.function_port}{C.CONFIG_PATH}", data=body, method="PUT",
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {self.function_token or ''}"})
            try:
                urllib.request.urlopen(request, timeout=self.push_timeout_s).read()
            except (urllib.error.URLError, OSError) as err:
                log.warning("pushing batch settings to %s (%s) failed: %s", fn, ip, err)
