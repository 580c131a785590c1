"""Actuators: apply only what differs between the desired and the current
state of each function, and report each change.

- ``openfaas-kubernetes``: the function's Deployment. Replicas through the
  scale subresource; the GPU share through the pod template (env
  ``ESG_GPU_SHARE`` and ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``, or HAMi's
  ``nvidia.com/gpucores`` and ``nvidia.com/gpumem`` limits) — re-applied
  whenever a redeploy with faas-cli has wiped it; batch size and timeout as
  Deployment annotations (no restart) and pushed live to every pod's
  ``/_esg/config``.
- ``knative``: the Knative Service's ``autoscaling.knative.dev/min-scale``
  and ``max-scale`` and the container env.
- ``openfaas-gateway``: replicas only, ``POST /system/scale-function/<name>``.
- ``dry-run``: remembers and reports, changes nothing.

Reading back (``current``), the Deployment's ``status.readyReplicas`` and
the gateway's ``availableReplicas`` give ``FunctionState.ready_replicas``:
the control law's bridge lasts while added replicas are not yet ready
(``docs/control.md`` point 4); for Knative, the ``status.actualReplicas``
of the revisions that serve the Service (the latest created, and the
latest ready while a new one rolls out). Both count the pods the scheduler
found no room for (``unplaced_replicas``: pending, ``Unschedulable``).

API failures are named (``errors.py``: NotFound, Conflict, Invalid,
Forbidden, Unavailable, TimedOut, NotAsked); a Conflict is retried after
reading again, an Unavailable server with exponential backoff; NotFound
means the function is gone. Every call waits at most ``api_timeout_s`` for
an answer, and once one of an iteration goes unanswered the iteration makes
no more (``base.ApiCalls``): a stalled server costs an iteration one
timeout.
"""

from .base import BATCHING, ERROR, GONE, GPU_SHARE, REPLICAS, Actuator, ApiActuator, Change, DryRunActuator, \
    diff_states, read_states, retrying
from .errors import ApiError, Conflict, Forbidden, Invalid, NotAsked, NotFound, TimedOut, Unavailable, Unreadable, \
    api_error
from .gateway import GatewayActuator
from .knative import KnativeActuator
from .kubernetes import KubernetesActuator

__all__ = ["BATCHING", "ERROR", "GONE", "GPU_SHARE", "REPLICAS", "ApiError", "Conflict", "Forbidden", "Invalid",
           "NotAsked", "NotFound", "TimedOut", "Unavailable", "Unreadable", "api_error", "Actuator", "ApiActuator",
           "Change", "DryRunActuator", "GatewayActuator", "KnativeActuator", "KubernetesActuator", "diff_states",
           "read_states", "retrying"]
