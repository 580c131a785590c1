"""The control law's error: settings or observations it cannot use."""

from __future__ import annotations

from ..errors import ESGError


class ControlError(ESGError, ValueError):
    """A control setting or observation outside its range."""
