"""The ``knative`` actuator: a Knative Service (see the package)."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from ...model import FunctionState
from ...runtime import contract as C
from . import gpu_room
from .base import API_TIMEOUT_S, ApiActuator, ApiCalls, Change, diff_states, log, read_states, ready_count, reported, \
    retrying, said_state, unschedulable
from .errors import ApiError, NotAsked, Unreadable
from .kubernetes import RoomReader

SERVICE_LABEL = "serving.knative.dev/service"
"""The label Knative puts on a Service's pods: the Service's name."""
MIN_SCALE, MAX_SCALE = "autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale"


class KnativeActuator(ApiActuator):
    """Knative Services: min-scale = max-scale = replicas, env on the template;
    read back with the replicas in service of the revisions that serve it.
    A Service whose two annotations are not one count (unset: Knative may
    scale it to zero) is not read, and its next change writes them."""

    name = "knative"
    GROUP, VERSION, PLURAL = "serving.knative.dev", "v1", "services"
    REVISIONS = "revisions"

    def __init__(self, api_client, namespace: str, share_mode: str = "env", gpu_memory_mb: int = 16000,
                 api_timeout_s: float = API_TIMEOUT_S):
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.share_mode = share_mode
        self.gpu_memory_mb = gpu_memory_mb
        self.api = ApiCalls(api_timeout_s)
        self.room = RoomReader(self.core, gpu_memory_mb, self.api)
        self._revisions_failure: Optional[str] = None

    def _read(self, fn, attempts: int = 4):
        return self.api(self.custom.get_namespaced_custom_object, self.GROUP, self.VERSION, self.namespace,
                        self.PLURAL, fn, attempts=attempts)

    def current(self, functions):
        """Each Service's state, with its replicas in service
        (``ready_replicas``): the ``status.actualReplicas`` (ready pods, from
        its PodAutoscaler) of the latest created revision, and of the latest
        ready one where that is another (it serves until the new one is
        ready) — as a Deployment's ``readyReplicas`` counts the pods of both
        ReplicaSets of a rollout (one list of the namespace's revisions).
        None (not known: the profile's cold start stands in) where a
        revision is not named, not listed, or has no count yet. And its
        pods the scheduler found no room for (``unplaced_replicas``): one
        list of the namespace's pending pods with Knative's
        ``serving.knative.dev/service`` label."""
        ready = self._revision_counts()
        states = read_states(functions, lambda fn: self._with_ready(self._read(fn), ready))
        try:
            pending = self.api(self.core.list_namespaced_pod, self.namespace, label_selector=SERVICE_LABEL,
                               field_selector="status.phase=Pending")
        except ApiError as err:
            if not isinstance(err, NotAsked):  # that one is said with the call that went unanswered
                log.warning("listing pending pods failed: %s", err)
            return states
        unplaced = unschedulable(pending.items, SERVICE_LABEL)
        return {fn: replace(state, unplaced_replicas=unplaced.get(fn, 0)) for fn, state in states.items()}

    def _revision_counts(self) -> Optional[dict[str, Optional[int]]]:
        """Each revision of the namespace's Services, by name: its ready pods
        (``status.actualReplicas``; None while not counted). One list; None
        where it fails (said once per reason)."""
        try:
            revisions = self.api(self.custom.list_namespaced_custom_object, self.GROUP, self.VERSION, self.namespace,
                                 self.REVISIONS, label_selector=SERVICE_LABEL)
        except ApiError as err:
            if str(err) != self._revisions_failure and not isinstance(err, NotAsked):  # said once per reason
                log.warning("listing revisions failed (replicas in service not known): %s", err)
            self._revisions_failure = str(err)
            return None
        self._revisions_failure = None
        return {(r.get("metadata") or {}).get("name"): ready_count((r.get("status") or {}).get("actualReplicas"))
                for r in revisions.get("items") or [] if isinstance(r, dict)}

    def _with_ready(self, svc, counts: Optional[dict[str, Optional[int]]]) -> FunctionState:
        return replace(self._state_of(svc), ready_replicas=self._ready(svc, counts))

    @staticmethod
    def _ready(svc, counts: Optional[dict[str, Optional[int]]]) -> Optional[int]:
        status = svc.get("status") or {}
        created, serving = status.get("latestCreatedRevisionName"), status.get("latestReadyRevisionName")
        if counts is None or not isinstance(created, str) or not created:
            return None
        total = 0
        for name in dict.fromkeys(n for n in (created, serving) if isinstance(n, str) and n):
            if counts.get(name) is None:
                return None  # not listed, or not counted yet
            total += counts[name]
        return total

    def _state_of(self, svc) -> FunctionState:
        template = svc.get("spec", {}).get("template", {})
        annotations = template.get("metadata", {}).get("annotations", {}) or {}
        container = (template.get("spec", {}).get("containers") or [{}])[0]
        env = {e.get("name"): e.get("value") for e in container.get("env", []) or []}
        limits = (container.get("resources") or {}).get("limits") or {}
        if annotations.get(MIN_SCALE) is None or annotations.get(MAX_SCALE) != annotations.get(MIN_SCALE):
            # Knative's autoscaler moves the replicas between the two (from 0 where min-scale is unset):
            # not a count the scaler set
            raise Unreadable(f"the annotations {MIN_SCALE} and {MAX_SCALE} say {annotations.get(MIN_SCALE)!r} and "
                             f"{annotations.get(MAX_SCALE)!r}: not one replica count")
        return said_state((f"the annotation {MIN_SCALE}", annotations[MIN_SCALE]),
                          (f"the env {C.ENV_MAX_BATCH_SIZE}", env.get(C.ENV_MAX_BATCH_SIZE, 1)),
                          (f"the env {C.ENV_MAX_WAIT_MS}", env.get(C.ENV_MAX_WAIT_MS, 0)), self.share_mode, limits, env)

    def apply(self, desired):
        changes = []
        for fn, want in desired.items():
            try:
                changes.extend(retrying(lambda fn=fn, want=want: self._patch(fn, want)))
            except ApiError as err:
                changes.append(reported(fn, err))
        return changes

    def _patch(self, fn: str, want: FunctionState) -> list[Change]:
        """Read the Service, patch what differs, report it. A custom resource
        takes JSON merge patches only, which replace a list whole: the
        container list is written back as read plus our env (and, with
        HAMi, its GPU resources), with the
        resourceVersion it was read at, so a concurrent change answers 409
        (Conflict) and the retry reads again instead of undoing it (each
        call once: ``apply``'s retries are the retries)."""
        svc = self._read(fn, attempts=1)
        diff = diff_states(fn, self._said_or_none(fn, svc), want)
        if not diff:
            return []
        containers = svc["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in containers[0].get("env", []) or []}
        settings = [(C.ENV_MAX_BATCH_SIZE, want.batch_size), (C.ENV_MAX_WAIT_MS, want.max_wait_ms)]
        for name, value in settings + [(share_env, want.gpu_share) for share_env in C.SHARE_ENVS]:
            env[name] = {"name": name, "value": str(value)}
        containers[0]["env"] = list(env.values())
        if self.share_mode == "hami":  # HAMi's limits, and requests equal to them, beside the container's others
            hami = gpu_room.resources(want.gpu_share, self.gpu_memory_mb)
            resources = containers[0].setdefault("resources", {})
            for kind in ("limits", "requests"):
                resources[kind] = {**(resources.get(kind) or {}), **hami}
        patch = {"metadata": {"resourceVersion": svc["metadata"]["resourceVersion"]},
                 "spec": {"template": {
                     "metadata": {"annotations": {MIN_SCALE: str(want.replicas), MAX_SCALE: str(want.replicas)}},
                     "spec": {"containers": containers}}}}
        self.api(self.custom.patch_namespaced_custom_object, self.GROUP, self.VERSION, self.namespace, self.PLURAL,
                 fn, patch, attempts=1, _content_type="application/merge-patch+json")
        return diff
