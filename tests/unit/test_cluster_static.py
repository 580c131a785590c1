"""What can be checked here of the cluster path (issue: no Docker, no cluster):
the scripts, the stack file's format, the versions, the generated objects."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from esg_plugin.runtime import contract as C

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "deploy").rglob("*.sh"))


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (make test installs Debian's shellcheck)")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    result = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_scripts_are_strict_and_executable():
    assert SCRIPTS
    for script in SCRIPTS:
        assert "set -euo pipefail" in script.read_text(), script
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_stack_follows_the_faas_cli_stack_format():
    schema = json.loads((ROOT / "tests/schemas/faas-cli-stack.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((ROOT / "stack.yml").read_text()), schema)


def test_the_script_uses_the_versions_and_settings_the_docs_name():
    script = (ROOT / "deploy/minikube/up.sh").read_text()
    doc = (ROOT / "docs/CLUSTER.md").read_text()
    for variable, label in (("OPENFAAS_CHART_VERSION", "OpenFaaS chart"), ("DEVICE_PLUGIN_VERSION", "NVIDIA device plugin"),
                            ("KNATIVE_VERSION", "Knative Serving")):
        version = re.search(rf'{variable}="\$\{{{variable}:-([0-9.]+)\}}"', script).group(1)
        assert re.search(rf"{label}[^|\n]*\|\s*v?{re.escape(version)}\b", doc), (label, version)
    assert 'MINIKUBE_MIN_VERSION="1.32.0"' in script and "minikube | ≥ 1.32" in doc
    # the documented usage of each tool
    assert "minikube start -p \"${PROFILE}\" --driver docker --container-runtime docker --gpus all" in script
    for setting in ("functionNamespace=openfaas-fn", "generateBasicAuth=true", "alertmanager.create=false"):
        assert f"--set {setting}" in script, setting
    assert "helm repo add openfaas https://openfaas.github.io/faas-netes/" in script
    assert "faas-cli deploy -f stack.yml" in script and "down.sh" in doc


def render_kustomization(folder: Path) -> list[dict]:
    """A kustomization rendered as kustomize would (resources, folders of
    other kustomizations among them, and configMapGenerator files)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        if path.is_dir():
            objects += render_kustomization(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for component in kustomization.get("components", []):
        objects += render_kustomization(folder / component)
    for generator in kustomization.get("configMapGenerator", []):
        data = {entry.split("=", 1)[0]: (folder / entry.split("=", 1)[-1]).read_text() for entry in generator["files"]}
        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": generator["name"], "namespace": generator["namespace"]}, "data": data})
    return objects


def render_scaler_kustomization():
    return render_kustomization(ROOT / "deploy/scaler")


BUILT = ["deploy/scaler", "deploy/scaler-base", "deploy/knative", "deploy/prometheus", "tests/fixtures/openfaas-chart"]


def test_every_kustomization_under_deploy_is_built():
    """Each folder a user applies is built below; the sidecar Component
    through the chart-shaped gateway that includes it."""
    folders = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "deploy").rglob("kustomization.yaml")}
    assert folders - set(BUILT) == {"deploy/gateway-sidecar"}
    fixture = yaml.safe_load((ROOT / "tests/fixtures/openfaas-chart/kustomization.yaml").read_text())
    assert fixture["components"] == ["../../../deploy/gateway-sidecar"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (its kustomize builds the folders)")
@pytest.mark.parametrize("folder", BUILT)
def test_kubectl_kustomize_builds_each_folder_on_a_fresh_checkout(folder):
    """What a user following the docs runs: it must build with nothing copied
    beside it (the user's stack and profiles are a ConfigMap of their own)."""
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    built = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == \
        sorted((o["kind"], o["metadata"]["name"]) for o in render_kustomization(ROOT / folder))
    for obj in built:  # what `kubernetes-validate --strict` checks
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_kustomize_output_is_valid():
    objects = render_scaler_kustomization()
    assert {o["kind"] for o in objects} == {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
                                            "ConfigMap"}
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_knative_services_carry_the_stack_and_are_readable_by_the_actuator():
    from kubernetes import client

    from esg_plugin.scaler.actuators import KnativeActuator

    out = subprocess.run([sys.executable, str(ROOT / "deploy/minikube/knative_services.py"), str(ROOT / "stack.yml")],
                         capture_output=True, text=True, check=True)
    services = [s for s in yaml.safe_load_all(out.stdout) if s]
    router = [s for s in services if s["metadata"]["name"] == "router"]
    services = [s for s in services if s["metadata"]["name"] != "router"]
    assert len(services) == 10 and len(router) == 1  # every workflow stage, and the router that serves them
    pod = router[0]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    # no gateway: each stage at its Service's address in the cluster, the workflows from the Services
    assert env["function_url"] == "http://{name}.openfaas-fn.svc.cluster.local" and "gateway_url" not in env
    assert env["workflows_from"] == "knative" and env["knative_namespace"] == "openfaas-fn"
    assert pod["serviceAccountName"] == "esg-router"  # deploy/knative/rbac.yaml: list the Services, nothing else
    assert C.ANNOTATION_WORKFLOW not in router[0]["metadata"]["annotations"]  # no stage: the scaler leaves it be
    assert "labels" not in router[0]["metadata"]  # the router is what clients call, through the ingress
    for svc in services:
        assert svc["apiVersion"] == "serving.knative.dev/v1" and svc["kind"] == "Service"
        # a stage only the router calls: off the ingress (Knative's cluster-local visibility)
        assert svc["metadata"]["labels"] == {"networking.knative.dev/visibility": "cluster-local"}
        assert svc["metadata"]["namespace"] == "openfaas-fn"  # where faas-cli generate puts them; deploy/knative's Role
        container = svc["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].endswith(f"/{svc['metadata']['name']}:dev")
        state = KnativeActuator(client.ApiClient(client.Configuration()), "openfaas-fn")._state_of(svc)
        assert state.replicas == 1 and state.gpu_share == 100
