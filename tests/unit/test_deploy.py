"""Every manifest under deploy/ is valid for Kubernetes (kubernetes-validate)."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from esg_plugin.scaler import ScalerSettings

from ..kube_emulator import strategic_merge

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"


def documents():
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                yield path.relative_to(ROOT), doc


def gateway_deployment():
    """The OpenFaaS gateway Deployment, reduced to what the overlay touches."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gateway", "namespace": "openfaas"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "gateway"}},
                     "template": {"metadata": {"labels": {"app": "gateway"}},
                                  "spec": {"containers": [{"name": "gateway", "image": "ghcr.io/openfaas/gateway:0.27",
                                                           "ports": [{"containerPort": 8080}]}]}}}}


@pytest.mark.parametrize("path, doc", list(documents()), ids=lambda x: str(x) if isinstance(x, Path) else "")
def test_every_object_is_valid(path, doc):
    if doc["kind"] == "Kustomization":
        assert all((ROOT / path.parent / r).exists() for r in doc.get("resources", []))
        return
    if path.name == "gateway-patch.yaml":
        rendered = strategic_merge(gateway_deployment(), doc)
        assert [c["name"] for c in rendered["spec"]["template"]["spec"]["containers"]] == ["gateway", "esg-scaler"]
        kubernetes_validate.validate(rendered, K8S_VERSION, strict=True)
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_rbac_grants_only_what_the_scaler_uses():
    roles = [doc for _, doc in documents() if doc["kind"] == "Role"]
    allowed = {("apps", "deployments"): {"get", "list", "patch"}, ("apps", "deployments/scale"): {"get", "patch"},
               ("", "pods"): {"list"}, ("serving.knative.dev", "services"): {"get", "list", "patch"}}
    for role in roles:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    assert set(rule["verbs"]) <= allowed[(group, resource)], (role["metadata"], rule)


def test_the_bundled_settings_load_and_the_device_plugin_shares_by_mps():
    settings = ScalerSettings.load(yaml.safe_load((DEPLOY / "scaler-base/scaler.yaml").read_text()), {})
    assert settings.actuator == "openfaas-kubernetes" and settings.source_kind == "prometheus"
    plugin = next(doc for _, doc in documents() if doc.get("metadata", {}).get("name") == "nvidia-device-plugin-config")
    config = yaml.safe_load(plugin["data"]["config"])
    assert config["sharing"]["mps"]["resources"][0]["replicas"] == 10
    scrape = yaml.safe_load((DEPLOY / "prometheus/esg-functions-scrape.yaml").read_text())
    assert scrape["scrape_configs"][0]["metrics_path"] == "/_esg/metrics"
