"""GPU-share hooks and GPU telemetry.

:func:`apply_share` runs before the handler (and so any framework) is
imported, because CUDA reads its limits when it initialises:

- ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` is set to the share, which an MPS
  server (``nvidia-cuda-mps-control``) enforces as a compute limit;
- if torch is installed: with CUDA, ``torch.cuda.set_per_process_memory_fraction``
  limits this process to its share of the GPU's memory; without CUDA, the
  share of the node's cores sets torch's thread count.

:class:`GpuTelemetry` reads utilisation and memory through NVML
(``nvidia-ml-py``) when a GPU is present, and reports nothing, without
failing, when there is none.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import MutableMapping, Optional


@dataclass(frozen=True)
class ShareReport:
    share_pct: int
    mps_active_thread_pct: Optional[int]
    torch_memory_fraction: Optional[float]
    torch_threads: Optional[int]
    device: str
    """'cuda', 'cpu', or 'none' (torch not installed)."""


def apply_share(share_pct: int, env: MutableMapping[str, str], cpu_count: Optional[int] = None) -> ShareReport:
    env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(share_pct)
    try:
        import torch
    except ImportError:
        return ShareReport(share_pct, share_pct, None, None, "none")
    if torch.cuda.is_available():
        fraction = share_pct / 100.0
        for index in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(fraction, index)
        return ShareReport(share_pct, share_pct, fraction, None, "cuda")
    cores = cpu_count or os.cpu_count() or 1
    threads = max(1, math.floor(cores * share_pct / 100.0 + 1e-9))
    torch.set_num_threads(threads)
    return ShareReport(share_pct, share_pct, None, threads, "cpu")


class GpuTelemetry:
    """NVML readings of GPU 0, or None when there is no GPU or no NVML."""

    def __init__(self) -> None:
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() > 0:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
                self._nvml = pynvml
        except Exception:  # no library, no driver, no device: no telemetry
            self._handle = None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def read(self) -> Optional[tuple[float, int]]:
        """(utilisation 0..1, memory used in bytes), or None."""
        if self._handle is None:
            return None
        try:
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            return util.gpu / 100.0, int(memory.used)
        except Exception:
            return None
