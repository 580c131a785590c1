"""Pure data of the planning model (SPEC §1–§4): no I/O, no clock."""

from .config import (
    DEFAULT_UTILISATION,
    Config,
    LeastCosts,
    OptionArrays,
    StageOption,
    all_options,
    evaluate,
    option_arrays,
    replicas_needed,
)
from .deployment import FunctionState, InstanceGroup, group_of
from .errors import ModelError
from .plan import LATENCY_TOLERANCE_MS, Plan, PlanStats, StagePlan, path_latency_ms
from .profile import FunctionProfile, ProfileSet, parse_function_profile, parse_profiles
from .topology import Topology
from .workflow import (
    ANNOTATION_AFTER,
    ANNOTATION_PROFILE,
    ANNOTATION_SLO_MS,
    ANNOTATION_STAGE,
    ANNOTATION_WORKFLOW,
    Stage,
    Workflow,
    parse_workflow,
    workflows_from_stack,
)

__all__ = [
    "ANNOTATION_AFTER",
    "ANNOTATION_PROFILE",
    "ANNOTATION_SLO_MS",
    "ANNOTATION_STAGE",
    "ANNOTATION_WORKFLOW",
    "DEFAULT_UTILISATION",
    "LATENCY_TOLERANCE_MS",
    "Config",
    "FunctionProfile",
    "FunctionState",
    "InstanceGroup",
    "LeastCosts",
    "ModelError",
    "OptionArrays",
    "Plan",
    "PlanStats",
    "ProfileSet",
    "Stage",
    "StageOption",
    "StagePlan",
    "Topology",
    "Workflow",
    "all_options",
    "evaluate",
    "group_of",
    "option_arrays",
    "parse_function_profile",
    "parse_profiles",
    "parse_workflow",
    "path_latency_ms",
    "replicas_needed",
    "workflows_from_stack",
]
