"""Knative Services for the workflow functions of a stack.yml (used by up.sh --knative).

    python3 deploy/minikube/knative_services.py stack.yml [--image-prefix esg] [--tag dev] [--namespace openfaas-fn]

Each function with com.esg.* annotations becomes a serving.knative.dev/v1
Service with the stack's environment, min-scale = max-scale = 1 (the ESG
scaler's Knative actuator changes both), and its annotations, visible only
inside the cluster (Knative's cluster-local label: the router calls the
stages; clients call the router). The workflow
router (the function whose handler is ./functions/router) becomes one too,
set to serve without an OpenFaaS gateway: it calls each stage at its
Service's address in the cluster (function_url) and reads the workflows
from the Services' annotations (workflows_from=knative) as the service
account esg-router (deploy/knative/rbac.yaml); one instance, which the
scaler leaves alone (it is no stage). Prints YAML.
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: its wire contract
from esg_plugin.runtime import contract as C  # noqa: E402


ROUTER_HANDLER = "functions/router"
"""The handler of the workflow router in a stack.yml."""
CLUSTER_LOCAL = ("networking.knative.dev/visibility", "cluster-local")
"""The label that keeps a Knative Service off the ingress: reachable only inside the cluster."""
ROUTER_ACCOUNT = "esg-router"
"""The router's service account (deploy/knative/rbac.yaml): it may list the Services, nothing else."""


def services(stack: dict, image_prefix: str, tag: str, namespace: str) -> list:
    out = []
    for name, spec in (stack.get("functions") or {}).items():
        annotations = dict((spec or {}).get("annotations") or {})
        environment = {str(k): str(v) for k, v in ((spec or {}).get("environment") or {}).items()
                       if not str(k).endswith("_timeout")}
        if is_router(spec):
            environment.pop("gateway_url", None)  # no gateway: each stage at its Service, the workflows from them
            environment.update(function_url=f"http://{{name}}.{namespace}.svc.cluster.local",
                               workflows_from="knative", knative_namespace=namespace)
            out.append(service(name, namespace, {}, environment, f"{image_prefix}/{name}:{tag}", ROUTER_ACCOUNT))
            continue
        if C.ANNOTATION_WORKFLOW not in annotations:
            continue
        stage = service(name, namespace, annotations, environment, f"{image_prefix}/{name}:{tag}")
        stage["metadata"]["labels"] = {CLUSTER_LOCAL[0]: CLUSTER_LOCAL[1]}  # only the router calls a stage
        out.append(stage)
    return out


def is_router(spec) -> bool:
    handler = str((spec or {}).get("handler") or "")
    return handler.strip().lstrip("./").rstrip("/") == ROUTER_HANDLER


def service(name: str, namespace: str, annotations: dict, environment: dict, image: str,
            account: Optional[str] = None) -> dict:
    """One Knative Service at one instance (min-scale = max-scale = 1)."""
    pod = {"containerConcurrency": 0, "containers": [{
        "image": image,
        "ports": [{"containerPort": 8080}],
        "env": [{"name": k, "value": v} for k, v in environment.items()],
    }]}
    if account:
        pod = {"serviceAccountName": account, **pod}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"template": {
            "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "1",
                                         "autoscaling.knative.dev/max-scale": "1"}},
            "spec": pod,
        }},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack")
    parser.add_argument("--image-prefix", default="esg")
    parser.add_argument("--tag", default="dev")
    parser.add_argument("--namespace", default="openfaas-fn")  # as faas-cli generate
    args = parser.parse_args(argv)
    with open(args.stack) as f:
        stack = yaml.safe_load(f)
    yaml.safe_dump_all(services(stack, args.image_prefix, args.tag, args.namespace), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
