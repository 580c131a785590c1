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


def test_the_layers_name_every_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in config if c["type"] == "layers")["layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    packages = {f"esg_plugin.{p.stem if p.is_file() else p.name}" for p in (ROOT / "esg_plugin").iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem not in (
                    "__init__", "__main__"))}
    assert packages == named, (packages - named, named - packages)


def test_a_model_that_imports_the_scaler_breaks_the_layers(tmp_path):
    shutil.copytree(ROOT / "esg_plugin", tmp_path / "esg_plugin", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "esg_plugin" / "model" / "plan.py"
    target.write_text(target.read_text() + "\nfrom ..scaler import topology  # noqa\n")
    result = run_linter(tmp_path)
    assert result.returncode != 0 and "esg_plugin.model.plan -> esg_plugin.scaler" in result.stdout
