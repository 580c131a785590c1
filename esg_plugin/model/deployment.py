"""Desired state of one stage (groups of identical instances) and of one
deployed function (FunctionState).

A plan gives each stage one configuration; a deployment may run several
groups per stage (a baseline's residual instance at a smaller share, a fast
lane beside a cheap one). The simulator and the scaler apply deployments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .config import StageOption


@dataclass(frozen=True)
class FunctionState:
    """What one deployed function runs, as the platform holds it: desired
    by the scaler, read back by the actuators (one configuration for all
    of its replicas, unlike a stage's several InstanceGroups)."""

    replicas: int
    batch_size: int
    max_wait_ms: float
    gpu_share: int
    surge_batch_size: int = 0
    """The runtime's surge ceiling (0: none); see InstanceGroup."""

    @property
    def batching(self) -> tuple[int, float, int]:
        """What changes live, without a restart: (batch size, wait in ms,
        surge ceiling), the arguments of ``runtime.contract.config_update``."""
        return self.batch_size, self.max_wait_ms, self.surge_batch_size


class InstanceGroup(NamedTuple):
    """``count`` instances of one configuration of one stage."""

    batch_size: int
    gpu_share: int
    count: int
    max_wait_ms: float
    lane: int = 0
    """Which of the stage's queues the group serves (policies that route
    requests between groups use several)."""
    surge_batch_size: int = 0
    """When more than ``batch_size`` requests queue, a batch may take up to
    this many, if that is no slower per request and the oldest still makes
    its deadline (``runtime/batcher.batch_count``); 0 or ``batch_size`` or
    less: never more than ``batch_size``."""


def group_of(option: StageOption, lane: int = 0) -> InstanceGroup:
    """The group that runs a planned configuration."""
    return InstanceGroup(option.config.batch_size, option.config.gpu_share, option.replicas, option.wait_ms, lane)
