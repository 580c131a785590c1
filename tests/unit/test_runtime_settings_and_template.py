"""Runtime settings from the environment; the template and the runtime it links to."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from esg_plugin.runtime.settings import RuntimeSettings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template/esg-python3"


def test_defaults_follow_spec_section_6():
    s = RuntimeSettings.from_env({})
    assert (s.host, s.port, s.max_batch_size, s.max_wait_ms, s.max_queue, s.gpu_share_pct, s.config_token) == (
        "127.0.0.1", 5000, 1, 0.0, 1024, 100, None)
    s = RuntimeSettings.from_env({"ESG_MAX_BATCH_SIZE": "8", "ESG_MAX_WAIT_MS": "12.5", "ESG_GPU_SHARE": "30",
                                  "ESG_CONFIG_TOKEN": "t", "ESG_PORT": "8081", "ESG_MAX_QUEUE": "16"})
    assert (s.max_batch_size, s.max_wait_ms, s.gpu_share_pct, s.config_token, s.port, s.max_queue) == (
        8, 12.5, 30, "t", 8081, 16)


@pytest.mark.parametrize("env, message", [
    ({"ESG_MAX_BATCH_SIZE": "eight"}, "ESG_MAX_BATCH_SIZE must be an integer"),
    ({"ESG_MAX_BATCH_SIZE": "0"}, "ESG_MAX_BATCH_SIZE must lie in 1..4096"),
    ({"ESG_GPU_SHARE": "150"}, "ESG_GPU_SHARE must lie in 1..100"),
    ({"ESG_MAX_WAIT_MS": "-1"}, "ESG_MAX_WAIT_MS must be a number in 0..60000"),
    ({"ESG_MAX_WAIT_MS": "1e300"}, "ESG_MAX_WAIT_MS must be a number in 0..60000"),
    ({"ESG_MAX_WAIT_MS": "nan"}, "ESG_MAX_WAIT_MS must be a number in 0..60000"),
    ({"ESG_MAX_WAIT_MS": "soon"}, "ESG_MAX_WAIT_MS must be a number"),
    ({"ESG_MAX_QUEUE": "0"}, "ESG_MAX_QUEUE must lie in 1..1000000"),
    ({"ESG_CPU_THREADS": "nan"}, "ESG_CPU_THREADS must be a number in"),
    ({"ESG_CPU_THREADS": "0"}, "ESG_CPU_THREADS must be a number in"),
    ({"ESG_CPU_THREADS": "two"}, "ESG_CPU_THREADS must be a number in"),
    ({"ESG_HEAP_RETAIN_MB": "-1"}, "ESG_HEAP_RETAIN_MB must lie in 0..65536"),
    ({"ESG_HEAP_RETAIN_MB": "lots"}, "ESG_HEAP_RETAIN_MB must be an integer"),
])
def test_bad_settings_are_named(env, message):
    with pytest.raises(SettingsError, match=message):
        RuntimeSettings.from_env(env)


def test_the_template_links_to_the_one_runtime_and_a_faas_cli_copy_holds_it(tmp_path):
    # One source: the template's esg_runtime is a relative link to the package.
    link = TEMPLATE / "esg_runtime"
    assert link.is_symlink() and os.readlink(link) == "../../esg_plugin/runtime"
    assert link.resolve() == (ROOT / "esg_plugin/runtime").resolve()
    # faas-cli's `template pull` and `build` copy a template with os.Stat, which
    # follows links: the copy holds the files themselves, and they import.
    copy = tmp_path / "build"
    shutil.copytree(TEMPLATE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert not (copy / "esg_runtime").is_symlink()
    names = sorted(p.name for p in (ROOT / "esg_plugin/runtime").glob("*.py"))
    assert sorted(p.name for p in (copy / "esg_runtime").glob("*.py")) == names
    done = subprocess.run([sys.executable, "-c", "import esg_runtime.server, esg_runtime.v2; print(esg_runtime.__file__)"],
                          cwd=copy, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(copy / "esg_runtime/__init__.py")


def test_the_runtime_imports_nothing_of_the_rest_of_the_package():
    for path in (ROOT / "esg_plugin/runtime").glob("*.py"):
        text = path.read_text()
        assert "esg_plugin" not in re.sub(r'""".*?"""', "", text, flags=re.S), path
        assert not re.search(r"^from \.\.", text, flags=re.M), path


def test_template_files_follow_openfaas_conventions():
    spec = yaml.safe_load((TEMPLATE / "template.yml").read_text())
    assert spec["language"] == "esg-python3" and spec["fprocess"] == "python index.py"
    assert spec["welcome_message"].strip()
    docker = (TEMPLATE / "Dockerfile").read_text()
    for needle in ("of-watchdog", 'mode="http"', 'upstream_url="http://127.0.0.1:5000"', "USER app",
                   "AS test", "ARG BASE_IMAGE", "TEST_ENABLED", "COPY --from=watchdog /fwatchdog"):
        assert needle in docker, needle
    for path in ("index.py", "requirements.txt", "function/handler.py", "function/handler_test.py",
                 "function/requirements.txt"):
        assert (TEMPLATE / path).is_file(), path
    assert "prometheus-client" in (TEMPLATE / "requirements.txt").read_text()


def test_the_handler_is_warmed_up_with_each_batch_size_before_it_serves(tmp_path, monkeypatch):
    from esg_plugin.runtime.server import build, warmup_sizes

    assert warmup_sizes(1) == [1] and warmup_sizes(8) == [1, 2, 4, 8] and warmup_sizes(6) == [1, 2, 4, 6]
    (tmp_path / "warm_handler.py").write_text(
        "seen = []\n"
        "def warmup(batch_sizes, context):\n    seen.extend(batch_sizes)\n"
        "def handle_batch(events, context):\n    return [1 for e in events]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app, settings = build("warm_handler", {"ESG_MAX_BATCH_SIZE": "4"})
    import warm_handler

    assert warm_handler.seen == [1, 2, 4]


def test_the_heap_is_kept_as_set_and_zero_leaves_the_c_librarys_defaults():
    from esg_plugin.runtime.memory import DEFAULT_RETAIN_MB, keep_heap

    assert RuntimeSettings.from_env({}).heap_retain_mb == DEFAULT_RETAIN_MB
    assert RuntimeSettings.from_env({"ESG_HEAP_RETAIN_MB": "0"}).heap_retain_mb == 0
    assert keep_heap(0) == "glibc's defaults"
    assert keep_heap(64) in ("heap kept up to 64 MiB", "not glibc: the allocator's defaults")
