#!/usr/bin/env bash
# Bring up minikube with the NVIDIA GPU, OpenFaaS, the workflow functions and
# the ESG scaler (as a sidecar of the gateway). Idempotent: run it again to
# converge. --knative: Knative Serving instead of OpenFaaS, the functions as
# Knative Services, the scaler with its Knative actuator.
#
#   deploy/minikube/up.sh [--knative] [--no-gpu]
#
# Versions (docs/CLUSTER.md names the same): minikube >= 1.32, OpenFaaS chart
# 14.2.124, NVIDIA device plugin 0.17.0, Knative Serving v1.16.0 (Kourier).
set -euo pipefail

OPENFAAS_CHART_VERSION="${OPENFAAS_CHART_VERSION:-14.2.124}"
DEVICE_PLUGIN_VERSION="${DEVICE_PLUGIN_VERSION:-0.17.0}"
KNATIVE_VERSION="${KNATIVE_VERSION:-1.16.0}"
MINIKUBE_MIN_VERSION="1.32.0"
PROFILE="${MINIKUBE_PROFILE:-esg}"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${ROOT}/deploy/minikube/.state"
KNATIVE=false
GPU=true

for arg in "$@"; do
  case "${arg}" in
    --knative) KNATIVE=true ;;
    --no-gpu) GPU=false ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "up.sh: unknown argument ${arg} (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'up.sh: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required: $2"; }

version_at_least() {  # version_at_least HAVE WANT
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

check_prerequisites() {
  say "checking prerequisites"
  need docker "install Docker Engine (https://docs.docker.com/engine/install/)"
  docker info >/dev/null 2>&1 || die "docker is installed but its daemon is not reachable"
  need minikube "install minikube >= ${MINIKUBE_MIN_VERSION} (https://minikube.sigs.k8s.io/docs/start/)"
  local have
  have="$(minikube version --short | sed 's/^v//')"
  version_at_least "${have}" "${MINIKUBE_MIN_VERSION}" || die "minikube ${have} is too old: --gpus needs >= ${MINIKUBE_MIN_VERSION}"
  need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
  need helm "install Helm 3 (https://helm.sh/docs/intro/install/), or get it with: arkade get helm"
  if [ "${KNATIVE}" = false ]; then
    need faas-cli "install faas-cli (https://docs.openfaas.com/cli/install/), or: arkade get faas-cli"
  fi
  if [ "${GPU}" = true ]; then
    need nvidia-smi "install the NVIDIA driver, or run with --no-gpu"
    nvidia-smi >/dev/null 2>&1 || die "nvidia-smi cannot talk to the driver"
    need nvidia-ctk "install the NVIDIA Container Toolkit and run: sudo nvidia-ctk runtime configure --runtime=docker"
    docker info 2>/dev/null | grep -qi nvidia || die "Docker has no nvidia runtime: sudo nvidia-ctk runtime configure --runtime=docker && restart docker"
  fi
}

start_minikube() {
  say "starting minikube (profile ${PROFILE})"
  if minikube -p "${PROFILE}" status >/dev/null 2>&1; then
    echo "minikube profile ${PROFILE} is already running"
  elif [ "${GPU}" = true ]; then
    # --gpus all enables the nvidia-device-plugin addon
    minikube start -p "${PROFILE}" --driver docker --container-runtime docker --gpus all --cpus 4 --memory 12g
  else
    minikube start -p "${PROFILE}" --driver docker --container-runtime docker --cpus 4 --memory 12g
  fi
  kubectl config use-context "${PROFILE}" >/dev/null
}

configure_gpu_sharing() {
  [ "${GPU}" = true ] || return 0
  say "sharing each GPU through MPS (NVIDIA device plugin ${DEVICE_PLUGIN_VERSION})"
  minikube -p "${PROFILE}" addons disable nvidia-device-plugin >/dev/null 2>&1 || true
  kubectl create namespace nvidia-device-plugin --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -f "${ROOT}/deploy/gpu/nvidia-device-plugin-mps.yaml"
  helm repo add nvdp https://nvidia.github.io/k8s-device-plugin >/dev/null
  helm repo update nvdp >/dev/null
  helm upgrade --install nvdp nvdp/nvidia-device-plugin --version "${DEVICE_PLUGIN_VERSION}" \
    --namespace nvidia-device-plugin --set config.name=nvidia-device-plugin-config --wait
}

build_images() {
  say "building the function images into minikube's image store"
  # shellcheck disable=SC2046  # minikube docker-env prints several export lines
  eval $(minikube -p "${PROFILE}" docker-env)
  # faas-cli finds the esg-python3 template in ./template of the repository root
  local build_args=()
  if [ "${GPU}" = true ]; then
    build_args=(--build-arg BASE_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04)
  fi
  (cd "${ROOT}" && REGISTRY=esg TAG=dev faas-cli build -f stack.yml "${build_args[@]}")
  docker build -f "${ROOT}/deploy/Dockerfile" -t esg/esg-scaler:dev "${ROOT}"
  eval "$(minikube -p "${PROFILE}" docker-env --unset)"
}

install_openfaas() {
  say "installing OpenFaaS (chart ${OPENFAAS_CHART_VERSION})"
  kubectl apply -f https://raw.githubusercontent.com/openfaas/faas-netes/master/namespaces.yml
  helm repo add openfaas https://openfaas.github.io/faas-netes/ >/dev/null
  helm repo update openfaas >/dev/null
  # alertmanager.create=false: OpenFaaS CE's own alert-based scaling is off,
  # so it does not fight the ESG scaler; images come from minikube's store.
  helm upgrade --install openfaas openfaas/openfaas --version "${OPENFAAS_CHART_VERSION}" \
    --namespace openfaas \
    --set functionNamespace=openfaas-fn \
    --set generateBasicAuth=true \
    --set alertmanager.create=false \
    --set functions.imagePullPolicy=IfNotPresent \
    --wait
  kubectl -n openfaas rollout status deploy/gateway --timeout=300s
}

port_forward_gateway() {
  mkdir -p "${STATE_DIR}"
  if [ -f "${STATE_DIR}/port-forward.pid" ] && kill -0 "$(cat "${STATE_DIR}/port-forward.pid")" 2>/dev/null; then
    echo "gateway port-forward already running"
  else
    kubectl -n openfaas port-forward svc/gateway "${GATEWAY_PORT}:8080" >"${STATE_DIR}/port-forward.log" 2>&1 &
    echo $! >"${STATE_DIR}/port-forward.pid"
    sleep 3
  fi
  OPENFAAS_URL="http://127.0.0.1:${GATEWAY_PORT}"
  export OPENFAAS_URL
  kubectl -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' | base64 --decode \
    | faas-cli login --username admin --password-stdin --gateway "${OPENFAAS_URL}"
}

deploy_functions() {
  say "deploying the functions (faas-cli deploy -f stack.yml)"
  (cd "${ROOT}" && REGISTRY=esg TAG=dev faas-cli deploy -f stack.yml --gateway "${OPENFAAS_URL}")
}

install_scaler_sidecar() {
  say "installing the ESG scaler as a sidecar of the gateway"
  local profiles="${ESG_PROFILES:-${ROOT}/profiles/cpu-2core.json}"
  kubectl -n openfaas create configmap esg-scaler-workload \
    --from-file=stack.yml="${ROOT}/stack.yml" \
    --from-file=profiles.json="${profiles}" \
    --dry-run=client -o yaml | kubectl apply -f -
  # the same release, re-rendered through the sidecar Component (Helm's post-renderer)
  helm upgrade openfaas openfaas/openfaas --version "${OPENFAAS_CHART_VERSION}" \
    --namespace openfaas --reuse-values \
    --post-renderer "${ROOT}/deploy/gateway-sidecar/post-render.sh" --wait
  kubectl -n openfaas set image deployment/gateway esg-scaler=esg/esg-scaler:dev
  kubectl -n openfaas rollout status deploy/gateway --timeout=300s
}

install_knative() {
  say "installing Knative Serving v${KNATIVE_VERSION} with Kourier"
  local base="https://github.com/knative/serving/releases/download/knative-v${KNATIVE_VERSION}"
  kubectl apply -f "${base}/serving-crds.yaml"
  kubectl apply -f "${base}/serving-core.yaml"
  kubectl apply -f "https://github.com/knative/net-kourier/releases/download/knative-v${KNATIVE_VERSION}/kourier.yaml"
  kubectl patch configmap/config-network -n knative-serving --type merge \
    -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
  kubectl -n knative-serving rollout status deploy/controller --timeout=300s
  say "deploying the functions as Knative Services"
  kubectl -n knative-serving create configmap esg-scaler-workload \
    --from-file=stack.yml="${ROOT}/stack.yml" \
    --from-file=profiles.json="${ESG_PROFILES:-${ROOT}/profiles/cpu-2core.json}" \
    --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -k "${ROOT}/deploy/knative"   # the openfaas-fn namespace, RBAC, settings, the scaler
  kubectl apply -k "${ROOT}/deploy/prometheus"   # what the scaler reads the load from: the functions' own counts
  # the stages, and the router that serves their workflows without a gateway (function_url, workflows_from)
  python3 "${ROOT}/deploy/minikube/knative_services.py" "${ROOT}/stack.yml" --image-prefix esg --tag dev \
    --namespace openfaas-fn | kubectl apply -f -
  kubectl -n knative-serving set image deployment/esg-scaler esg-scaler=esg/esg-scaler:dev
  kubectl -n knative-serving rollout status deploy/prometheus --timeout=300s
}

main() {
  check_prerequisites
  start_minikube
  configure_gpu_sharing
  build_images
  if [ "${KNATIVE}" = true ]; then
    install_knative
    say "ready: the workflows through Kourier, e.g."
    echo "  kubectl -n kourier-system port-forward svc/kourier 8080:80 &"
    echo "  curl -H 'Host: router.openfaas-fn.example.com' --data-binary @image.jpg http://127.0.0.1:8080/workflow/image"
    echo "and the end-to-end tests with"
    echo "  ESG_E2E_KOURIER=http://127.0.0.1:8080 ESG_E2E_KUBECONFIG=\$HOME/.kube/config .venv/bin/python -m pytest -m e2e tests/e2e/test_knative.py"
  else
    install_openfaas
    port_forward_gateway
    deploy_functions
    install_scaler_sidecar
    say "ready: gateway ${OPENFAAS_URL}; run the e2e tests with"
    echo "  ESG_E2E_GATEWAY=${OPENFAAS_URL} ESG_E2E_KUBECONFIG=\$HOME/.kube/config .venv/bin/python -m pytest -m e2e tests/e2e"
  fi
}

main
