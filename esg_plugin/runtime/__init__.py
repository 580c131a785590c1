"""The runtime inside every function built from ``template/esg-python3``:
a threaded WSGI server with dynamic batching and GPU-share hooks (SPEC §6).

Self-contained on purpose — it imports only the standard library,
``prometheus_client`` and, lazily, ``torch`` and ``pynvml`` — because the
template carries a copy of it (``template/esg-python3/esg_runtime``; a test
keeps the two identical): ``faas-cli build`` sees only the template folder
and the handler.
"""

from .app import Context, Event, RuntimeApp
from .batcher import Batcher, Closed, DeadlineExceeded, QueueFull, Request, decide
from .settings import BatchConfig, LiveConfig, RuntimeSettings, SettingsError

__all__ = [
    "Batcher",
    "BatchConfig",
    "Closed",
    "Context",
    "DeadlineExceeded",
    "Event",
    "LiveConfig",
    "QueueFull",
    "Request",
    "RuntimeApp",
    "RuntimeSettings",
    "SettingsError",
    "decide",
]
