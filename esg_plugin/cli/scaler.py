"""``esg scaler``: run the ESG scaler service."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from ..limits import flag
from ..loaders import LoadError, SettingsFile, StackFiles

DESCRIPTION = """\
Run the ESG control loop: every interval, read each workflow's load from the
OpenFaaS gateway's /metrics (sidecar mode) or Prometheus (standalone mode),
plan with ESG, and apply replicas, batch settings and GPU shares through the
actuator (dry-run changes nothing). Serves /healthz, /readyz, /metrics,
/plan and POST /reconcile (bearer token). Settings: --config FILE (YAML),
then ESG_SCALER_* environment variables, then these flags."""


def http_url(text: str) -> str:
    """An argparse ``type=``: an http(s) URL with a host (``--kube-api``; the settings' check)."""
    from ..scaler.settings import is_http_url

    if not is_http_url(text):
        raise argparse.ArgumentTypeError(f"must be an http(s) URL, got {text[:60]!r}")
    return text


def register(commands: argparse._SubParsersAction) -> None:
    from ..scaler.settings import ACTUATORS

    p = commands.add_parser("scaler", help="run the scaler service", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="YAML file of settings (docs/scaler.md lists them)")
    p.add_argument("--stack", metavar="S", help="stack.yml with com.esg.* annotations")
    p.add_argument("--profiles", metavar="P", help="profiles JSON")
    p.add_argument("--metrics-url", metavar="U", help="gateway /metrics URL or Prometheus base URL")
    p.add_argument("--actuator", choices=ACTUATORS, help="default dry-run")
    p.add_argument("--interval-s", type=flag(float, 0.1, 3600), metavar="N", help="control loop period (default 5)")
    p.add_argument("--port", type=flag(int, 0, 65535), metavar="N", help="HTTP port (default 8081)")
    p.add_argument("--namespace", metavar="NS", help="function namespace (default openfaas-fn)")
    p.add_argument("--kube-api", metavar="URL", type=http_url,
                   help="Kubernetes API URL without auth (tests); default: in-cluster, else ~/.kube/config")
    p.add_argument("--once", action="store_true", help="run one iteration, print the plan JSON and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..scaler import (Scaler, ScalerSettings, ScalerSettingsError, freeze_start_up_heap, make_http_server,
                          make_source)

    overrides = {k: v for k, v in {"stack": args.stack, "profiles": args.profiles, "metrics_url": args.metrics_url,
                                   "actuator": args.actuator, "interval_s": args.interval_s, "port": args.port,
                                   "namespace": args.namespace}.items() if v is not None}
    settings_file = SettingsFile(args.config, os.environ, overrides) if args.config else None
    try:
        # the file is read again by the loop when it changes (a ConfigMap updated in place)
        settings = settings_file.load() if settings_file else ScalerSettings.load({}, os.environ, overrides)
    except ScalerSettingsError as err:
        raise LoadError(f"scaler settings: {err}") from None
    files = StackFiles(settings.stack, settings.profiles)
    topology, profiles = files.load()  # read again by the loop when a file changes (a ConfigMap updated in place)
    actuator, api = _actuator(settings, args.kube_api)
    gateways = _gateway_pods(settings, api, args.kube_api) if settings.gateway_pods else None
    source = make_source(settings.source_kind, settings.metrics_url, settings.window_s, settings.interval_s,
                         gateways)
    lease = None
    if api is not None and settings.leader_election:  # --once too: it acts, so only where no other scaler leads
        from ..scaler.actuators.lease import Lease

        lease = Lease(api, actuator.api, settings.namespace, settings.lease_name, settings.lease_duration_s)
    scaler = Scaler(topology, profiles, settings, source, actuator, lease=lease, files=files,
                    settings_file=settings_file)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.once:
        scaler.iterate()
        if lease is not None:
            lease.release()  # the running scaler, if any, takes it back at once
        print(json.dumps(scaler.plan_document(), indent=2, default=str))
        return 0
    try:
        server = make_http_server(scaler, settings.host, settings.port, settings.token)
    except OSError as err:  # a host that is no address of this machine, a port taken: one line, not a traceback
        raise ScalerSettingsError(f"cannot listen on {settings.host}:{settings.port}: "
                                  f"{err.strerror or err}") from None
    freeze_start_up_heap()
    # where it listens is the first line it says: the loop, started after it, logs from its first iteration
    print(f"esg scaler on http://{settings.host}:{server.server_address[1]} ({settings.actuator}, metrics from "
          f"{settings.metrics_url})", file=sys.stderr, flush=True)
    stop = threading.Event()
    loop = threading.Thread(target=scaler.run, args=(stop,), name="esg-scaler-loop", daemon=True)

    def on_signal(signum, frame):
        stop.set()
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop.start()
    server.serve_forever(poll_interval=0.2)
    loop.join(timeout=settings.interval_s + settings.api_timeout_s + 1)  # an iteration ends, the lease is given up
    return 0


def _actuator(settings, kube_api):
    """(the actuator, its Kubernetes client or None)."""
    from ..scaler import DryRunActuator, GatewayActuator, KnativeActuator, KubernetesActuator

    if settings.actuator == "dry-run":
        return DryRunActuator(), None
    if settings.actuator == "openfaas-gateway":
        return GatewayActuator(settings.gateway_url, settings.gateway_user, settings.gateway_password,
                               settings.api_timeout_s), None
    api = _kube_client(kube_api)
    if settings.actuator == "knative":
        return KnativeActuator(api, settings.namespace, settings.share_mode, settings.gpu_memory_mb,
                               settings.api_timeout_s), api
    return KubernetesActuator(api, settings.namespace, settings.share_mode, settings.gpu_memory_mb,
                              settings.function_port, settings.function_token,
                              api_timeout_s=settings.api_timeout_s), api


def _gateway_pods(settings, api, kube_api):
    """Every gateway replica's metrics URL, from the Kubernetes API (the actuator's client, else one of its own)."""
    from kubernetes import client

    from ..scaler.gateways import GatewayPods

    core = client.CoreV1Api(api if api is not None else _kube_client(kube_api))
    return GatewayPods(core, settings.gateway_namespace, settings.gateway_pods, settings.metrics_url,
                       settings.api_timeout_s)


def _kube_client(kube_api):
    from kubernetes import client, config

    from ..scaler.actuators.base import api_client

    if kube_api:
        configuration = client.Configuration()
        configuration.host = kube_api
        return api_client(configuration)
    try:
        if "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config()
        else:
            config.load_kube_config()
    except Exception as err:
        raise LoadError(f"no Kubernetes API: {err}") from None
    return api_client()
