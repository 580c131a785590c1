"""The discrete-event simulator, its workloads, policies and reports."""

from .engine import Deployment, PlanChange, Policy, RunResult, SimConfig, Simulator, View, simulate
from .policies import POLICY_NAMES, make_policy
from .workload import Arrivals, Workload, WorkloadError, parse_workload

__all__ = [
    "POLICY_NAMES",
    "Arrivals",
    "Deployment",
    "PlanChange",
    "Policy",
    "RunResult",
    "SimConfig",
    "Simulator",
    "View",
    "Workload",
    "WorkloadError",
    "make_policy",
    "parse_workload",
    "simulate",
]
