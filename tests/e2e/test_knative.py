"""End to end on a Knative cluster brought up by ``deploy/minikube/up.sh --knative``.

Skipped unless ESG_E2E_KUBECONFIG (a kubeconfig) and ESG_E2E_KOURIER (Kourier's
URL, e.g. http://127.0.0.1:8080 after ``kubectl -n kourier-system
port-forward svc/kourier 8080:80``) are set; ESG_E2E_KNATIVE_DOMAIN is the
domain of the Services' routes (Knative's default, example.com, unless set).
Never run on the project's own machines (no Docker, no cluster).
"""

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

KUBECONFIG = os.environ.get("ESG_E2E_KUBECONFIG")
KOURIER = os.environ.get("ESG_E2E_KOURIER")
DOMAIN = os.environ.get("ESG_E2E_KNATIVE_DOMAIN", "example.com")
NS = "openfaas-fn"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (KUBECONFIG and KOURIER), reason="needs a cluster from deploy/minikube/up.sh --knative: "
                                                            "set ESG_E2E_KUBECONFIG and ESG_E2E_KOURIER"),
]


def post_workflow(name, body, content_type):
    """(status, answer) of one request through the router, a Knative Service reached through Kourier."""
    request = urllib.request.Request(f"{KOURIER}/workflow/{name}", data=body, method="POST",
                                     headers={"Content-Type": content_type, "Host": f"router.{NS}.{DOMAIN}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, {}


def min_scale(name):
    from kubernetes import client, config

    config.load_kube_config(KUBECONFIG)
    service = client.CustomObjectsApi().get_namespaced_custom_object("serving.knative.dev", "v1", NS, "services", name)
    return service["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"]


def test_without_a_gateway_the_router_serves_a_workflow_and_the_scaler_reacts_to_its_load():
    """The router reads the workflows from the Services and calls each stage at
    its address; the functions' own arrival counts, scraped by deploy/prometheus,
    are the Knative scaler's load: a step to 20 rps changes a stage's instances."""
    from esg_plugin.local.up import entry_body

    body, content_type = entry_body("preprocess")
    assert post_workflow("image", body, content_type)[0] == 200
    before = min_scale("image-classify")
    with ThreadPoolExecutor(64) as pool:
        futures, end = [], time.monotonic() + 120
        while time.monotonic() < end:
            futures.append(pool.submit(post_workflow, "image", body, content_type))
            time.sleep(1 / 20)
        answers = [f.result() for f in futures]
    assert all(status in (200, 504, 429) for status, _ in answers)  # every request answered
    assert min_scale("image-classify") != before
