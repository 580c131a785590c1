"""Workflows: DAGs of stages, each stage one use of a function (SPEC §2).

Two sources describe the same thing: a workflow YAML document and the
``com.esg.*`` annotations of the functions in an OpenFaaS ``stack.yml``.
Both are parsed here from already-loaded data (dicts); reading files is the
job of :mod:`esg_plugin.loaders`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import networkx as nx

from ..limits import is_number
# Annotation keys of SPEC §2, plus the documented extensions hop-ms, fanout
# and profile: part of the wire contract (a function's annotations).
from ..runtime.contract import (
    ANNOTATION_AFTER, ANNOTATION_FANOUT, ANNOTATION_HOP_MS, ANNOTATION_PROFILE, ANNOTATION_SLO_MS, ANNOTATION_STAGE,
    ANNOTATION_WORKFLOW,
)
from .errors import ModelError

if TYPE_CHECKING:
    from .profile import ProfileSet


@dataclass(frozen=True)
class Stage:
    """One use of a function inside a workflow."""

    name: str
    function: str
    """Key of the function's profile in the profiles file."""
    after: tuple[str, ...] = ()
    """Stages whose output this stage consumes (its predecessors)."""
    fanout: int = 1
    """Calls of this stage per workflow request."""


@dataclass(frozen=True)
class Workflow:
    """A validated DAG of stages with an end-to-end SLO.

    Build one with :meth:`Workflow.build` (or the parsers below); the
    constructor trusts its arguments.
    """

    name: str
    slo_ms: float
    hop_ms: float
    stages: tuple[Stage, ...]
    graph: nx.DiGraph = field(compare=False, repr=False)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """A deterministic topological order (file order breaks ties)."""

    @staticmethod
    def build(name: str, slo_ms: float, stages: Iterable[Stage], hop_ms: float = 0.0) -> "Workflow":
        stages = tuple(stages)
        where = f"workflow '{name}'"
        if not isinstance(name, str) or not name:
            raise ModelError("a workflow needs a non-empty 'name'")
        slo_ms = _number(slo_ms, f"{where}: slo_ms")
        if slo_ms <= 0:
            raise ModelError(f"{where}: slo_ms must be positive, got {slo_ms:g}")
        hop_ms = _number(hop_ms, f"{where}: hop_ms")
        if hop_ms < 0:
            raise ModelError(f"{where}: hop_ms must not be negative, got {hop_ms:g}")
        if not stages:
            raise ModelError(f"{where} has no stages")
        graph = nx.DiGraph()
        for stage in stages:
            if stage.name in graph:
                raise ModelError(f"{where}: duplicate stage name '{stage.name}'")
            if not isinstance(stage.fanout, int) or isinstance(stage.fanout, bool) or stage.fanout < 1:
                raise ModelError(f"{where}: stage '{stage.name}': fanout must be an integer >= 1, got {stage.fanout!r}")
            graph.add_node(stage.name, stage=stage)
        for stage in stages:
            for before in stage.after:
                if before not in graph:
                    raise ModelError(f"{where}: stage '{stage.name}' comes after '{before}', which is not a stage of the workflow")
                if before == stage.name:
                    raise ModelError(f"{where}: stage '{stage.name}' comes after itself")
                graph.add_edge(before, stage.name)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
            raise ModelError(f"{where} has a cycle: {path}")
        position = {s.name: i for i, s in enumerate(stages)}
        order = tuple(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
        return Workflow(name=name, slo_ms=slo_ms, hop_ms=hop_ms, stages=stages, graph=graph, order=order)

    # --- queries -----------------------------------------------------------
    def stage(self, name: str) -> Stage:
        return self.graph.nodes[name]["stage"]

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def entries(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if self.graph.in_degree(s.name) == 0)

    @property
    def exits(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if self.graph.out_degree(s.name) == 0)

    def paths(self) -> tuple[tuple[str, ...], ...]:
        """Every entry-to-exit path, each a tuple of stage names (kept per
        workflow: its graph does not change)."""
        return _paths(self)

    def topological_order(self) -> list[str]:
        """Stages in a deterministic topological order (file order breaks ties)."""
        return list(self.order)

    def is_chain(self) -> bool:
        """True when the stages form one path (entry -> ... -> exit)."""
        return all(self.graph.in_degree(n) <= 1 and self.graph.out_degree(n) <= 1 for n in self.graph) and (
            nx.is_weakly_connected(self.graph)
        )

    def functions(self) -> set[str]:
        return {s.function for s in self.stages}

    def check_profiles(self, profiles: "ProfileSet") -> None:
        """ModelError naming the first stage whose function has no profile."""
        for s in self.stages:
            if s.function not in profiles:
                known = ", ".join(sorted(profiles.functions)) or "none"
                raise ModelError(
                    f"workflow '{self.name}': stage '{s.name}' uses function '{s.function}', "
                    f"which has no profile (profiles hold: {known})"
                )

    def downstream_of(self, stage_name: str) -> "Workflow":
        """The sub-workflow of the stages strictly after ``stage_name``.

        Its SLO is a placeholder (the full SLO); the replanner sets the budget.
        Edges from stages outside the sub-workflow are dropped.
        """
        if stage_name not in self.graph:
            raise ModelError(f"workflow '{self.name}' has no stage '{stage_name}'")
        below = nx.descendants(self.graph, stage_name)
        if not below:
            raise ModelError(f"workflow '{self.name}': stage '{stage_name}' is an exit; nothing is downstream of it")
        stages = [
            Stage(s.name, s.function, tuple(a for a in s.after if a in below), s.fanout)
            for s in self.stages
            if s.name in below
        ]
        return Workflow.build(self.name, self.slo_ms, stages, self.hop_ms)

    def to_dict(self) -> dict[str, Any]:
        """The workflow YAML document of SPEC §2 (as a dict)."""
        out: dict[str, Any] = {"name": self.name, "slo_ms": self.slo_ms, "hop_ms": self.hop_ms, "stages": []}
        for s in self.stages:
            entry: dict[str, Any] = {"name": s.name, "function": s.function}
            if s.after:
                entry["after"] = list(s.after)
            if s.fanout != 1:
                entry["fanout"] = s.fanout
            out["stages"].append(entry)
        return out


PATH_CACHE_WORKFLOWS = 256
"""Workflows whose paths are kept (:meth:`Workflow.paths`)."""


@functools.lru_cache(maxsize=PATH_CACHE_WORKFLOWS)
def _paths(workflow: Workflow) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(path) for entry in workflow.entries for exit_ in workflow.exits
                 for path in (nx.all_simple_paths(workflow.graph, entry, exit_) if entry != exit_ else [[entry]]))


def _number(value: Any, what: str) -> float:
    if not is_number(value):
        raise ModelError(f"{what} must be a number, got {value!r}")
    return float(value)


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ModelError(f"{what} must be a list of stage names, got {value!r}")
    return tuple(value)


def parse_workflow(data: Any) -> Workflow:
    """A workflow from the YAML document of SPEC §2, already loaded."""
    if not isinstance(data, Mapping):
        raise ModelError("a workflow must be a mapping with 'name', 'slo_ms' and 'stages'")
    unknown = set(data) - {"name", "slo_ms", "hop_ms", "stages", "description"}
    if unknown:
        raise ModelError(f"unknown workflow field(s): {', '.join(sorted(map(str, unknown)))}")
    for key in ("name", "slo_ms", "stages"):
        if key not in data:
            raise ModelError(f"workflow is missing '{key}'")
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise ModelError(f"workflow 'name' must be a non-empty string, got {name!r}")
    raw_stages = data["stages"]
    if not isinstance(raw_stages, list):
        raise ModelError(f"workflow '{name}': 'stages' must be a list")
    stages = []
    for i, raw in enumerate(raw_stages):
        where = f"workflow '{name}': stage #{i + 1}"
        if not isinstance(raw, Mapping):
            raise ModelError(f"{where} must be a mapping with 'name' and 'function'")
        unknown = set(raw) - {"name", "function", "after", "fanout"}
        if unknown:
            raise ModelError(f"{where}: unknown field(s): {', '.join(sorted(map(str, unknown)))}")
        stage_name = raw.get("name")
        function = raw.get("function")
        if not isinstance(stage_name, str) or not stage_name:
            raise ModelError(f"{where}: 'name' must be a non-empty string")
        if not isinstance(function, str) or not function:
            raise ModelError(f"workflow '{name}': stage '{stage_name}': 'function' must be a non-empty string")
        after = _str_list(raw.get("after"), f"workflow '{name}': stage '{stage_name}': after")
        stages.append(Stage(stage_name, function, after, raw.get("fanout", 1)))
    return Workflow.build(name, data["slo_ms"], stages, data.get("hop_ms", 0.0))


def _annotation_number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ModelError(f"{what} must be a number, got {value!r}") from None


def workflows_from_stack(data: Any) -> dict[str, Workflow]:
    """Workflows described by the ``com.esg.*`` annotations of a stack.yml.

    Functions without ``com.esg.workflow`` are ignored. A stage's name is
    ``com.esg.stage`` (default: the function name), its profile key is
    ``com.esg.profile`` (default: the function name). ``com.esg.slo-ms`` may
    sit on any stage of the workflow; where several stages carry it, they must
    agree. ``com.esg.hop-ms`` and ``com.esg.fanout`` are optional extensions.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("functions"), Mapping):
        raise ModelError("a stack file must be a mapping with a 'functions' mapping")
    grouped: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for fn_name, spec in data["functions"].items():
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise ModelError(f"function '{fn_name}' must be a mapping")
        annotations = spec.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            raise ModelError(f"function '{fn_name}': annotations must be a mapping")
        wf = annotations.get(ANNOTATION_WORKFLOW)
        if wf is None:
            continue
        grouped.setdefault(str(wf), []).append((str(fn_name), annotations))
    if not grouped:
        raise ModelError(f"no function in the stack file carries a '{ANNOTATION_WORKFLOW}' annotation")
    workflows = {}
    for wf_name, members in grouped.items():
        slo_values = set()
        hop_values = set()
        stages = []
        for fn_name, ann in members:
            where = f"function '{fn_name}'"
            if ANNOTATION_SLO_MS in ann:
                slo_values.add(_annotation_number(ann[ANNOTATION_SLO_MS], f"{where}: {ANNOTATION_SLO_MS}"))
            if ANNOTATION_HOP_MS in ann:
                hop_values.add(_annotation_number(ann[ANNOTATION_HOP_MS], f"{where}: {ANNOTATION_HOP_MS}"))
            after_text = str(ann.get(ANNOTATION_AFTER, "") or "")
            after = tuple(a.strip() for a in after_text.split(",") if a.strip())
            fanout_raw = ann.get(ANNOTATION_FANOUT, 1)
            try:
                fanout = int(fanout_raw)
            except (TypeError, ValueError):
                raise ModelError(f"{where}: {ANNOTATION_FANOUT} must be an integer, got {fanout_raw!r}") from None
            stages.append(
                Stage(
                    name=str(ann.get(ANNOTATION_STAGE, fn_name)),
                    function=str(ann.get(ANNOTATION_PROFILE, fn_name)),
                    after=after,
                    fanout=fanout,
                )
            )
        if not slo_values:
            raise ModelError(f"workflow '{wf_name}': no function carries '{ANNOTATION_SLO_MS}'")
        if len(slo_values) > 1:
            raise ModelError(f"workflow '{wf_name}': functions disagree on {ANNOTATION_SLO_MS}: {sorted(slo_values)}")
        if len(hop_values) > 1:
            raise ModelError(f"workflow '{wf_name}': functions disagree on {ANNOTATION_HOP_MS}: {sorted(hop_values)}")
        workflows[wf_name] = Workflow.build(wf_name, slo_values.pop(), stages, hop_values.pop() if hop_values else 0.0)
    return workflows
