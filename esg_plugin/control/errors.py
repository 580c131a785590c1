"""The control law's error: settings or observations it cannot use."""

from __future__ import annotations


class ControlError(ValueError):
    """A control setting or observation outside its range."""
