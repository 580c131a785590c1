"""The embedded platform end to end: two small functions, load through the
router with a rate step, the ESG scaler acting on live gateway metrics."""

import json
import os
from pathlib import Path

import pytest

from esg_plugin.control.admission import AdmissionSettings
from esg_plugin.model import parse_profiles
from esg_plugin.local import run_up
from esg_plugin.runtime import contract as C
from esg_plugin.scaler import Topology
from esg_plugin.sim.workload import Arrivals, Workload, WorkflowLoad

pytestmark = pytest.mark.integration

HANDLER = '''
import json, time

def handle_batch(events, context):
    time.sleep(0.015 + 0.001 * len(events))
    out = []
    for e in events:
        data = json.loads(e.body or b"{}")
        out.append({"statusCode": 200, "body": {"seen": data.get("seen", 0) + 1, "batch": len(events)}})
    return out
'''


def stack(handler_dir):
    common = {"lang": "esg-python3", "handler": str(handler_dir),
              "environment": {"ESG_MAX_BATCH_SIZE": "1", "ESG_MAX_WAIT_MS": "0", "ESG_GPU_SHARE": "100"}}
    return {"functions": {
        "first": {**common, "annotations": {"com.esg.workflow": "pair", "com.esg.stage": "first",
                                            "com.esg.profile": "tiny", "com.esg.slo-ms": "150"}},
        "second": {**common, "annotations": {"com.esg.workflow": "pair", "com.esg.stage": "second",
                                             "com.esg.after": "first", "com.esg.profile": "tiny"}},
    }}


def profiles():
    # figures for the handler above: 15 ms + 1 ms per item, a bit slower at half share
    sizes = [1, 2, 4, 8]
    return parse_profiles({"device": "test", "functions": {"tiny": {
        "batch_sizes": sizes, "gpu_shares": [50, 100],
        "latency_ms": [[(16 + n) * 1.3, 16 + n] for n in sizes], "cold_start_ms": 500}}})


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_esg_up_with_two_small_functions(tmp_path):
    handler = tmp_path / "tiny"
    handler.mkdir()
    (handler / "handler.py").write_text(HANDLER)
    data = stack(handler)
    topology = Topology.from_stack(data)
    workload = Workload("pair", 1, 36.0, (WorkflowLoad(topology.workflows["pair"],
                                                       Arrivals("steps", {"steps": ((0.0, 4.0), (16.0, 60.0))})),),
                        warmup_s=0.0)
    report = run_up(data, tmp_path, topology, profiles(), workload, "esg", interval_s=2.0, max_replicas=3,
                    admission=AdmissionSettings(),
                    workdir=tmp_path / "work")
    sent = len(report.results)
    assert sent > 500
    # every request got an answer — 200, 504 when its deadline passed, or 429 when the
    # router's admission limit shed it at the entry (on a busy machine) — none was lost
    shed = [r for r in report.results if r.status == 429]
    assert all("admission limit" in r.error and r.rejected_by == C.REJECTED_BY_IN_FLIGHT for r in shed), {r.error for r in shed}
    assert all(r.status in (200, 504, 429) for r in report.results), {
        (r.status, r.error) for r in report.results if r.status not in (200, 504, 429)}
    # the gateway counted every call of the entry function: every request not shed at the entry
    assert report.gateway_invocations["first"] == sent - len(shed)
    answered = sum(1 for r in report.results if r.status == 200)
    assert answered <= report.gateway_invocations["second"] <= sent - len(shed)  # every success passed both
    # the scaler changed replicas or batch size after the rate step
    before = [s for t, s in report.states if t < 16.0]
    after = [s for t, s in report.states if t >= 20.0]
    start = before[-1]
    changed = any(s[fn].replicas != start[fn].replicas or s[fn].batch_size != start[fn].batch_size
                  for s in after for fn in ("first", "second"))
    assert changed, (start, after[-1])
    summary = report.summary()
    assert summary["workflows"]["pair"]["requests"] == sent
    # where the answers' time went, at the median: the stages (queue and execution) and the hops
    split = summary["workflows"]["pair"]
    assert split["stages_p50_ms"] > 0 and 0 <= split["hops_p50_ms"] <= split["p50_ms"]
    assert sum(summary["workflows"]["pair"]["rejected_by"].values()) == summary["workflows"]["pair"]["rejected"]
    rows = report.requests()
    assert len(rows) == sent and all(("rejected_by" in r) == (r["status"] == 429) for r in rows)
    # every answered request says where its time went: each stage's queue and execution time
    answered_rows = [r for r in rows if r["status"] == 200]
    assert answered_rows and all(r["stages_ms"] and all(0.0 <= t["exec_ms"] <= r["latency_ms"]
                                                        for t in r["stages_ms"].values()) for r in answered_rows)
    assert all(r["send_lag_ms"] >= 0.0 for r in rows) and summary["workflows"]["pair"]["send_lag_p99_ms"] is not None
    # measured on the generator's own clock: a lag as long as the run would be another time base
    assert max(r["send_lag_ms"] for r in rows) < workload.duration_s * 1000.0
    assert json.dumps(summary)
    # the timeline says how many requests the admission let in flight at each iteration
    limits = [row["admission_limit"]["*"] for row in report.timeline]
    assert limits and all(1 <= n <= AdmissionSettings().max_limit for n in limits)
    # ... and how bursty each workflow's arrivals were, as the law saw them (the router's gaps)
    cv2 = [row["workflows"]["pair"]["arrival_cv2"] for row in report.timeline]
    assert any(v is not None for v in cv2) and all(v is None or 0.0 <= v < 1e4 for v in cv2)
    idle = summary["machine"]["idle_share_after_warmup"]  # /proc/stat on Linux
    assert idle is None or 0.0 <= idle <= 1.0
    # no process outlives the shutdown
    assert report.spawned_pids and not any(alive(pid) for pid in report.spawned_pids)


def test_the_router_function_serves_workflows_through_the_gateway(tmp_path):
    import threading
    import urllib.request

    from esg_plugin.local import LocalPlatform, make_gateway_server

    handler = tmp_path / "tiny"
    handler.mkdir()
    (handler / "handler.py").write_text(HANDLER)
    data = stack(handler)
    router_dir = Path(__file__).resolve().parents[2] / "functions/router"
    data["functions"]["router"] = {"lang": "esg-python3", "handler": str(router_dir),
                                   "environment": {"ESG_MAX_BATCH_SIZE": "1"}}
    platform = LocalPlatform(data, tmp_path, tmp_path / "work")
    gateway = make_gateway_server(platform)
    url = f"http://127.0.0.1:{gateway.server_address[1]}"
    platform.functions["router"].env["gateway_url"] = url
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        platform.start()
        request = urllib.request.Request(f"{url}/function/router/workflow/pair", data=b'{"seen": 0}',
                                         headers={"Content-Type": "application/json"}, method="POST")
        doc = json.loads(urllib.request.urlopen(request, timeout=60).read())
        assert doc["workflow"] == "pair" and doc["output"]["seen"] == 2  # both stages ran, in order
        missing = urllib.request.Request(f"{url}/function/router/workflow/none", data=b"{}", method="POST")
        try:
            urllib.request.urlopen(missing, timeout=30)
            raise AssertionError("expected 404")
        except urllib.error.HTTPError as err:
            assert err.code == 404 and "known: pair" in json.loads(err.read())["error"]
    finally:
        gateway.shutdown()
        gateway.server_close()
        platform.shutdown()


@pytest.mark.parametrize("args, message", [
    (["--stack", "nope.yml"], "no such file"),
    (["--workload", "OTHER"], "workflow 'other' is not in stack.yml"),
    (["--duration", "5"], "--duration must exceed"),
    (["--queueing-model", "kingman"], "invalid choice: 'kingman'"),
])
def test_esg_up_bad_input_exits_2_with_one_line(args, message, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    other = tmp_path / "other.yaml"
    other.write_text("gpus: 1\nduration_s: 30\nworkflows:\n  - workflow: {name: other, slo_ms: 100, stages: "
                     "[{name: a, function: preprocess}]}\n    arrivals: {kind: poisson, rate_rps: 1}\n")
    args = [str(other) if a == "OTHER" else a for a in args]
    result = subprocess.run([str(Path(sys.executable).with_name("esg")), "up", *args], capture_output=True, text=True,
                            cwd=root, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
