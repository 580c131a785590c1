"""Reading workflow, stack and profile files into model values.

The only file I/O of the planning side. Every failure, from a missing file
to a cycle in the DAG, becomes one :class:`LoadError` whose message starts
with the file's path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import ESGError
from .limits import MAX_FILE_BYTES, MAX_NESTING, LimitError, check_document
from .model import ModelError, ProfileSet, Topology, Workflow, parse_profiles, parse_workflow, workflows_from_stack


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


class WatchedFiles:
    """Files a running service reads again when they change — as a
    ConfigMap mounted in its pod changes in place when the user updates it
    (the kubelet swaps the mounted files within a minute or so), and as
    Prometheus reloads its configuration or Knative's autoscaler its
    ConfigMaps. A change is noticed by the files' identity, size and time
    of change (``os.stat``, which follows the kubelet's symbolic links),
    checked at each :meth:`poll`. A subclass says what loading them is
    (``_read``)."""

    def __init__(self, *paths: str | Path):
        self.paths = tuple(str(path) for path in paths)
        self._seen: Optional[tuple] = None

    def load(self):
        """What the files say now; a ``LoadError`` where they do not load."""
        seen = self._signature()
        loaded = self._read()
        self._seen = seen
        return loaded

    def poll(self) -> tuple[Optional[Any], Optional[str]]:
        """(what :meth:`load` gives, where the files changed since it last
        loaded them; why not, where they changed and do not load): (None,
        None) where nothing changed. A change that does not load is said
        once: those files are not read again until they change again."""
        seen = self._signature()
        if seen == self._seen:
            return None, None
        try:
            return self.load(), None
        except LoadError as err:
            self._seen = seen
            return None, str(err)

    def _read(self):
        raise NotImplementedError

    def _signature(self) -> tuple:
        out: list = []
        for path in self.paths:
            try:
                st = os.stat(path)
                out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError as err:  # gone for a moment (the kubelet's swap) or for good: a change that does not load
                out.append(type(err).__name__)
        return tuple(out)


class StackFiles(WatchedFiles):
    """The stack file and the profiles file a scaler plans from, read again
    when they change: the scaler then plans the new workflows without a
    restart. :meth:`load` gives (the stack's topology, the profiles); a
    ``LoadError`` where they do not load or a workflow's stage has no
    profile."""

    def __init__(self, stack_path: str | Path, profiles_path: str | Path):
        super().__init__(stack_path, profiles_path)

    def _read(self) -> tuple[Topology, ProfileSet]:
        stack_path, profiles_path = self.paths
        data = read_yaml(stack_path)
        try:
            topology = Topology.from_stack(data)
        except ModelError as err:
            raise LoadError(f"{stack_path}: {err}") from None
        profiles = load_profiles(profiles_path)
        for workflow in topology.workflows.values():
            try:
                workflow.check_profiles(profiles)
            except ModelError as err:
                raise LoadError(f"{profiles_path}: {err}") from None
        return topology, profiles


class SettingsFile(WatchedFiles):
    """The scaler's settings file, read again when it changes; each read
    takes the environment's ``ESG_SCALER_*`` and the command line's flags
    over it, as at start. :meth:`load` gives the ``ScalerSettings``; a
    ``LoadError`` where the file does not load or a setting is wrong."""

    def __init__(self, path: str | Path, env: dict, overrides: dict):
        super().__init__(path)
        self.env, self.overrides = dict(env), dict(overrides)

    def _read(self):
        from .scaler.settings import ScalerSettings, ScalerSettingsError  # only the scaler reads its settings

        data = read_yaml(self.paths[0])
        if data is not None and not isinstance(data, dict):
            raise LoadError(f"{self.paths[0]}: the settings must be a mapping")
        try:
            return ScalerSettings.load(data, self.env, self.overrides)
        except ScalerSettingsError as err:
            raise LoadError(f"{self.paths[0]}: {err}") from None


def load_workload(path: str | Path):
    """A simulator workload (SPEC §7); workflow paths inside it are relative to it."""
    from .sim.workload import WorkloadError, parse_workload  # the planning side does not need the simulator

    data = read_yaml(path)
    path = Path(path)
    try:
        return parse_workload(data, path.parent, path.stem, lambda p: load_workflow(p))
    except WorkloadError as err:
        raise LoadError(f"{path}: {err}") from None
