"""``esg profile``: measured profiles (SPEC §1) of function handlers."""

from .run import ProfileError, ProfileRequest, device_metadata, discover, profile

__all__ = ["ProfileError", "ProfileRequest", "device_metadata", "discover", "profile"]
