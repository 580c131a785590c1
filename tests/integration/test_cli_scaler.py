"""`esg scaler` as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ESG = str(Path(sys.executable).with_name("esg"))


def esg(*args):
    return subprocess.run([ESG, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_once_with_no_reachable_metrics_changes_nothing_and_says_why():
    result = esg("scaler", "--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json",
                 "--metrics-url", "http://127.0.0.1:9/metrics", "--once")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ready"] is False and doc["last_changes"] == []
    assert "no metrics data" in doc["reasons"]["*"]


@pytest.mark.parametrize("args, message", [
    (["--stack", "nope.yml", "--profiles", "profiles/cpu-2core.json"], "no such file"),
    (["--stack", "stack.yml", "--profiles", "examples/profiles/synthetic.json"], "which has no profile"),
    (["--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json", "--interval-s", "0"], "--interval-s: must be a number in [0.1, 3600], got 0"),
    (["--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json", "--metrics-url", "gateway"], "http(s) URL"),
])
def test_bad_settings_exit_2_with_one_line(args, message):
    result = esg("scaler", *args, "--once")
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_help():
    assert "--metrics-url" in esg("scaler", "--help").stdout
