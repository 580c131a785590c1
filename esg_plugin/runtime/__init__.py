"""The runtime inside every function built from ``template/esg-python3``:
a threaded WSGI server with dynamic batching and GPU-share hooks (SPEC §6).

Self-contained on purpose — it imports only the standard library,
``prometheus_client`` and, lazily, ``torch`` and ``pynvml`` — because a
function's image holds it without the rest of the package:
``template/esg-python3/esg_runtime`` is a link to this folder, and
``faas-cli template pull``/``build`` copy the files it points to.
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
