"""The API emulator answers as a real kube-apiserver where a client can tell
(tests/kube_emulator.py; issue 17 lists each divergence it once had), the
actuators name every API failure, and the scaler's Role grants exactly the
verbs the scaler uses."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from esg_plugin.scaler import FunctionState, KnativeActuator
from esg_plugin.scaler.actuators import Conflict, Forbidden, Invalid, NotFound, Unavailable, api_error

from ..kube_emulator import KubeEmulator, deployment, strategic_merge

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NS = "openfaas-fn"


def api(kube, token=None):
    configuration = client.Configuration()
    configuration.host = kube.url
    if token:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.AppsV1Api(client.ApiClient(configuration))


def raw(kube, method, path, body=None, content_type="application/json", token=None):
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(kube.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


@pytest.fixture
def kube():
    with KubeEmulator() as emulator:
        emulator.add(deployment("fn", env={"A": "1", "B": "2"}))
        yield emulator


def test_a_conflict_only_for_a_stale_resource_version(kube):
    apps = api(kube)
    read = apps.read_namespaced_deployment("fn", NS).metadata.resource_version
    kube.add(deployment("fn", replicas=2))  # another writer
    # no resourceVersion in the patch: no precondition, no conflict
    apps.patch_namespaced_deployment("fn", NS, {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ApiException) as stale:
        apps.patch_namespaced_deployment("fn", NS, {"metadata": {"resourceVersion": read, "labels": {"x": "2"}}})
    assert stale.value.status == 409
    assert json.loads(stale.value.body)["message"].startswith(
        'Operation cannot be fulfilled on deployments.apps "fn": the object has been modified')
    current = apps.read_namespaced_deployment("fn", NS).metadata.resource_version
    apps.patch_namespaced_deployment("fn", NS, {"metadata": {"resourceVersion": current, "labels": {"x": "3"}}})
    assert kube.get("fn")["metadata"]["labels"]["x"] == "3"


def test_the_scale_subresource_is_the_servers(kube):
    scale = api(kube).read_namespaced_deployment_scale("fn", NS)
    assert scale.status.selector == "faas_function=fn" and scale.metadata.uid == kube.get("fn")["metadata"]["uid"]
    assert scale.metadata.creation_timestamp is not None
    api(kube).patch_namespaced_deployment_scale("fn", NS, {"spec": {"replicas": 4}})
    scale = api(kube).read_namespaced_deployment_scale("fn", NS)
    assert (scale.spec.replicas, scale.status.replicas) == (4, 1)  # no controller: status is what was observed
    with pytest.raises(ApiException) as refused:
        api(kube).patch_namespaced_deployment_scale("fn", NS, {"spec": {"replicas": -1}})
    assert refused.value.status == 422 and json.loads(refused.value.body)["message"] == (
        'Scale.autoscaling "fn" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0')


def test_create_keeps_the_servers_metadata_and_refuses_what_the_server_refuses(kube):
    body = deployment("new")
    body.pop("status")
    created = api(kube).create_namespaced_deployment(NS, body)
    assert created.metadata.generation == 1 and created.metadata.uid and created.metadata.resource_version
    with pytest.raises(ApiException) as again:
        api(kube).create_namespaced_deployment(NS, body)
    assert again.value.status == 409 and json.loads(again.value.body)["reason"] == "AlreadyExists"
    body = deployment("versioned")
    body["metadata"]["resourceVersion"] = "7"
    with pytest.raises(ApiException) as versioned:
        api(kube).create_namespaced_deployment(NS, body)
    assert versioned.value.status == 500
    assert "resourceVersion should not be set on objects to be created" in versioned.value.body


def test_a_json_patch_list_is_applied(kube):
    api(kube).patch_namespaced_deployment("fn", NS, [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/tier", "value": "gpu"}])
    assert kube.get("fn")["spec"]["replicas"] == 3 and kube.get("fn")["metadata"]["labels"]["tier"] == "gpu"
    status, doc, _ = raw(kube, "PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/fn",
                         [{"op": "test", "path": "/spec/replicas", "value": 9}], "application/json-patch+json")
    assert status == 422 and doc["reason"] == "Invalid"


def test_generation_follows_spec_and_deployment_annotations(kube):
    apps = api(kube)
    generation = kube.get("fn")["metadata"]["generation"]
    apps.patch_namespaced_deployment("fn", NS, {"metadata": {"annotations": {"com.esg.batch-size": "4"}}})
    assert kube.get("fn")["metadata"]["generation"] == generation + 1
    apps.patch_namespaced_deployment("fn", NS, {"metadata": {"labels": {"only": "a-label"}}})
    assert kube.get("fn")["metadata"]["generation"] == generation + 1
    apps.patch_namespaced_deployment_scale("fn", NS, {"spec": {"replicas": 2}})
    assert kube.get("fn")["metadata"]["generation"] == generation + 2
    # a custom resource (status subresource): metadata changes do not count
    kube.add_knative({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                      "metadata": {"name": "k", "namespace": "default"}, "spec": {"template": {}}})
    path = "/apis/serving.knative.dev/v1/namespaces/default/services/k"
    raw(kube, "PATCH", path, {"metadata": {"annotations": {"a": "b"}}}, "application/merge-patch+json")
    assert kube.knative[("default", "k")]["metadata"]["generation"] == 1
    raw(kube, "PATCH", path, {"spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}},
        "application/merge-patch+json")
    assert kube.knative[("default", "k")]["metadata"]["generation"] == 2


def test_strategic_merge_follows_the_server():
    live = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}],
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}, "args": ["x", "y", "z"]}
    # items it names in the patch's order, server-only items where they stood, new ones last
    merged = strategic_merge(live, {"env": [{"name": "B", "value": "20"}, {"name": "D", "value": "4"}]})
    assert [(e["name"], e["value"]) for e in merged["env"]] == [("A", "1"), ("B", "20"), ("C", "3"), ("D", "4")]
    merged = strategic_merge(live, {"env": [{"name": "C", "value": "30"}, {"name": "A", "value": "10"}]})
    assert [e["name"] for e in merged["env"]] == ["B", "C", "A"]  # the patch reorders the items it names
    # directives act and leave no trace
    merged = strategic_merge(live, {"env": [{"name": "B", "$patch": "delete"}],
                                    "resources": {"$patch": "replace", "limits": {"cpu": "2"}},
                                    "$deleteFromPrimitiveList/args": ["y"]})
    assert [e["name"] for e in merged["env"]] == ["A", "C"] and merged["resources"] == {"limits": {"cpu": "2"}}
    assert merged["args"] == ["x", "z"] and "$deleteFromPrimitiveList/args" not in merged
    merged = strategic_merge(live, {"resources": {"$retainKeys": ["limits"], "limits": {"cpu": "3"}},
                                    "$setElementOrder/env": [{"name": "C"}, {"name": "A"}, {"name": "B"}],
                                    "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "1"},
                                            {"name": "B", "value": "2"}]})
    assert [e["name"] for e in merged["env"]] == ["C", "A", "B"]
    assert merged["resources"] == {"limits": {"cpu": "3", "memory": "1Gi"}}
    assert "$" not in json.dumps(merged)
    assert strategic_merge(live, {"env": [{"$patch": "replace"}, {"name": "Z", "value": "0"}]})["env"] == [
        {"name": "Z", "value": "0"}]


def test_an_invalid_object_is_refused_in_the_servers_words_and_an_unknown_field_warned(kube):
    status, doc, _ = raw(kube, "PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/fn",
                         {"spec": {"replicas": "three"}}, "application/strategic-merge-patch+json")
    assert status == 422 and doc["reason"] == "Invalid"
    assert doc["message"].startswith('Deployment.apps "fn" is invalid: spec.replicas: Invalid value: "three"')
    status, doc, headers = raw(kube, "PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/fn",
                               {"spec": {"replicaz": 2}}, "application/strategic-merge-patch+json")
    assert status == 200 and 'unknown field \\"spec.replicaz\\"' in headers.get("Warning", "")
    status, doc, _ = raw(kube, "PATCH", "/apis/serving.knative.dev/v1/namespaces/default/services/none",
                         {}, "application/strategic-merge-patch+json")
    assert status == 404


def test_authorization_answers_401_and_403_like_the_server():
    rules = [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]
    with KubeEmulator(token="t0ken", rules=rules) as kube:
        kube.add(deployment("fn"))
        assert api(kube, "t0ken").read_namespaced_deployment("fn", NS).metadata.name == "fn"
        with pytest.raises(ApiException) as anonymous:
            api(kube).read_namespaced_deployment("fn", NS)
        assert anonymous.value.status == 401
        with pytest.raises(ApiException) as denied:
            api(kube, "t0ken").patch_namespaced_deployment_scale("fn", NS, {"spec": {"replicas": 2}})
        assert denied.value.status == 403 and json.loads(denied.value.body)["message"] == (
            'deployments.apps "fn" is forbidden: User "system:serviceaccount:openfaas:esg-scaler" cannot patch '
            'resource "deployments/scale" in API group "apps" in the namespace "openfaas-fn"')


def test_every_api_failure_gets_its_name(kube):
    apps = api(kube)
    cases = [(lambda: apps.read_namespaced_deployment("absent", NS), NotFound, 'deployments.apps "absent" not found'),
             (lambda: apps.patch_namespaced_deployment("fn", NS, {"metadata": {"resourceVersion": "1"}}), Conflict,
              "the object has been modified"),
             (lambda: apps.patch_namespaced_deployment_scale("fn", NS, {"spec": {"replicas": -2}}), Invalid,
              "must be greater than or equal to 0")]
    for call, kind, words in cases:
        with pytest.raises(ApiException) as raised:
            call()
        named = api_error(raised.value)
        assert type(named) is kind and words in str(named) and named.status == raised.value.status
    kube.fail_next(1, 503)
    with pytest.raises(ApiException) as busy:
        apps.read_namespaced_deployment("fn", NS)
    assert isinstance(api_error(busy.value), Unavailable) and api_error(busy.value).retry
    with KubeEmulator(token="t", rules=[]) as locked:
        locked.add(deployment("fn"))
        with pytest.raises(ApiException) as forbidden:
            api(locked, "t").read_namespaced_deployment("fn", NS)
        assert isinstance(api_error(forbidden.value), Forbidden)
    assert api_error(ValueError("a bug")) is None


def test_knative_rereads_after_a_conflict_and_keeps_the_other_writers_change():
    with KubeEmulator() as kube:
        kube.add_knative({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                          "metadata": {"name": "classify", "namespace": "default"},
                          "spec": {"template": {"metadata": {"annotations": {}}, "spec": {"containers": [
                              {"image": "localhost:5000/esg/fn", "env": [{"name": "A", "value": "1"}]}]}}}})

        def other_writer(svc):  # e.g. kn service update --env LOG=debug, between our read and our patch
            svc["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "LOG", "value": "debug"})
        kube.interleave("services", "classify", other_writer, namespace="default")
        configuration = client.Configuration()
        configuration.host = kube.url
        changes = KnativeActuator(client.ApiClient(configuration), "default").apply(
            {"classify": FunctionState(2, 4, 5.0, 50)})
        assert changes and not [c for c in changes if c.kind in ("error", "gone")]
        env = {e["name"]: e["value"] for e in kube.knative[("default", "classify")]["spec"]["template"]["spec"][
            "containers"][0]["env"]}
        assert env["LOG"] == "debug" and env["ESG_GPU_SHARE"] == "50" and env["A"] == "1"
        patches = [p for m, p in kube.requests if m == "PATCH"]
        assert len(patches) == 2  # refused once with 409, then patched after reading again


def test_the_scalers_role_grants_exactly_the_verbs_the_scaler_uses(tmp_path):
    """The scaler runs against the emulator with its own Role: no request is
    refused, and every verb the Role grants was used."""
    from esg_plugin.loaders import load_profiles, read_yaml
    from esg_plugin.scaler import GatewayScrape, KubernetesActuator, Scaler, ScalerSettings, Topology
    from esg_plugin.scaler.actuators.lease import Lease

    from .test_scaler_kubernetes import INTERVAL_S, Clock, FakeGateway

    role = next(d for d in yaml.safe_load_all((ROOT / "deploy/scaler-base/rbac.yaml").read_text())
                if d and d["kind"] == "Role")
    topology = Topology.from_stack(read_yaml(ROOT / "stack.yml"))
    settings = ScalerSettings.load({"interval_s": INTERVAL_S, "window_s": 30, "scale_down_delay_s": 60,
                                    "max_replicas": 5}, {})
    gateway = FakeGateway()
    try:
        with KubeEmulator(token="sa-token", rules=role["rules"]) as kube:
            for fn in topology.functions.values():
                kube.add(deployment(fn, env={"ESG_FUNCTION": fn, "ESG_GPU_SHARE": 100}))
                kube.pod_ips[fn] = ["127.0.0.1"]  # nothing listens there: the live push fails quietly
            configuration = client.Configuration()
            configuration.host = kube.url
            configuration.api_key = {"authorization": "Bearer sa-token"}
            api = client.ApiClient(configuration)
            actuator = KubernetesActuator(api, NS, push_timeout_s=0.2, function_port=9)
            clock = Clock()
            lease = Lease(api, actuator.api, NS, settings.lease_name, settings.lease_duration_s, clock=clock)
            scaler = Scaler(topology, load_profiles(ROOT / "profiles/cpu-2core.json"), settings,
                            GatewayScrape(gateway.url, settings.window_s), actuator, clock, lease=lease)  # as the CLI
            for rps in (20.0, 20.0, 20.0, 150.0, 150.0, 150.0):  # a rise: more replicas
                clock.now += INTERVAL_S
                for fn in topology.functions.values():
                    gateway.counts[fn] = gateway.counts.get(fn, 0.0) + rps * INTERVAL_S
                status = scaler.iterate()
                assert not [c for c in status.changes if c.kind in ("error", "gone")], status.changes
    finally:
        gateway.close()
    used = {(verb, group, resource) for verb, group, resource, namespace in kube.verbs}
    assert {namespace for *_, namespace in kube.verbs} == {role["metadata"]["namespace"]}
    granted = {(verb, group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert used == granted
