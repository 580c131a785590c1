"""End to end on a real cluster brought up by deploy/minikube/up.sh.

Skipped unless ESG_E2E_KUBECONFIG (a kubeconfig) and ESG_E2E_GATEWAY (the
OpenFaaS gateway URL, e.g. http://127.0.0.1:8080) are set; ESG_E2E_PASSWORD
is the gateway's basic-auth password (default: read from the basic-auth
secret). Never run on the project's own machines (no Docker, no cluster).
"""

import base64
import json
import os
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

KUBECONFIG = os.environ.get("ESG_E2E_KUBECONFIG")
GATEWAY = os.environ.get("ESG_E2E_GATEWAY")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (KUBECONFIG and GATEWAY),
                       reason="needs a cluster from deploy/minikube/up.sh: set ESG_E2E_KUBECONFIG and ESG_E2E_GATEWAY"),
]
ROOT = Path(__file__).resolve().parents[2]
NS = "openfaas-fn"


@pytest.fixture(scope="module")
def kube():
    from kubernetes import client, config

    config.load_kube_config(KUBECONFIG)
    return client.AppsV1Api(), client.CoreV1Api()


def auth():
    password = os.environ.get("ESG_E2E_PASSWORD")
    if not password:
        from kubernetes import client

        secret = client.CoreV1Api().read_namespaced_secret("basic-auth", "openfaas")
        password = base64.b64decode(secret.data["basic-auth-password"]).decode()
    return "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()


def post_workflow(name, body, content_type):
    request = urllib.request.Request(f"{GATEWAY}/function/router/workflow/{name}", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, {}


def drive(name, rps, seconds):
    from esg_plugin.local.up import entry_body

    body, content_type = entry_body({"image": "preprocess", "traffic": "ssd-mobilenetv2"}.get(name, "langid-cnn"))
    results = []
    with ThreadPoolExecutor(64) as pool:
        futures = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            futures.append(pool.submit(post_workflow, name, body, content_type))
            time.sleep(1.0 / rps)
        results = [f.result() for f in futures]
    return results


SCALER_URL = "http://127.0.0.1:8083"
"""The sidecar's own port in the gateway's pod (8081 there is faas-netes's)."""


def scaler_get(path):
    out = subprocess.run(["kubectl", "--kubeconfig", KUBECONFIG, "-n", "openfaas", "exec", "deploy/gateway", "-c",
                          "esg-scaler", "--", "python", "-c",
                          f"import urllib.request;print(urllib.request.urlopen('{SCALER_URL}{path}').read().decode())"],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def scaler_plan(kube):
    return json.loads(scaler_get("/plan"))


def state(kube, fn):
    apps, _ = kube
    d = apps.read_namespaced_deployment(fn, NS)
    env = {e.name: e.value for e in d.spec.template.spec.containers[0].env or []}
    return d.spec.replicas, (d.metadata.annotations or {}).get("com.esg.batch-size"), env.get("ESG_GPU_SHARE")


def test_load_step_is_answered_and_the_scaler_reacts(kube):
    before = state(kube, "image-classify")
    low = drive("image", 2, 60)
    high = drive("image", 20, 90)
    after = state(kube, "image-classify")
    assert all(status in (200, 504) for status, _ in low + high)  # every request answered
    assert after[0] != before[0] or after[1] != before[1]  # replicas or batch size changed
    plan = scaler_plan(kube)
    assert plan["ready"] and "image" in plan["workflows"]
    hit = sum(1 for s, d in high if s == 200 and d.get("slo_met")) / len(high)
    print(f"SLO hit rate under the step: {hit:.1%}; plan cost {plan['workflows']['image']['cost']}")


def test_a_redeploy_that_wipes_the_share_is_repaired(kube):
    planned = state(kube, "traffic-detect")[2]
    subprocess.run(["faas-cli", "deploy", "-f", str(ROOT / "stack.yml"), "--filter", "traffic-detect",
                    "--gateway", GATEWAY], check=True, timeout=300, env={**os.environ, "REGISTRY": "esg", "TAG": "dev"})
    drive("traffic", 2, 30)
    time.sleep(15)
    assert state(kube, "traffic-detect")[2] == planned


def test_gpu_utilisation_rises_with_load(kube):
    def utilisation():
        req = urllib.request.Request(f"{GATEWAY}/function/image-classify/_esg/metrics")
        text = urllib.request.urlopen(req, timeout=30).read().decode()
        values = [float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("esg_gpu_utilization_ratio")]
        return max(values) if values else None

    idle = utilisation()
    if idle is None:
        pytest.skip("no NVML telemetry: the cluster has no GPU")
    drive("image", 20, 30)
    assert utilisation() > idle


def test_slo_hit_rate_and_cost_are_reported(kube):
    text = urllib.request.urlopen(f"{GATEWAY}/function/router/_esg/metrics", timeout=30).read().decode()
    assert "esg_requests_total" in text
    plan = scaler_plan(kube)
    assert all("cost" in p for p in plan["workflows"].values())


def test_with_hami_the_scaler_reads_each_gpus_free_share(kube):
    """A cluster that shares GPUs with HAMi, the scaler set ``share_mode:
    hami`` with ``capacity_gpus`` and given deploy/gpu/hami-gpu-room-rbac.yaml:
    /plan says each healthy GPU's free share, one whole percent per GPU
    HAMi registers."""
    from esg_plugin.scaler.actuators.gpu_room import NODE_REGISTER, node_devices

    _, core = kube
    healthy = [d for n in core.list_node().items for d in node_devices((n.metadata.annotations or {}).get(
        NODE_REGISTER, "[]")) if d.healthy]
    if not healthy:
        pytest.skip("no GPU registered by HAMi on this cluster (hami.io/node-nvidia-register)")
    room = scaler_plan(kube).get("gpu_free_pct")
    if room is None:
        pytest.skip("the scaler does not read the room: set share_mode: hami and capacity_gpus, "
                    "and apply deploy/gpu/hami-gpu-room-rbac.yaml")
    assert len(room) == len(healthy) and all(isinstance(r, int) and 0 <= r <= 100 for r in room)


def test_the_scaler_holds_the_lease_and_says_so(kube):
    """Leader election against a real API server: the scaler holds the Lease
    ``esg-scaler`` in the function namespace (its Role grants get, create and
    patch on leases) and its ``/plan`` names itself the holder."""
    from kubernetes import client

    lease = client.CoordinationV1Api().read_namespaced_lease("esg-scaler", NS)
    plan = scaler_plan(kube)
    assert plan["lease"]["leading"] and lease.spec.holder_identity == plan["lease"]["holder"]
    assert lease.spec.lease_duration_seconds >= 3


def test_the_sidecar_reads_every_gateway_replica(kube):
    """The gateway at two replicas, each serving part of the traffic: the
    sidecar lists the gateway's pods (``gateway_pods``) and reads both
    gateways' metrics at their pod IPs (:8082), which it says in
    ``esg_scaler_gateways``; back to one replica after."""
    import re

    def kubectl(*args):
        subprocess.run(["kubectl", "--kubeconfig", KUBECONFIG, "-n", "openfaas", *args], check=True, timeout=300)

    def gateways_read():
        found = re.search(r"^esg_scaler_gateways ([0-9.]+)$", scaler_get("/metrics"), re.M)
        return float(found.group(1)) if found else None

    kubectl("scale", "deploy/gateway", "--replicas=2")
    try:
        kubectl("rollout", "status", "deploy/gateway", "--timeout=300s")
        deadline = time.monotonic() + 180
        while gateways_read() != 2.0:
            assert time.monotonic() < deadline, f"the sidecar read {gateways_read()} gateways"
            drive("image", 2, 5)
    finally:
        kubectl("scale", "deploy/gateway", "--replicas=1")
        kubectl("rollout", "status", "deploy/gateway", "--timeout=300s")


def test_an_updated_workload_configmap_is_planned_without_a_restart(kube):
    """The ConfigMap ``esg-scaler-workload`` updated in place (the text
    workflow taken out, then put back): the kubelet swaps the mounted files,
    the scaler reads them again (``loaders.StackFiles``) and its /plan says
    the workflows it plans — without a restart."""
    import yaml
    from kubernetes import client

    core = client.CoreV1Api()
    before = core.read_namespaced_config_map("esg-scaler-workload", "openfaas")
    stack = yaml.safe_load(before.data["stack.yml"])
    without = {**stack, "functions": {name: spec for name, spec in stack["functions"].items()
                                      if (spec.get("annotations") or {}).get("com.esg.workflow") != "text"}}

    def planned_after(data, test, what):
        core.patch_namespaced_config_map("esg-scaler-workload", "openfaas", {"data": data})
        deadline = time.monotonic() + 300  # the kubelet's sync period and cache, then an iteration
        while not test(scaler_plan(kube)["workload"]["workflows"]):
            assert time.monotonic() < deadline, what
            time.sleep(5)

    try:
        planned_after({"stack.yml": yaml.safe_dump(without)}, lambda w: "text" not in w, "the text workflow stays")
    finally:
        planned_after({"stack.yml": before.data["stack.yml"]}, lambda w: "text" in w, "the text workflow is not back")
