"""GPU-share hooks and GPU telemetry.

:func:`apply_share` runs before the handler (and so any framework) is
imported, because CUDA reads its limits when it initialises:

- ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` is set to the share, which an MPS
  server (``nvidia-cuda-mps-control``) enforces as a compute limit;
- if torch is installed: with CUDA, ``torch.cuda.set_per_process_memory_fraction``
  limits this process to its share of the GPU's memory;
- with or without CUDA, torch's threads follow the process's CPU allotment
  (``ESG_CPU_THREADS`` when set, else :func:`cpu_allotment`: the cgroup's
  CPU quota, else the cores this process may run on): intra-op threads = the share of
  the allotment, at least one; inter-op threads = 1. The OpenMP/MKL
  variables are set to the same before torch is imported, so no library
  starts one thread per core behind torch's back. Without CUDA the share
  is a share of the allotment (``share_unit`` of the CPU profiles).

:class:`GpuTelemetry` reads utilisation and memory through NVML
(``nvidia-ml-py``) when a GPU is present, and reports nothing, without
failing, when there is none.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import MutableMapping, Optional

from . import contract as C


@dataclass(frozen=True)
class ShareReport:
    share_pct: int
    mps_active_thread_pct: Optional[int]
    torch_memory_fraction: Optional[float]
    torch_threads: Optional[int]
    device: str
    """'cuda', 'cpu', or 'none' (torch not installed)."""


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_allotment(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> float:
    """The CPUs this process may use: the cgroup v2 quota (a Kubernetes CPU
    limit), else the cores in its affinity mask."""
    cores = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else float(os.cpu_count() or 1)
    try:
        quota, period = open(cgroup_cpu_max).read().split()[:2]
        if quota != "max" and float(period) > 0:
            cores = min(cores, float(quota) / float(period))
    except (OSError, ValueError):
        pass
    return max(cores, 1.0)


def threads_for(share_pct: int, allotment: float) -> int:
    """Intra-op threads for a share of the allotment: at least one."""
    return max(1, math.floor(allotment * share_pct / 100.0 + 1e-9))


def apply_share(share_pct: int, env: MutableMapping[str, str], cpu_count: Optional[float] = None) -> ShareReport:
    env[C.ENV_MPS_SHARE_PCT] = str(share_pct)
    threads = threads_for(share_pct, cpu_count or cpu_allotment())
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
        os.environ[name] = str(threads)  # read by the libraries torch loads, at import
    try:
        import torch
    except ImportError:
        return ShareReport(share_pct, share_pct, None, None, "none")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # torch already ran parallel work in this process (tests): keep its pool
        pass
    if torch.cuda.is_available():
        fraction = share_pct / 100.0
        for index in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(fraction, index)
        return ShareReport(share_pct, share_pct, fraction, threads, "cuda")
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
