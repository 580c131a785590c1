"""The ``esg`` command (SPEC §5)."""

from .main import main

__all__ = ["main"]
