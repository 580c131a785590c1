"""The ESG scaler: gateway metrics in; replicas, batch settings and GPU
shares out through the Kubernetes API (or the gateway)."""

from .actuators import (
    Actuator, Change, DryRunActuator, GatewayActuator, KnativeActuator, KubernetesActuator,
)
from ..model import FunctionState, Topology  # the model's types the scaler works on
from .decider import Memory, ScalerDecision, decide_functions
from .service import Scaler, freeze_start_up_heap, make_http_server
from .settings import ScalerSettings, ScalerSettingsError
from .sources import GatewayScrape, Observation, PrometheusQuery, make_source

__all__ = [
    "Actuator", "Change", "DryRunActuator", "FunctionState", "GatewayActuator", "GatewayScrape",
    "KnativeActuator", "KubernetesActuator", "Memory", "Observation", "PrometheusQuery", "Scaler", "ScalerSettings",
    "ScalerDecision", "ScalerSettingsError", "Topology", "decide_functions", "freeze_start_up_heap",
    "make_http_server", "make_source",
]
