#!/usr/bin/env bash
# Remove everything deploy/minikube/up.sh created: the port-forward and the
# minikube profile (the cluster, OpenFaaS or Knative, the functions, the scaler).
set -euo pipefail

PROFILE="${MINIKUBE_PROFILE:-esg}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${ROOT}/deploy/minikube/.state"

if [ -f "${STATE_DIR}/port-forward.pid" ]; then
  kill "$(cat "${STATE_DIR}/port-forward.pid")" 2>/dev/null || true
fi
rm -rf "${STATE_DIR}"
if command -v minikube >/dev/null 2>&1 && minikube -p "${PROFILE}" status >/dev/null 2>&1; then
  minikube delete -p "${PROFILE}"
else
  echo "down.sh: no minikube profile ${PROFILE} to delete"
fi
