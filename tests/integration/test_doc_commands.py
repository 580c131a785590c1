"""Every command printed in README.md and docs/ runs as printed, or the
reason it is not run here is written below. The commands are collected
from the fenced blocks of the Markdown files; a command nobody classified
fails the first test, so a new one in the docs cannot go unchecked."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMMAND = re.compile(r"^(\$ )?(\.venv/bin/)?(esg|make|python|\.venv/bin/python|curl|kubectl|helm|faas-cli|docker|"
                     r"deploy/|bash|pip|git|mkdir)\b")

#: (pattern, None to run it, or why it is not run here). First match wins.
CLASSIFIED = [
    (r"^make (run|test|evaluate)\b", "the suite itself, or minutes of work (make run: esg up, tests/integration/test_up.py)"),
    (r"^deploy/minikube/", "needs minikube and Docker (a cluster; tests/e2e when one exists)"),
    (r"^(faas-cli|docker)\b", "faas-cli and Docker are not installed here (build and deploy need a Docker daemon "
                              "and a cluster); tests/integration/test_functions.py runs the template folder as built"),
    (r"^(mkdir|cd)\b", "makes a folder of your own for the functions"),
    (r"^(kubectl|helm|curl)\b", "needs a cluster or an OpenFaaS gateway"),
    (r"^esg profile\b", "measures every function for minutes; tests/integration/test_profile.py runs it on two"),
    (r"^esg up\b", "runs the platform for minutes; tests/integration/test_up.py runs it"),
    (r"^esg scaler --config deploy/scaler-base/scaler\.yaml", "the in-cluster settings: stack and profiles under /etc/esg"),
    (r"^esg scaler\b", "needs a gateway's metrics on 127.0.0.1:8082 (esg up, or a cluster); "
                       "tests/integration/test_cli_scaler.py runs it against one"),
    (r"^python bench/robustness\.py --cases 30\b", "seven minutes (make evaluate)"),
    (r"^python bench/robustness\.py .*--family wide", "four minutes (make evaluate); tests/unit/test_sim.py "
                                                        "checks the family's draws"),
    (r"^python bench/robustness\.py .*--family extreme", "four minutes (make evaluate); tests/unit/test_sim.py "
                                                           "checks the family's draws and runs its first workloads"),
    (r"^python bench/robustness\.py .*queue_quantile", "the same run as the one before it, with one setting changed"),
    (r"^python bench/robustness\.py .*--profile-error", "two minutes each (make evaluate runs --profile-error 2); "
                                                         "tests/unit/test_sim.py checks the draws and the calibration"),
    (r"^esg (plan|simulate)\b", None),
    (r"^python bench/robustness\.py\b", None),
]


def documented_commands():
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if COMMAND.match(line.strip()):
                    found.append((path.relative_to(ROOT), _as_run(line)))
    return found


def _as_run(line: str) -> str:
    """The command as a user types it: no prompt, no comment, no [optional]
    parts, the virtual environment's bin/ implied, spaces collapsed."""
    text = re.sub(r"\s+#(?!\S*['\"]).*$", "", line.strip())
    text = re.sub(r"^\$ ", "", text)
    text = re.sub(r"\s*\[[^\]]*\]", "", text)
    text = re.sub(r"(^|\s)\.venv/bin/", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def _classify(command: str):
    for pattern, reason in CLASSIFIED:
        if re.search(pattern, command):
            return pattern, reason
    return None, None


COMMANDS = documented_commands()


def test_the_docs_print_commands_and_each_is_classified():
    assert len(COMMANDS) >= 20
    unclassified = [f"{path}: {command}" for path, command in COMMANDS if _classify(command)[0] is None]
    assert not unclassified, "classify in CLASSIFIED (run it, or say why not):\n" + "\n".join(unclassified)


RUN = sorted({command for _, command in COMMANDS if _classify(command)[0] is not None and _classify(command)[1] is None})


@pytest.mark.parametrize("command", RUN)
def test_a_cheap_documented_command_runs_as_printed(command):
    argv = shlex.split(command)
    if argv[0] == "esg":
        argv[0] = str(BIN / "esg")
    elif argv[0] == "python":
        argv[0] = sys.executable
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    # esg plan exits 3 when no plan meets the SLO (documented); anything else is a failure
    assert done.returncode in (0, 3), f"{command}\n{done.stderr[-2000:]}"
    assert done.stdout.strip()
