"""Workloads for ``esg simulate`` and ``esg up`` (SPEC §7): several workflows,
each with an arrival process.

Arrival kinds (rates in requests per second, times in seconds):

==============================================  ==========================================
``{kind: poisson, rate_rps}``                   exponential gaps
``{kind: gamma, rate_rps, cv}``                 gamma gaps with coefficient of variation
                                                ``cv`` (``cv > 1`` is bursty)
``{kind: steps, steps: [[start_s, rate_rps]…]}``  piecewise-constant Poisson rate
``{kind: diurnal, mean_rps, amplitude_rps,``    Poisson with rate
``period_s}``                                   ``mean + amplitude·sin(2πt/period)``
``{kind: azure2019, file, row}``                per-minute counts of the Azure Functions
                                                2019 trace layout (a CSV with one row per
                                                function and minute columns ``1``..``1440``),
                                                exponential gaps inside each minute
==============================================  ==========================================

Every generator takes a seeded ``numpy.random.Generator``: the same seed
gives the same arrivals.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import ESGError
from ..limits import MAX_DURATION_S, MAX_RATE_RPS, MAX_SIMULATED_REQUESTS, is_number
from ..model import ModelError, Workflow, parse_workflow


class WorkloadError(ESGError, ValueError):
    """A workload file that cannot be read or does not hold what it should."""


@dataclass(frozen=True)
class Arrivals:
    """One arrival process; ``times_s`` draws its arrival times."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    counts_per_minute: Optional[tuple[int, ...]] = None
    """azure2019 only: the trace row, loaded at parse time."""

    def times_s(self, duration_s: float, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        if self.kind == "poisson":
            return _poisson(p["rate_rps"], 0.0, duration_s, rng)
        if self.kind == "gamma":
            rate, cv = p["rate_rps"], p["cv"]
            shape = 1.0 / (cv * cv)
            scale = 1.0 / (rate * shape)
            expected = int(duration_s * rate * 1.2 + 50)
            gaps = rng.gamma(shape, scale, size=expected)
            times = np.cumsum(gaps)
            while times[-1] < duration_s:
                more = times[-1] + np.cumsum(rng.gamma(shape, scale, size=expected))
                times = np.concatenate([times, more])
            return times[times < duration_s]
        if self.kind == "steps":
            steps = p["steps"]
            parts = []
            for i, (start, rate) in enumerate(steps):
                end = steps[i + 1][0] if i + 1 < len(steps) else duration_s
                end = min(end, duration_s)
                if end > start and rate > 0:
                    parts.append(_poisson(rate, start, end, rng))
            return np.concatenate(parts) if parts else np.empty(0)
        if self.kind == "diurnal":
            mean, amp, period = p["mean_rps"], p["amplitude_rps"], p["period_s"]
            peak = mean + abs(amp)
            candidates = _poisson(peak, 0.0, duration_s, rng)  # thinning (Lewis–Shedler)
            rate = mean + amp * np.sin(2 * math.pi * candidates / period)
            keep = rng.random(len(candidates)) * peak < np.maximum(rate, 0.0)
            return candidates[keep]
        if self.kind == "azure2019":
            parts = []
            for minute, count in enumerate(self.counts_per_minute or ()):
                start = minute * 60.0
                if start >= duration_s:
                    break
                if count > 0:
                    parts.append(_poisson(count / 60.0, start, min(start + 60.0, duration_s), rng))
            return np.concatenate(parts) if parts else np.empty(0)
        raise AssertionError(self.kind)  # pragma: no cover - validated at parse time

    def rate_at_rps(self, t_s: float) -> float:
        """The intensity the arrivals are drawn with at ``t_s`` (the long-run
        rate of a gamma process; an azure row's minute): the offered rate a
        report compares the policies' readings with (not for policies, which
        observe)."""
        p = self.params
        if self.kind in ("poisson", "gamma"):
            return p["rate_rps"]
        if self.kind == "steps":
            current = 0.0
            for start, rate in p["steps"]:
                if start <= t_s:
                    current = rate
            return current
        if self.kind == "diurnal":
            return max(0.0, p["mean_rps"] + p["amplitude_rps"] * math.sin(2 * math.pi * t_s / p["period_s"]))
        counts = self.counts_per_minute or ()
        minute = int(t_s // 60.0)
        return counts[minute] / 60.0 if 0 <= minute < len(counts) else 0.0

    def constant_spans_s(self, duration_s: float) -> list[tuple[float, float]]:
        """The stretches of the run over which the intensity is constant —
        the whole run for Poisson and gamma arrivals, each step's, each
        minute of an azure row, none for a diurnal load: over each, the
        arrivals' own mean is the offered rate a reading of the load can
        know (for reports, not for policies)."""
        if self.kind in ("poisson", "gamma"):
            return [(0.0, duration_s)]
        if self.kind == "steps":
            starts = [float(start) for start, _ in self.params["steps"]] + [duration_s]
            return [(a, min(b, duration_s)) for a, b in zip(starts, starts[1:]) if min(b, duration_s) > a]
        if self.kind == "azure2019":
            minutes = len(self.counts_per_minute or ())
            return [(m * 60.0, min((m + 1) * 60.0, duration_s)) for m in range(minutes) if m * 60.0 < duration_s]
        return []

    def mean_rate_rps(self, duration_s: float) -> float:
        """The long-run rate, for reports (not for policies, which observe)."""
        p = self.params
        if self.kind in ("poisson", "gamma"):
            return p["rate_rps"]
        if self.kind == "diurnal":
            return p["mean_rps"]
        if self.kind == "steps":
            steps = p["steps"]
            total = 0.0
            for i, (start, rate) in enumerate(steps):
                end = min(steps[i + 1][0] if i + 1 < len(steps) else duration_s, duration_s)
                total += max(0.0, end - start) * rate
            return total / duration_s
        minutes = int(math.ceil(duration_s / 60.0))
        return sum((self.counts_per_minute or ())[:minutes]) / duration_s


def _poisson(rate_rps: float, start_s: float, end_s: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrivals on [start, end): a Poisson count, then sorted uniforms."""
    count = rng.poisson(rate_rps * (end_s - start_s))
    return np.sort(rng.uniform(start_s, end_s, size=count))


@dataclass(frozen=True)
class WorkflowLoad:
    workflow: Workflow
    arrivals: Arrivals


@dataclass(frozen=True)
class Workload:
    name: str
    gpus: int
    duration_s: float
    workflows: tuple[WorkflowLoad, ...]
    warmup_s: float = 0.0
    """Requests arriving before this are simulated but not scored."""


def _number(value: Any, what: str, low: float = 0.0, strict: bool = False, high: float = MAX_RATE_RPS) -> float:
    """A finite number in [low, high] ((low, high] if ``strict``); rates by default."""
    if not is_number(value):
        raise WorkloadError(f"{what} must be a number, got {repr(value)[:40]}")
    if value < low or (strict and value == low) or value > high:
        raise WorkloadError(f"{what} must lie in {'(' if strict else '['}{low:g}, {high:g}], got {value:g}")
    return float(value)


def peak_rate_rps(arrivals: "Arrivals") -> float:
    """The highest rate an arrival process reaches (for the size bound)."""
    p = arrivals.params
    if arrivals.kind in ("poisson", "gamma"):
        return p["rate_rps"]
    if arrivals.kind == "steps":
        return max(rate for _, rate in p["steps"])
    if arrivals.kind == "diurnal":
        return p["mean_rps"] + p["amplitude_rps"]
    return max(arrivals.counts_per_minute or (0,)) / 60.0


def parse_arrivals(data: Any, where: str, base_dir: Path) -> Arrivals:
    if not isinstance(data, Mapping) or "kind" not in data:
        raise WorkloadError(f"{where}: arrivals must be a mapping with a 'kind'")
    kind = data["kind"]
    params = {k: v for k, v in data.items() if k != "kind"}
    if kind == "poisson":
        return Arrivals(kind, {"rate_rps": _number(params.get("rate_rps"), f"{where}: rate_rps", strict=True)})
    if kind == "gamma":
        return Arrivals(kind, {"rate_rps": _number(params.get("rate_rps"), f"{where}: rate_rps", strict=True),
                               "cv": _number(params.get("cv"), f"{where}: cv", strict=True, high=100.0)})
    if kind == "steps":
        steps = params.get("steps")
        if not isinstance(steps, list) or not steps:
            raise WorkloadError(f"{where}: steps must be a non-empty list of [start_s, rate_rps]")
        parsed = []
        for step in steps:
            if not isinstance(step, list) or len(step) != 2:
                raise WorkloadError(f"{where}: each step must be [start_s, rate_rps], got {step!r}")
            parsed.append((_number(step[0], f"{where}: step start", high=MAX_DURATION_S),
                           _number(step[1], f"{where}: step rate")))
        if any(b[0] <= a[0] for a, b in zip(parsed, parsed[1:])):
            raise WorkloadError(f"{where}: step starts must be strictly increasing")
        return Arrivals(kind, {"steps": tuple(parsed)})
    if kind == "diurnal":
        return Arrivals(kind, {
            "mean_rps": _number(params.get("mean_rps"), f"{where}: mean_rps", strict=True),
            "amplitude_rps": _number(params.get("amplitude_rps", 0.0), f"{where}: amplitude_rps"),
            "period_s": _number(params.get("period_s"), f"{where}: period_s", strict=True, high=MAX_DURATION_S),
        })
    if kind == "azure2019":
        file, row = params.get("file"), params.get("row", 0)
        if not isinstance(file, str):
            raise WorkloadError(f"{where}: azure2019 needs 'file', a CSV path")
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise WorkloadError(f"{where}: row must be a non-negative integer, got {row!r}")
        return Arrivals(kind, {"file": file, "row": row}, read_azure_row(base_dir / file, row, where))
    raise WorkloadError(f"{where}: unknown arrival kind {kind!r} (poisson, gamma, steps, diurnal, azure2019)")


def read_azure_row(path: Path, row: int, where: str) -> tuple[int, ...]:
    """Minute counts ``1``..``1440`` of data row ``row`` (0-based) of a CSV laid
    out as the Azure Functions 2019 invocation trace."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise WorkloadError(f"{where}: {path} is empty")
            columns = [i for i, name in enumerate(header) if name.strip().isdigit()]
            if not columns:
                raise WorkloadError(f"{where}: {path} has no minute columns (1..1440)")
            for i, record in enumerate(reader):
                if i == row:
                    return tuple(_minute_count(record, c, header[c].strip(), f"{where}: {path} row {row}")
                                 for c in columns)
    except FileNotFoundError:
        raise WorkloadError(f"{where}: no such trace file {path}") from None
    except OSError as err:
        raise WorkloadError(f"{where}: cannot read {path}: {err}") from None
    except (csv.Error, UnicodeDecodeError) as err:  # a field over the csv module's limit, bytes that are no UTF-8
        raise WorkloadError(f"{where}: {path} is not a CSV trace: {err}") from None
    raise WorkloadError(f"{where}: {path} has no data row {row}")


MAX_MINUTE_COUNT = MAX_RATE_RPS * 60.0
"""A minute's count of a trace above this is a broken row, not traffic (the rate bound, a minute long)."""


def _minute_count(record: list, column: int, minute: str, where: str) -> int:
    """The count of ``minute`` in a trace row: a number in [0, ``MAX_MINUTE_COUNT``]
    (a fraction is cut, as the trace's counts are whole), else WorkloadError."""
    text = record[column] if column < len(record) else ""
    try:
        value = float(text)
    except ValueError:
        raise WorkloadError(f"{where} has a non-numeric minute count") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_MINUTE_COUNT):
        raise WorkloadError(f"{where}, minute {minute}: a count must lie in [0, {MAX_MINUTE_COUNT:g}], "
                            f"got {text.strip()[:40]!r}")
    return int(value)


def parse_workload(data: Any, base_dir: Path, name: str, load_workflow_file) -> Workload:
    """A Workload from its YAML document, already loaded. ``load_workflow_file``
    reads a workflow path (relative to ``base_dir``); inline workflows are
    parsed here."""
    if not isinstance(data, Mapping):
        raise WorkloadError("a workload must be a mapping with 'gpus', 'duration_s' and 'workflows'")
    unknown = set(data) - {"gpus", "duration_s", "warmup_s", "workflows", "description"}
    if unknown:
        raise WorkloadError(f"unknown workload field(s): {', '.join(sorted(map(str, unknown)))}")
    gpus = data.get("gpus")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= 100_000:
        raise WorkloadError(f"gpus must be an integer in 1..100000, got {repr(gpus)[:40]}")
    duration_s = _number(data.get("duration_s"), "duration_s", strict=True, high=MAX_DURATION_S)
    warmup_s = _number(data.get("warmup_s", 0.0), "warmup_s", high=MAX_DURATION_S)
    if warmup_s >= duration_s:
        raise WorkloadError(f"warmup_s ({warmup_s:g}) must be shorter than duration_s ({duration_s:g})")
    entries = data.get("workflows")
    if not isinstance(entries, list) or not entries:
        raise WorkloadError("workflows must be a non-empty list")
    loads = []
    for i, entry in enumerate(entries):
        where = f"workflows[{i}]"
        if not isinstance(entry, Mapping) or "workflow" not in entry or "arrivals" not in entry:
            raise WorkloadError(f"{where} needs 'workflow' (a path or an inline workflow) and 'arrivals'")
        spec = entry["workflow"]
        try:
            workflow = load_workflow_file(base_dir / spec) if isinstance(spec, str) else parse_workflow(spec)
        except ModelError as err:
            raise WorkloadError(f"{where}: {err}") from None
        loads.append(WorkflowLoad(workflow, parse_arrivals(entry["arrivals"], where, base_dir)))
    requests = sum(peak_rate_rps(load.arrivals) for load in loads) * duration_s
    if requests > MAX_SIMULATED_REQUESTS:
        raise WorkloadError(f"up to {requests:.3g} requests (peak rates over duration_s): more than the "
                            f"{MAX_SIMULATED_REQUESTS:.0e} a simulation takes")
    names = [w.workflow.name for w in loads]
    if len(set(names)) != len(names):
        raise WorkloadError(f"a workflow appears twice: {', '.join(sorted(n for n in set(names) if names.count(n) > 1))}")
    return Workload(name=name, gpus=gpus, duration_s=duration_s, workflows=tuple(loads), warmup_s=warmup_s)
