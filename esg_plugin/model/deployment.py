"""Desired state of one stage (groups of identical instances) and of one
deployed function (FunctionState).

A plan gives each stage one configuration; a deployment may run several
groups per stage (a baseline's residual instance at a smaller share, a fast
lane beside a cheap one). The simulator and the scaler apply deployments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

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
    ready_replicas: Optional[int] = field(default=None, compare=False)
    """Read back only: the replicas in service now (a Deployment's
    ``status.readyReplicas``, the OpenFaaS gateway's ``availableReplicas``,
    the embedded platform's workers in the rotation); None where the
    platform does not say. Not part of the desired state: not compared."""
    unplaced_replicas: Optional[int] = field(default=None, compare=False)
    """Read back only: the replicas the platform found no room for (pods
    ``Pending`` with ``PodScheduled`` false, reason ``Unschedulable``);
    None where the platform does not say. Not compared."""

    @property
    def starting(self) -> Optional[int]:
        """Replicas wanted and not yet in service (None: not known)."""
        if self.ready_replicas is None:
            return None
        return max(0, self.replicas - self.ready_replicas)


class InstanceGroup(NamedTuple):
    """``count`` instances of one configuration of one stage."""

    batch_size: int
    gpu_share: int
    count: int
    max_wait_ms: float
    lane: int = 0
    """Which of the stage's queues the group serves (policies that route
    requests between groups use several)."""


def group_of(option: StageOption, lane: int = 0) -> InstanceGroup:
    """The group that runs a planned configuration."""
    return InstanceGroup(option.config.batch_size, option.config.gpu_share, option.replicas, option.wait_ms, lane)
