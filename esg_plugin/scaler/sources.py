"""Where the scaler learns the load: one interface, where "no data" (None)
is a valid answer and means "do not act".

- :class:`GatewayScrape` (sidecar mode): the OpenFaaS gateway's own
  ``/metrics``. ``gateway_function_invocation_total{function_name, code}``
  is a counter; the rate of a function is the counter's increase over the
  window of kept scrapes (a counter that goes down was reset: its history
  restarts). ``function_name`` is ``name.namespace``; the namespace is cut.
- :class:`PrometheusQuery` (standalone mode): the Prometheus HTTP API,
  ``sum by (function_name) (rate(gateway_function_invocation_total[W]))``.
- :func:`function_exec_ms`: a function's own ``/_esg/metrics``: the mean
  execution time of its batches, to correct profile latencies.

Every fetch has a timeout; a failure is "no data", never an exception out
of the control loop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Protocol

from prometheus_client.parser import text_string_to_metric_families

INVOCATIONS = "gateway_function_invocation_total"


@dataclass(frozen=True)
class Observation:
    """Requests per second of each function over the window, at ``at_s``."""

    at_s: float
    rates_rps: dict[str, float]
    """Over the window: smooth, for scaling down."""
    source: str
    window_s: float
    recent_rps: dict[str, float] = field(default_factory=dict)
    """Over the last interval: quick, for scaling up."""
    recent_window_s: float = 5.0
    """The length of the interval ``recent_rps`` is taken over."""


class MetricsSource(Protocol):
    def observe(self, now_s: float) -> Optional[Observation]:
        """The current rates, or None when there is no usable data."""


def _fetch(url: str, timeout_s: float) -> Optional[bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status != 200:
                return None
            return response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _function_name(label: str) -> str:
    return label.split(".", 1)[0]


def parse_invocations(text: str) -> dict[str, float]:
    """Total invocations per function (all status codes) from gateway metrics text."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == INVOCATIONS and "function_name" in sample.labels:
                name = _function_name(sample.labels["function_name"])
                totals[name] = totals.get(name, 0.0) + float(sample.value)
    return totals


@dataclass
class GatewayScrape:
    url: str
    window_s: float = 30.0
    timeout_s: float = 2.0
    history: deque = field(default_factory=deque)
    """(time_s, totals per function) of the scrapes within the window."""

    def observe(self, now_s: float) -> Optional[Observation]:
        body = _fetch(self.url, self.timeout_s)
        if body is None:
            return None
        try:
            totals = parse_invocations(body.decode("utf-8", "replace"))
        except (ValueError, TypeError):
            return None
        if self.history and any(totals.get(f, 0.0) < v for f, v in self.history[-1][1].items()):
            self.history.clear()  # a counter reset: the gateway restarted
        self.history.append((now_s, totals))
        while len(self.history) > 2 and self.history[0][0] < now_s - self.window_s:
            self.history.popleft()
        if len(self.history) < 2:
            return None
        (t0, first), (t1, last) = self.history[0], self.history[-1]
        (tp, previous) = self.history[-2]
        if t1 <= t0 or t1 <= tp:
            return None
        rates = {f: max(0.0, (v - first.get(f, 0.0)) / (t1 - t0)) for f, v in last.items()}
        recent = {f: max(0.0, (v - previous.get(f, 0.0)) / (t1 - tp)) for f, v in last.items()}
        return Observation(now_s, rates, "gateway", t1 - t0, recent, t1 - tp)


@dataclass
class PrometheusQuery:
    base_url: str
    window_s: float = 30.0
    timeout_s: float = 2.0
    recent_s: float = 5.0

    def query(self, window_s: Optional[float] = None) -> str:
        return f"sum by (function_name) (rate({INVOCATIONS}[{int(window_s or self.window_s)}s]))"

    def observe(self, now_s: float) -> Optional[Observation]:
        rates = self._rates(self.query())
        if not rates:
            return None  # no series: Prometheus has not scraped the gateway (yet)
        recent = self._rates(self.query(self.recent_s)) or {}
        return Observation(now_s, rates, "prometheus", self.window_s, recent, self.recent_s)

    def exec_ms(self) -> dict[str, float]:
        """Mean batch execution time per function, from the functions' own
        ``esg_exec_seconds`` (scraped by the job in deploy/prometheus/)."""
        w = int(self.window_s)
        query = (f"sum by (function_name) (rate(esg_exec_seconds_sum[{w}s])) / "
                 f"sum by (function_name) (rate(esg_exec_seconds_count[{w}s]))")
        values = self._rates(query) or {}
        return {fn: v * 1000.0 for fn, v in values.items() if v == v and v > 0}  # drop NaN (no batches)

    def _rates(self, query: str) -> Optional[dict[str, float]]:
        url = self.base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
        body = _fetch(url, self.timeout_s)
        if body is None:
            return None
        try:
            doc = json.loads(body)
            if doc.get("status") != "success":
                return None
            results = doc["data"]["result"]
            rates = {}
            for item in results:
                name = item["metric"].get("function_name")
                if name:
                    rates[_function_name(name)] = rates.get(_function_name(name), 0.0) + float(item["value"][1])
        except (ValueError, KeyError, TypeError, IndexError):
            return None
        return rates


def function_exec_ms(url: str, timeout_s: float = 1.0) -> Optional[float]:
    """Mean batch execution time from a function's /_esg/metrics, or None."""
    body = _fetch(url, timeout_s)
    if body is None:
        return None
    total = count = None
    try:
        for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
            for sample in family.samples:
                if sample.name == "esg_exec_seconds_sum":
                    total = float(sample.value)
                elif sample.name == "esg_exec_seconds_count":
                    count = float(sample.value)
    except ValueError:
        return None
    if not total or not count:
        return None
    return total / count * 1000.0


def make_source(kind: str, url: str, window_s: float, interval_s: float = 5.0) -> MetricsSource:
    if kind == "gateway":
        return GatewayScrape(url, window_s)
    return PrometheusQuery(url, window_s, recent_s=max(interval_s, 5.0))
