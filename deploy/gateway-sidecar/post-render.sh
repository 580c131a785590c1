#!/usr/bin/env bash
# Helm post-renderer: the chart's manifests on stdin, the same with the ESG
# scaler sidecar (this folder's kustomize Component) on stdout.
#   helm upgrade --install openfaas openfaas/openfaas -n openfaas \
#     --post-renderer deploy/gateway-sidecar/post-render.sh
# Needs kubectl (its built-in kustomize) or kustomize on the PATH.
set -euo pipefail

component="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

# kustomize takes a component by a relative path only
relative="$(realpath --relative-to="${work}" "${component}" 2> /dev/null \
  || python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "${component}" "${work}")"
cat > "${work}/chart.yaml"
cat > "${work}/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - chart.yaml
components:
  - ${relative}
YAML
if command -v kustomize > /dev/null; then
  kustomize build "${work}"
else
  kubectl kustomize "${work}"
fi
