"""Which deployed function runs which stage of which workflow, from the
``com.esg.*`` annotations of a stack.yml (SPEC §2). Read by the scaler,
the router and ``esg up``; parsed from already-loaded data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .workflow import ANNOTATION_STAGE, ANNOTATION_WORKFLOW, Workflow, workflows_from_stack


@dataclass(frozen=True)
class Topology:
    workflows: Mapping[str, Workflow]
    functions: Mapping[tuple[str, str], str]
    """(workflow, stage) -> deployed function name."""

    @staticmethod
    def from_stack(data: Any) -> "Topology":
        workflows = workflows_from_stack(data)
        functions = {}
        for name, spec in data["functions"].items():
            annotations = (spec or {}).get("annotations") or {}
            if ANNOTATION_WORKFLOW in annotations:
                functions[(str(annotations[ANNOTATION_WORKFLOW]), str(annotations.get(ANNOTATION_STAGE, name)))] = name
        return Topology(workflows, functions)

    def entry_functions(self, workflow: str) -> list[str]:
        wf = self.workflows[workflow]
        return [self.functions[(workflow, s)] for s in wf.entries]
