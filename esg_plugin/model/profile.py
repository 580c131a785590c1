"""Profiles: measured batch latency per (batch size, GPU share) (SPEC §1)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from ..limits import is_number
from ..runtime.contract import MAX_BATCH_SIZE
from .errors import ModelError


@dataclass(frozen=True)
class FunctionProfile:
    """How long one batch of a function takes at each batch size and share."""

    name: str
    batch_sizes: tuple[int, ...]
    gpu_shares: tuple[int, ...]
    """Percent of one GPU (MPS active-thread %); on CPU devices, of the node's cores."""
    latency_ms: tuple[tuple[Optional[float], ...], ...]
    """``latency_ms[i][j]``: one batch of ``batch_sizes[i]`` at ``gpu_shares[j]``; None = cannot run."""
    memory_mb: Optional[tuple[float, ...]] = None
    cold_start_ms: float = 0.0

    def latency(self, batch_size: int, gpu_share: int) -> Optional[float]:
        """Latency of one batch, or None where the configuration cannot run.

        Raises ModelError for a batch size or share the profile does not list.
        """
        try:
            i = self.batch_sizes.index(batch_size)
            j = self.gpu_shares.index(gpu_share)
        except ValueError:
            raise ModelError(
                f"profile '{self.name}' has no entry for batch size {batch_size} at share {gpu_share}%"
            ) from None
        return self.latency_ms[i][j]

    def configurations(self) -> Iterator[tuple[int, int, float]]:
        """Every runnable (batch_size, gpu_share, exec_ms), batch-major."""
        for i, b in enumerate(self.batch_sizes):
            for j, g in enumerate(self.gpu_shares):
                e = self.latency_ms[i][j]
                if e is not None:
                    yield b, g, e

    @cached_property
    def _runnable(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = list(self.configurations())
        return (
            np.array([r[0] for r in rows], dtype=np.int64),
            np.array([r[1] for r in rows], dtype=np.int64),
            np.array([r[2] for r in rows], dtype=np.float64),
        )

    def runnable_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(batch sizes, shares, exec_ms) of every runnable configuration, as
        in :meth:`configurations`; computed once per profile."""
        return self._runnable

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batch_sizes": list(self.batch_sizes),
            "gpu_shares": list(self.gpu_shares),
            "latency_ms": [list(row) for row in self.latency_ms],
        }
        if self.memory_mb is not None:
            out["memory_mb"] = list(self.memory_mb)
        out["cold_start_ms"] = self.cold_start_ms
        return out


@dataclass(frozen=True)
class ProfileSet:
    """The profiles of several functions measured on one kind of device."""

    device: str
    functions: Mapping[str, FunctionProfile]
    share_unit: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Anything else the file carries (device details, the command that measured it)."""

    @property
    def time_shared(self) -> bool:
        """Whether a share here is a share of CPU cores (threads, time-shared:
        ``esg profile`` names such a device ``cpu-<N>core``), not of a GPU."""
        return self.device.startswith("cpu") or "core" in self.share_unit

    def __contains__(self, name: str) -> bool:
        return name in self.functions

    def __getitem__(self, name: str) -> FunctionProfile:
        try:
            return self.functions[name]
        except KeyError:
            raise ModelError(f"no profile for function '{name}'") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.device}
        if self.share_unit:
            out["share_unit"] = self.share_unit
        out.update(self.metadata)
        out["functions"] = {name: p.to_dict() for name, p in self.functions.items()}
        return out


def _increasing_ints(value: Any, what: str, low: int, high: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ModelError(f"{what} must be a non-empty list of integers")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ModelError(f"{what} must hold integers, got {repr(v)[:40]}")
        if not low <= v <= high:
            raise ModelError(f"{what} must lie in {low}..{high}, got {str(v)[:40]}")
    if any(b <= a for a, b in zip(value, value[1:])):
        raise ModelError(f"{what} must be strictly increasing, got {value}")
    return tuple(value)


def _positive(value: Any, what: str) -> float:
    if not is_number(value) or value <= 0:
        raise ModelError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def parse_function_profile(name: str, data: Any) -> FunctionProfile:
    where = f"profile '{name}'"
    if not isinstance(data, Mapping):
        raise ModelError(f"{where} must be a mapping")
    for key in ("batch_sizes", "gpu_shares", "latency_ms"):
        if key not in data:
            raise ModelError(f"{where} is missing '{key}'")
    batch_sizes = _increasing_ints(data["batch_sizes"], f"{where}: batch_sizes", 1, MAX_BATCH_SIZE)
    shares = _increasing_ints(data["gpu_shares"], f"{where}: gpu_shares", 1, 100)
    rows = data["latency_ms"]
    if not isinstance(rows, list) or len(rows) != len(batch_sizes):
        raise ModelError(f"{where}: latency_ms must have one row per batch size ({len(batch_sizes)})")
    latency = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(shares):
            raise ModelError(
                f"{where}: latency_ms row {i} (batch {batch_sizes[i]}) must have one value per share ({len(shares)})"
            )
        latency.append(
            tuple(
                None if v is None else _positive(v, f"{where}: latency_ms[{i}][{j}]") for j, v in enumerate(row)
            )
        )
    if all(v is None for row in latency for v in row):
        raise ModelError(f"{where}: every configuration is null; the function cannot run")
    memory = data.get("memory_mb")
    if memory is not None:
        if not isinstance(memory, list) or len(memory) != len(batch_sizes):
            raise ModelError(f"{where}: memory_mb must have one value per batch size ({len(batch_sizes)})")
        memory = tuple(_positive(v, f"{where}: memory_mb[{i}]") for i, v in enumerate(memory))
    cold = data.get("cold_start_ms", 0.0)
    if not is_number(cold) or cold < 0:
        raise ModelError(f"{where}: cold_start_ms must be a non-negative number, got {cold!r}")
    return FunctionProfile(name, batch_sizes, shares, tuple(latency), memory, float(cold))


def parse_profiles(data: Any) -> ProfileSet:
    """A ProfileSet from the JSON document of SPEC §1, already loaded."""
    if not isinstance(data, Mapping):
        raise ModelError("a profiles file must be a JSON object with 'device' and 'functions'")
    functions = data.get("functions")
    if not isinstance(functions, Mapping) or not functions:
        raise ModelError("a profiles file needs a non-empty 'functions' object")
    device = data.get("device", "unknown")
    if not isinstance(device, str):
        raise ModelError(f"'device' must be a string, got {device!r}")
    share_unit = data.get("share_unit", "")
    metadata = {k: v for k, v in data.items() if k not in ("device", "share_unit", "functions")}
    parsed = {str(name): parse_function_profile(str(name), spec) for name, spec in functions.items()}
    return ProfileSet(device=device, functions=parsed, share_unit=str(share_unit), metadata=metadata)
