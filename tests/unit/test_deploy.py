"""Every manifest under deploy/ is valid for Kubernetes (kubernetes-validate),
locked down, and its RBAC grants only what the scaler does."""

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from esg_plugin.scaler import ScalerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"


def documents():
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                yield path.relative_to(ROOT), doc


@pytest.mark.parametrize("path, doc", list(documents()), ids=lambda x: str(x) if isinstance(x, Path) else "")
def test_every_object_is_valid(path, doc):
    if doc["kind"] in ("Kustomization", "Component"):  # built and validated in test_cluster_static.py
        assert all((ROOT / path.parent / r).exists() for r in doc.get("resources", []))
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def can_i(verb, group, resource, namespace, subject):
    """``kubectl auth can-i`` over the manifests' Roles and RoleBindings:
    whether ``subject`` (namespace, service account) may do it."""
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for _, d in documents() if d["kind"] == "Role"}
    for _, binding in documents():
        if binding["kind"] != "RoleBinding" or binding["metadata"]["namespace"] != namespace:
            continue
        if not any((s.get("namespace"), s["name"]) == subject for s in binding["subjects"]):
            continue
        role = roles.get((namespace, binding["roleRef"]["name"]))
        for rule in (role or {}).get("rules", []):
            if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                return True
    return False


SCALER = ("openfaas", "esg-scaler")
GATEWAY = ("openfaas", "openfaas-controller")  # the sidecar runs as the gateway's account
KNATIVE = ("knative-serving", "esg-scaler")
ROUTER = ("openfaas-fn", "esg-router")  # the workflow router under Knative (deploy/minikube/knative_services.py)


@pytest.mark.parametrize("subject", [SCALER, GATEWAY])
def test_the_scaler_can_scale_and_patch_functions_and_nothing_more(subject):
    fn = "openfaas-fn"
    assert can_i("patch", "apps", "deployments/scale", fn, subject)
    assert can_i("get", "apps", "deployments", fn, subject)
    assert can_i("patch", "apps", "deployments", fn, subject)  # the share (pod template env) and batching
    assert can_i("list", "", "pods", fn, subject)              # to push batching live
    for verb in ("get", "create", "patch"):                   # leader election: one scaler acts at a time
        assert can_i(verb, "coordination.k8s.io", "leases", fn, subject)
    for verb in ("list", "delete", "update"):
        assert not can_i(verb, "coordination.k8s.io", "leases", fn, subject)
    for verb, group, resource in [("create", "apps", "deployments"), ("delete", "apps", "deployments"),
                                  ("update", "apps", "deployments"), ("list", "apps", "deployments"),
                                  ("get", "apps", "deployments/scale"), ("get", "", "secrets"),
                                  ("list", "", "secrets"), ("create", "", "pods"), ("delete", "", "pods"),
                                  ("create", "", "pods/exec"), ("patch", "", "serviceaccounts"),
                                  ("patch", "serving.knative.dev", "services"),
                                  ("create", "rbac.authorization.k8s.io", "rolebindings")]:
        assert not can_i(verb, group, resource, fn, subject), (verb, group, resource)
    for namespace in ("openfaas", "default", "kube-system"):  # nothing outside the function namespace
        assert not can_i("patch", "apps", "deployments", namespace, subject)


def test_the_sidecar_can_list_the_gateways_pods_and_do_nothing_else_in_the_gateways_namespace():
    """deploy/gateway-sidecar/gateway-pods-role.yaml: the sidecar reads every
    gateway replica's metrics (``gateway_pods``), found by listing the pods."""
    assert can_i("list", "", "pods", "openfaas", GATEWAY)
    assert not can_i("list", "", "pods", "openfaas", SCALER)  # the standalone scaler reads Prometheus
    for verb, group, resource in [("get", "", "pods"), ("create", "", "pods"), ("delete", "", "pods"),
                                  ("patch", "", "pods"), ("list", "", "secrets"), ("get", "", "secrets"),
                                  ("create", "", "pods/exec"), ("patch", "apps", "deployments"),
                                  ("get", "coordination.k8s.io", "leases")]:
        assert not can_i(verb, group, resource, "openfaas", GATEWAY), (verb, group, resource)
    patch = yaml.safe_load((ROOT / "deploy/gateway-sidecar/gateway-patch.yaml").read_text())
    env = {e["name"]: e["value"] for e in patch[0]["value"]["env"]}
    assert ScalerSettings.load({}, env).gateway_pods == "app=gateway"  # the chart's gateway pods' label


def test_the_knative_scaler_can_patch_services_in_its_namespace_only():
    assert can_i("get", "serving.knative.dev", "services", "openfaas-fn", KNATIVE)
    assert can_i("patch", "serving.knative.dev", "services", "openfaas-fn", KNATIVE)
    for verb in ("create", "delete", "list", "update"):
        assert not can_i(verb, "serving.knative.dev", "services", "openfaas-fn", KNATIVE)
    assert can_i("list", "serving.knative.dev", "revisions", "openfaas-fn", KNATIVE)  # their ready replicas
    assert can_i("list", "", "pods", "openfaas-fn", KNATIVE)  # those the scheduler found no room for
    for verb in ("get", "create", "patch"):  # leader election
        assert can_i(verb, "coordination.k8s.io", "leases", "openfaas-fn", KNATIVE)
    assert not can_i("delete", "coordination.k8s.io", "leases", "openfaas-fn", KNATIVE)
    assert not can_i("delete", "", "pods", "openfaas-fn", KNATIVE)
    for verb in ("create", "delete", "get", "update", "patch"):
        assert not can_i(verb, "serving.knative.dev", "revisions", "openfaas-fn", KNATIVE)
    assert not can_i("patch", "apps", "deployments", "openfaas-fn", KNATIVE)
    assert not can_i("patch", "serving.knative.dev", "services", "default", KNATIVE)
    assert not can_i("patch", "serving.knative.dev", "services", "kube-system", KNATIVE)


def test_the_knative_router_can_list_the_services_and_nothing_else():
    """Under Knative the router reads the workflows from the Services' annotations (workflows_from=knative)."""
    assert can_i("list", "serving.knative.dev", "services", "openfaas-fn", ROUTER)
    for verb, group, resource in [("get", "serving.knative.dev", "services"), ("patch", "serving.knative.dev", "services"),
                                  ("create", "serving.knative.dev", "services"), ("list", "serving.knative.dev", "revisions"),
                                  ("list", "", "pods"), ("get", "", "secrets"), ("list", "", "secrets"),
                                  ("get", "coordination.k8s.io", "leases"), ("patch", "apps", "deployments")]:
        assert not can_i(verb, group, resource, "openfaas-fn", ROUTER), (verb, group, resource)
    for namespace in ("knative-serving", "default", "kube-system"):
        assert not can_i("list", "serving.knative.dev", "services", namespace, ROUTER)


PROMETHEUS = ("knative-serving", "esg-prometheus")  # the Knative variant's Prometheus (deploy/prometheus)


def test_the_knative_prometheus_scrapes_the_functions_where_the_knative_scaler_reads():
    """deploy/prometheus's kustomization: a Prometheus whose configuration is
    the scrape jobs' file, at the address deploy/knative/scaler.yaml reads,
    locked down, that may discover the functions' pods and nothing else."""
    from urllib.parse import urlsplit

    from .test_cluster_static import render_kustomization

    objects = {(o["kind"], o["metadata"]["name"]): o for o in render_kustomization(DEPLOY / "prometheus")}
    scrape = (DEPLOY / "prometheus/esg-functions-scrape.yaml").read_text()
    assert objects[("ConfigMap", "esg-prometheus")]["data"] == {"prometheus.yml": scrape}
    deployment = objects[("Deployment", "prometheus")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == PROMETHEUS[1] and deployment["metadata"]["namespace"] == PROMETHEUS[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                             "capabilities": {"drop": ["ALL"]}}
    name, tag = container["image"].rsplit(":", 1)
    assert name == "prom/prometheus" and tag.startswith("v") and tag[1:].replace(".", "").isdigit()  # pinned
    assert "--config.file=/etc/prometheus/prometheus.yml" in container["args"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/prometheus"]]["configMap"]["name"] == "esg-prometheus"
    knative = yaml.safe_load((DEPLOY / "knative/scaler.yaml").read_text())
    url = urlsplit(knative["metrics_url"])
    service = objects[("Service", "prometheus")]
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}"
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    job = next(j for j in yaml.safe_load(scrape)["scrape_configs"] if j["job_name"] == "esg-functions-knative")
    assert float(job["scrape_interval"].rstrip("s")) <= knative["interval_s"]  # a new sample each time it reads
    for verb in ("list", "watch"):
        assert can_i(verb, "", "pods", "openfaas-fn", PROMETHEUS)
        for namespace in ("knative-serving", "openfaas", "default", "kube-system"):
            assert not can_i(verb, "", "pods", namespace, PROMETHEUS)
    for verb, group, resource in [("get", "", "secrets"), ("list", "", "secrets"), ("create", "", "pods"),
                                  ("delete", "", "pods"), ("list", "serving.knative.dev", "services")]:
        assert not can_i(verb, group, resource, "openfaas-fn", PROMETHEUS), (verb, group, resource)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (make test installs Debian's prometheus)")
def test_the_scrape_jobs_load_in_a_real_prometheus(tmp_path):
    """promtool checks esg-functions-scrape.yaml as the Prometheus of deploy/prometheus loads it — its pod
    discovery swapped for a static target, which Debian's build of Prometheus leaves out."""
    config = yaml.safe_load((DEPLOY / "prometheus/esg-functions-scrape.yaml").read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")[0]["namespaces"]["names"] == ["openfaas-fn"]
        job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_one_cluster_wide_grant_lists_nodes_and_pods_for_hamis_records_and_nothing_more():
    """deploy/gpu/hami-gpu-room-rbac.yaml: the reads of each GPU's free
    share (``gpu_room.py``), bound to the scaler's accounts only."""
    roles = {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == "ClusterRole"}
    bindings = [d for _, d in documents() if d["kind"] == "ClusterRoleBinding"]
    assert set(roles) == {"esg-scaler-gpu-room"} and len(bindings) == 1
    rules = roles["esg-scaler-gpu-room"]["rules"]
    assert sorted((tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"])) for r in rules) == \
        [(("",), ("nodes",), ("list",)), (("",), ("pods",), ("list",))]
    assert bindings[0]["roleRef"]["name"] == "esg-scaler-gpu-room"
    assert {(s["namespace"], s["name"]) for s in bindings[0]["subjects"]} == {SCALER, GATEWAY, KNATIVE}


def containers(doc):
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"].get("containers", [])
    return []


@pytest.mark.parametrize("path, doc", [(p, d) for p, d in documents() if d["kind"] == "Deployment"
                                       and "esg-scaler" in json.dumps(d)], ids=lambda x: str(x) if isinstance(x, Path) else "")
def test_every_scaler_container_runs_locked_down_from_no_public_registry(path, doc):
    pod = doc["spec"]["template"]["spec"]
    if path.name != "gateway-patch.yaml":  # the gateway's pod security is the chart's
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod.get("serviceAccountName") == "esg-scaler"
    else:
        assert "serviceAccountName" not in pod  # keeps the gateway's own
    for container in containers(doc):
        if not container["name"].startswith("esg"):
            continue
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["image"] == "esg-scaler" or container["image"].startswith("localhost:5000/")
        ports = [p["containerPort"] for p in container.get("ports", [])]
        assert path.name != "gateway-patch.yaml" or 8081 not in ports  # faas-netes's port in the gateway pod
        # a ConfigMap mounted by subPath is never updated in the pod: the scaler would not see a new stack
        assert all("subPath" not in mount for mount in container.get("volumeMounts", []))


def test_the_scaler_image_is_named_by_kustomize_images():
    kustomization = yaml.safe_load((DEPLOY / "scaler/kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "esg-scaler", "newName": "localhost:5000/esg-plugin/esg-scaler",
                                        "newTag": "dev"}]


def test_the_bundled_settings_load_and_the_device_plugin_shares_by_mps():
    settings = ScalerSettings.load(yaml.safe_load((DEPLOY / "scaler-base/scaler.yaml").read_text()), {})
    assert settings.actuator == "openfaas-kubernetes" and settings.source_kind == "prometheus"
    plugin = next(doc for _, doc in documents() if doc.get("metadata", {}).get("name") == "nvidia-device-plugin-config")
    config = yaml.safe_load(plugin["data"]["config"])
    assert config["sharing"]["mps"]["resources"][0]["replicas"] == 10
    scrape = yaml.safe_load((DEPLOY / "prometheus/esg-functions-scrape.yaml").read_text())
    assert scrape["scrape_configs"][0]["metrics_path"] == "/_esg/metrics"


def test_the_knative_functions_are_scraped_once_each_with_their_function_name():
    """Knative Services have no OpenFaaS gateway counting their arrivals:
    the scaler reads the functions' own (``esg_requests_started_total``),
    which the second job gives the ``function_name`` of the Service — and
    not a pod the first job scrapes too."""
    openfaas, knative = yaml.safe_load((DEPLOY / "prometheus/esg-functions-scrape.yaml").read_text())["scrape_configs"]
    service = "__meta_kubernetes_pod_label_serving_knative_dev_service"  # the pod label serving.knative.dev/service
    rules = [(r["source_labels"], r.get("action", "replace"), r.get("target_label")) for r in knative["relabel_configs"]]
    assert ([service], "keep", None) in rules and ([service], "replace", "function_name") in rules
    assert (["__meta_kubernetes_pod_label_faas_function"], "drop", None) in rules
    assert knative["metrics_path"] == openfaas["metrics_path"] == "/_esg/metrics"
    knative_settings = ScalerSettings.load(yaml.safe_load((DEPLOY / "knative/scaler.yaml").read_text()), {})
    assert knative_settings.source_kind == "prometheus" and knative_settings.actuator == "knative"


def test_the_torch_extra_brings_what_esg_up_and_the_functions_import():
    """`pip install -e '.[torch]'` then `esg up`: Pillow was only in the dev
    extra, and esg up ended in a traceback."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {spec.split("=")[0].split(">")[0].split("<")[0].strip().lower() for spec in extras["torch"]}
    assert {"torch", "pillow"} <= names and "torch==2.13.0" in extras["torch"]


def test_the_end_to_end_tests_ask_the_sidecar_on_its_own_port():
    """tests/e2e asked 127.0.0.1:8081 inside the gateway's pod — faas-netes's
    port there, not the sidecar's — in tests no machine of ours can run."""
    from tests.e2e import test_cluster

    patch = yaml.safe_load((DEPLOY / "gateway-sidecar/gateway-patch.yaml").read_text())
    args = patch[0]["value"]["args"]
    assert test_cluster.SCALER_URL == f"http://127.0.0.1:{args[args.index('--port') + 1]}"
