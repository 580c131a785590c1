"""The gateway sidecar (deploy/gateway-sidecar, a kustomize Component) on a
gateway Deployment shaped exactly like the OpenFaaS chart's
(tests/fixtures/openfaas-chart), built by kubectl's own kustomize and by the
Helm post-renderer script, as a user would."""

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests/fixtures/openfaas-chart"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None and shutil.which("kustomize") is None,
                                reason="neither kubectl nor kustomize is installed (they build the Component)")


def chart_gateway():
    return next(d for d in yaml.safe_load_all((FIXTURE / "chart.yaml").read_text()) if d and d["kind"] == "Deployment")


def built(command, stdin=None):
    out = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def renders():
    yield "kubectl kustomize", built(["kubectl", "kustomize", str(FIXTURE)])
    yield "post-renderer", built([str(ROOT / "deploy/gateway-sidecar/post-render.sh")],
                                 (FIXTURE / "chart.yaml").read_text())


@pytest.mark.parametrize("how, objects", list(renders()), ids=lambda x: x if isinstance(x, str) else "")
def test_the_sidecar_joins_the_charts_gateway_and_changes_nothing_else(how, objects):
    gateway = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway")
    pod = gateway["spec"]["template"]["spec"]
    # no container port twice in the pod (8080 gateway, 8081 faas-netes, 8083 the scaler)
    ports = [p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])]
    assert len(ports) == len(set(ports)) and 8083 in ports
    # the pod keeps the chart's service account, which faas-netes needs
    original = chart_gateway()
    assert pod["serviceAccountName"] == original["spec"]["template"]["spec"]["serviceAccountName"]
    # the scaler's Role is bound to exactly that account
    binding = next(o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "esg-scaler-gateway")
    assert binding["roleRef"]["name"] == "esg-scaler"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": gateway["metadata"]["namespace"]}]
    # every other field as the chart rendered it: remove what the sidecar added, compare
    names = [c["name"] for c in pod["containers"]]
    assert names == [c["name"] for c in original["spec"]["template"]["spec"]["containers"]] + ["esg-scaler"]
    scaler = pod["containers"][-1]
    assert scaler["image"] == "localhost:5000/esg-plugin/esg-scaler:dev"  # kustomize images:, no public registry
    assert scaler["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                         "capabilities": {"drop": ["ALL"]}}
    # it reads every gateway replica: its selector picks the chart's gateway pods, which it may list
    env = {e["name"]: e.get("value") for e in scaler["env"]}
    key, _, value = env["ESG_SCALER_GATEWAY_PODS"].partition("=")
    assert gateway["spec"]["template"]["metadata"]["labels"].get(key) == value
    pods = next(o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "esg-scaler-gateway-pods")
    assert pods["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    assert pods["subjects"] == binding["subjects"]
    stripped = copy.deepcopy(gateway)
    stripped["spec"]["template"]["spec"]["containers"].pop()
    added = {m["name"] for m in scaler["volumeMounts"]}
    stripped["spec"]["template"]["spec"]["volumes"] = [v for v in pod["volumes"] if v["name"] not in added]
    assert stripped == original
    # the scaler's settings and RBAC came along
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} >= {
        ("ConfigMap", "esg-scaler"), ("Role", "esg-scaler"), ("ServiceAccount", "openfaas-controller")}
