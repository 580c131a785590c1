"""The planner layer's one error type."""

from ..errors import ESGError


class PlannerError(ESGError, ValueError):
    """A planning request that cannot be served: an unknown policy, a stage
    with no runnable configuration, a search budget given without a clock."""
