"""`esg plan` as a user runs it: the installed console script, real files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ESG = str(Path(sys.executable).with_name("esg"))
PROFILES = ROOT / "examples/profiles/synthetic.json"
WORKFLOWS = ROOT / "examples/workflows"


def esg(*args, cwd=ROOT):
    return subprocess.run([ESG, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("name", ["image", "traffic", "video", "text"])
def test_examples_plan_out_of_the_box(name):
    result = esg("plan", "--workflow", WORKFLOWS / f"{name}.yaml", "--profiles", PROFILES, "--rate", 200)
    assert result.returncode == 0, result.stderr
    assert "meets the SLO" in result.stdout
    assert "total" in result.stdout and "latency_ms" in result.stdout


def test_json_follows_spec_section_4():
    result = esg("plan", "--workflow", WORKFLOWS / "traffic.yaml", "--profiles", PROFILES, "--rate", 300, "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {"workflow", "policy", "slo_ms", "rate_rps", "feasible", "latency_ms", "cost", "stages", "stats"} <= set(plan)
    assert plan["workflow"] == "traffic" and plan["policy"] == "esg" and plan["rate_rps"] == 300
    assert set(plan["stages"]) == {"decode", "detect", "car", "person", "plate", "aggregate"}
    for stage in plan["stages"].values():
        assert {"function", "batch_size", "gpu_share", "replicas", "max_wait_ms", "exec_ms",
                "latency_ms", "cost"} <= set(stage)
        assert stage["latency_ms"] == pytest.approx(stage["max_wait_ms"] + stage["exec_ms"], abs=2e-3)
    assert plan["cost"] == pytest.approx(sum(s["cost"] for s in plan["stages"].values()))
    assert plan["latency_ms"] <= plan["slo_ms"]
    assert {"elapsed_ms", "expanded", "generated", "pruned_by_latency", "pruned_by_cost", "segments"} <= set(plan["stats"])
    assert plan["stats"]["elapsed_ms"] > 0


def test_optimal_policy_agrees_on_a_chain():
    args = ["--workflow", WORKFLOWS / "video.yaml", "--profiles", PROFILES, "--rate", 500, "--json"]
    esg_plan = json.loads(esg("plan", *args).stdout)
    optimal = json.loads(esg("plan", *args, "--policy", "optimal").stdout)
    assert optimal["policy"] == "optimal"
    assert esg_plan["cost"] == optimal["cost"]


def test_infeasible_exits_3_and_still_prints_the_fastest_plan(tmp_path):
    tight = tmp_path / "tight.yaml"
    tight.write_text((WORKFLOWS / "image.yaml").read_text().replace("slo_ms: 60", "slo_ms: 5"))
    result = esg("plan", "--workflow", tight, "--profiles", PROFILES, "--rate", 100, "--json")
    assert result.returncode == 3
    plan = json.loads(result.stdout)
    assert plan["feasible"] is False and plan["latency_ms"] > 5
    table = esg("plan", "--workflow", tight, "--profiles", PROFILES, "--rate", 100)
    assert table.returncode == 3 and "MISSES" in table.stdout


def test_explain_names_the_blades():
    result = esg("plan", "--workflow", WORKFLOWS / "video.yaml", "--profiles", PROFILES, "--rate", 600, "--explain")
    assert result.returncode == 0, result.stderr
    assert "rejected by" in result.stdout
    assert "cost blade" in result.stdout
    doc = json.loads(esg("plan", "--workflow", WORKFLOWS / "video.yaml", "--profiles", PROFILES, "--rate", 600,
                         "--explain", "--json").stdout)
    reasons = {r["reason"] for rs in doc["explain"].values() for r in rs}
    assert reasons <= {"dominated", "latency", "cost", "split"} and "cost" in reasons


def test_anytime_flag_marks_the_plan_not_proven():
    result = esg("plan", "--workflow", WORKFLOWS / "video.yaml", "--profiles", PROFILES, "--rate", 600,
                 "--max-expansions", 1, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["proven_optimal"] is False


def test_stack_file_with_several_workflows_needs_a_name(tmp_path):
    stack = tmp_path / "stack.yml"
    stack.write_text("""
version: 1.0
provider: {name: openfaas, gateway: http://127.0.0.1:8080}
functions:
  pre:
    lang: esg-python3
    handler: ./pre
    annotations: {com.esg.workflow: image, com.esg.slo-ms: "200", com.esg.profile: preprocess}
  cls:
    lang: esg-python3
    handler: ./cls
    annotations: {com.esg.workflow: image, com.esg.after: pre, com.esg.profile: resnet50}
  lid:
    lang: esg-python3
    handler: ./lid
    annotations: {com.esg.workflow: text, com.esg.slo-ms: "300", com.esg.profile: langid}
""")
    ambiguous = esg("plan", "--workflow", stack, "--profiles", PROFILES, "--rate", 50)
    assert ambiguous.returncode == 2 and "pick one with --name" in ambiguous.stderr
    ok = esg("plan", "--workflow", stack, "--name", "image", "--profiles", PROFILES, "--rate", 50)
    assert ok.returncode == 0, ok.stderr and "workflow image" in ok.stdout


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_CASES = {
    "missing workflow file": (lambda t: ["--workflow", t / "nope.yaml", "--profiles", PROFILES, "--rate", 10],
                              "no such file"),
    "workflow is a directory": (lambda t: ["--workflow", t, "--profiles", PROFILES, "--rate", 10], "is a directory"),
    "invalid YAML": (lambda t: ["--workflow", write(t, "w.yaml", "name: [unclosed\n"), "--profiles", PROFILES,
                                "--rate", 10], "not valid YAML"),
    "invalid JSON": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles", write(t, "p.json", "{oops"),
                                "--rate", 10], "not valid JSON"),
    "cyclic workflow": (lambda t: ["--workflow", write(t, "c.yaml", "name: c\nslo_ms: 100\nstages:\n"
                                   "  - {name: a, function: preprocess, after: [b]}\n"
                                   "  - {name: b, function: resnet50, after: [a]}\n"),
                                   "--profiles", PROFILES, "--rate", 10], "has a cycle"),
    "unknown function": (lambda t: ["--workflow", write(t, "u.yaml", "name: u\nslo_ms: 100\nstages:\n"
                                    "  - {name: a, function: mystery}\n"), "--profiles", PROFILES, "--rate", 10],
                         "which has no profile"),
    "missing profile entry": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles",
                                         write(t, "p.json", json.dumps({"device": "x", "functions": {"preprocess": {
                                             "batch_sizes": [1, 2], "gpu_shares": [50],
                                             "latency_ms": [[1.0]]}}})), "--rate", 10],
                              "one row per batch size"),
    "negative rate": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles", PROFILES, "--rate", -5],
                      "--rate: must be a number in [1e-06, 1e+06], got -5"),
    "zero rate": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles", PROFILES, "--rate", 0],
                  "--rate: must be a number in [1e-06, 1e+06], got 0"),
    "an impossible rate": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles", PROFILES, "--rate",
                                      "1e300"], "--rate: must be a number in [1e-06, 1e+06], got 1e+300"),
    "a rate that is not a number": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles", PROFILES,
                                               "--rate", "nan"], "--rate: must be a number in [1e-06, 1e+06], got nan"),
    "non-numeric rate": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles", PROFILES, "--rate", "lots"],
                         "expected a number, got 'lots'"),
    "non-positive SLO": (lambda t: ["--workflow", write(t, "s.yaml", "name: s\nslo_ms: 0\nstages:\n"
                                    "  - {name: a, function: preprocess}\n"), "--profiles", PROFILES, "--rate", 10],
                         "slo_ms must be positive"),
    "unknown policy": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles", PROFILES, "--rate", 10,
                                  "--policy", "magic"], "unknown policy 'magic'"),
    "missing flag": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--rate", 10], "--profiles"),
    "bad utilisation": (lambda t: ["--workflow", WORKFLOWS / "image.yaml", "--profiles", PROFILES, "--rate", 10,
                                   "--utilisation", 2], "--utilisation: must be a number in [0.01, 1], got 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_exits_2_with_one_line_and_no_traceback(case, tmp_path):
    make_args, expected = BAD_CASES[case]
    result = esg("plan", *make_args(tmp_path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["plan", "--help"]])
def test_help(args):
    result = esg(*args)
    assert result.returncode == 0
    assert "usage: esg" in result.stdout


def test_no_subcommand_prints_help_and_exits_2():
    result = esg()
    assert result.returncode == 2 and "usage: esg" in result.stderr


def test_the_queueing_model_prices_a_burst_at_a_light_load():
    """The live image workflow's classifier at 4.32 rps and cv² 10 on the CPU
    profiles: the renewal model gives it a longer wait than Allen–Cunneen,
    the model the control law plans with (the default); a model that is
    neither is a one-line error, exit 2."""
    common = ("plan", "--workflow", ROOT / "stack.yml", "--name", "image", "--profiles",
              ROOT / "profiles/cpu-2core.json", "--rate", 4.32, "--queueing-cv2", 10, "--json")
    latency = {}
    for model in ("allen-cunneen", "renewal"):
        result = esg(*common, "--queueing-model", model)
        assert result.returncode == 0, result.stderr
        latency[model] = json.loads(result.stdout)["stages"]["classify"]["latency_ms"]
    assert latency["renewal"] > latency["allen-cunneen"]
    default = esg(*common)
    assert json.loads(default.stdout)["stages"]["classify"]["latency_ms"] == latency["allen-cunneen"]
    bad = esg(*common, "--queueing-model", "kingman")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "kingman" in bad.stderr
