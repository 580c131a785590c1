"""Reading workflow, stack and profile files into model values.

The only file I/O of the planning side. Every failure, from a missing file
to a cycle in the DAG, becomes one :class:`LoadError` whose message starts
with the file's path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import ESGError
from .limits import MAX_FILE_BYTES, MAX_NESTING, LimitError, check_document
from .model import ModelError, ProfileSet, Workflow, parse_profiles, parse_workflow, workflows_from_stack


class LoadError(ESGError, ValueError):
    """A file that cannot be read or does not hold what it should."""


def _read_text(path: str | Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise LoadError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise LoadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LoadError(f"{path}: is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LoadError(f"{path}: cannot read: {err}") from None


def _flow_depth(text: str) -> int:
    """The deepest nesting of brackets and braces (strings not excluded: an
    over-estimate, checked before a parser recurses into it)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def _check_nesting(path: str | Path, text: str) -> None:
    if _flow_depth(text) > MAX_NESTING or max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()),
                                              default=0) > 8 * MAX_NESTING:
        raise LoadError(f"{path}: nested deeper than {MAX_NESTING} levels")


def _checked(path: str | Path, data: Any) -> Any:
    try:
        check_document(data, str(path))
    except LimitError as err:
        raise LoadError(str(err)) from None
    return data


def read_yaml(path: str | Path) -> Any:
    text = _read_text(path)
    _check_nesting(path, text)
    try:
        return _checked(path, yaml.safe_load(text))
    except RecursionError:
        raise LoadError(f"{path}: nested too deeply") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise LoadError(f"{path}: not valid YAML: {problem}{where}") from None


def read_json(path: str | Path) -> Any:
    text = _read_text(path)
    _check_nesting(path, text)
    try:
        return _checked(path, json.loads(text))
    except RecursionError:
        raise LoadError(f"{path}: nested too deeply") from None
    except json.JSONDecodeError as err:
        raise LoadError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None


def is_stack(data: Any) -> bool:
    """A stack.yml (faas-cli) rather than a workflow document."""
    return isinstance(data, dict) and "functions" in data and "stages" not in data


def load_workflows(path: str | Path) -> dict[str, Workflow]:
    """Every workflow in a workflow YAML (one) or a stack.yml (one per
    ``com.esg.workflow`` annotation), by name."""
    data = read_yaml(path)
    try:
        if is_stack(data):
            return workflows_from_stack(data)
        workflow = parse_workflow(data)
        return {workflow.name: workflow}
    except ModelError as err:
        raise LoadError(f"{path}: {err}") from None


def load_workflow(path: str | Path, name: Optional[str] = None) -> Workflow:
    """One workflow; ``name`` picks one out of a stack.yml that has several."""
    workflows = load_workflows(path)
    if name is not None:
        if name not in workflows:
            raise LoadError(f"{path}: no workflow named '{name}' (found: {', '.join(sorted(workflows))})")
        return workflows[name]
    if len(workflows) > 1:
        raise LoadError(f"{path} describes several workflows ({', '.join(sorted(workflows))}); pick one with --name")
    return next(iter(workflows.values()))


def load_profiles(path: str | Path) -> ProfileSet:
    data = read_json(path)
    try:
        return parse_profiles(data)
    except ModelError as err:
        raise LoadError(f"{path}: {err}") from None


def load_workload(path: str | Path):
    """A simulator workload (SPEC §7); workflow paths inside it are relative to it."""
    from .sim.workload import WorkloadError, parse_workload  # the planning side does not need the simulator

    data = read_yaml(path)
    path = Path(path)
    try:
        return parse_workload(data, path.parent, path.stem, lambda p: load_workflow(p))
    except WorkloadError as err:
        raise LoadError(f"{path}: {err}") from None
