"""The Knative and gateway actuators over real HTTP."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from esg_plugin.scaler import FunctionState, GatewayActuator, KnativeActuator
from esg_plugin.scaler.actuators.base import api_client

from ..kube_emulator import KubeEmulator

pytestmark = pytest.mark.integration


def ksvc(name):
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {"metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "1",
                                                               "autoscaling.knative.dev/max-scale": "1"}},
                                  "spec": {"containers": [{"image": "localhost:5000/esg/fn", "env": [
                                      {"name": "ESG_FUNCTION", "value": "resnet18"}]}]}}}}


def test_knative_sets_scale_bounds_and_env_by_merge_patch():
    with KubeEmulator() as kube:
        kube.add_knative(ksvc("classify"))
        configuration = client.Configuration()
        configuration.host = kube.url
        actuator = KnativeActuator(client.ApiClient(configuration), "default")
        assert actuator.current(["classify"])["classify"].replicas == 1
        changes = actuator.apply({"classify": FunctionState(3, 4, 12.5, 30)})
        assert {c.kind for c in changes} == {"replicas", "gpu_share", "batching"}
        template = kube.knative[("default", "classify")]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["autoscaling.knative.dev/min-scale"] == annotations["autoscaling.knative.dev/max-scale"] == "3"
        env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
        assert env == {"ESG_FUNCTION": "resnet18", "ESG_MAX_BATCH_SIZE": "4", "ESG_MAX_WAIT_MS": "12.5",
                       "ESG_GPU_SHARE": "30", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "30"}
        assert actuator.apply({"classify": FunctionState(3, 4, 12.5, 30)}) == []  # nothing differs: no patch
        assert actuator.apply({"gone": FunctionState(1, 1, 0, 100)})[0].kind == "gone"


def test_knative_reads_the_replicas_in_service_from_the_revisions_that_serve(caplog):
    """``status.actualReplicas`` of the Service's latest created revision,
    and of the latest ready one while a new one rolls out (it still
    serves): the law's replicas not yet in service, as a Deployment's
    ``readyReplicas`` gives them (one list of the namespace's revisions);
    not known (None) before a revision is named or counted, or where one
    is not listed (a list refused: said once). And its pods the
    scheduler found no room for (``Unschedulable``), by Knative's label."""
    with KubeEmulator() as kube:
        kube.add_knative(ksvc("classify"))
        configuration = client.Configuration()
        configuration.host = kube.url
        actuator = KnativeActuator(client.ApiClient(configuration), "default")
        assert actuator.current(["classify"])["classify"].ready_replicas is None  # no revision yet
        kube.add_revision("classify", "classify-00001", None)
        assert actuator.current(["classify"])["classify"].ready_replicas is None  # not counted yet
        kube.add_revision("classify", "classify-00001", 1)
        state = actuator.current(["classify"])["classify"]
        assert state.ready_replicas == 1 and state.starting == 0
        actuator.apply({"classify": FunctionState(3, 1, 0.0, 30)})  # a new share: a new revision rolls out
        kube.add_revision("classify", "classify-00002", 0, ready=False)
        state = actuator.current(["classify"])["classify"]
        assert (state.replicas, state.ready_replicas, state.starting) == (3, 1, 2)  # the old one serves meanwhile
        kube.add_revision("classify", "classify-00002", 3)
        assert actuator.current(["classify"])["classify"].starting == 0
        del kube.revisions[("default", "classify-00002")]  # a revision not listed: not known
        assert actuator.current(["classify"])["classify"].ready_replicas is None
        # pods the scheduler found no room for (Knative labels them with their Service's name)
        kube.pods = [{"metadata": {"name": f"classify-00002-{i}", "namespace": "default",
                                   "labels": {"serving.knative.dev/service": "classify"}},
                      "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": status,
                                                                     "reason": reason}]}}
                     for i, (status, reason) in enumerate([("False", "Unschedulable"), ("False", "Unschedulable"),
                                                           ("True", None)])]
        assert actuator.current(["classify"])["classify"].unplaced_replicas == 2

    rules = [{"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": ["get"]},
             {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]  # revisions not granted
    with KubeEmulator(token="t", rules=rules) as kube:
        kube.add_knative(ksvc("classify"))
        kube.add_revision("classify", "classify-00001", 1)
        configuration = client.Configuration()
        configuration.host = kube.url
        configuration.api_key = {"authorization": "Bearer t"}
        actuator = KnativeActuator(client.ApiClient(configuration), "default")
        with caplog.at_level("WARNING", logger="esg.scaler"):
            states = [actuator.current(["classify"])["classify"] for _ in range(2)]
        assert all(s.ready_replicas is None and s.replicas == 1 for s in states)  # the rest is still read
        said = [r.getMessage() for r in caplog.records if "listing revisions failed" in r.getMessage()]
        assert len(said) == 1 and "403" in said[0], said


def test_knative_with_hami_sets_the_gpu_resources_and_reads_each_gpus_free_share():
    """``share_mode: hami`` under Knative: a share is the container's HAMi
    limits (and requests equal to them) beside its other resources, read
    back from them; each GPU's free share from HAMi's records, as the
    Kubernetes actuator reads it."""
    with KubeEmulator() as kube:
        svc = ksvc("classify")
        svc["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
        kube.add_knative(svc)
        kube.nodes = [{"metadata": {"name": "gpu", "annotations": {
            "hami.io/node-nvidia-register": "GPU-0,10,32000,100,NVIDIA-A100,0,true:"}}}]
        kube.pods = [{"metadata": {"name": "other", "namespace": "team", "annotations": {
            "hami.io/vgpu-devices-allocated": "GPU-0,NVIDIA,8000,40:;"}}, "status": {"phase": "Running"}}]
        configuration = client.Configuration()
        configuration.host = kube.url
        actuator = KnativeActuator(client.ApiClient(configuration), "default", share_mode="hami", gpu_memory_mb=16000)
        assert actuator.current(["classify"])["classify"].gpu_share == 100  # no HAMi limit yet: a whole GPU
        assert {c.kind for c in actuator.apply({"classify": FunctionState(1, 1, 0.0, 30)})} == {"gpu_share"}
        resources = kube.knative[("default", "classify")]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources == {"limits": {"cpu": "2", "nvidia.com/gpucores": "30", "nvidia.com/gpumem": "4800"},
                             "requests": {"nvidia.com/gpucores": "30", "nvidia.com/gpumem": "4800"}}
        assert actuator.current(["classify"])["classify"].gpu_share == 30
        assert actuator.apply({"classify": FunctionState(1, 1, 0.0, 30)}) == []
        assert actuator.gpu_room() == (60,)  # 60 cores left; 24000 MiB at 16000 a GPU admit more
        assert KnativeActuator(client.ApiClient(configuration), "default").gpu_room() is None  # MPS


class FakeGateway:
    """The OpenFaaS gateway's ``/system/function/<name>`` and
    ``/system/scale-function/<name>``: ``replicas`` is the Deployment's
    spec, ``availableReplicas`` its ready pods (faas-netes)."""

    def __init__(self):
        self.replicas = {"fn-a": 1}
        self.available = {"fn-a": 1}
        self.calls = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, doc=None):
                body = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                if name not in gateway.replicas:
                    return self._send(404)
                doc = {"name": name, "replicas": gateway.replicas[name]}
                if gateway.available.get(name) is not None:
                    doc["availableReplicas"] = gateway.available[name]
                self._send(200, doc)

            def do_POST(self):  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                gateway.calls.append((self.path, body, self.headers.get("Authorization")))
                if name not in gateway.replicas:
                    return self._send(404)
                gateway.replicas[name] = body["replicas"]
                self._send(202)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_gateway_actuator_scales_through_the_rest_api():
    gateway = FakeGateway()
    try:
        actuator = GatewayActuator(gateway.url, "admin", "secret")
        changes = actuator.apply({"fn-a": FunctionState(4, 8, 5.0, 50), "fn-b": FunctionState(2, 1, 0, 100)})
        assert gateway.replicas["fn-a"] == 4
        path, body, auth = gateway.calls[0]
        assert path == "/system/scale-function/fn-a" and body == {"serviceName": "fn-a", "replicas": 4}
        assert auth.startswith("Basic ")
        assert {(c.function, c.kind) for c in changes} == {("fn-a", "replicas"), ("fn-b", "gone")}
        assert actuator.apply({"fn-a": FunctionState(4, 8, 5.0, 50)}) == []
        assert actuator.current(["fn-a"])["fn-a"].starting == 3  # 4 wanted, 1 available
        gateway.available["fn-a"] = 4
        assert actuator.current(["fn-a"])["fn-a"].starting == 0
        for unknown in (None, -1, "2", 2.5):  # not said, or not a count: not known
            gateway.available["fn-a"] = unknown
            assert actuator.current(["fn-a"])["fn-a"].starting is None
    finally:
        gateway.server.shutdown()


def test_the_kubernetes_actuator_reads_the_replicas_not_yet_ready_from_the_deployment_status():
    """``status.readyReplicas`` (left out while zero) against
    ``spec.replicas``: what the control law bridges over while it starts."""
    from esg_plugin.scaler import KubernetesActuator

    from ..kube_emulator import deployment
    with KubeEmulator() as kube:
        for name, replicas, status in (("three", 3, {"replicas": 3, "readyReplicas": 1}),
                                       ("none-ready", 2, {"replicas": 2}), ("ready", 2, None)):
            obj = deployment(name, replicas=replicas, env={"ESG_GPU_SHARE": 50})
            if status is not None:
                obj["status"] = status
            kube.add(obj)
        configuration = client.Configuration()
        configuration.host = kube.url
        states = KubernetesActuator(client.ApiClient(configuration), "openfaas-fn").current(
            ["three", "none-ready", "ready"])
        assert {name: (s.replicas, s.ready_replicas, s.starting) for name, s in states.items()} == {
            "three": (3, 1, 2), "none-ready": (2, 0, 2), "ready": (2, 2, 0)}
        assert states["three"] == FunctionState(3, 1, 0.0, 50)  # readiness is not part of the desired state


def test_knative_and_the_gateway_ask_a_server_that_does_not_answer_once_an_iteration():
    """As the Kubernetes actuator (``test_scaler_kubernetes.py``): the
    Knative actuator against an API server that takes connections and never
    answers, and the gateway actuator against a socket that accepts and
    never answers — each iteration's first call waits its timeout, no other
    reaches the server, every function's change is an error; the next
    iteration, the server back, reads and patches."""
    with KubeEmulator() as kube:
        kube.add_knative(ksvc("classify"))
        kube.add_knative(ksvc("detect"))
        configuration = client.Configuration()
        configuration.host = kube.url
        actuator = KnativeActuator(api_client(configuration), "default", api_timeout_s=0.5)
        want = {"classify": FunctionState(3, 4, 12.5, 30), "detect": FunctionState(2, 1, 0.0, 50)}
        kube.stalled = threading.Event()
        try:
            actuator.new_iteration()
            assert actuator.current(list(want)) == {}
            changes = actuator.apply(want)
        finally:
            kube.stalled.set()
            kube.stalled = None
        assert kube.stalled_requests == 1
        assert [c.kind for c in changes] == ["error", "error"] and "did not answer" in str(changes[1].after)
        actuator.new_iteration()
        assert {c.kind for c in actuator.apply(want)} == {"replicas", "gpu_share", "batching"}
        assert actuator.current(["classify"])["classify"].replicas == 3

    silent = socket.socket()  # connections land in its backlog; nothing ever reads or answers them
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        gateway = GatewayActuator(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        gateway.new_iteration()
        changes = gateway.apply({"fn-a": FunctionState(2, 1, 0.0, 100), "fn-b": FunctionState(1, 1, 0.0, 100)})
        assert [c.kind for c in changes] == ["error", "error"] and "did not answer" in str(changes[1].after)
        silent.setblocking(False)
        connections = []
        try:
            while True:
                connections.append(silent.accept()[0])
        except BlockingIOError:
            pass
        assert len(connections) == 1  # one call reached it in the iteration
        for connection in connections:
            connection.close()
    finally:
        silent.close()


def test_a_malformed_number_on_one_function_is_not_believed_and_is_written_afresh():
    """Knative: a Service whose ``min-scale`` says ``two`` (a hand edit) is
    left out of what is read (said in the log), and the next change writes
    its fields afresh, mending it; the other Service is read and patched as
    ever. The gateway: a function document whose ``replicas`` is not a
    count in range (negative, 10^30, a string) is not believed."""
    with KubeEmulator() as kube:
        broken = ksvc("classify")
        broken["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "two"
        kube.add_knative(broken)
        kube.add_knative(ksvc("detect"))
        configuration = client.Configuration()
        configuration.host = kube.url
        actuator = KnativeActuator(api_client(configuration), "default")
        assert set(actuator.current(["classify", "detect"])) == {"detect"}
        changes = actuator.apply({"classify": FunctionState(2, 4, 5.0, 50), "detect": FunctionState(2, 1, 0.0, 100)})
        assert {(c.function, c.kind) for c in changes} >= {("classify", "replicas"), ("detect", "replicas")}
        assert actuator.current(["classify"])["classify"] == FunctionState(2, 4, 5.0, 50)
    gateway = FakeGateway()
    try:
        actuator = GatewayActuator(gateway.url)
        for said in (-3, 10**30, "three", 2.5, None):
            gateway.replicas["fn-a"] = said
            assert actuator.current(["fn-a"]) == {}, said
        gateway.replicas["fn-a"] = 3
        assert actuator.current(["fn-a"])["fn-a"].replicas == 3
    finally:
        gateway.server.shutdown()


def test_a_knative_service_whose_scale_bounds_are_not_one_count_is_not_read_and_is_set_at_its_next_change():
    """The Knative actuator holds a Service at one replica count (min-scale
    = max-scale). One without min-scale (Knative may scale it to zero: it
    was read as 1 replica before) or whose max-scale was edited apart is
    not a count the scaler set: not read, and its next change writes both."""
    with KubeEmulator() as kube:
        unset, apart = ksvc("unset"), ksvc("apart")
        del unset["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"]
        apart["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] = "10"
        for svc in (unset, apart, ksvc("held")):
            kube.add_knative(svc)
        configuration = client.Configuration()
        configuration.host = kube.url
        actuator = KnativeActuator(api_client(configuration), "default")
        assert set(actuator.current(["unset", "apart", "held"])) == {"held"}
        want = FunctionState(1, 1, 0.0, 100)
        changes = actuator.apply({"unset": want, "apart": want, "held": want})
        assert {c.function for c in changes} == {"unset", "apart"}  # "held" is already at it: no patch
        for name in ("unset", "apart"):
            annotations = kube.knative[("default", name)]["spec"]["template"]["metadata"]["annotations"]
            assert annotations["autoscaling.knative.dev/min-scale"] == annotations[
                "autoscaling.knative.dev/max-scale"] == "1"
        assert set(actuator.current(["unset", "apart", "held"])) == {"unset", "apart", "held"}
