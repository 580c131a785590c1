"""Settings of a function's runtime, parsed from an environment mapping
(SPEC §6), as of-watchdog parses ``os.Environ()``: the mapping is an
argument, so tests pass their own."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping, Optional

from . import contract as C
from .memory import DEFAULT_RETAIN_MB


class SettingsError(ValueError):
    """An environment variable with a value the runtime cannot use."""


MAX_WAIT_MS_LIMIT = 60_000.0
"""The longest batch-fill wait the runtime takes (ESG_MAX_WAIT_MS and PUT
/_esg/config): a minute; a larger value is an error, not a wait (1e13 ms
overflowed the batching thread's timer and killed it)."""
SHARE_MECHANISMS = ("auto", "mps", "green-context")
"""How a GPU share limits the kernels (runtime/gpu.py): ``auto`` takes MPS
when an MPS server is running, else a green context of the share's SMs."""


def valid_wait_ms(value: object) -> bool:
    """A batch-fill wait in 0..MAX_WAIT_MS_LIMIT ms (booleans are not numbers)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and 0 <= value <= MAX_WAIT_MS_LIMIT)


@dataclass(frozen=True)
class RuntimeSettings:
    host: str = "127.0.0.1"
    """ESG_HOST: where the server listens (the upstream of the OpenFaaS watchdog)."""
    port: int = 5000
    """ESG_PORT."""
    max_batch_size: int = 1
    """ESG_MAX_BATCH_SIZE: the largest batch handed to handle_batch."""
    max_wait_ms: float = 0.0
    """ESG_MAX_WAIT_MS: the longest a request waits for its batch to fill."""
    max_queue: int = 1024
    """ESG_MAX_QUEUE: queued requests beyond which new ones get 429."""
    gpu_share_pct: int = 100
    """ESG_GPU_SHARE: share of the GPU in percent (CPU: of the cores)."""
    config_token: Optional[str] = None
    """ESG_CONFIG_TOKEN: bearer token for PUT /_esg/config; unset refuses every change."""
    cpu_threads: Optional[float] = None
    """ESG_CPU_THREADS: the CPUs this process may use (torch's threads are
    the share of them); unset: the cgroup's quota, else the cores it may run on."""
    share_mechanism: str = "auto"
    """ESG_GPU_SHARE_MECHANISM: one of SHARE_MECHANISMS."""
    heap_retain_mb: int = DEFAULT_RETAIN_MB
    """ESG_HEAP_RETAIN_MB: freed C heap the process keeps for its next batch
    (runtime/memory.py); 0 leaves the C library's defaults."""
    live_share: bool = True
    """ESG_LIVE_SHARE: 1 lets a CPU instance take another share through PUT
    /_esg/config without a restart (torch's threads, from the next batch);
    0 answers every share change ``restart_required``, as on a GPU (a share
    fixed for the process's life; what restarts cost can be measured so)."""

    @staticmethod
    def from_env(env: Mapping[str, str]) -> "RuntimeSettings":
        def integer(name: str, default: int, low: int, high: Optional[int] = None) -> int:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
            if value < low or (high is not None and value > high):
                bounds = f"{low}..{high}" if high is not None else f">= {low}"
                raise SettingsError(f"{name} must lie in {bounds}, got {value}")
            return value

        raw_wait = env.get(C.ENV_MAX_WAIT_MS, "") or "0"
        try:
            max_wait_ms = float(raw_wait)
        except ValueError:
            raise SettingsError(f"{C.ENV_MAX_WAIT_MS} must be a number, got {raw_wait!r}") from None
        if not valid_wait_ms(max_wait_ms):
            raise SettingsError(f"{C.ENV_MAX_WAIT_MS} must be a number in 0..{MAX_WAIT_MS_LIMIT:g}, got {raw_wait!r}")
        raw_cpus = env.get(C.ENV_CPU_THREADS, "") or None
        cpu_threads = None
        if raw_cpus is not None:
            try:
                cpu_threads = float(raw_cpus)
            except ValueError:
                cpu_threads = float("nan")
            if not 0 < cpu_threads <= 4096:
                raise SettingsError(f"{C.ENV_CPU_THREADS} must be a number in (0, 4096], got {raw_cpus!r}")
        return RuntimeSettings(
            share_mechanism=share_mechanism(env),
            host=env.get(C.ENV_HOST, "127.0.0.1") or "127.0.0.1",
            port=integer(C.ENV_PORT, 5000, 0, 65535),
            max_batch_size=integer(C.ENV_MAX_BATCH_SIZE, 1, 1, C.MAX_BATCH_SIZE),
            max_wait_ms=max_wait_ms,
            max_queue=integer(C.ENV_MAX_QUEUE, 1024, 1, 1_000_000),
            gpu_share_pct=integer(C.ENV_GPU_SHARE_PCT, 100, 1, 100),
            config_token=env.get(C.ENV_CONFIG_TOKEN) or None,
            cpu_threads=cpu_threads,
            heap_retain_mb=integer(C.ENV_HEAP_RETAIN_MB, DEFAULT_RETAIN_MB, 0, 65536),
            live_share=bool(integer(C.ENV_LIVE_SHARE, 1, 0, 1)),
        )


def share_mechanism(env: Mapping[str, str]) -> str:
    """ESG_GPU_SHARE_MECHANISM, checked (unset: auto)."""
    value = env.get(C.ENV_GPU_SHARE_MECHANISM, "") or "auto"
    if value not in SHARE_MECHANISMS:
        raise SettingsError(f"{C.ENV_GPU_SHARE_MECHANISM} must be one of {', '.join(SHARE_MECHANISMS)}, got {value!r}")
    return value


@dataclass(frozen=True)
class BatchConfig:
    """The part of the settings that changes live (PUT /_esg/config)."""

    max_batch_size: int
    max_wait_ms: float


class LiveConfig:
    """A thread-safe holder of the current BatchConfig."""

    def __init__(self, config: BatchConfig):
        self._lock = threading.Lock()
        self._config = config

    def get(self) -> BatchConfig:
        with self._lock:
            return self._config

    def set(self, config: BatchConfig) -> None:
        with self._lock:
            self._config = config
