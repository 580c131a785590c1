"""GPU-share hooks and GPU telemetry.

:func:`apply_share` runs before the handler (and so any framework) is
imported, because CUDA reads its limits when it initialises:

- ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` is set to the share, which an MPS
  server (``nvidia-cuda-mps-control``) enforces as a compute limit;
- with CUDA and no MPS server (``ESG_GPU_SHARE_MECHANISM`` auto or
  green-context), the share's streaming multiprocessors become a CUDA green
  context (:class:`GreenContextLimit`): every batch runs inside it
  (``ShareReport.limit``, entered by the runtime and the profiler around each
  batch), so the kernels get the share's SMs and no more, with no daemon;
  the driver rounds the SM count up to its granularity (8 on Hopper);
- if torch is installed: with CUDA, ``torch.cuda.set_per_process_memory_fraction``
  limits this process to its share of the GPU's memory;
- without CUDA, torch's threads follow the process's CPU allotment
  (``ESG_CPU_THREADS`` when set, else :func:`cpu_allotment`: the cgroup's
  CPU quota, else the cores this process may run on): intra-op threads = the share of
  the allotment, at least one; inter-op threads = 1. The OpenMP/MKL
  variables are set to the same before torch is imported, so no library
  starts one thread per core behind torch's back. Without CUDA the share
  is a share of the allotment (``share_unit`` of the CPU profiles);
- with CUDA the share is a share of the GPU, not of the cores: the host
  only decodes and dispatches kernels, so torch gets ``ESG_CPU_THREADS``
  threads when set, else one (:func:`gpu_host_threads`). On an H200,
  ResNet-50 alone at batch 1 took 6.3-6.8 ms with 8 and 16 intra-op
  threads against 3.8-4.1 ms with 1-4, and 3.2-3.6 ms with one thread at
  every share from 20% (``bench/gpu_share.py`` in ``bench/gpu_profile.sh``,
  2026-11-30; ``docs/evaluation/gpu-share-h200*.json``).

:class:`GpuTelemetry` reads utilisation and memory through NVML
(``nvidia-ml-py``) when a GPU is present, and reports nothing, without
failing, when there is none.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Mapping, MutableMapping, Optional

from . import contract as C


@dataclass(frozen=True)
class ShareReport:
    share_pct: int
    mps_active_thread_pct: Optional[int]
    torch_memory_fraction: Optional[float]
    torch_threads: Optional[int]
    device: str
    """'cuda', 'cpu', or 'none' (torch not installed)."""
    mechanism: str = "none"
    """What limits the kernels: 'mps', 'green-context', 'memory-fraction'
    (CUDA without either: only memory is limited), 'cpu-threads' or 'none'."""
    limit: Callable[[], ContextManager] = field(default=contextlib.nullcontext, compare=False, repr=False)
    """Entered around every batch: the green context, else nothing."""
    detail: str = ""
    """Why the mechanism is not the one asked for, when it is not."""
    cpu_allotment: Optional[float] = None
    """A CPU instance: the cores its share is a share of (:func:`cpu_allotment`)."""
    reshare: Optional[Callable[[int], int]] = field(default=None, compare=False, repr=False)
    """Applies another share live and returns the threads it gives (CPU:
    :class:`CpuShare`); None where a share applies only at start (CUDA
    reads its limits when it initialises)."""


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

OMP_SPIN_COUNT = 10_000
"""``GOMP_SPINCOUNT`` unless the environment sets it or ``OMP_WAIT_POLICY``:
how long an idle OpenMP thread (torch's CPU wheel uses GNU OpenMP) spins
at a barrier before it sleeps. libgomp's default spins about 300,000
times, which on a shared node collapses a worker whose threads fill its
cores: ResNet-50 at two threads on two cores beside one busy process took
1.1–1.7 s a batch against 24–26 ms alone (one thread: 38 ms either way);
spinning 10,000 times gave 25 ms alone and 104–107 ms beside it, 1,000
times 40–42 and 52–55 ms, and no spinning (``OMP_WAIT_POLICY=PASSIVE``)
48–49 and 47–49 ms (``python bench/live_share.py``, its last table, two
runs, 2026-12-01 05:02 UTC; docs/runtime.md). A node is shared in every
deployment this runtime is for."""


def spin_count_default(*envs: Mapping[str, str]) -> Optional[str]:
    """The ``GOMP_SPINCOUNT`` to set (:data:`OMP_SPIN_COUNT`) where none of
    ``envs`` sets it or ``OMP_WAIT_POLICY``; None where one does."""
    if any(env.get(name) for env in envs for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")):
        return None
    return str(OMP_SPIN_COUNT)


def affinity_cpus() -> Optional[set[int]]:
    """The CPUs this process may run on (its affinity mask), where the
    platform says; None elsewhere."""
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def cpu_allotment(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> float:
    """The CPUs this process may use: the cgroup v2 quota (a Kubernetes CPU
    limit), else the cores in its affinity mask."""
    cpus = affinity_cpus()
    cores = float(len(cpus)) if cpus is not None else float(os.cpu_count() or 1)
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


DEFAULT_MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"


def mps_server_running(env: MutableMapping[str, str]) -> bool:
    """An MPS control daemon's pipe exists where this process would look for it."""
    pipe = env.get(C.ENV_MPS_PIPE_DIRECTORY) or DEFAULT_MPS_PIPE_DIRECTORY
    return os.path.exists(os.path.join(pipe, "control"))


def choose_mechanism(requested: str, share_pct: int, mps_running: bool, green_supported: bool) -> str:
    """What limits a CUDA process's kernels to its share (pure).

    mps: the MPS server does (asked for, or auto with a server running);
    green-context: the share's SMs (asked for, or auto without MPS, when the
    torch build supports green contexts and the share is below 100%);
    memory-fraction: nothing limits the kernels (auto without either)."""
    if requested == "mps" or (requested == "auto" and mps_running):
        return "mps"
    if share_pct >= 100:
        return "memory-fraction"  # the whole GPU: nothing to partition
    if requested == "green-context" or green_supported:
        return "green-context"
    return "memory-fraction"


def sms_for(share_pct: int, multiprocessors: int) -> int:
    """The SMs a share asks for: its part of the GPU's, rounded up, at least one."""
    return min(multiprocessors, max(1, math.ceil(multiprocessors * share_pct / 100.0 - 1e-9)))


class GreenContextLimit:
    """A CUDA green context holding ``sms`` of the GPU's multiprocessors;
    calling it gives a context manager under which this thread's kernels run
    there. Torch's API moved between releases: a stream of the context
    (2.12 on), else pushing the context on this thread (2.8-2.11)."""

    def __init__(self, torch: Any, sms: int, device: int = 0):
        self._torch = torch
        self.sms = sms
        self._context = torch.cuda.green_contexts.GreenContext.create(num_sms=sms, device_id=device)
        self._stream = self._context.Stream() if hasattr(self._context, "Stream") else None

    @contextlib.contextmanager
    def __call__(self):
        if self._stream is not None:
            with self._torch.cuda.stream(self._stream):
                yield
            return
        enter = getattr(self._context, "set_context", None) or self._context.make_current
        leave = getattr(self._context, "pop_context", None) or self._context.pop_current
        enter()
        try:
            yield
        finally:
            leave()


def _green_contexts_supported(torch: Any) -> bool:
    try:
        from torch.cuda import green_contexts
    except ImportError:
        return False
    return bool(getattr(green_contexts, "SUPPORTED", hasattr(green_contexts, "GreenContext")))


def gpu_host_threads(cpu_count: Optional[float]) -> int:
    """Torch's intra-op threads in a CUDA process: ESG_CPU_THREADS, else one."""
    return max(1, math.floor(cpu_count + 1e-9)) if cpu_count else 1


def apply_share(share_pct: int, env: MutableMapping[str, str], cpu_count: Optional[float] = None,
                mechanism: str = "auto") -> ShareReport:
    env[C.ENV_MPS_SHARE_PCT] = str(share_pct)
    allotment = cpu_count or cpu_allotment()
    threads = threads_for(share_pct, allotment)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
        os.environ[name] = str(threads)  # read by the libraries torch loads, at import
    spin = spin_count_default(os.environ, env)
    if spin is not None:
        env["GOMP_SPINCOUNT"] = os.environ["GOMP_SPINCOUNT"] = spin  # read when libgomp loads
    try:
        import torch
    except ImportError:
        live = CpuShare(share_pct, allotment)
        return ShareReport(share_pct, share_pct, None, None, "none", "none", reshare=live.set)
    if torch.cuda.is_available():
        threads = gpu_host_threads(cpu_count)
        for name in THREAD_VARIABLES:
            env[name] = os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # torch already ran parallel work in this process (tests): keep its pool
        pass
    if torch.cuda.is_available():
        fraction = share_pct / 100.0
        for index in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(fraction, index)
        chosen = choose_mechanism(mechanism, share_pct, mps_server_running(env), _green_contexts_supported(torch))
        limit: Callable[[], ContextManager] = contextlib.nullcontext
        detail = ""
        if chosen == "green-context":
            sms = sms_for(share_pct, torch.cuda.get_device_properties(0).multi_processor_count)
            try:
                limit = GreenContextLimit(torch, sms)
            except Exception as err:  # an old driver, a build without them
                if mechanism == "green-context":
                    raise  # asked for by name: a share must not be silently ignored
                chosen, detail = "memory-fraction", f"green context of {sms} SMs failed: {err}"
        return ShareReport(share_pct, share_pct, fraction, threads, "cuda", chosen, limit, detail)
    live = CpuShare(share_pct, allotment, torch)
    return ShareReport(share_pct, share_pct, None, threads, "cpu", "cpu-threads", live, reshare=live.set,
                       cpu_allotment=allotment)


class CpuShare:
    """A CPU process's share, changeable while it serves: torch's intra-op
    threads are the share's part of the allotment (:func:`threads_for`), so
    another share is another thread count, not another process (a restart
    takes a core for seconds to load torch and a model, on the node that
    is short of cores). Torch keeps its thread count per thread (OpenMP's),
    so the count is set in the thread that runs the batches, as it enters
    the next one: an instance is the ``limit`` entered around each batch."""

    def __init__(self, share_pct: int, allotment: float, torch: Any = None):
        self.allotment = allotment
        self._torch = torch
        self._threads = threads_for(share_pct, allotment)
        self._applied = threading.local()
        """Per thread: the count last set in it (torch's count is per thread)."""

    def set(self, share_pct: int) -> int:
        """The threads for ``share_pct``, applied at the next batch."""
        self._threads = threads_for(share_pct, self.allotment)
        return self._threads

    @contextlib.contextmanager
    def __call__(self):
        threads = self._threads
        if threads != getattr(self._applied, "threads", None):
            if self._torch is not None:
                self._torch.set_num_threads(threads)
            self._applied.threads = threads
        yield


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
