"""The import-linter contracts of pyproject.toml hold, and they can fail."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def run_linter(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_contracts_are_kept():
    result = run_linter(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout, result.stdout


def test_a_planner_that_reads_the_clock_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "esg_plugin", tmp_path / "esg_plugin", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "esg_plugin" / "planner" / "astar.py"
    target.write_text("import time\n" + target.read_text())
    result = run_linter(tmp_path)
    assert result.returncode != 0
    assert "esg_plugin.planner.astar -> time" in result.stdout
