"""The wire contract (esg_plugin/runtime/contract.py) is spelled in one place:
no string of it appears in the product's code outside that module.

Checked: every string constant that is not a docstring, f-string parts
included, in esg_plugin/, functions/ (they run on the template, where the
contract is ``esg_runtime.contract``; ``esg profile`` gives them the same),
deploy/ and bench/. Not checked: tests (they spell the contract from
outside, on purpose), Markdown and YAML (a user's stack.yml spells its
annotations).

The JSON keys of the live configuration (max_batch_size, max_wait_ms,
gpu_share ...) are also the plan's own field names — one name per concept —
so they are checked in the code that speaks the configuration endpoint (every
file that uses CONFIG_PATH), not in a plan's report.
"""

import ast
import re
from pathlib import Path

from esg_plugin.runtime import contract

ROOT = Path(__file__).resolve().parents[2]
SCOPE = ("esg_plugin", "functions", "deploy", "bench")
CONTRACT = ROOT / "esg_plugin/runtime/contract.py"


def _values(prefixes):
    return {name: value for name, value in vars(contract).items()
            if name.isupper() and isinstance(value, str) and name.startswith(prefixes)}


DISTINCT = _values(("ENV_", "HEALTH_", "METRICS_", "CONFIG_PATH", "CONTROL_", "METRIC_", "ANNOTATION_")
                   + tuple(n for n in vars(contract) if n.endswith("_HEADER")))
CONFIG_KEYS = _values(("CONFIG_MAX", "CONFIG_GPU", "CONFIG_RESTART"))


def _strings(tree):
    """Every string constant that is code, not prose: a string standing alone
    as a statement (a docstring, or an attribute's docstring) is prose."""
    prose = {id(stmt.value) for node in ast.walk(tree) for field in ("body", "orelse", "finalbody")
             if isinstance(getattr(node, field, None), list) for stmt in getattr(node, field)
             if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)}
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose]


def _pattern(name, value):
    # a Prometheus histogram's series carry suffixes: they spell the name too
    suffix = r"(?:_sum|_count|_bucket)?" if name.startswith("METRIC_") else ""
    return re.compile(r"(?<![\w.\-/])" + re.escape(value) + suffix + r"(?![\w\-])")


def _files():
    for folder in SCOPE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.resolve() != CONTRACT.resolve() and ".venv" not in path.parts:
                yield path


def _violations():
    found = []
    patterns = {name: _pattern(name, value) for name, value in DISTINCT.items()}
    key_patterns = {name: _pattern(name, value) for name, value in CONFIG_KEYS.items()}
    for path in _files():
        text = path.read_text()
        speaks_config = "CONFIG_PATH" in text
        for node in _strings(ast.parse(text)):
            checks = dict(patterns)
            if speaks_config:
                checks.update(key_patterns)
            for name, pattern in checks.items():
                if pattern.search(node.value):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r} spells contract.{name}")
    return found


def test_no_string_of_the_wire_contract_is_spelled_outside_its_module():
    found = _violations()
    assert not found, "use esg_plugin.runtime.contract (esg_runtime.contract in a function):\n" + "\n".join(found)


def test_the_check_bites():
    tree = ast.parse('"""doc ESG_PORT"""\nx = "ESG_PORT"\ny = f"{a} ESG_PORT!"\nz = "XESG_PORT"\n'
                     'def f():\n    "ESG_PORT in prose"\n')
    assert [n.value for n in _strings(tree) if _pattern("ENV_PORT", "ESG_PORT").search(n.value)] == [
        "ESG_PORT", " ESG_PORT!"]
    exec_seconds = _pattern("METRIC_EXEC_SECONDS", contract.METRIC_EXEC_SECONDS)
    assert exec_seconds.search("esg_exec_seconds_sum") and not exec_seconds.search("esg_exec_seconds_total2")


def test_every_value_of_the_contract_is_distinct():
    values = [v for n, v in vars(contract).items() if n.isupper() and isinstance(v, str)]
    assert len(values) == len(set(values))


def test_a_stages_timing_is_the_longest_call_and_no_number_outside_its_range_is_believed():
    from esg_plugin.runtime.contract import EXEC_MS_HEADER, QUEUE_MS_HEADER, stage_timing

    calls = [{QUEUE_MS_HEADER: "1.5", EXEC_MS_HEADER: "20"}, {QUEUE_MS_HEADER: "4", EXEC_MS_HEADER: "nan"},
             {QUEUE_MS_HEADER: "-3", EXEC_MS_HEADER: "inf"}, {}, None]
    assert stage_timing(calls) == {"queue_ms": 4.0, "exec_ms": 20.0}
    assert stage_timing([{EXEC_MS_HEADER: "x"}]) == {}  # nothing believable: nothing said
