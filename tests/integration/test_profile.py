"""`esg profile` measures real handlers in fresh processes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from esg_plugin.loaders import load_profiles

pytest.importorskip("torch")
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ESG = str(Path(sys.executable).with_name("esg"))


def esg(*args):
    return subprocess.run([ESG, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_two_functions_two_batch_sizes_two_shares(tmp_path):
    out = tmp_path / "p.json"
    result = esg("profile", "--functions", "functions", "--names", "resnet18,bert-mini", "--batch-sizes", "1,4",
                 "--shares", "50,100", "--repetitions", 3, "--warmup", 1, "--out", out)
    assert result.returncode == 0, result.stderr
    profiles = load_profiles(out)  # valid SPEC §1
    doc = json.loads(out.read_text())
    assert doc["device"].startswith("cpu-") and doc["device_info"]["torch_version"].startswith("2.13.0")
    assert doc["device_info"]["cores"] >= 1 and doc["device_info"]["cpu_model"]
    assert doc["measured_by"]["statistic"] == "median"
    for name in ("resnet18", "bert-mini"):
        p = profiles[name]
        assert p.batch_sizes == (1, 4) and p.gpu_shares == (50, 100)
        # measured, positive, finite values (no ordering asserted: on a busy machine a batch of 1 can take
        # longer than a batch of 4 measured a moment later; speed is for bench/, not for tests)
        assert all(0 < v < 60_000 for row in p.latency_ms for v in row)
        assert len(doc["functions"][name]["raw_latency_ms"]["4"]["100"]) == 3
        assert p.cold_start_ms > 0
    # what the runtime runs: resnet18 takes binary V2 tensors; bert-mini only JSON
    assert doc["measured_by"]["paths"] == {"resnet18": "v2-binary", "bert-mini": "json"}
    assert doc["measured_by"]["share_mechanism"] == "cpu-threads"


@pytest.mark.parametrize("args, message", [
    (["--functions", "nowhere"], "no such folder"),
    (["--functions", "functions", "--names", "gpt5"], "unknown function(s) gpt5"),
    (["--functions", "functions", "--names", "resnet18", "--batch-sizes", "4,2"], "strictly increasing"),
    (["--functions", "functions", "--names", "resnet18", "--shares", "0,100"], "shares must lie in 1..100"),
    # a batch no runtime runs was profiled, and the worker died without a word
    (["--functions", "functions", "--names", "resnet18", "--batch-sizes", "1,100000000"],
     "batch sizes must lie in 1..4096"),
    (["--functions", "functions", "--batch-sizes", "one"], "expected comma-separated integers"),
    (["--functions", "functions", "--share-mechanism", "vgpu"], "invalid choice: 'vgpu'"),
])
def test_bad_arguments_exit_2_with_one_line(args, message):
    result = esg("profile", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_failing_function_loses_nothing_measured_and_plain_handlers_are_passed_over(tmp_path):
    """`esg profile --functions functions` once failed after minutes on the
    router (no handle_batch) and threw away what it had measured."""
    from esg_plugin.profiler import discover

    assert "router" not in discover(ROOT / "functions")
    root = tmp_path / "fns"
    for name, body in {"good": "def handle_batch(events, context):\n    return [b'ok' for _ in events]\n",
                       "broken": "def handle_batch(events, context):\n    raise RuntimeError('no model here')\n",
                       "plain": "def handle(event, context):\n    return 'not batched'\n"}.items():
        (root / name).mkdir(parents=True)
        (root / name / "handler.py").write_text(body)
    out = tmp_path / "p.json"
    result = esg("profile", "--functions", root, "--batch-sizes", "1,2", "--shares", "100", "--repetitions", 2,
                 "--warmup", 0, "--out", out)
    assert result.returncode == 1
    assert "not measured: profiling broken at share 100% failed" in result.stderr
    doc = json.loads(out.read_text())
    assert set(doc["functions"]) == {"good"} and set(doc["measured_by"]["failed"]) == {"broken"}
    assert set(load_profiles(out).functions) == {"good"}  # a valid profiles file of what was measured
    plain = esg("profile", "--functions", root / "plain")
    assert plain.returncode == 2 and "defines no handle_batch" in plain.stderr
