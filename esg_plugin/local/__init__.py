"""The embedded platform and ``esg up``: the whole system on one machine."""

from .actuator import LocalActuator
from .gateway import make_gateway_server
from .platform import LocalPlatform, PlatformError
from .up import UpReport, run_up

__all__ = ["LocalActuator", "LocalPlatform", "PlatformError", "UpReport", "make_gateway_server", "run_up"]
