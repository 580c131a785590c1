"""Knative Services for the workflow functions of a stack.yml (used by up.sh --knative).

    python3 deploy/minikube/knative_services.py stack.yml [--image-prefix esg] [--tag dev] [--namespace openfaas-fn]

Each function with com.esg.* annotations becomes a serving.knative.dev/v1
Service with the stack's environment, min-scale = max-scale = 1 (the ESG
scaler's Knative actuator changes both), and its annotations. Prints YAML.
"""

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: its wire contract
from esg_plugin.runtime import contract as C  # noqa: E402


def services(stack: dict, image_prefix: str, tag: str, namespace: str) -> list:
    out = []
    for name, spec in (stack.get("functions") or {}).items():
        annotations = dict((spec or {}).get("annotations") or {})
        if C.ANNOTATION_WORKFLOW not in annotations:
            continue
        env = [{"name": str(k), "value": str(v)} for k, v in ((spec or {}).get("environment") or {}).items()
               if not str(k).endswith("_timeout")]
        out.append({
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"template": {
                "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "1",
                                             "autoscaling.knative.dev/max-scale": "1"}},
                "spec": {"containerConcurrency": 0, "containers": [{
                    "image": f"{image_prefix}/{name}:{tag}",
                    "ports": [{"containerPort": 8080}],
                    "env": env,
                }]},
            }},
        })
    return out


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
