"""The C heap of a function process: keep freed memory for the next batch.

A network's activations are tensors of megabytes (ESPCN at batch 8 on
56x56 images: 6.4 MB a layer), allocated and freed on every batch. glibc's
malloc serves such blocks from fresh ``mmap`` pages, or gives the top of its
heap back to the kernel when freed, depending on a threshold it moves as the
process runs, and on which thread allocates; every page of a fresh block is
then faulted in and zeroed by the kernel again. Measured on this project's
2-core machine with ``bench/heap.py`` (one torch thread, ESPCN at batch 8,
two runs on 2026-11-30): 52.8 and 51.1 ms a batch on the process's main
thread against 40.0 and 40.7 ms on another thread with glibc's defaults;
40.6 / 38.4 and 43.5 / 42.2 ms with the settings below. Python
servings (TorchServe, Intel's PyTorch guides) swap the allocator for
jemalloc or tcmalloc for this reason; the runtime keeps glibc and sets it:

- ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's largest): blocks up to it come
  from the heap, so they are reused, not mapped anew;
- ``M_TRIM_THRESHOLD`` = ``ESG_HEAP_RETAIN_MB``: free memory at the top of
  the heap up to this stays with the process.

Both fix the thresholds, so the process's resident memory stays near its
largest batch's. ``ESG_HEAP_RETAIN_MB=0`` leaves glibc's defaults. Where the C
library is not glibc, nothing is changed and the report says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""glibc's largest (half its 64 MiB heap on 64-bit): larger values are refused."""
DEFAULT_RETAIN_MB = 256


def keep_heap(retain_mb: int = DEFAULT_RETAIN_MB) -> str:
    """Set the process's malloc thresholds (see above); what was done, in words."""
    if retain_mb <= 0:
        return "glibc's defaults"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "not glibc: the allocator's defaults"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, retain_mb * 1024 * 1024)):
        return "mallopt refused: glibc's defaults"
    return f"heap kept up to {retain_mb} MiB"
