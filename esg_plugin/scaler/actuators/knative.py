"""The ``knative`` actuator: a Knative Service (see the package)."""

from __future__ import annotations


from ...model import FunctionState
from ...runtime import contract as C
from .base import ApiActuator, Change, diff_states, reported, retrying
from .errors import ApiError

class KnativeActuator(ApiActuator):
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
                             int(env.get(C.ENV_MAX_BATCH_SIZE, 1)), float(env.get(C.ENV_MAX_WAIT_MS, 0)),
                             int(env.get(C.ENV_GPU_SHARE_PCT, 100)))

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
        container list is written back as read plus our env, with the
        resourceVersion it was read at, so a concurrent change answers 409
        (Conflict) and the retry reads again instead of undoing it."""
        svc = self._read(fn)
        diff = diff_states(fn, self._state_of(svc), want)
        if not diff:
            return []
        containers = svc["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in containers[0].get("env", []) or []}
        settings = [(C.ENV_MAX_BATCH_SIZE, want.batch_size), (C.ENV_MAX_WAIT_MS, want.max_wait_ms)]
        for name, value in settings + [(share_env, want.gpu_share) for share_env in C.SHARE_ENVS]:
            env[name] = {"name": name, "value": str(value)}
        containers[0]["env"] = list(env.values())
        patch = {"metadata": {"resourceVersion": svc["metadata"]["resourceVersion"]},
                 "spec": {"template": {
                     "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": str(want.replicas),
                                                  "autoscaling.knative.dev/max-scale": str(want.replicas)}},
                     "spec": {"containers": containers}}}}
        self.custom.patch_namespaced_custom_object(self.GROUP, self.VERSION, self.namespace, self.PLURAL,
                                                   fn, patch, _content_type="application/merge-patch+json")
        return diff
