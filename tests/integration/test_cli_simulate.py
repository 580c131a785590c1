"""`esg simulate` as a user runs it."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ESG = str(Path(sys.executable).with_name("esg"))
PROFILES = ROOT / "examples/profiles/synthetic.json"
WORKLOADS = ROOT / "examples/workloads"


def esg(*args):
    return subprocess.run([ESG, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_table_json_and_outputs(tmp_path):
    args = ["simulate", "--workload", WORKLOADS / "diurnal.yaml", "--profiles", PROFILES,
            "--policies", "esg,fast-gshare,kpa", "--duration", 120, "--seed", 4]
    table = esg(*args)
    assert table.returncode == 0, table.stderr
    for word in ("policy", "slo_hit", "cost_gpus", "esg", "fast-gshare", "kpa"):
        assert word in table.stdout
    result = esg(*args, "--json", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["workload"] == "diurnal" and doc["seed"] == 4 and doc["duration_s"] == 120
    assert set(doc["policies"]) == {"esg", "fast-gshare", "kpa"}
    for p in doc["policies"].values():
        assert {"slo_hit_rate", "cost", "gpu_util", "p50_ms", "p99_ms", "completed", "missed", "workflows"} <= set(p)
        assert set(p["workflows"]) == {"traffic"}
    out = tmp_path / "out"
    for name in ("simulation.json", "latencies.csv", "decisions.csv", "hit_rate_vs_cost.png", "latency_cdf.png",
                 "gpus_over_time.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "hit_rate_vs_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "latencies.csv").read_text().splitlines()
    assert rows[0] == "policy,workflow,arrival_s,latency_ms,slo_ms,slo_met"
    assert len(rows) - 1 == sum(p["completed"] + p["missed"] for p in doc["policies"].values())
    # every re-plan of the control law, with why; the peers say none
    with open(out / "decisions.csv", newline="") as f:
        decisions = list(csv.DictReader(f))
    assert decisions and {d["policy"] for d in decisions} == {"esg"}
    assert decisions[0]["workflow"] == "traffic" and decisions[0]["reason"].startswith("first plan")
    times = [float(d["time_s"]) for d in decisions]
    assert times == sorted(times) and all(0 <= t <= 120 + 30 for t in times)  # the run and its drain
    assert all(float(d["rate_rps"]) > 0 and float(d["plan_gpus"]) > 0 for d in decisions)
    again = json.loads(esg(*args, "--json").stdout)
    assert again == doc  # the same seed gives the same result


@pytest.mark.parametrize("make_args, expected", [
    (lambda t: ["--workload", t / "none.yaml"], "no such file"),
    (lambda t: ["--workload", WORKLOADS / "mixed.yaml", "--policies", "magic"], "unknown policy 'magic'"),
    (lambda t: ["--workload", _write(t, "w.yaml", "gpus: 0\nduration_s: 10\nworkflows: []\n")],
     "gpus must be an integer in 1..100000, got 0"),
    (lambda t: ["--workload", _write(t, "w.yaml", "gpus: 1\nduration_s: 10\nworkflows:\n"
                                      f"  - workflow: {WORKLOADS.parent / 'workflows/image.yaml'}\n"
                                      "    arrivals: {kind: lightning}\n")], "unknown arrival kind"),
    (lambda t: ["--workload", _write(t, "w.yaml", "gpus: 1\nduration_s: 10\nworkflows:\n"
                                      f"  - workflow: {WORKLOADS.parent / 'workflows/image.yaml'}\n"
                                      "    arrivals: {kind: steps, steps: [[5, 1], [2, 3]]}\n")],
     "strictly increasing"),
    (lambda t: ["--workload", _write(t, "w.yaml", "gpus: 1\nduration_s: 10\nworkflows:\n"
                                      f"  - workflow: {WORKLOADS.parent / 'workflows/image.yaml'}\n"
                                      "    arrivals: {kind: azure2019, file: missing.csv, row: 0}\n")],
     "no such trace file"),
    (lambda t: ["--workload", _azure(t, "1e999")], "minute 2: a count must lie in [0, 6e+07], got '1e999'"),
    (lambda t: ["--workload", _azure(t, "-5")], "minute 2: a count must lie in [0, 6e+07], got '-5'"),
    (lambda t: ["--workload", _azure(t, "nan")], "minute 2: a count must lie in [0, 6e+07], got 'nan'"),
    (lambda t: ["--workload", _azure(t, "many")], "row 0 has a non-numeric minute count"),
    (lambda t: ["--workload", _azure(t, "9" * 200_000)], "is not a CSV trace: field larger than field limit"),
    (lambda t: ["--workload", _azure(t, "\udcff\udcfe")], "is not a CSV trace: 'utf-8' codec can't decode"),
    (lambda t: ["--workload", WORKLOADS / "azure.yaml", "--duration", -3], "--duration: must be a number in (0, 604800], got -3"),
    (lambda t: ["--workload", WORKLOADS / "azure.yaml", "--duration", 1], "--duration must exceed"),
    (lambda t: ["--workload", WORKLOADS / "azure.yaml", "--placement", "worst-fit"], "'worst-fit'"),
])
def test_bad_input_exits_2_with_one_line(make_args, expected, tmp_path):
    result = esg("simulate", "--profiles", PROFILES, *make_args(tmp_path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", errors="surrogateescape")  # lone surrogates: bytes that are no UTF-8
    return path


def _azure(tmp_path, count: str):
    """A workload replaying a trace row whose second minute counts ``count``
    (a broken row: before, "1e999" gave a traceback and exit 1; a field over
    the csv module's limit, or bytes that are no UTF-8, gave one until the
    seventy-first session — found by ``make fuzz`` at ``FUZZ_SEED=71
    FUZZ_CASES=20000``)."""
    _write(tmp_path, "trace.csv", "HashOwner,HashApp,HashFunction,Trigger,1,2,3\no,a,f,http,60," + count + ",60\n")
    return _write(tmp_path, "w.yaml", "gpus: 1\nduration_s: 120\nworkflows:\n"
                  f"  - workflow: {WORKLOADS.parent / 'workflows/image.yaml'}\n"
                  "    arrivals: {kind: azure2019, file: trace.csv, row: 0}\n")


def test_help():
    result = esg("simulate", "--help")
    assert result.returncode == 0 and "--policies" in result.stdout


def test_an_ablation_runs_and_an_unknown_one_is_one_line_and_exit_2():
    args = ["simulate", "--workload", WORKLOADS / "steps.yaml", "--profiles", PROFILES, "--duration", 90]
    ok = esg(*args, "--ablation", "step", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["policies"]["esg"]["slo_hit_rate"] > 0
    bad = esg(*args, "--ablation", "magic")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "magic" in bad.stderr
