"""The scaler's pure parts and its HTTP endpoint, without a cluster."""

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from esg_plugin.loaders import load_profiles, read_yaml
from esg_plugin.scaler import (
    DryRunActuator, FunctionState, Memory, Observation, Scaler, ScalerSettings, ScalerSettingsError, Topology, decide,
    make_http_server,
)
from esg_plugin.scaler.sources import parse_invocations

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
    decision = decide(topology, profiles, ScalerSettings(), None, {}, Memory(), 0.0)
    assert decision.desired == {} and "no metrics data" in decision.reasons["*"]


def test_up_at_once_down_after_the_delay_and_never_before_a_full_window(world):
    topology, profiles = world
    settings = ScalerSettings(scale_down_delay_s=60, window_s=30)
    memory = Memory()
    high = decide(topology, profiles, settings, obs(0, image_preprocess=60.0), {}, memory, 0.0).desired
    assert high["image-classify"].replicas > 1
    current = dict(high)
    # low load from t=10: held (delay and warm-up), then lowered after 60 s
    for t in range(10, 70, 5):
        d = decide(topology, profiles, settings, obs(t, image_preprocess=2.0), current, memory, float(t)).desired
        assert d["image-classify"].replicas == high["image-classify"].replicas, t
    d = decide(topology, profiles, settings, obs(75, image_preprocess=2.0), current, memory, 75.0).desired
    assert d["image-classify"].replicas < high["image-classify"].replicas


def test_a_small_share_saving_does_not_restart_pods(world):
    topology, profiles = world
    settings = ScalerSettings(min_share_saving=0.99)  # no saving is ever worth a restart
    current = {fn: FunctionState(3, 1, 0.0, 100) for fn in topology.functions.values()}
    d = decide(topology, profiles, settings, obs(0, text_langid=5.0), current, Memory(), 0.0).desired
    assert {d[f].gpu_share for f in ("text-langid", "text-translate", "text-sentiment")} == {100}
    free = decide(topology, profiles, ScalerSettings(min_share_saving=0.0), obs(0, text_langid=5.0), current,
                  Memory(), 0.0).desired
    assert any(free[f].gpu_share < 100 for f in ("text-langid", "text-translate", "text-sentiment"))


def test_parse_gateway_metrics_sums_codes_and_cuts_the_namespace():
    text = ('gateway_function_invocation_total{code="200",function_name="a.openfaas-fn"} 10\n'
            'gateway_function_invocation_total{code="500",function_name="a.openfaas-fn"} 2\n'
            'gateway_function_invocation_started{function_name="a.openfaas-fn"} 12\n'
            'gateway_service_count{function_name="a.openfaas-fn"} 1\n')
    assert parse_invocations(text) == {"a": 12.0}


@pytest.mark.parametrize("data, message", [
    ({"actuator": "magic"}, "actuator must be one of"),
    ({"interval_s": 0}, "interval_s must be positive"),
    ({"interval_s": "soon"}, "interval_s must be float"),
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas"),
    ({"colour": "red"}, "unknown setting(s): colour"),
    ({"metrics_url": "gateway:8080"}, "http(s) URL"),
])
def test_bad_settings(data, message):
    with pytest.raises(ScalerSettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScalerSettings.load(data, {})


def test_environment_overrides_the_file():
    s = ScalerSettings.load({"interval_s": 5}, {"ESG_SCALER_INTERVAL_S": "2", "ESG_SCALER_TOKEN": "t"})
    assert s.interval_s == 2.0 and s.token == "t"


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
    plain = decide(topology, profiles, ScalerSettings(), obs(0, image_preprocess=5.0), current, Memory(), 0.0)
    slow = decide(topology, profiles, ScalerSettings(), obs(0, image_preprocess=5.0), current, Memory(), 0.0,
                  {"image-classify": 2 * profiles["resnet50"].latency(1, 50)})
    profiled = plain.plans["image"].stages["classify"]
    observed = slow.plans["image"].stages["classify"]
    assert observed.exec_ms / profiles["resnet50"].latency(observed.batch_size, observed.gpu_share) == \
        pytest.approx(2.0)
    assert profiled.exec_ms == profiles["resnet50"].latency(profiled.batch_size, profiled.gpu_share)
