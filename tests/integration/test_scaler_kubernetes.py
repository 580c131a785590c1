"""The scaler against a Kubernetes API over real HTTP (tests/kube_emulator.py)
and a gateway /metrics endpoint whose counters the test drives, with an
injected clock (no test depends on wall-clock speed)."""

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes import client

from esg_plugin.loaders import load_profiles, read_yaml
from esg_plugin.scaler import FunctionState, GatewayScrape, KubernetesActuator, Scaler, ScalerSettings, Topology
from esg_plugin.scaler.actuators.base import api_client

from ..kube_emulator import KubeEmulator, deployment

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
INTERVAL_S = 5.0
SETTLED_TICKS = 18
"""Iterations at a steady load after which the first plan is the load's: the
functions start as ``stack.yml`` deploys them (one replica of a whole GPU),
which the scaler keeps as its first plan (``adopt_running``) until the
scale-down delay (60 s) has passed, after a full window (30 s)."""


class FakeGateway:
    """/metrics with the gateway's invocation counters, set by the test."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.counts = {}
        self.broken = False
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                if gateway.broken:
                    self.send_response(500)
                    self.end_headers()
                    return
                lines = ["# TYPE gateway_function_invocation_total counter"]
                for fn, n in gateway.counts.items():
                    lines.append(f'gateway_function_invocation_total{{code="200",function_name="{fn}.openfaas-fn"}} {n}')
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def world():
    topology = Topology.from_stack(read_yaml(ROOT / "stack.yml"))
    profiles = load_profiles(ROOT / "profiles/cpu-2core.json")
    settings = ScalerSettings.load({"interval_s": INTERVAL_S, "window_s": 30, "scale_down_delay_s": 60,
                                    "max_replicas": 5}, {})
    gateway = FakeGateway()
    with KubeEmulator() as kube:
        for fn in topology.functions.values():
            kube.add(deployment(fn, env={"ESG_FUNCTION": fn, "ESG_GPU_SHARE": 100}))
        configuration = client.Configuration()
        configuration.host = kube.url
        api = api_client(configuration)  # as `esg scaler` makes it
        clock = Clock()
        actuator = KubernetesActuator(api, "openfaas-fn")
        scaler = Scaler(topology, profiles, settings, GatewayScrape(gateway.url, settings.window_s), actuator, clock)
        yield topology, scaler, kube, gateway, clock
    gateway.close()


def tick(scaler, gateway, clock, rates):
    """One interval of traffic at ``rates`` (function -> rps), then one iteration."""
    clock.now += INTERVAL_S
    for fn, rps in rates.items():
        gateway.counts[fn] = gateway.counts.get(fn, 0.0) + rps * INTERVAL_S
    return scaler.iterate()


def image_replicas(kube, topology):
    return {fn: kube.get(fn)["spec"]["replicas"] for (wf, _), fn in topology.functions.items() if wf == "image"}


def test_a_load_step_raises_replicas_within_two_intervals_and_a_drop_lowers_them_after_the_delay(world):
    topology, scaler, kube, gateway, clock = world
    low, high = {"image-preprocess": 2.0}, {"image-preprocess": 60.0}
    for _ in range(10):
        tick(scaler, gateway, clock, low)
    before = image_replicas(kube, topology)
    assert scaler.status.ready
    for _ in range(2):
        tick(scaler, gateway, clock, high)
    after = image_replicas(kube, topology)
    assert sum(after.values()) > sum(before.values()), (before, after)
    peak = after
    # the load drops: nothing goes down before the delay window
    held = []
    for _ in range(int(60 / INTERVAL_S) - 1):
        tick(scaler, gateway, clock, low)
        held.append(sum(image_replicas(kube, topology).values()))
    assert all(total >= sum(peak.values()) for total in held)
    for _ in range(4):
        tick(scaler, gateway, clock, low)
    assert sum(image_replicas(kube, topology).values()) < sum(peak.values())
    # every object the patches produced is valid for Kubernetes
    for obj in kube.deployments.values():
        kubernetes_validate.validate(obj, "1.30", strict=True)
    shares = {fn: {e["name"]: e["value"] for e in kube.get(fn)["spec"]["template"]["spec"]["containers"][0]["env"]}
              for fn in image_replicas(kube, topology)}  # the workflow with traffic; the others were left alone
    for fn, env in shares.items():
        assert env["ESG_GPU_SHARE"] == env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"]
        assert env["ESG_FUNCTION"] == fn  # strategic merge kept the other variables



def test_a_restarted_scaler_keeps_what_runs_until_the_scale_down_delay(world):
    """A scaler that restarts (a new version, a drained node, a crash)
    remembers nothing and scrapes afresh: it reads what runs and keeps it as
    its first plan (``adopt_running``) — the load fell just before the
    restart, and the replicas the peak asked for go only after the
    scale-down delay, as they would have without the restart. Off, the
    first iteration with data scales down at once."""
    topology, scaler, kube, gateway, clock = world
    low, high = {"image-preprocess": 2.0}, {"image-preprocess": 60.0}
    for _ in range(10):
        tick(scaler, gateway, clock, low)
    for _ in range(2):
        tick(scaler, gateway, clock, high)
    peak = image_replicas(kube, topology)
    assert sum(peak.values()) > len(peak)

    def restarted(**changed):
        settings = dataclasses.replace(scaler.settings, **changed)
        configuration = client.Configuration()
        configuration.host = kube.url
        actuator = KubernetesActuator(api_client(configuration), "openfaas-fn")
        return Scaler(topology, scaler.profiles, settings, GatewayScrape(gateway.url, settings.window_s), actuator,
                      clock)

    again = restarted()
    held, said = [], []
    for _ in range(int(60 / INTERVAL_S)):
        tick(again, gateway, clock, low)
        held.append(image_replicas(kube, topology))
        said.append(again.status.decision.reasons.get("image", ""))
    assert all(replicas == peak for replicas in held), held
    assert any("what runs, kept" in reason for reason in said), said
    for _ in range(4):
        tick(again, gateway, clock, low)
    assert sum(image_replicas(kube, topology).values()) < sum(peak.values())
    # the same restart without it: down at the first iteration with data
    for _ in range(2):
        tick(again, gateway, clock, high)
    peak = image_replicas(kube, topology)
    at_once = restarted(adopt_running=False)
    for _ in range(2):
        tick(at_once, gateway, clock, low)
    assert sum(image_replicas(kube, topology).values()) < sum(peak.values())


def test_after_a_step_the_running_pods_carry_larger_batches_until_the_added_ones_are_ready(world):
    """The bridge (docs/control.md point 4) through the real client: while
    the Deployment's ``status.readyReplicas`` is below ``spec.replicas`` —
    far past the profile's cold start — the batch-size annotation is the
    larger batch; once the added pods are ready, the plan's."""
    from esg_plugin.runtime import contract as C
    topology, scaler, kube, gateway, clock = world
    fn = "image-classify"

    def batch():
        return int(kube.get(fn)["metadata"]["annotations"].get(C.ANNOTATION_BATCH_SIZE, 1))

    for _ in range(SETTLED_TICKS):
        tick(scaler, gateway, clock, {"image-preprocess": 2.0})
    before = kube.get(fn)["spec"]["replicas"]
    kube.set_ready(fn, before)
    status = tick(scaler, gateway, clock, {"image-preprocess": 30.0})
    planned = status.decision.plans["image"].stages["classify"]
    wanted = kube.get(fn)["spec"]["replicas"]
    assert wanted > before and batch() > planned.batch_size  # replicas added, the running ones batch more
    cold_start_s = scaler.profiles[planned.function].cold_start_ms / 1000.0
    for _ in range(2):  # 10 s: far past the profile's cold start, the pods not ready yet
        tick(scaler, gateway, clock, {"image-preprocess": 30.0})
        assert INTERVAL_S > cold_start_s and batch() > planned.batch_size
    kube.set_ready(fn, kube.get(fn)["spec"]["replicas"])
    status = tick(scaler, gateway, clock, {"image-preprocess": 30.0})
    assert batch() == status.decision.plans["image"].stages["classify"].batch_size


def test_pods_the_scheduler_found_no_room_for_reach_the_law_as_unplaced(world):
    """A fragmented cluster: the scheduler leaves some of a function's pods
    ``Pending`` with ``PodScheduled`` false, reason ``Unschedulable``. The
    actuator counts them (one list of the namespace's pending function pods,
    through the real client), and the law's observation carries them
    (``Observation.unplaced``, for ``below_no_room``); other pending pods
    (scheduled, pulling their image) are not counted."""
    from esg_plugin.scaler.decider import control_observation
    from esg_plugin.scaler.sources import Observation as ScalerObservation
    topology, scaler, kube, gateway, clock = world
    functions = list(topology.functions.values())
    kube.unschedulable["image-classify"] = 2
    kube.pulling.update({"image-classify": 1, "image-upscale": 3})
    states = scaler.actuator.current(functions)
    assert states["image-classify"].unplaced_replicas == 2
    assert all(states[fn].unplaced_replicas == 0 for fn in functions if fn != "image-classify")
    observation = control_observation(topology, scaler.profiles, ScalerObservation(0.0, {}, "test", 30.0), states)
    key = next(key for key, fn in topology.functions.items() if fn == "image-classify")
    assert observation.unplaced == {key: 2}
    said = []
    for _ in range(6):  # the scaler's /plan says which stage waits for room (once past its cold start)
        tick(scaler, gateway, clock, {"image-preprocess": 5.0})
        said.append(scaler.plan_document()["reasons"].get("image", ""))
    assert any("no room on any GPU: classify's 2 instance(s)" in reason for reason in said), said
    kube.unschedulable.clear()
    assert all(state.unplaced_replicas == 0 for state in scaler.actuator.current(functions).values())


def test_a_failing_api_or_stale_metrics_change_nothing_and_never_stop_the_loop(world):
    topology, scaler, kube, gateway, clock = world
    for _ in range(4):
        tick(scaler, gateway, clock, {"image-preprocess": 5.0, "traffic-detect": 5.0})
    snapshot = {key: repr(obj) for key, obj in kube.deployments.items()}
    # stale metrics: the gateway fails; nothing changes
    gateway.broken = True
    for _ in range(3):
        tick(scaler, gateway, clock, {"image-preprocess": 80.0})
    assert {key: repr(obj) for key, obj in kube.deployments.items()} == snapshot
    assert "no metrics data" in scaler.plan_document()["reasons"]["*"]
    gateway.broken = False
    # the API fails on every call: the iteration reports errors and the loop goes on
    kube.fail_next(10_000, 500)
    status = tick(scaler, gateway, clock, {"image-preprocess": 80.0})
    assert status.changes == [] or all(c.kind == "error" for c in status.changes)
    kube.failures.clear()
    assert {key: repr(obj) for key, obj in kube.deployments.items()} == snapshot
    errors = scaler.metrics.errors
    assert errors.labels(stage="no_data")._value.get() >= 3
    # recovered: the next iterations act again
    for _ in range(2):
        tick(scaler, gateway, clock, {"image-preprocess": 80.0})
    assert {key: repr(obj) for key, obj in kube.deployments.items()} != snapshot


def test_an_api_server_that_does_not_answer_costs_an_iteration_one_timeout(world):
    """A server that takes each connection and never answers (an API server
    wedged, a network that drops replies): the client alone would wait for
    ever, and the loop with it until /healthz failed and the kubelet
    restarted the scaler, its state lost. Each call waits ``api_timeout_s``;
    the first that goes unanswered ends the iteration's calls — one request
    reached the server in the whole iteration, not one per function and
    retry — and the iteration ends, its changes errors, nothing patched.
    The next iteration asks again and, the server back, acts."""
    topology, scaler, kube, gateway, clock = world
    scaler.actuator.api.timeout_s = 0.5
    for _ in range(4):
        tick(scaler, gateway, clock, {"image-preprocess": 5.0, "traffic-detect": 5.0})
    snapshot = {key: repr(obj) for key, obj in kube.deployments.items()}
    kube.stalled = threading.Event()
    ended, result = threading.Event(), {}

    def iteration():
        result["status"] = tick(scaler, gateway, clock, {"image-preprocess": 80.0})
        ended.set()
    try:
        threading.Thread(target=iteration, daemon=True).start()
        assert ended.wait(120.0), "the iteration waits on a server that does not answer"
    finally:
        kube.stalled.set()
        kube.stalled = None
    assert kube.stalled_requests == 1
    changes = result["status"].changes
    assert changes and all(c.kind == "error" for c in changes), changes
    assert any("did not answer" in str(c.after) for c in changes)
    assert {key: repr(obj) for key, obj in kube.deployments.items()} == snapshot
    assert scaler.metrics.errors.labels(stage="apply")._value.get() >= len(changes)
    for _ in range(2):
        tick(scaler, gateway, clock, {"image-preprocess": 80.0})
    assert {key: repr(obj) for key, obj in kube.deployments.items()} != snapshot


def test_a_function_whose_object_says_a_malformed_number_is_written_afresh_and_the_others_scale_on(world, caplog):
    """A hand edit or a typo on one function (``kubectl annotate ...
    com.esg.batch-size=eight``, an env share of ``lots``): before, the
    actuator's ``int()`` raised, every iteration failed and nothing was
    scaled for any function. Now that function's state is not believed
    (said in the log; the law keeps what it planned), its fields are
    written afresh at its next change — which mends the object — and the
    other functions scale on."""
    from esg_plugin.runtime import contract as C
    topology, scaler, kube, gateway, clock = world
    images = list(image_replicas(kube, topology))
    bad, good = images[0], images[1:]
    before = {fn: kube.get(fn)["spec"]["replicas"] for fn in good}
    kube.get(bad)["metadata"].setdefault("annotations", {})[C.ANNOTATION_BATCH_SIZE] = "eight"
    env = kube.get(bad)["spec"]["template"]["spec"]["containers"][0]["env"]
    next(e for e in env if e["name"] == "ESG_GPU_SHARE")["value"] = "lots"
    said_on_plan = []
    with caplog.at_level("WARNING", logger="esg.scaler"):
        for _ in range(3):
            status = tick(scaler, gateway, clock, {"image-preprocess": 60.0})
            assert not any(c.kind == "error" for c in status.changes), status.changes
            said_on_plan.append(scaler.plan_document()["reasons"].get(bad))
    assert "error: " not in scaler.plan_document()["reasons"].get("*", "")
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "says 'eight'" in said or "says 'lots'" in said, said
    assert sum(kube.get(fn)["spec"]["replicas"] for fn in good) > sum(before.values())  # the others scaled
    assert "its state not read: every field written" in said_on_plan  # /plan says it, while it was not believed
    assert said_on_plan[-1] != "its state not read: every field written"  # then read again
    state = scaler.actuator.current([bad])[bad]  # mended: read again, believed
    assert 1 <= state.batch_size and 1 <= state.gpu_share <= 100
    assert kube.get(bad)["metadata"]["annotations"][C.ANNOTATION_BATCH_SIZE] != "eight"


def test_a_wiped_share_is_reapplied_and_a_concurrent_writers_change_survives(world):
    topology, scaler, kube, gateway, clock = world
    for _ in range(SETTLED_TICKS):
        tick(scaler, gateway, clock, {"traffic-detect": 10.0})
    fn = "traffic-detect"
    planned = {e["name"]: e["value"] for e in kube.get(fn)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert planned["ESG_GPU_SHARE"] != "100"
    # a faas-cli redeploy wipes the share; then, between the scaler's read and
    # its patch, someone else adds an env entry: the patch (keyed by name, no
    # resourceVersion) keeps theirs and restores ours, with no conflict
    kube.add(deployment(fn, env={"ESG_FUNCTION": fn}, replicas=1))

    def other_writer(obj):
        obj["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "LOG_LEVEL", "value": "debug"})
    kube.interleave("deployments", fn, other_writer)
    status = tick(scaler, gateway, clock, {"traffic-detect": 10.0})
    env = {e["name"]: e["value"] for e in kube.get(fn)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ESG_GPU_SHARE"] == planned["ESG_GPU_SHARE"] and env["LOG_LEVEL"] == "debug"
    assert not [c for c in status.changes if c.kind == "error"]


def test_a_deleted_function_is_reported_gone(world):
    topology, scaler, kube, gateway, clock = world
    del kube.deployments[("openfaas-fn", "text-langid")]
    for _ in range(3):
        status = tick(scaler, gateway, clock, {"text-langid": 10.0})
    assert any(c.function == "text-langid" and c.kind == "gone" for c in status.changes)


def test_batch_settings_are_pushed_live_to_running_pods(tmp_path):
    from .test_runtime_server import Function

    fn = Function(tmp_path, ESG_CONFIG_TOKEN="fn-token", ESG_MAX_BATCH_SIZE=1)
    try:
        with KubeEmulator() as kube:
            kube.add(deployment("image-classify", env={"ESG_GPU_SHARE": 50}))
            kube.pod_ips["image-classify"] = ["127.0.0.1"]
            configuration = client.Configuration()
            configuration.host = kube.url
            actuator = KubernetesActuator(client.ApiClient(configuration), "openfaas-fn", function_port=fn.port,
                                          function_token="fn-token")
            changes = actuator.apply({"image-classify": FunctionState(1, 4, 7.5, 50)})
            assert [c.kind for c in changes] == ["batching"]
            live = json.loads(fn.get("/_esg/config")[2])
            assert (live["max_batch_size"], live["max_wait_ms"]) == (4, 7.5)
            annotations = kube.get("image-classify")["metadata"]["annotations"]
            assert annotations == {"com.esg.batch-size": "4", "com.esg.max-wait-ms": "7.5"}
            assert actuator.apply({"image-classify": FunctionState(1, 4, 7.5, 50)}) == []
    finally:
        fn.stop()


def test_a_hami_share_sets_requests_equal_to_limits():
    """A function that already requests HAMi's GPU cores and memory: the new
    share sets requests and limits alike (Kubernetes refuses an extended
    resource whose request differs from its limit)."""
    from esg_plugin.scaler import FunctionState

    with KubeEmulator() as kube:
        spec = deployment("fn", env={"ESG_GPU_SHARE": 100})
        spec["spec"]["template"]["spec"]["containers"][0]["resources"] = {
            "limits": {"nvidia.com/gpucores": "100", "nvidia.com/gpumem": "16000"},
            "requests": {"nvidia.com/gpucores": "100", "nvidia.com/gpumem": "16000"}}
        kube.add(spec)
        configuration = client.Configuration()
        configuration.host = kube.url
        actuator = KubernetesActuator(client.ApiClient(configuration), "openfaas-fn", share_mode="hami",
                                      gpu_memory_mb=16000)
        changes = actuator.apply({"fn": FunctionState(1, 1, 0.0, 30)})
        assert [c.kind for c in changes] == ["gpu_share"]
        resources = kube.get("fn")["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources["limits"] == resources["requests"] == {"nvidia.com/gpucores": "30",
                                                                 "nvidia.com/gpumem": "4800"}
        assert actuator.current(["fn"])["fn"].gpu_share == 30


def hami_node(name, devices, json_form=False):
    """A GPU node as HAMi's device plugin registers it: per device (id,
    cores, healthy), in its JSON form or its older colon-separated one."""
    if json_form:
        record = json.dumps([{"id": d, "count": 10, "devmem": 81920, "devcore": cores, "type": "NVIDIA-H100",
                              "numa": 0, **({"health": True} if ok else {})} for d, cores, ok in devices])
    else:
        record = "".join(f"{d},10,81920,{cores},NVIDIA-H100,0,{str(ok).lower()}:" for d, cores, ok in devices)
    return {"metadata": {"name": name, "annotations": {"hami.io/node-nvidia-register": record}}}


def hami_pod(name, namespace, phase, allocated):
    """A pod HAMi placed: ``allocated`` per container, (device id, cores[,
    memory in MiB, else 4000]) per device."""
    record = "".join("".join(f"{d[0]},NVIDIA,{(d + (4000,))[2]},{d[1]}:" for d in container) + ";"
                     for container in allocated)
    return {"metadata": {"name": name, "namespace": namespace,
                         "annotations": {"hami.io/vgpu-devices-allocated": record}},
            "status": {"phase": phase}}


def test_with_hami_each_gpus_free_share_is_read_from_hamis_records_and_reaches_the_law(caplog):
    """``share_mode: hami``: the actuator lists the nodes and every
    namespace's unfinished pods through the real client, and each healthy
    GPU's free share is what HAMi's fit test would admit — its cores less
    those allocated on it, no more than its memory left admits — (another
    tenant's pods included, finished ones not); the scaler hands it to the
    law, which believes it within ``capacity_gpus``. Under MPS it is not
    read; a record that cannot be read, or a list the account may not make,
    leaves it unknown, said once."""
    topology = Topology.from_stack(read_yaml(ROOT / "stack.yml"))
    profiles = load_profiles(ROOT / "profiles/cpu-2core.json")
    with KubeEmulator() as kube:
        for fn in topology.functions.values():
            kube.add(deployment(fn, env={"ESG_FUNCTION": fn, "ESG_GPU_SHARE": 100}))
        kube.nodes = [hami_node("gpu-a", [("GPU-a0", 100, True), ("GPU-a1", 100, True)]),
                      hami_node("gpu-b", [("GPU-b0", 200, True), ("GPU-b1", 100, False)], json_form=True),
                      {"metadata": {"name": "cpu-only"}}]
        kube.pods = [hami_pod("image-classify-1", "openfaas-fn", "Running", [[("GPU-a0", 30)]]),
                     hami_pod("training", "team-b", "Running", [[("GPU-a0", 50)], [("GPU-b0", 60)]]),
                     hami_pod("starting", "team-b", "Pending", [[("GPU-a1", 100)]]),
                     hami_pod("done", "team-b", "Succeeded", [[("GPU-b0", 100)]])]
        configuration = client.Configuration()
        configuration.host = kube.url
        api = client.ApiClient(configuration)
        actuator = KubernetesActuator(api, "openfaas-fn", share_mode="hami")
        # GPU-a1: taken by a pod HAMi placed and that has not started; GPU-b0: 140 of its 200 cores free,
        # a whole GPU's worth; GPU-b1 unhealthy
        assert actuator.gpu_room() == (20, 0, 100)
        assert KubernetesActuator(api, "openfaas-fn").gpu_room() is None  # MPS: no per-GPU record

        clock, gateway = Clock(), FakeGateway()
        try:
            settings = ScalerSettings.load({"interval_s": INTERVAL_S, "window_s": 30, "share_mode": "hami",
                                            "capacity_gpus": 4}, {})
            scaler = Scaler(topology, profiles, settings, GatewayScrape(gateway.url, settings.window_s), actuator,
                            clock)
            tick(scaler, gateway, clock, {"image-preprocess": 2.0})
            tick(scaler, gateway, clock, {"image-preprocess": 2.0})
            room = scaler.memory.state.gpu_free_pct  # what the law believes, less what this tick's re-plans took
            assert room is not None and len(room) == 3 and all(0 <= r <= b for r, b in zip(room, (20, 0, 100)))
            assert scaler.plan_document()["gpu_free_pct"] == [20, 0, 100]  # as read, on /plan
            from prometheus_client import generate_latest
            exposed = generate_latest(scaler.metrics.registry).decode()  # and as a gauge per GPU, for Prometheus
            assert 'esg_scaler_gpu_free_percent{gpu="0"} 20.0' in exposed
            assert 'esg_scaler_gpu_free_percent{gpu="2"} 100.0' in exposed
            unused = Scaler(topology, profiles, ScalerSettings.load({"share_mode": "hami"}, {}),
                            GatewayScrape(gateway.url, 30.0), actuator, clock)
            tick(unused, gateway, clock, {"image-preprocess": 2.0})
            assert unused.plan_document()["gpu_free_pct"] is None  # no capacity_gpus: no packing to check, not read
        finally:
            gateway.close()

        kube.pods.append(hami_pod("odd", "team-c", "Running", [[("GPU-a1", "many")]]))
        with caplog.at_level("WARNING", logger="esg.scaler"):
            assert actuator.gpu_room() is None and actuator.gpu_room() is None
        said = [r.getMessage() for r in caplog.records if "free share is not known" in r.getMessage()]
        assert len(said) == 1 and "cores used on GPU-a1" in said[0], said
        kube.pods.pop()
        assert actuator.gpu_room() == (20, 0, 100)
        kube.pods.append(hami_pod("big", "team-c", "Running", [[("GPU-b0", 10, 69000)]]))
        # 81920 - 4000 - 69000 MiB left: 8920, for a pod of ours (16000 MiB a GPU) 55% of a GPU
        assert actuator.gpu_room() == (20, 0, 55)
        kube.pods[-1]["metadata"]["annotations"]["hami.io/vgpu-devices-allocated"] = "GPU-b0,NVIDIA,79000,10:;"
        assert actuator.gpu_room() == (20, 0, 0)  # less memory left than any share of ours asks

        caplog.clear()
        kube.stalled = threading.Event()  # a server that does not answer: the room is not known, and nothing waits on
        try:
            with caplog.at_level("WARNING", logger="esg.scaler"):
                actuator.api.timeout_s = 0.2
                assert actuator.gpu_room() is None
        finally:
            kube.stalled.set()
            kube.stalled = None
        said = [r.getMessage() for r in caplog.records if "free share is not known" in r.getMessage()]
        assert len(said) == 1 and "no answer" in said[0], said

    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]  # no list of nodes
    with KubeEmulator(token="t", rules=rules) as kube:
        configuration = client.Configuration()
        configuration.host = kube.url
        configuration.api_key = {"authorization": "Bearer t"}
        caplog.clear()
        with caplog.at_level("WARNING", logger="esg.scaler"):
            actuator = KubernetesActuator(client.ApiClient(configuration), "openfaas-fn", share_mode="hami")
            assert actuator.gpu_room() is None and actuator.gpu_room() is None
        said = [r.getMessage() for r in caplog.records if "free share is not known" in r.getMessage()]
        assert len(said) == 1 and "403" in said[0] and "nodes" in said[0], said


def test_the_gpu_room_bench_reads_the_room_it_serves():
    """``bench/gpu_room.py`` on a small cluster: the reader reads every GPU
    (a bench that runs; its figures are not asserted)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "bench/gpu_room.py"), "--nodes", "2", "--gpus", "2", "--pods",
                          "10", "--reads", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "the reader (both lists as plain JSON" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "bench/gpu_room.py"), "--pods", "0"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "at least 1" in bad.stderr


def test_the_api_stall_bench_counts_one_connection_an_iteration():
    """``bench/api_stall.py`` small: the client as it comes reaches a silent
    server four times for one read, the scaler's client once, and an
    iteration over three functions once (the counts are asserted, not the
    times)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "bench/api_stall.py"), "--functions", "3", "--timeout-s", "0.2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "4 connection(s)" in lines[1] and "1 connection(s)" in lines[2] and "1 connection(s)" in lines[3], lines
    bad = subprocess.run([sys.executable, str(ROOT / "bench/api_stall.py"), "--functions", "0"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "at least 1" in bad.stderr


def leased_scaler(world, name):
    """Another scaler over the world's API, gateway and clock, holding the
    Lease ``esg-scaler`` as candidate ``name`` (15 s), as ``esg scaler`` does."""
    from esg_plugin.scaler.actuators.lease import Lease

    topology, first, kube, gateway, clock = world
    configuration = client.Configuration()
    configuration.host = kube.url
    api = api_client(configuration)
    actuator = KubernetesActuator(api, "openfaas-fn")
    lease = Lease(api, actuator.api, "openfaas-fn", "esg-scaler", 15.0, candidate=name, clock=clock)
    return Scaler(topology, first.profiles, first.settings, GatewayScrape(gateway.url, first.settings.window_s),
                  actuator, clock, lease=lease)


def test_one_of_two_scalers_holds_the_lease_and_acts_while_the_other_stands_by(world):
    """Leader election (``actuators/lease.py``): of two scalers over one API —
    the scaler's rolling update, or two gateway replicas with a sidecar
    each — one holds the Lease and acts; the other reads no function and
    changes nothing ("standby" in its reasons). Once the holder stops
    renewing (it crashed), the other takes over after the lease's duration
    by its own clock and keeps what runs; the old one, back, stands by. A
    holder that stops cleanly gives the lease up, and the next takes it
    at once."""
    topology, _, kube, gateway, clock = world
    a, b = leased_scaler(world, "a"), leased_scaler(world, "b")
    both = lambda rates: [tick(s, gateway, clock, rates) for s in (a, b)]  # noqa: E731
    for _ in range(3):
        both({"image-preprocess": 60.0})
    record = kube.leases[("openfaas-fn", "esg-scaler")]
    assert record["spec"]["holderIdentity"] == "a" and record["spec"]["leaseTransitions"] == 0
    assert b.status.decision.reasons["*"].startswith("standby: the lease openfaas-fn/esg-scaler is held by a")
    assert a.status.decision.plans and not b.status.decision.plans
    before = len(kube.verbs)
    tick(b, gateway, clock, {"image-preprocess": 60.0})
    assert [v[2] for v in kube.verbs[before:]] == ["leases"]  # standing by: the lease read, nothing else
    assert b.plan_document()["lease"] == {"name": "esg-scaler", "holder": "a", "leading": False}
    assert b.plan_document()["workflows"] == {} and a.plan_document()["workflows"]
    assert a.metrics.leader._value.get() == 1 and b.metrics.leader._value.get() == 0
    peak = image_replicas(kube, topology)
    # a crashes: b takes over once the record has not changed for 15 s by its clock (b last saw it change
    # 5 s ago, at its tick after a's renewal), and keeps what runs
    taken = []
    for _ in range(3):
        taken.append(tick(b, gateway, clock, {"image-preprocess": 60.0}).decision.plans != {})
    assert taken == [False, True, True], taken  # 10 s unchanged: waits; 15 s: taken
    record = kube.leases[("openfaas-fn", "esg-scaler")]
    assert record["spec"]["holderIdentity"] == "b" and record["spec"]["leaseTransitions"] == 1
    assert image_replicas(kube, topology) == peak
    tick(a, gateway, clock, {"image-preprocess": 60.0})  # back: b holds it
    assert a.status.decision.reasons["*"].startswith("standby") and not a.lease.leading()
    assert a.plan_document()["workflows"] == {}  # the plans it led with are not shown while it stands by
    # b stops cleanly: it gives the lease up (even where its last iteration met an API that did not
    # answer: it asks afresh), and a takes it at its next iteration
    from esg_plugin.scaler.actuators.errors import Unavailable
    b.lease.calls.unanswered = Unavailable("no answer")
    b.lease.release()
    assert "holderIdentity" not in kube.leases[("openfaas-fn", "esg-scaler")]["spec"]
    assert tick(a, gateway, clock, {"image-preprocess": 60.0}).decision.plans
    assert kube.leases[("openfaas-fn", "esg-scaler")]["spec"]["holderIdentity"] == "a"


def test_two_candidates_writing_one_lease_at_once_cannot_both_take_it(world):
    """A write of the Lease carries the resourceVersion read: where another
    candidate wrote it between this one's read and write, the server
    answers 409 and this one stands by; a lease no one holds, or that went
    unrenewed past its duration, is taken."""
    from esg_plugin.scaler.actuators.base import ApiCalls
    from esg_plugin.scaler.actuators.lease import Lease

    topology, scaler, kube, gateway, clock = world
    configuration = client.Configuration()
    configuration.host = kube.url
    api = api_client(configuration)
    a = Lease(api, ApiCalls(), "openfaas-fn", "esg-scaler", 15.0, candidate="a", clock=clock)
    b = Lease(api, ApiCalls(), "openfaas-fn", "esg-scaler", 15.0, candidate="b", clock=clock)
    assert a.hold() and not b.hold()  # a created it; b reads it held

    def a_renews(obj):
        obj["spec"]["renewTime"] = "2026-12-06T04:00:00.000000Z"
    clock.now += 16.0  # unchanged for 16 s by b's clock: b writes, but a renews between b's read and write
    kube.interleave("leases", "esg-scaler", a_renews)
    assert not b.hold()  # 409: no takeover
    assert kube.leases[("openfaas-fn", "esg-scaler")]["spec"]["holderIdentity"] == "a"
    assert not b.hold()  # the record changed just now, by b's clock: it waits the duration from here
    clock.now += 16.0
    assert b.hold() and kube.leases[("openfaas-fn", "esg-scaler")]["spec"]["holderIdentity"] == "b"
    assert kube.leases[("openfaas-fn", "esg-scaler")]["spec"]["leaseTransitions"] == 1
    kube.stalled = threading.Event()  # the API stops answering: b acts until its renew deadline only
    try:
        calls = b.calls
        calls.timeout_s = 0.2
        clock.now += 5.0
        calls.new_iteration()
        assert b.hold()  # 5 s after its renewal: still within the 10-s deadline
        clock.now += 6.0
        calls.new_iteration()
        assert not b.hold()  # 11 s: past it, before any other may take over (15 s)
    finally:
        kube.stalled.set()
        kube.stalled = None


def test_what_the_leaders_law_learned_goes_with_the_lease_to_the_scaler_that_leads_next(world, caplog):
    """The holder writes what its law learned (margin, boost, queue factor,
    a rollback's back-off and hold, a step's panic: ``resume_panic``) into
    the Lease's record at each renewal (``esg.io/learned``); the
    scaler that takes the lease over resumes from it, each value believed
    only in its range — a record anyone with the lease's patch right
    could have written."""
    from esg_plugin.scaler.actuators.lease import LEARNED

    topology, _, kube, gateway, clock = world
    a, b, c = (leased_scaler(world, name) for name in "abc")
    for _ in range(3):
        for s in (a, b):
            tick(s, gateway, clock, {"image-preprocess": 20.0})
    learned = a.memory.state.workflows["image"]
    learned.margin, learned.boost = 0.3, 1.44  # as misses would have raised them
    learned.rollbacks, learned.down_hold_until_s = 2, clock() + 200.0  # as a scale-down undone would have
    # as a step 10 s ago would have: its panic, its arrivals counted since, the cv² before it
    learned.panic_until_s, learned.step_at_s, learned.counting_since = clock() + 40.0, clock() - 10.0, "the step"
    learned.since_step, learned.step_cv2 = [(clock() - 2.0, clock() - 4.0, 40.0)], 1.5
    held_rps = learned.planned_rps  # (the record is written as the tick begins)
    tick(a, gateway, clock, {"image-preprocess": 20.0})  # renews: the record goes with the lease
    record = json.loads(kube.leases[("openfaas-fn", "esg-scaler")]["metadata"]["annotations"][LEARNED])
    assert record["image"]["margin"] == 0.3 and record["image"]["boost"] == 1.44
    assert record["image"]["rollbacks"] == 2 and record["image"]["down_hold_rps"] == held_rps
    written_s = record["image"]["down_hold_s"]  # the seconds left, by a's clock: no two clocks compared
    assert 0 < written_s <= 200.0
    assert 0 < record["image"]["panic_s"] <= 40.0 and record["image"]["step_cv2"] == 1.5
    ended_s, started_s, arrivals = record["image"]["step_counts"][0]  # seconds before the record, by a's clock
    assert started_s - ended_s == 2.0 and arrivals == 40.0
    while not b.lease.leading():  # a crashes; b takes over
        tick(b, gateway, clock, {"image-preprocess": 20.0})
    resumed = b.memory.state.workflows["image"]
    assert (resumed.margin, resumed.boost, resumed.rollbacks) == (0.3, 1.44, 2)
    assert resumed.down_hold_rps == held_rps and resumed.down_hold_until_s > clock() + written_s - 5.0
    assert resumed.panic_until_s > clock() and resumed.step_cv2 == 1.5 and resumed.since_step  # the panic goes on
    # a record that says what is out of range is not believed: c, taking over from b, starts where a new law does
    kube.leases[("openfaas-fn", "esg-scaler")]["metadata"]["annotations"][LEARNED] = \
        json.dumps({"image": {"margin": 99, "boost": "lots"}, "nobody": {}})
    b.lease.record = lambda: None  # b's next renewal leaves the record as it is
    b.lease.release()
    with caplog.at_level("WARNING"):
        tick(c, gateway, clock, {"image-preprocess": 20.0})
    assert c.lease.leading()
    fresh = c.memory.state.workflows["image"]
    assert (fresh.margin, fresh.boost) == (0.0, 1.0)
    assert "not believed" in caplog.text and "margin" in caplog.text


def test_a_lease_record_nested_too_deeply_to_parse_is_not_read_and_the_scaler_that_takes_the_lease_acts(world, caplog):
    """A record of what the law learned that ``json.loads`` cannot follow
    (``[`` a thousand deep: 1 KB, under the 64-KiB bound; its
    ``RecursionError`` is no ``ValueError``) is not read, as any record that
    is not JSON: the scaler that takes the lease over leads and acts. It
    stopped every iteration of that scaler before, while it went on
    renewing the lease — no scaler acted at all (``jsontext.py``)."""
    from esg_plugin.scaler.actuators.lease import LEARNED

    topology, _, kube, gateway, clock = world
    a, b = leased_scaler(world, "a"), leased_scaler(world, "b")
    tick(a, gateway, clock, {"image-preprocess": 20.0})
    assert a.lease.leading()
    kube.leases[("openfaas-fn", "esg-scaler")]["metadata"]["annotations"] = {LEARNED: "[" * 3000 + "]" * 3000}
    a.lease.record = lambda: None  # a's release leaves the record as it is
    a.lease.release()
    before = image_replicas(kube, topology)
    with caplog.at_level("WARNING"):
        for _ in range(SETTLED_TICKS):
            tick(b, gateway, clock, {"image-preprocess": 60.0})
    assert b.lease.leading() and "not JSON" in caplog.text and "iteration crashed" not in caplog.text
    assert image_replicas(kube, topology) != before  # it acts: three times the load is planned for


def test_a_sidecar_reads_every_gateway_replica_and_plans_for_all_the_traffic(world):
    """Two gateway replicas each serve half the traffic: the scaler with
    ``gateway_pods`` lists the gateway's running pods through the API and
    reads each one's metrics (real HTTP on two loopback addresses, one
    port), so the law sees the whole rate, not its own gateway's half; a
    pod pending, one being deleted and another app's are not read; while a
    listed gateway cannot be read nothing changes."""
    from esg_plugin.scaler.gateways import GatewayPods

    topology, scaler, kube, own, clock = world
    first = FakeGateway("127.0.0.2")
    port = first.server.server_address[1]
    second = FakeGateway("127.0.0.3", port)
    try:
        def pod(name, ip=None, phase="Running", app="gateway", deleting=False):
            meta = {"name": name, "namespace": "openfaas", "labels": {"app": app}}
            if deleting:
                meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
            return {"metadata": meta, "status": {"phase": phase, **({"podIP": ip} if ip else {})}}

        kube.pods += [pod("gateway-a", "127.0.0.2"), pod("gateway-b", "127.0.0.3"), pod("gateway-c", phase="Pending"),
                      pod("gateway-d", "127.0.0.4", deleting=True), pod("prometheus-0", "127.0.0.5", app="prometheus")]
        gateways = GatewayPods(scaler.actuator.core, "openfaas", "app=gateway",
                               f"http://127.0.0.1:{port}/metrics", timeout_s=5.0)
        assert gateways() == [first.url, second.url]
        scaler.source = GatewayScrape(first.url, scaler.settings.window_s, gateways=gateways)
        seen = []
        observe = scaler.source.observe
        scaler.source.observe = lambda now_s: seen.append(observe(now_s)) or seen[-1]
        for _ in range(4):  # 30 rps through each gateway
            clock.now += INTERVAL_S
            for gateway in (first, second):
                gateway.counts["image-preprocess"] = gateway.counts.get("image-preprocess", 0.0) + 30.0 * INTERVAL_S
            status = scaler.iterate()
        assert seen[-1].rates_rps["image-preprocess"] == pytest.approx(60.0)  # not 30: both gateways' traffic
        assert scaler.metrics.registry.get_sample_value("esg_scaler_gateways") == 2  # what an operator sees
        assert status.decision.rates_rps["image"] >= 60.0
        replicas = image_replicas(kube, topology)
        second.broken = True  # a listed gateway that does not answer: its part of the traffic is not known
        clock.now += INTERVAL_S
        status = scaler.iterate()
        assert seen[-1] is None and image_replicas(kube, topology) == replicas
        assert scaler.metrics.registry.get_sample_value("esg_scaler_errors_total", {"stage": "no_data"}) >= 1
        # in the gateway's namespace it asked exactly what the sidecar's Role there grants
        import yaml

        role = next(d for d in yaml.safe_load_all((ROOT / "deploy/gateway-sidecar/gateway-pods-role.yaml").read_text())
                    if d["kind"] == "Role")
        granted = {(verb, group, resource) for rule in role["rules"] for group in rule["apiGroups"]
                   for resource in rule["resources"] for verb in rule["verbs"]}
        assert {(verb, group, resource) for verb, group, resource, ns in kube.verbs if ns == "openfaas"} == granted
    finally:
        first.close()
        second.close()


def test_the_gateways_pods_are_believed_only_where_each_says_an_ip_address(world, caplog):
    """A pod IP that is no IP address (a name, a number, with a port or a
    path) is left out and said; a list the API does not give, or with no
    running gateway, is None: no data, the scaler does not act."""
    from esg_plugin.scaler.gateways import GatewayPods

    _, scaler, kube, _, _ = world
    gateways = GatewayPods(scaler.actuator.core, "openfaas", "app=gateway", "https://127.0.0.1:8082/metrics",
                           timeout_s=5.0)
    assert gateways() is None  # none running
    assert "no running pod of the gateway matches 'app=gateway' in openfaas" in caplog.text
    ips = ["10.0.0.7", "fd00::7", "evil.example/x", 12345, "10.0.0.8:80", None, ["10.0.0.9"], "10.0.0.1/metrics?"]
    kube.pods += [{"metadata": {"name": f"gateway-{i}", "namespace": "openfaas", "labels": {"app": "gateway"}},
                   "status": {"phase": "Running", "podIP": ip}} for i, ip in enumerate(ips)]
    assert gateways() == ["https://10.0.0.7:8082/metrics", "https://[fd00::7]:8082/metrics"]
    assert "pods without an IP address left out: gateway-2, gateway-3, gateway-4, gateway-5, gateway-6, " \
           "gateway-7" in caplog.text
    kube.fail_next(1, 500)
    assert gateways() is None
    assert "the gateway's pods could not be listed" in caplog.text
    assert gateways() is not None  # the next iteration asks again
