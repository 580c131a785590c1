"""The scaler's pure parts and its HTTP endpoint, without a cluster."""

import json
import math
import os
import statistics
from dataclasses import replace
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from esg_plugin.loaders import SettingsFile, StackFiles, load_profiles, read_yaml
from esg_plugin.scaler import (
    DryRunActuator, FunctionState, Memory, Observation, Scaler, ScalerSettings, ScalerSettingsError, Topology,
    decide_functions, make_http_server,
)
from esg_plugin.model.workflow import Stage, Workflow
from esg_plugin.scaler.decider import control_observation, offered_rps
from esg_plugin.scaler.sources import FunctionReading, GatewayScrape, parse_invocations

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world():
    return Topology.from_stack(read_yaml(ROOT / "stack.yml")), load_profiles(ROOT / "profiles/cpu-2core.json")


def obs(at, **rates):
    return Observation(at, {k.replace("_", "-"): v for k, v in rates.items()}, "test", 30.0)


def test_topology_maps_stages_to_deployed_functions(world):
    topology, _ = world
    assert topology.functions[("traffic", "vehicle")] == "traffic-vehicle"
    assert topology.entry_functions("text") == ["text-langid"]


def test_no_data_means_no_decision(world):
    topology, profiles = world
    decision = decide_functions(topology, profiles, ScalerSettings(), None, {}, Memory(), 0.0)
    assert decision.desired == {} and "no metrics data" in decision.reasons["*"]


def test_up_at_once_down_after_the_delay_and_never_before_a_full_window(world):
    topology, profiles = world
    settings = ScalerSettings(scale_down_delay_s=60, window_s=30)
    memory = Memory()
    high = decide_functions(topology, profiles, settings, obs(0, image_preprocess=60.0), {}, memory, 0.0).desired
    assert high["image-classify"].replicas > 1
    current = dict(high)
    # low load from t=10: held (delay and warm-up), then lowered after 60 s
    for t in range(10, 70, 5):
        d = decide_functions(topology, profiles, settings, obs(t, image_preprocess=2.0), current, memory, float(t)).desired
        assert d["image-classify"].replicas == high["image-classify"].replicas, t
    d = decide_functions(topology, profiles, settings, obs(75, image_preprocess=2.0), current, memory, 75.0).desired
    assert d["image-classify"].replicas < high["image-classify"].replicas


def test_a_small_share_saving_does_not_restart_pods(world):
    topology, profiles = world
    # the first plan is made for the load (what runs, which serves more, is not kept: ``adopt_running``)
    settings = ScalerSettings(min_share_saving=0.99, adopt_running=False)  # no saving is ever worth a restart
    current = {fn: FunctionState(3, 1, 0.0, 100) for fn in topology.functions.values()}
    d = decide_functions(topology, profiles, settings, obs(0, text_langid=5.0), current, Memory(), 0.0).desired
    assert {d[f].gpu_share for f in ("text-langid", "text-translate", "text-sentiment")} == {100}
    free = decide_functions(topology, profiles, ScalerSettings(min_share_saving=0.0, adopt_running=False),
                            obs(0, text_langid=5.0), current, Memory(), 0.0).desired
    assert any(free[f].gpu_share < 100 for f in ("text-langid", "text-translate", "text-sentiment"))


def test_parse_gateway_metrics_sums_codes_and_cuts_the_namespace():
    text = ('gateway_function_invocation_total{code="200",function_name="a.openfaas-fn"} 10\n'
            'gateway_function_invocation_total{code="500",function_name="a.openfaas-fn"} 2\n'
            'gateway_function_invocation_started{function_name="a.openfaas-fn"} 12\n'
            'gateway_service_count{function_name="a.openfaas-fn"} 1\n')
    assert parse_invocations(text) == {"a": 12.0}


@pytest.mark.parametrize("data, message", [
    ({"actuator": "magic"}, "actuator must be one of"),
    ({"interval_s": 0}, "interval_s must lie in (0, 3600]"),
    ({"interval_s": "inf"}, "interval_s must lie in (0, 3600]"),
    ({"max_replicas": 10**12}, "max_replicas <= 10000"),
    ({"iteration_budget_s": "nan"}, "iteration_budget_s must lie in"),
    ({"api_timeout_s": 0}, "api_timeout_s must lie in (0, iteration_budget_s)"),
    ({"namespace": "openfaas-fn/../kube-system"}, "namespace must be a Kubernetes namespace name"),
    ({"namespace": "OpenFaaS"}, "namespace must be a Kubernetes namespace name"),
    ({"namespace": ""}, "namespace must be a Kubernetes namespace name"),
    ({"gpu_memory_mb": 0}, "gpu_memory_mb must lie in 1..10000000"),
    ({"function_port": 70000}, "function_port must lie in 1..65535"),
    ({"gateway_url": "gw:8080"}, "gateway_url must be an http(s) URL"),
    ({"wait_threshold_ms": "nan"}, "wait_threshold_ms must lie in"),
    ({"wait_threshold_ms": -1}, "wait_threshold_ms must lie in"),
    ({"api_timeout_s": 30, "iteration_budget_s": 30}, "api_timeout_s must lie in (0, iteration_budget_s)"),
    ({"api_timeout_s": "nan"}, "api_timeout_s must lie in"),
    ({"interval_s": "soon"}, "interval_s must be float"),
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas"),
    ({"colour": "red"}, "unknown setting(s): colour"),
    ({"metrics_url": "gateway:8080"}, "http(s) URL"),
    ({"metrics_url": "http://127.0.0.1:99999/metrics"}, "http(s) URL"),
    ({"metrics_url": "http://127.0.0.1:80x/metrics", "gateway_pods": "app=gateway"}, "http(s) URL"),
    ({"capacity_gpus": -1}, "capacity_gpus must lie in"),
    ({"capacity_gpus": "nan"}, "capacity_gpus must lie in"),
    ({"wait_calibration": "maybe"}, "wait_calibration must be bool"),
    ({"wait_calibration": 2}, "wait_calibration must be bool"),
    ({"queueing_model": "kingman"}, "queueing_model must be one of allen-cunneen, renewal"),
    ({"lease_name": "ESG/scaler"}, "lease_name must be a Kubernetes name"),
    ({"lease_name": ""}, "lease_name must be a Kubernetes name"),
    ({"lease_duration_s": 10, "interval_s": 5}, "lease_duration_s must lie in .3 x interval_s, 3600.: the holder"),
    ({"lease_duration_s": "nan"}, "lease_duration_s must lie in"),
    ({"leader_election": "sometimes"}, "leader_election must be bool"),
    ({"adopt_running": "perhaps"}, "adopt_running must be bool"),
    ({"gateway_pods": "app=gate way"}, "gateway_pods must be a label selector"),
    ({"gateway_pods": "app=gateway;rm -rf"}, "gateway_pods must be a label selector"),
    ({"gateway_pods": "=gateway"}, "gateway_pods must be a label selector"),
    ({"gateway_pods": "app=gateway", "metrics_url": "http://prometheus:9090"},
     "gateway_pods is for metrics from the gateway"),
    ({"gateway_namespace": "OpenFaaS"}, "gateway_namespace must be a Kubernetes namespace name"),
])
def test_bad_settings(data, message):
    with pytest.raises(ScalerSettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScalerSettings.load(data, {})


def test_environment_overrides_the_file():
    s = ScalerSettings.load({"interval_s": 5}, {"ESG_SCALER_INTERVAL_S": "2", "ESG_SCALER_TOKEN": "t"})
    assert s.interval_s == 2.0 and s.token == "t"


def test_the_queue_factor_can_be_switched_off_for_a_comparison():
    assert ScalerSettings().control().wait_calibration is True
    assert ScalerSettings.load({"wait_calibration": False}, {}).control().wait_calibration is False  # YAML's false
    assert ScalerSettings.load({}, {"ESG_SCALER_WAIT_CALIBRATION": "off"}).wait_calibration is False
    assert ScalerSettings.load({"wait_calibration": "no"}, {}, {"wait_calibration": "true"}).wait_calibration is True


def test_the_capacity_counts_whole_gpus_unless_told_it_is_a_quota():
    assert ScalerSettings(capacity_gpus=4).control().packed_capacity is True
    quota = ScalerSettings.load({"capacity_gpus": 4, "packed_capacity": False}, {}).control()
    assert quota.packed_capacity is False and quota.capacity_gpus == 4.0
    assert ScalerSettings.load({}, {"ESG_SCALER_PACKED_CAPACITY": "off"}).packed_capacity is False
    with pytest.raises(ScalerSettingsError, match="packed_capacity must be bool"):
        ScalerSettings.load({"packed_capacity": "sometimes"}, {})


def test_the_queueing_model_can_be_chosen_for_a_comparison():
    assert ScalerSettings().control().queueing_model == "allen-cunneen"
    assert ScalerSettings.load({}, {"ESG_SCALER_QUEUEING_MODEL": "renewal"}).control().queueing_model == "renewal"


def test_flags_override_the_environment_without_dropping_it():
    env = {"ESG_SCALER_TOKEN": "t", "ESG_SCALER_ACTUATOR": "openfaas-gateway", "ESG_SCALER_PORT": "9000"}
    s = ScalerSettings.load({"interval_s": 5}, env, {"actuator": "dry-run"})
    assert (s.actuator, s.token, s.port, s.interval_s) == ("dry-run", "t", 9000, 5.0)


class StaticSource:
    def __init__(self):
        self.rates = None

    def observe(self, now):
        return None if self.rates is None else Observation(now, dict(self.rates), "static", 30.0)


def test_http_endpoints(world):
    topology, profiles = world
    source = StaticSource()
    scaler = Scaler(topology, profiles, ScalerSettings(), source, DryRunActuator())
    server = make_http_server(scaler, "127.0.0.1", 0, "tok")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def call(path, method="GET", token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(base + path, method=method, headers=headers)) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    try:
        assert call("/healthz")[0] == 200
        scaler.iterate()
        assert call("/readyz")[0] == 503  # no good observation yet
        assert call("/reconcile", "POST")[0] == 401
        source.rates = {"image-preprocess": 20.0}
        status, body = call("/reconcile", "POST", token="tok")
        assert status == 200 and json.loads(body)["ready"] is True
        assert call("/readyz")[0] == 200
        plan = json.loads(call("/plan")[1])
        assert plan["workflows"]["image"]["feasible"] and plan["rates_rps"]["image"] > 20
        assert {c["function"] for c in plan["last_changes"]} >= {"image-classify"}
        metrics = call("/metrics")[1].decode()
        assert "esg_scaler_iterations_total 2.0" in metrics and 'esg_scaler_changes_total{kind="replicas"}' in metrics
        assert call("/nothing")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_observed_execution_times_correct_the_profile(world):
    topology, profiles = world
    current = {fn: FunctionState(1, 1, 0.0, 50) for fn in topology.functions.values()}
    plain = decide_functions(topology, profiles, ScalerSettings(), obs(0, image_preprocess=5.0), current, Memory(), 0.0)
    seen = replace(obs(0, image_preprocess=5.0),
                   functions={"image-classify": FunctionReading(0, 2 * profiles["resnet50"].latency(1, 50), 1.0)})
    slow = decide_functions(topology, profiles, ScalerSettings(), seen, current, Memory(), 0.0)
    profiled = plain.plans["image"].stages["classify"]
    observed = slow.plans["image"].stages["classify"]
    assert observed.exec_ms / profiles["resnet50"].latency(observed.batch_size, observed.gpu_share) == \
        pytest.approx(2.0)
    assert profiled.exec_ms == profiles["resnet50"].latency(profiled.batch_size, profiled.gpu_share)


def test_the_law_sees_backlog_answers_and_the_batch_size_that_ran(world):
    topology, profiles = world
    current = {fn: FunctionState(2, 4, 10.0, 50) for fn in topology.functions.values()}
    seen = replace(obs(0, image_preprocess=6.0), recent_rps={"image-preprocess": 9.0}, recent_window_s=2.0,
                   codes={"image-preprocess": {"200": 40, "429": 3}, "image-upscale": {"504": 5, "200": 35},
                          "image-classify": {"200": 30}},
                   functions={"image-upscale": FunctionReading(queue=20, exec_ms=30.0, batch_mean=2.1),
                              "image-classify": FunctionReading(queue=3)})
    law_obs = control_observation(topology, profiles, seen, current)
    image = law_obs.workflows["image"]
    assert (image.rate_long_rps, image.rate_short_rps, image.short_window_s) == (6.0, 9.0, 2.0)
    assert image.backlog == 20 - 2 * 4  # the most backed-up stage, beyond what 2 replicas x batch 4 take next
    assert (image.ok, image.late, image.rejected) == (30, 5, 3)  # 200s from the exit, 504s anywhere, 429s
    assert law_obs.exec_ratio["espcn"] == pytest.approx(30.0 / profiles["espcn"].latency(2, 50))
    routed = replace(seen, workflow_answers={"image": (10.0, 1.0, 0.0)})
    assert control_observation(topology, profiles, routed, current).workflows["image"].late == 1
    assert law_obs.starting == {}  # the platform did not say how many are ready
    assert image.arrival_cv2 == 1.0  # no router's gaps: taken as Poisson
    bursty = replace(seen, workflow_arrival_cv2={"image": 9.5}, workflow_hop_ms={"image": 4.2})
    assert control_observation(topology, profiles, bursty, current).workflows["image"].arrival_cv2 == 9.5
    assert control_observation(topology, profiles, bursty, current).workflows["image"].hop_ms == 4.2
    assert image.hop_ms is None  # not measured: the workflow's own hop_ms stands
    assert image.stage_wait == {}  # no waits read
    waited = replace(seen, functions={**seen.functions,
                                      "image-upscale": FunctionReading(queue=20, queue_waits=(40.0, 1200.0))})
    assert control_observation(topology, profiles, waited, current).workflows["image"].stage_wait == \
        {"upscale": (40.0, 1200.0)}  # by stage: the law compares them with its plan's
    current["image-upscale"] = FunctionState(3, 4, 10.0, 50, ready_replicas=1)
    current["image-classify"] = FunctionState(2, 4, 10.0, 50, ready_replicas=2)
    assert control_observation(topology, profiles, seen, current).starting == {("image", "upscale"): 2,
                                                                               ("image", "classify"): 0}
    assert control_observation(topology, profiles, seen, current).serving == {("image", "upscale"): 1,
                                                                              ("image", "classify"): 2}
    assert law_obs.serving == {}  # nor how many serve
    # each mapping in its own field: the batch size that ran, the cores' busy share, the replicas without room
    assert law_obs.exec_batch == {"espcn": pytest.approx(2.1)} and law_obs.cpu_ratio == {}
    assert law_obs.unplaced == {}
    busy = replace(seen, functions={**seen.functions, "image-upscale": FunctionReading(
        queue=20, exec_ms=30.0, batch_mean=2.1, cpu_ratio=0.6)})
    current["image-upscale"] = FunctionState(3, 4, 10.0, 50, ready_replicas=1, unplaced_replicas=2)
    both = control_observation(topology, profiles, busy, current)
    assert both.cpu_ratio == {"espcn": pytest.approx(0.6)} and both.unplaced == {("image", "upscale"): 2}


GATEWAY = """# TYPE gateway_function_invocation_started counter
gateway_function_invocation_started{{function_name="a.openfaas-fn"}} {started}
# TYPE gateway_function_invocation_total counter
gateway_function_invocation_total{{code="200",function_name="a.openfaas-fn"}} {ok}
gateway_function_invocation_total{{code="504",function_name="a.openfaas-fn"}} {late}
"""
REPLICA = """# TYPE esg_queue_length gauge
esg_queue_length {queue}
# TYPE esg_exec_seconds histogram
esg_exec_seconds_sum {exec_sum}
esg_exec_seconds_count {batches}
# TYPE esg_batch_size histogram
esg_batch_size_sum {requests}
esg_batch_size_count {batches}
# TYPE esg_exec_cpu_seconds counter
esg_exec_cpu_seconds_total {cpu}
# TYPE esg_queue_wait_seconds histogram
esg_queue_wait_seconds_sum {wait_sum}
esg_queue_wait_seconds_count {requests}
"""
TOPOLOGY_W = Topology({"w": Workflow.build("w", 100.0, [Stage("s", "resnet50")])}, {("w", "s"): "a"})
ROUTER = """# TYPE esg_workflow_requests_total counter
esg_workflow_requests_total{{workflow="w",slo="met"}} {met}
esg_workflow_requests_total{{workflow="w",slo="missed"}} {missed}
esg_workflow_requests_total{{workflow="w",slo="shed"}} {shed}
# TYPE esg_workflow_arrival_gap_seconds summary
esg_workflow_arrival_gap_seconds_count{{workflow="w"}} {gaps}
esg_workflow_arrival_gap_seconds_sum{{workflow="w"}} {gap_sum}
# TYPE esg_workflow_arrival_gap_squared_seconds counter
esg_workflow_arrival_gap_squared_seconds_total{{workflow="w"}} {gap_squares}
# TYPE esg_workflow_hop_seconds summary
esg_workflow_hop_seconds_count{{workflow="w"}} {gaps}
esg_workflow_hop_seconds_sum{{workflow="w"}} {hop_sum}
"""


class Pages:
    """A metrics server whose pages the test sets (real HTTP on loopback)."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        pages = self.pages = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = pages.get(self.path, "").encode()
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_gateway_scrape_reads_arrivals_codes_replicas_and_the_router():
    pages = Pages()
    try:
        source = GatewayScrape(pages.url + "/gw", window_s=30.0, router_url=pages.url + "/router",
                               replicas=lambda: {"a": [pages.url + "/r1", pages.url + "/r2", pages.url + "/r3"]})
        pages.pages.update({"/gw": GATEWAY.format(started=10, ok=8, late=0),
                            "/router": ROUTER.format(met=8, missed=0, shed=1, gaps=9, gap_sum=0.9,
                                                     gap_squares=0.09, hop_sum=0.009),
                            "/r1": REPLICA.format(queue=0, exec_sum=1.0, batches=10, requests=20, cpu=1.0, wait_sum=0.2),
                            "/r2": REPLICA.format(queue=0, exec_sum=1.0, batches=10, requests=20, cpu=1.0, wait_sum=0.2),
                            "/r3": REPLICA.format(queue=0, exec_sum=5.0, batches=1, requests=1, cpu=5.0, wait_sum=0.0)})
        assert source.observe(0.0) is None  # one scrape: no rate yet
        # 2 s later: 40 more arrived, 20 answered in time, 6 late; replicas ran 5 + 5 batches of 15 requests
        pages.pages.update({"/gw": GATEWAY.format(started=50, ok=28, late=6),
                            # 40 more gaps over 2 s: 30 of 0.001 s and 10 of 0.197 s (bursts)
                            "/router": ROUTER.format(met=28, missed=6, shed=5, gaps=49, gap_sum=0.9 + 2.0,
                                                     gap_squares=0.09 + 30 * 0.001 ** 2 + 10 * 0.197 ** 2,
                                                     hop_sum=0.009 + 40 * 0.004),  # 40 hops of 4 ms
                            "/r1": REPLICA.format(queue=7, exec_sum=1.5, batches=15, requests=35, cpu=1.3, wait_sum=0.2 + 0.6),
                            "/r2": REPLICA.format(queue=5, exec_sum=1.5, batches=15, requests=20, cpu=1.4, wait_sum=0.2),
                            "/r3": REPLICA.format(queue=0, exec_sum=9.0, batches=4, requests=4, cpu=9.0,
                                                 wait_sum=3.0)})  # still cold
        seen = source.observe(2.0)
        assert seen.rates_rps == {"a": 20.0} and seen.recent_rps == {"a": 20.0}  # arrivals, not answers
        assert seen.gateways == 1
        assert seen.codes == {"a": {"200": 20.0, "504": 6.0}}
        assert seen.workflow_answers == {"w": (20.0, 6.0, 0.0)}  # shed at the entry: not an answer ...
        assert seen.workflow_shed == {"w": 4.0}  # ... but offered load
        assert seen.workflow_shed_window == {"w": 4.0}
        gaps = [0.001] * 30 + [0.197] * 10  # the gaps' cv² over the window, from the increases of the counters
        assert seen.workflow_arrival_cv2["w"] == pytest.approx(statistics.pvariance(gaps) / statistics.mean(gaps) ** 2)
        assert seen.workflow_arrival_cv2["w"] > 2.0
        assert seen.workflow_hop_ms["w"] == pytest.approx(4.0)  # the hops over the window, not since the start
        reading = seen.functions["a"]
        assert reading.queue == 12 and reading.exec_ms == pytest.approx(1000.0 * 1.0 / 10)
        assert reading.batch_mean == pytest.approx(15 / 10)  # r2's batch counter did not move: r1's only
        assert reading.cpu_ratio == pytest.approx((0.3 + 0.4) / 1.0)  # the cores busy for 70% of the executions
        assert reading.queue_waits == pytest.approx((15.0, 600.0))  # r1's 15 requests waited 0.6 s in all
        # 2 s later: nothing more shed; over the window (4 s) the 4 shed still count, over the last interval not
        pages.pages.update({"/gw": GATEWAY.format(started=90, ok=48, late=6)})
        seen = source.observe(4.0)
        assert seen.workflow_shed == {"w": 0.0} and seen.workflow_shed_window == {"w": 4.0}
        assert offered_rps(TOPOLOGY_W, "w", seen) == pytest.approx((80 / 4 + 4 / 4, 40 / 2))
        # a counter that jumps to an implausible rate is not traffic: no data, and the history restarts
        pages.pages["/gw"] = GATEWAY.format(started=1e12, ok=28, late=6)
        assert source.observe(5.0) is None
        pages.pages["/gw"] = "not metrics {"
        assert source.observe(6.0) is None
    finally:
        pages.close()


def test_the_scaler_never_scales_down_while_504s_or_the_backlog_rise(world):
    """Through the scaler's own observations: the load falls, but the gateway
    counts 504s, then the replicas' queues grow; replicas hold until both
    stop, and only then fall after the delay."""
    topology, profiles = world
    settings = ScalerSettings(scale_down_delay_s=10.0, window_s=10.0, interval_s=1.0)
    memory, current = Memory(), {}
    functions = sorted(set(topology.functions.values()))

    def step(t, rate, codes=None, queue=0.0):
        seen = replace(obs(t, image_preprocess=rate), recent_rps={"image-preprocess": rate}, recent_window_s=1.0,
                       codes=codes or {}, functions={fn: FunctionReading(queue=queue) for fn in functions})
        desired = decide_functions(topology, profiles, settings, seen, current, memory, float(t)).desired
        current.update(desired)
        return sum(current[f].replicas for f in ("image-preprocess", "image-upscale", "image-classify"))

    high = step(0, 80.0)
    step(1, 80.0)
    for t in range(2, 25):  # the load fell to a twentieth, and every interval has late answers
        assert step(t, 4.0, codes={"image-upscale": {"504": 5.0 + t, "200": 1.0}}) >= high, t
    for t in range(25, 45):  # no 504s now, but the queues keep growing
        assert step(t, 4.0, queue=50.0 + 20 * t) >= high, t
    for t in range(45, 70):  # calm: down after the delay
        low = step(t, 4.0, codes={"image-classify": {"200": 4.0}})
    assert low < high


def test_esg_up_deploys_each_function_at_the_scalers_plan_for_the_least_load(world):
    from esg_plugin.local.up import initial_states

    topology, profiles = world
    states = initial_states(topology, profiles, max_replicas=3)
    assert set(states) == set(topology.functions.values())
    # what the scaler decides when it first sees no load: the same states, so nothing restarts
    seen = obs(0, **{fn.replace("-", "_"): 0.0 for fn in topology.entry_functions("image") +
                     topology.entry_functions("text") + topology.entry_functions("traffic")})
    again = decide_functions(topology, profiles, ScalerSettings(max_replicas=3), seen, states, Memory(), 0.0).desired
    assert {fn: s.gpu_share for fn, s in again.items()} == {fn: s.gpu_share for fn, s in states.items()}


def test_the_capacity_reaches_the_law_and_bounds_the_plans(world):
    topology, profiles = world
    assert ScalerSettings().control().capacity_gpus is None
    tight = ScalerSettings.load({"capacity_gpus": 7, "max_replicas": 100}, {})
    assert tight.control().capacity_gpus == 7.0
    busy = obs(0, image_preprocess=150.0, text_langid=150.0, traffic_detect=75.0)
    free = decide_functions(topology, profiles, ScalerSettings(max_replicas=100), busy, {}, Memory(), 0.0)
    bound = decide_functions(topology, profiles, tight, busy, {}, Memory(), 0.0)
    held = lambda d: sum(s.replicas * s.gpu_share / 100 for s in d.desired.values())  # noqa: E731
    # the capacity is shared out in planning order; a workflow keeps at least its cheapest
    # deployment (one replica per function), so the bound can be passed by that much
    assert held(bound) < held(free)


def test_several_gateways_are_read_as_one_that_served_all_they_served(monkeypatch):
    """With ``gateways`` (every gateway replica, ``gateway_pods``), each
    one's increases are added up: a gateway that restarts counts from 0, one
    that comes adds nothing for what it counted before, a counter missing
    from one page is no new counter when it is back, and where one gateway
    cannot be read there is no data (its part of the traffic is not known)."""
    from esg_plugin.scaler import sources

    pages, urls = {}, ["http://a/metrics", "http://b/metrics"]
    monkeypatch.setattr(sources, "_fetch", lambda url, timeout_s: pages.get(url))
    line = 'gateway_function_invocation_started{{function_name="f.openfaas-fn"}} {}\n'
    answered = 'gateway_function_invocation_total{{code="200",function_name="f.openfaas-fn"}} {}\n'

    def say(**totals):
        for name, (started, ok) in totals.items():
            pages[f"http://{name}/metrics"] = (line.format(started) + answered.format(ok)).encode()

    source = GatewayScrape("http://127.0.0.1:8082/metrics", window_s=30.0, gateways=lambda: list(urls))
    say(a=(100, 100), b=(50, 50))
    assert source.observe(0.0) is None  # one reading: no rate yet
    say(a=(120, 118), b=(80, 79))
    seen = source.observe(2.0)
    assert seen.rates_rps == {"f": pytest.approx(25.0)}  # (20 + 30) / 2 s: both gateways' traffic
    assert seen.gateways == 2
    assert seen.codes == {"f": {"200": pytest.approx(47.0)}}
    urls.append("http://c/metrics")  # a third gateway comes, b restarted (counts from 0)
    say(a=(140, 140), b=(10, 10), c=(500, 500))
    seen = source.observe(4.0)
    assert seen.recent_rps == {"f": pytest.approx(15.0)}  # (20 + 10 + nothing for c's past) / 2 s
    assert seen.rates_rps == {"f": pytest.approx(20.0)}  # no reset: the window spans all 4 s
    assert seen.gateways == 3
    pages.pop("http://b/metrics")
    assert source.observe(6.0) is None  # b not read: no data, and nothing of the others taken
    say(a=(180, 180), b=(30, 30), c=(520, 520))
    seen = source.observe(8.0)
    assert seen.recent_rps == {"f": pytest.approx(20.0)}  # 40 + 20 + 20 over the 4 s since the last reading
    pages["http://c/metrics"] = answered.format(530).encode()  # c's started counter missing from one page
    source.observe(10.0)
    say(a=(180, 180), b=(30, 30), c=(540, 540))
    assert source.observe(12.0).recent_rps == {"f": pytest.approx(10.0)}  # c's 20 since t = 8, not 540 again
    say(a=(1e300, 180), b=(30, 30), c=(540, 540))  # a's counter jumps: not traffic, and not kept in the sum
    assert source.observe(14.0) is None
    say(a=(1e300, 180), b=(50, 50), c=(540, 540))  # it stays there: from there it counts again
    assert source.observe(16.0).recent_rps == {"f": pytest.approx(5.0)}  # b's 20 since t = 12; no jump
    urls.clear()
    assert source.observe(18.0) is None  # no gateway known: no data
    nobody = GatewayScrape("http://127.0.0.1:8082/metrics", window_s=30.0, gateways=lambda: None)
    assert nobody.observe(0.0) is None


def test_an_implausible_counter_jump_changes_nothing(world, monkeypatch):
    """One counter jump of 2.5e8 rps made an iteration take 89 s and scale
    everything; now it is no data: no plan, no change, and the history
    starts again."""
    from esg_plugin.scaler import sources

    topology, profiles = world
    pages = {}
    monkeypatch.setattr(sources, "_fetch", lambda url, timeout_s: pages.get(url))
    line = 'gateway_function_invocation_started{{function_name="image-preprocess.openfaas-fn"}} {}\n'
    source = GatewayScrape("http://gw", window_s=30.0)
    actuator = DryRunActuator()
    scaler = Scaler(topology, profiles, ScalerSettings(), source, actuator, clock=lambda: clock[0])
    clock = [0.0]
    for t, total in [(0.0, 0), (2.0, 10), (4.0, 10 + 5e8), (6.0, 2.0), (8.0, -1e300), (10.0, float("nan"))]:
        clock[0] = t
        pages["http://gw"] = line.format(total).encode()
        before = dict(actuator.state)
        status = scaler.iterate()
        if t >= 4.0:
            assert actuator.state == before, t  # nothing changed
            assert all(rate < 100 for rate in status.decision.rates_rps.values()), t  # nothing believed
    metrics = scaler.metrics.registry.get_sample_value("esg_scaler_errors_total", {"stage": "no_data"})
    assert metrics >= 4


def test_healthz_reports_a_stuck_loop(world):
    topology, profiles = world
    started, release = threading.Event(), threading.Event()

    class StuckSource:
        def observe(self, now):
            started.set()
            release.wait(60)
            return None

    scaler = Scaler(topology, profiles, ScalerSettings(iteration_budget_s=0.2), StuckSource(), DryRunActuator())
    server = make_http_server(scaler, "127.0.0.1", 0, "tok")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def call(path, method="GET"):
        request = urllib.request.Request(base + path, method=method, headers={"Authorization": "Bearer tok"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    loop = threading.Thread(target=scaler.iterate)
    try:
        assert call("/healthz")[0] == 200
        loop.start()
        assert started.wait(30)
        deadline = __import__("time").monotonic() + 60
        while call("/healthz")[0] == 200 and __import__("time").monotonic() < deadline:
            release.wait(0.05)
        status, doc = call("/healthz")
        assert status == 503 and "over its budget" in doc["status"]
        status, doc = call("/reconcile", "POST")  # does not wait for the stuck iteration
        assert status == 503 and "still running" in doc["error"]
        release.set()
        loop.join(30)
        assert call("/healthz")[0] == 200
        overruns = scaler.metrics.registry.get_sample_value("esg_scaler_errors_total", {"stage": "overrun"})
        assert overruns == 1
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_the_up_report_times_a_held_workflows_answer_to_a_step():
    """A workflow held at its part of the machine answers a rate step by
    admitting more, not by scaling: the report times that too."""
    from esg_plugin.local.up import UpReport

    report = UpReport("esg", 80.0, 0.0, steps={"w": [40.0]}, step_rates={"w": [6.0]}, settle_s=30.0)
    report.timeline = [{"t": t, "workflows": {"w": {"offered_rps": 2.0, "planned_rps": p, "functions": ["f"]}},
                        "admit_rps": {"w": a} if a is not None else {}}
                       for t, a, p in ((30.0, 4.0, 2.2), (38.0, 4.0, 2.2), (42.0, 4.1, 4.4), (44.0, 6.0, 4.4),
                                       (46.0, None, 6.6))]
    tracking = report.tracking("w")
    assert tracking["step_to_admitting_more_s"] == [4.0] and tracking["step_to_first_scale_up_s"] == [None]
    assert tracking["step_to_plan_covering_s"] == [6.0]  # the first plan for at least the step's new rate
    report.timeline = [{**row, "admit_rps": {}} for row in report.timeline]  # never held: no such time
    assert report.tracking("w")["step_to_admitting_more_s"] == [None]
    # at steady state (before the step, and its settling), the rate planned for against the rate offered:
    # the covered rate includes the headroom; the estimate it was made for is the law's reading of the load
    report.timeline = [{"t": t, "workflows": {"w": {"offered_rps": 2.0, "planned_rps": 2.4, "estimate_rps": e,
                                                    "nominal_rps": 2.5, "functions": ["f"]}}}
                       for t, e in ((10.0, 2.1), (20.0, 2.2), (30.0, 2.5), (75.0, 1.6))]
    tracking = report.tracking("w")
    assert tracking["planned_over_offered_median"] == 1.2 and tracking["steady_ticks_within_15pct"] == 0.0
    assert tracking["estimate_over_offered_median"] == pytest.approx(1.075)
    assert tracking["steady_ticks_estimate_within_15pct"] == 0.5
    assert tracking["offered_window_noise_median"] == pytest.approx(1 / math.sqrt(2.0 * 30.0), abs=1e-3)
    # and against the intensity the load generator drew from (2.5 rps here), free of the window's noise
    assert tracking["estimate_over_nominal_median"] == pytest.approx(0.86)
    assert tracking["steady_ticks_estimate_within_15pct_of_nominal"] == 0.5
    # and against the arrivals' own mean over the stretch of constant intensity (none known: none)
    assert tracking["estimate_over_arrivals_median"] is None
    from esg_plugin.local.up import LoadResult
    report.constant_spans = {"w": [(0.0, 40.0), (40.0, 80.0)]}
    report.results = [LoadResult("w", 0.5 * i, 50.0, 200, True) for i in range(80)]  # 2 rps, then none
    tracking = report.tracking("w")
    assert tracking["estimate_over_arrivals_median"] == pytest.approx(1.1)  # 2.1, 2.2, 2.5 over 2; none to read 1.6 by
    assert tracking["steady_ticks_estimate_within_15pct_of_arrivals"] == pytest.approx(0.667)


def test_the_up_report_says_how_much_of_the_machine_idled_after_the_warm_up(tmp_path):
    from esg_plugin.local.up import UpReport, cpu_times

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 50 800 45 0 0 0 0 0\ncpu0 50 2 25 400 20 0 0 0 0 0\n"
                    "cpu1 50 3 25 400 25 0 0 0 0 0\nintr 1 2 3\n")
    assert cpu_times(str(stat)) == (845, 1000)  # idle and iowait idle; user nice system irq softirq steal busy
    # the cores of the run's affinity mask alone (taskset, a cpuset): their own lines
    assert cpu_times(str(stat), cpus={0}) == (420, 497) and cpu_times(str(stat), cpus=[0, 1]) == (845, 1000)
    assert cpu_times(str(stat), cpus={0, 7}) is None  # a CPU without a line: not read as idle
    for bad in ("", "intr 1 2 3\n", "cpu  a b c d e\n", "cpu  1 2\n", "cpu  1 2 3 -4 5\n"):
        stat.write_text(bad)
        assert cpu_times(str(stat)) is None, bad
    assert cpu_times(str(tmp_path / "missing")) is None
    report = UpReport("esg", 80.0, 20.0)
    # the first 20 s not counted; from 20 to 80 s, 300 of 1000 ticks idle
    report.cpu = [(10.0, 100, 200), (20.0, 150, 400), (50.0, 300, 900), (80.0, 450, 1400), (85.0, 1400, 1500)]
    machine = report.summary()["machine"]
    assert machine["idle_share_after_warmup"] == 0.3 and machine["cores"] >= 1
    assert 1 <= machine["cores_allotted"] <= machine["cores"]
    report.cpu = [(30.0, 1, 2)]  # one reading after the warm-up: no share
    assert report.summary()["machine"]["idle_share_after_warmup"] is None


def test_the_up_report_says_how_late_the_load_generator_sent():
    """An open-loop generator that falls behind offers less than the workload
    says, then a burst: the report gives its lag, per workflow."""
    from esg_plugin.local.up import SEND_LATE_MS, LoadResult, UpReport

    report = UpReport("esg", 10.0, 0.0)
    lags = [0.0, 1.0, 2.0, 3.0, SEND_LATE_MS + 50.0]
    report.results = [LoadResult("w", float(i), 50.0, 200, True, send_lag_ms=lag) for i, lag in enumerate(lags)]
    row = report.summary()["workflows"]["w"]
    assert row["send_lag_p50_ms"] == 2.0 and row["send_lag_p99_ms"] > 3.0
    assert row["sent_late_share"] == 0.2
    assert [r["send_lag_ms"] for r in report.requests()] == lags


def test_the_larger_batches_run_only_where_a_batch_size_changes_without_a_restart():
    # under Knative a batch size is the revision's env: every change would restart the pods
    knative, kubernetes = ScalerSettings(actuator="knative").control(), \
        ScalerSettings(actuator="openfaas-kubernetes").control()
    assert knative.bridge_batching is False and knative.burst_batching is False
    assert kubernetes.bridge_batching is True and kubernetes.burst_batching is True


def test_the_start_up_heap_is_frozen_out_of_the_collectors_reach():
    """What ``esg scaler`` and ``esg up`` do once started: every object alive
    then moves to the permanent generation, so that a full collection in the
    loop scans only what the loop keeps (``bench/control.py`` prints it)."""
    import gc

    from esg_plugin.scaler import freeze_start_up_heap

    try:
        freeze_start_up_heap()
        assert gc.get_freeze_count() > 1000
        garbage = []
        garbage.append(garbage)  # a cycle made after the freeze is still collected
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()


def stack_of(*workflows) -> str:
    """The repository's stack.yml with only the functions of ``workflows``, as text (JSON is YAML)."""
    stack = read_yaml(ROOT / "stack.yml")
    return json.dumps({**stack, "functions": {
        name: spec for name, spec in stack["functions"].items()
        if (spec.get("annotations") or {}).get("com.esg.workflow") in workflows}})


class MountedConfigMap:
    """The workload's files mounted from a ConfigMap, laid out as the kubelet
    does: each version a directory, ``..data`` a link swapped to the new one
    at once, each file a link through it."""

    PROFILES = (ROOT / "profiles/cpu-2core.json").read_text()

    def __init__(self, folder, stack_text: str):
        self.folder, self.versions = folder, 0
        self.publish(stack_text)
        for name in ("stack.yml", "profiles.json"):
            os.symlink(f"..data/{name}", folder / name)
        self.files = StackFiles(folder / "stack.yml", folder / "profiles.json")

    def publish(self, stack_text: str, profiles_text: str = PROFILES) -> None:
        self.versions += 1
        version = self.folder / f"..2026_12_06_{self.versions}"
        version.mkdir()
        (version / "stack.yml").write_text(stack_text)
        (version / "profiles.json").write_text(profiles_text)
        os.symlink(version.name, self.folder / "..data_tmp")
        os.replace(self.folder / "..data_tmp", self.folder / "..data")


def test_a_changed_stack_is_planned_without_a_restart_and_one_that_does_not_load_changes_nothing(
        tmp_path, caplog):
    """The workload's files mounted from a ConfigMap, laid out as the kubelet
    does (each version a directory, ``..data`` a link swapped to the new one):
    a new workflow is planned from the next iteration, what the law learned
    of a workflow still there is kept; a stack that does not parse, or names
    a profile the profiles file lacks, is said once and changes nothing; the
    next good one is planned again."""
    import logging

    mounted = MountedConfigMap(tmp_path, stack_of("image"))
    publish, files = mounted.publish, mounted.files
    topology, profiles = files.load()
    source = StaticSource()
    source.rates = {"image-preprocess": 20.0, "text-langid": 10.0}
    clock = [100.0]
    scaler = Scaler(topology, profiles, ScalerSettings(), source, DryRunActuator(), clock=lambda: clock[0],
                    files=files)

    def iterate():
        clock[0] += 5.0
        return scaler.iterate()

    def reloads(result):
        return scaler.metrics.reloads.labels(result=result)._value.get()

    assert set(iterate().decision.plans) == {"image"}
    scaler.memory.state.workflows["image"].margin = 0.3  # as misses would have raised it
    assert iterate() is not None and reloads("loaded") == 0  # nothing changed: nothing read
    publish(stack_of("image", "text"))
    assert set(iterate().decision.plans) == {"image", "text"}  # the new workflow, planned at once
    assert scaler.memory.state.workflows["image"].margin == pytest.approx(0.3)  # what was learned, kept
    assert reloads("loaded") == 1
    with caplog.at_level(logging.WARNING, logger="esg_plugin.scaler.service"):
        publish("functions: [")  # does not parse
        iterate()
        iterate()
    said = [r.getMessage() for r in caplog.records if "do not load" in r.getMessage()]
    assert len(said) == 1 and "stack.yml" in said[0] and reloads("refused") == 1  # said once
    assert set(scaler.topology.workflows) == {"image", "text"}
    document = scaler.plan_document()
    assert set(document["workflows"]) >= {"image", "text"} and document["workload"]["workflows"] == ["image", "text"]
    assert "stack.yml" in document["workload"]["refused"]  # /plan says why the last change was not taken
    unknown = json.loads(stack_of("image"))
    unknown["functions"]["image-classify"]["annotations"]["com.esg.profile"] = "no-such-model"
    publish(json.dumps(unknown))
    iterate()
    assert reloads("refused") == 2 and set(scaler.topology.workflows) == {"image", "text"}
    publish(stack_of("image"))
    iterate()
    assert reloads("loaded") == 2 and set(scaler.topology.workflows) == {"image"}
    assert set(scaler.plan_document()["workflows"]) == {"image"}  # a workflow gone is no longer shown
    assert scaler.plan_document()["workload"] == {"workflows": ["image"], "refused": None}


def test_a_reload_leaves_each_workflow_that_did_not_change_as_it_was(tmp_path):
    """Editing one workflow of the stack (or one function's profile)
    restarts the law of that workflow alone: another that is the same —
    its definition, its functions' profiles, the functions its stages are
    deployed as — goes on with everything the law keeps of it (a step under
    way, its windows, its plan), as Knative's autoscaler keeps a decider per
    revision; the changed one starts again from what runs and resumes what
    was learned of it."""
    mounted = MountedConfigMap(tmp_path, stack_of("image", "text"))
    topology, profiles = mounted.files.load()
    source = StaticSource()
    source.rates = {"image-preprocess": 20.0, "text-langid": 10.0}
    clock = [100.0]
    scaler = Scaler(topology, profiles, ScalerSettings(), source, DryRunActuator(), clock=lambda: clock[0],
                    files=mounted.files)

    def iterate():
        clock[0] += 5.0
        return scaler.iterate()

    def workflow_state(name):
        return scaler.memory.state.workflows[name]

    for _ in range(3):
        iterate()
    image, text = workflow_state("image"), workflow_state("text")
    image.panic_until_s = clock[0] + 60.0  # a step under way
    text.margin = 0.3  # as misses would have raised it
    image_plan = image.plan

    stack = json.loads(stack_of("image", "text"))
    for spec in stack["functions"].values():
        if spec["annotations"]["com.esg.workflow"] == "text" and "com.esg.slo-ms" in spec["annotations"]:
            spec["annotations"]["com.esg.slo-ms"] = str(float(spec["annotations"]["com.esg.slo-ms"]) * 1.5)
    mounted.publish(json.dumps(stack))
    reloaded_at = clock[0] + 5.0
    assert set(iterate().decision.plans) >= {"text"}
    assert workflow_state("image") is image and image.panic_until_s == reloaded_at + 55.0  # as it was
    assert image.plan is image_plan and image.joined_s is None
    assert workflow_state("text") is not text  # changed: started again ...
    assert workflow_state("text").margin == pytest.approx(0.3)  # ... from what was learned of it
    assert workflow_state("text").joined_s == reloaded_at  # and warms up again

    assert scaler.topology.workflows["text"].slo_ms == pytest.approx(topology.workflows["text"].slo_ms * 1.5)
    text = workflow_state("text")
    slower = json.loads(MountedConfigMap.PROFILES)
    function, other = topology.workflows["image"].stages[-1].function, topology.workflows["text"].stages[0].function
    scaler.memory.state.exec_factor.update({function: 1.3, other: 1.1})  # as observed execution times say
    entry = slower["functions"][function]
    entry["latency_ms"] = [[None if v is None else v * 1.2 for v in row] for row in entry["latency_ms"]]
    mounted.publish(json.dumps(stack), json.dumps(slower))
    iterate()
    assert workflow_state("image") is not image and workflow_state("text") is text  # a profile of image's changed
    assert function not in scaler.memory.state.exec_factor  # learned of a profile that changed: gone
    assert scaler.memory.state.exec_factor[other] == pytest.approx(1.1, abs=0.05)  # of one the same: kept

    image = workflow_state("image")
    renamed = {("text-" + name.removeprefix("text-") + "-v2" if spec["annotations"]["com.esg.workflow"] == "text"
                else name): spec for name, spec in stack["functions"].items()}
    mounted.publish(json.dumps({**stack, "functions": renamed}), json.dumps(slower))
    iterate()
    assert workflow_state("text") is not text and workflow_state("image") is image  # text's stages deployed anew


def test_a_changed_settings_file_takes_its_live_settings_and_says_which_wait_for_a_restart(world, tmp_path, caplog):
    """The settings file is read again when it changes, as Knative's
    autoscaler reads its ConfigMap: a replica bound is taken at the next
    iteration (the law's state kept); a setting of the law (the margin)
    starts each workflow's law again from what was learned; a setting the
    loop was built with (the port) waits for a restart and ``/plan`` says
    so; a file that does not load, or whose live settings are not valid
    beside the others, changes nothing and is said once."""
    import logging

    path = tmp_path / "scaler.yaml"

    def write(text):  # replaced at once, as the kubelet swaps a ConfigMap's files
        (tmp_path / "new.yaml").write_text(text)
        os.replace(tmp_path / "new.yaml", path)

    def reloads(result):
        return scaler.metrics.settings_reloads.labels(result=result)._value.get()

    write("max_replicas: 5\n")
    settings_file = SettingsFile(path, {"ESG_SCALER_WAIT_THRESHOLD_MS": "2"}, {"interval_s": 2.0})
    topology, profiles = world
    source = StaticSource()
    source.rates = {"image-preprocess": 60.0}
    clock = [100.0]
    scaler = Scaler(topology, profiles, settings_file.load(), source, DryRunActuator(), clock=lambda: clock[0],
                    settings_file=settings_file)

    def iterate():
        clock[0] += 5.0
        return scaler.iterate()

    assert max(state.replicas for state in iterate().decision.desired.values()) > 2
    image = scaler.memory.state.workflows["image"]
    write("max_replicas: 2\n")
    assert max(state.replicas for state in iterate().decision.desired.values()) == 2
    assert scaler.memory.state.workflows["image"] is image  # not a setting of the law: its state goes on
    assert scaler.settings.wait_threshold_ms == 2 and scaler.settings.interval_s == 2.0  # env and flags still win
    write("max_replicas: 2\nslo_margin: 0.1\n")
    iterate()
    assert scaler.settings.slo_margin == 0.1 and scaler.memory.state.workflows["image"] is not image
    assert scaler.memory.state.workflows["image"].margin >= 0.1
    with caplog.at_level(logging.INFO, logger="esg.scaler"):
        write("max_replicas: 2\nslo_margin: 0.1\nport: 9999\n")
        iterate()
    assert scaler.settings.port == 8081 and scaler.plan_document()["settings"] == {"refused": None,
                                                                                   "at_restart": ["port"]}
    assert any("port at the next restart" in r.getMessage() for r in caplog.records)
    assert reloads("loaded") == 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="esg.scaler"):
        write("max_replicas: -1\n")
        iterate()
        iterate()
        write("max_replicas: 2\niteration_budget_s: 5\n")  # below the API timeout it started with (10 s)
        iterate()
    said = [r.getMessage() for r in caplog.records if "does not load" in r.getMessage()]
    assert len(said) == 2 and "max_replicas" in said[0] and "api_timeout_s" in said[1] and reloads("refused") == 2
    assert str(path) in said[0]
    assert scaler.settings.max_replicas == 2 and scaler.settings.iteration_budget_s == 30.0
    assert "api_timeout_s" in scaler.plan_document()["settings"]["refused"]
