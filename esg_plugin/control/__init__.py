"""The one control law (``docs/control.md``): pure, with an injected clock.

The simulator's ``esg`` and ``optimal`` policies, ``esg scaler`` and
``esg up`` all decide through :class:`ControlLaw`; they differ only in how
they observe and how they act.
"""

from .delay import DelayWindow
from .errors import ControlError
from .law import ControlLaw
from .observation import MAX_RATE_RPS, Observation, WorkflowObservation, gap_cv2
from .rate import step_detected
from .settings import ABLATIONS, ControlSettings
from .state import ControlState, Decision, WorkflowState

__all__ = [
    "ABLATIONS",
    "MAX_RATE_RPS",
    "ControlError",
    "ControlLaw",
    "ControlSettings",
    "ControlState",
    "Decision",
    "DelayWindow",
    "Observation",
    "WorkflowObservation",
    "WorkflowState",
    "gap_cv2",
    "step_detected",
]
