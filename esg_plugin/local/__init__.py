"""The embedded platform and ``esg up``: the whole system on one machine."""

from .platform import LocalActuator, LocalPlatform, PlatformError, make_gateway_server
from .up import UpReport, run_up

__all__ = ["LocalActuator", "LocalPlatform", "PlatformError", "UpReport", "make_gateway_server", "run_up"]
