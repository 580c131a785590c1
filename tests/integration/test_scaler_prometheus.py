"""The scaler reading real Prometheus (Debian's `prometheus`, started here on
loopback) that scrapes a gateway-compatible /metrics whose load changes."""

import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from esg_plugin.loaders import load_profiles, read_yaml
from esg_plugin.local.platform import free_port
from esg_plugin.scaler import DryRunActuator, PrometheusQuery, Scaler, ScalerSettings, Topology

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")


def serve_page(render, host: str = "127.0.0.1", port: int = 0):
    """A real HTTP server (on loopback by default) whose every GET answers
    ``render()`` (bytes); the server, serving."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body = render()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class LiveGateway:
    """Counters that grow in real time at a rate the test sets."""

    def __init__(self, function):
        self.function = function
        self.rate = 0.0
        self.count = 0.0
        self.elapsed_s = 0.0
        self.squares = 0.0
        """Gaps in bursts of five, one gap of 5/rate and four of none: Σg² grows 5/rate a second."""
        self.since = time.monotonic()
        self.lock = threading.Lock()
        self.server = serve_page(self.page)
        self.port = self.server.server_address[1]

    def page(self) -> bytes:
        # as the OpenFaaS gateway: arrivals counted at the start, answers by code (a tenth late)
        label = f'function_name="{self.function}.openfaas-fn"'
        started = self.value()
        body = (f"# TYPE gateway_function_invocation_started counter\n"
                f"gateway_function_invocation_started{{{label}}} {started}\n"
                f"# TYPE gateway_function_invocation_total counter\n"
                f'gateway_function_invocation_total{{code="200",{label}}} {0.9 * started}\n'
                f'gateway_function_invocation_total{{code="504",{label}}} {0.1 * started}\n'
                # as the workflow router: a tenth of its answers late, its arrivals in bursts of five
                # (gaps' cv² 4)
                f"# TYPE esg_workflow_requests_total counter\n"
                f'esg_workflow_requests_total{{workflow="image",slo="met",function_name="router"}} '
                f"{0.9 * started}\n"
                f'esg_workflow_requests_total{{workflow="image",slo="missed",function_name="router"}} '
                f"{0.1 * started}\n"
                f"# TYPE esg_workflow_arrival_gap_seconds summary\n"
                f'esg_workflow_arrival_gap_seconds_count{{workflow="image"}} {started}\n'
                f'esg_workflow_arrival_gap_seconds_sum{{workflow="image"}} {self.elapsed_s}\n'
                f"# TYPE esg_workflow_arrival_gap_squared_seconds counter\n"
                f'esg_workflow_arrival_gap_squared_seconds_total{{workflow="image"}} {self.squares}\n'
                # ... and each request's hops took 3 ms each
                f"# TYPE esg_workflow_hop_seconds summary\n"
                f'esg_workflow_hop_seconds_count{{workflow="image"}} {started}\n'
                f'esg_workflow_hop_seconds_sum{{workflow="image"}} {0.003 * started}\n'
                # as the function's runtime: each request waited 20 ms for its batch
                f"# TYPE esg_queue_wait_seconds histogram\n"
                f"esg_queue_wait_seconds_count{{{label}}} {started}\n"
                f"esg_queue_wait_seconds_sum{{{label}}} {0.02 * started}\n"
                ).encode()
        return body

    def value(self):
        with self.lock:
            now = time.monotonic()
            self.count += self.rate * (now - self.since)
            if self.rate > 0:
                self.elapsed_s += now - self.since
                self.squares += 5.0 / self.rate * (now - self.since)
            self.since = now
            return self.count

    def set_rate(self, rps):
        self.value()
        with self.lock:
            self.rate = rps


@pytest.mark.skipif(PROMETHEUS is None, reason="Prometheus is not installed (make test installs Debian's prometheus)")
def test_observed_rates_follow_the_load_and_the_plan_follows_them(tmp_path):
    gateway = LiveGateway("image-preprocess")
    gateway.set_rate(3.0)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ["127.0.0.1:{gateway.port}"]
""")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(base + "/-/ready", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        topology = Topology.from_stack(read_yaml(ROOT / "stack.yml"))
        profiles = load_profiles(ROOT / "profiles/cpu-2core.json")
        settings = ScalerSettings.load({"metrics_url": base, "interval_s": 2, "window_s": 6}, {})
        scaler = Scaler(topology, profiles, settings, PrometheusQuery(base, window_s=6, recent_s=4), DryRunActuator())

        def planned_rps():
            doc = scaler.plan_document()
            return doc["rates_rps"].get("image", 0.0) / (1 + settings.rate_headroom) if doc["ready"] else None

        def settle_until(predicate, timeout_s=90.0):
            """Iterate every second until the plan satisfies ``predicate`` (Prometheus
            scrapes every second; on a busy machine its rates take longer to settle)."""
            deadline = time.monotonic() + timeout_s
            while True:
                scaler.iterate()
                rate = planned_rps()
                if rate is not None and predicate(rate):
                    return rate
                assert time.monotonic() < deadline, f"the plan did not follow the load: {rate}"
                time.sleep(1.0)

        low_rate = settle_until(lambda rate: 1.5 <= rate <= 5.0)
        low = scaler.plan_document()
        low_cost = low["workflows"]["image"]["cost"]
        gateway.set_rate(60.0)
        high_rate = settle_until(lambda rate: 40.0 <= rate <= 80.0)
        high = scaler.plan_document()
        assert high["workflows"]["image"]["cost"] > low_cost
        assert high["workflows"]["image"]["rate_rps"] > low["workflows"]["image"]["rate_rps"] > 0
        assert low_rate < high_rate
        seen = scaler.source.observe(time.monotonic())
        late = seen.codes["image-preprocess"]["504"] / sum(seen.codes["image-preprocess"].values())
        assert late == pytest.approx(0.1, abs=0.02), seen.codes
        assert seen.workflow_hop_ms["image"] == pytest.approx(3.0, abs=0.01)  # the router's hops
        waited, wait_ms = seen.functions["image-preprocess"].queue_waits  # the runtime's waits, by function
        assert waited > 0 and wait_ms / waited == pytest.approx(20.0, abs=0.5)
        ok, missed, rejected = seen.workflow_answers["image"]  # the router's answers by class
        assert missed / (ok + missed) == pytest.approx(0.1, abs=0.02) and rejected == 0.0
        # the router's bursts of five: cv² 4 once the window holds the new rate alone (a window across the
        # step mixes the two rates' gaps, and reads burstier)
        deadline = time.monotonic() + 90
        while True:
            seen = scaler.source.observe(time.monotonic())
            cv2 = seen.workflow_arrival_cv2.get("image") if seen is not None else None
            if cv2 is not None and cv2 == pytest.approx(4.0, abs=0.2):
                break
            assert time.monotonic() < deadline, f"the gaps' cv2 read {cv2}"
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        gateway.server.shutdown()


class LiveReplica:
    """A function replica's own /_esg/metrics, as the runtime writes it (no
    OpenFaaS gateway in front: Knative Services), counting arrivals in real
    time at a rate the test sets, a tenth answered 504."""

    def __init__(self, rate_rps, host: str = "127.0.0.1", port: int = 0):
        self.started_s, self.rate_rps = time.monotonic(), rate_rps
        self.server = serve_page(self.page, host, port)
        self.port = self.server.server_address[1]

    def page(self) -> bytes:
        arrived = self.rate_rps * (time.monotonic() - self.started_s)
        return ("# TYPE esg_requests_started_total counter\n"
                f"esg_requests_started_total {arrived}\n"
                "# TYPE esg_requests_total counter\n"
                f'esg_requests_total{{code="200"}} {0.9 * arrived}\n'
                f'esg_requests_total{{code="504"}} {0.1 * arrived}\n').encode()


def replicas_at_one_port(rates_rps: dict[str, float]) -> dict[str, LiveReplica]:
    """A LiveReplica per loopback address (``rates_rps``: address -> rate), all at one port — as pods
    each at its own IP and the function's port; skipped where no port is free at every address."""
    for _ in range(20):
        first, *others = rates_rps
        replicas = {first: LiveReplica(rates_rps[first], first)}
        try:
            for address in others:
                replicas[address] = LiveReplica(rates_rps[address], address, replicas[first].port)
            return replicas
        except OSError:  # that port is taken at another address: another one
            for replica in replicas.values():
                replica.server.shutdown()
                replica.server.server_close()
    pytest.skip("no port free at every loopback address")


@pytest.mark.skipif(PROMETHEUS is None, reason="Prometheus is not installed (make test installs Debian's prometheus)")
def test_without_an_openfaas_gateway_the_functions_own_arrivals_are_the_load(tmp_path):
    """Knative Services: no OpenFaaS gateway counts arrivals. Prometheus runs
    with deploy/prometheus/esg-functions-scrape.yaml as its configuration —
    its relabelling as written, the pods' discovery swapped for static
    targets that carry what Kubernetes' discovery gives (the pod's IP and
    labels; Debian's build has no Kubernetes discovery), the pods' port at
    this test's — and the scaler reads the replicas' own
    ``esg_requests_started_total`` summed per ``function_name`` — 10 + 20
    rps of two Knative pods, 50 of a pod both jobs would take (counted
    once), none of another app's pod — and their answers by code from
    ``esg_requests_total``."""
    knative = "__meta_kubernetes_pod_label_serving_knative_dev_service"
    pods = {"127.0.0.2": ({knative: "image-preprocess"}, 10.0), "127.0.0.3": ({knative: "image-preprocess"}, 20.0),
            "127.0.0.4": ({knative: "image-preprocess", "__meta_kubernetes_pod_label_faas_function":
                           "image-preprocess"}, 50.0),
            "127.0.0.5": ({"__meta_kubernetes_pod_label_app": "other"}, 1000.0)}
    replicas = replicas_at_one_port({address: rate for address, (_, rate) in pods.items()})
    port = next(iter(replicas.values())).port
    config = yaml.safe_load((ROOT / "deploy/prometheus/esg-functions-scrape.yaml").read_text())
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["scrape_interval"] = "1s"
        job["static_configs"] = [{"targets": [f"{address}:9"], "labels": {**labels, "__meta_kubernetes_pod_ip": address}}
                                 for address, (labels, _) in pods.items()]
        for rule in job["relabel_configs"]:
            if rule.get("target_label") == "__address__":
                assert rule["replacement"] == "$1:8080"  # the function's own container port in its pod
                rule["replacement"] = f"$1:{port}"
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = free_port()
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        source = PrometheusQuery(f"http://127.0.0.1:{web}", window_s=6, recent_s=4)
        deadline = time.monotonic() + 120
        while True:  # Prometheus starts, scrapes every second; on a busy machine its rates take longer to settle
            seen = source.observe(time.monotonic())
            rate = seen.rates_rps.get("image-preprocess") if seen is not None else None
            if rate is not None and rate == pytest.approx(80.0, rel=0.1):
                break
            assert time.monotonic() < deadline, f"the functions' arrivals read {rate}"
            time.sleep(0.5)
        assert set(seen.rates_rps) == {"image-preprocess"}  # another app's pod is no function
        codes = seen.codes["image-preprocess"]
        assert codes["504"] / sum(codes.values()) == pytest.approx(0.1, abs=0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for replica in replicas.values():
            replica.server.shutdown()
            replica.server.server_close()
