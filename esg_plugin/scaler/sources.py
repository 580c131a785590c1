"""Where the scaler learns the load: one interface, where "no data" (None)
is a valid answer and means "do not act".

What an :class:`Observation` holds, and where each part comes from:

- **offered load** per function: arrivals, not completions — the OpenFaaS
  gateway's ``gateway_function_invocation_started`` counter (a request is
  counted when it starts, so a queue that grows, or requests that time out,
  still count); only a gateway without that counter falls back to the
  answers ``gateway_function_invocation_total{code}``;
- **answers by status code** per function over the last interval (the same
  counter's ``code`` label: 200, 429, 504, ...);
- **answers by class** per workflow over the last interval, when the
  workflow router's ``esg_workflow_requests_total{workflow,slo}`` is read
  (ok = ``met``, late = ``missed``, rejected = ``rejected``: a stage's
  429), and apart from them the requests the router shed at the entry
  (``shed``: they never reached the gateway, so they are offered load the
  gateway's counters miss; they are not answers that judge the plan — the
  admission limit shed them because the machine was full);
- **how bursty the arrivals are** per workflow over the window: the squared
  coefficient of variation of the gaps between arrivals at the router's
  entry (``control.gap_cv2`` of the increases of the router's
  ``esg_workflow_arrival_gap_seconds`` count and sum and of
  ``esg_workflow_arrival_gap_squared_seconds_total``) — a rate alone cannot
  tell ten requests a second one at a time from ten at once; without the
  router's counters, the arrivals are taken as Poisson;
- **the time a hop between stages takes** per workflow over the window: the
  router's ``esg_workflow_hop_seconds`` (its sum over its count);
- **per function** (:class:`FunctionReading`): requests waiting in its
  replicas' queues now, the mean execution time and the mean size of the
  batches it ran over the last interval (a replica's first
  ``WARM_BATCHES``, its cold start, left out) — from each replica's own
  ``/_esg/metrics`` (``esg_queue_length``, ``esg_exec_seconds``,
  ``esg_batch_size``), and how long its requests waited for a batch
  (``esg_queue_wait_seconds``: their number and summed wait).

Sources:

- :class:`GatewayScrape` (sidecar mode, and ``esg up``): the gateway's
  ``/metrics``; with ``gateways`` (a callable giving every gateway
  replica's metrics URL, ``gateways.py``) each one's, their counters
  summed; with ``router_url`` the router's, with ``replicas`` (a
  callable giving each function's replica metrics URLs) the replicas'.
- :class:`PrometheusQuery` (standalone mode): the same series through the
  Prometheus HTTP API (the router's where Prometheus scrapes the router:
  the job in ``deploy/prometheus/`` scrapes the ``router`` function with
  the others).

Rates over the window are increases of counters between the oldest and the
newest scrape kept; a counter that goes down was reset (a restarted
process) and its history restarts. Every fetch has a timeout; a failure is
"no data", never an exception out of the control loop. A number outside its
range (not finite, negative, a rate above ``MAX_RATE_RPS``) is no data.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Protocol

from prometheus_client.parser import text_string_to_metric_families

from ..control import MAX_RATE_RPS, gap_cv2
from ..control.observation import MAX_HOP_MS
from ..jsontext import loads_json
from ..limits import is_number
from ..runtime import contract as C

INVOCATIONS = "gateway_function_invocation_total"
STARTED = "gateway_function_invocation_started"
FUNCTION_STARTED = C.METRIC_REQUESTS_STARTED
"""Where no OpenFaaS gateway counts arrivals (Knative): the functions' own count, summed over their replicas."""
FUNCTION_ANSWERS = C.METRIC_REQUESTS
WORKFLOW_REQUESTS = C.METRIC_WORKFLOW_REQUESTS
# a function's histograms, as Prometheus exposes them
EXEC_SUM, EXEC_COUNT = f"{C.METRIC_EXEC_SECONDS}_sum", f"{C.METRIC_EXEC_SECONDS}_count"
EXEC_CPU = f"{C.METRIC_EXEC_CPU_SECONDS}_total"
BATCH_SUM = f"{C.METRIC_BATCH_SIZE}_sum"
WAIT_SUM, WAIT_COUNT = f"{C.METRIC_QUEUE_WAIT_SECONDS}_sum", f"{C.METRIC_QUEUE_WAIT_SECONDS}_count"
# the router's arrival gaps: (count, sum, sum of squares)
GAP_COUNTERS = (f"{C.METRIC_WORKFLOW_ARRIVAL_GAP_SECONDS}_count", f"{C.METRIC_WORKFLOW_ARRIVAL_GAP_SECONDS}_sum",
                f"{C.METRIC_WORKFLOW_ARRIVAL_GAP_SQUARED_SECONDS}_total")
# ... and the time a hop between stages took: (count, sum)
HOP_COUNTERS = (f"{C.METRIC_WORKFLOW_HOP_SECONDS}_count", f"{C.METRIC_WORKFLOW_HOP_SECONDS}_sum")
WARM_BATCHES = 3
"""A replica's first batches (a cold start: lazy initialisation, caches) do
not count toward its execution times."""
MAX_SCRAPE_BYTES = 8 * 1024 * 1024
"""A metrics page larger than this is not read (no data)."""


@dataclass(frozen=True)
class FunctionReading:
    """One function, summed or averaged over its replicas."""

    queue: float = 0.0
    """Requests waiting for a batch, now, over all replicas."""
    exec_ms: Optional[float] = None
    """Mean execution time of the batches run over the last interval."""
    batch_mean: Optional[float] = None
    """Mean size of those batches."""
    cpu_ratio: Optional[float] = None
    """How busy the share's cores were while those batches ran: processor
    time over execution time (``esg_exec_cpu_seconds``; CPU instances)."""
    queue_waits: Optional[tuple[float, float]] = None
    """(requests that started a batch over the last interval, the time they
    waited for it in ms, summed): ``esg_queue_wait_seconds``."""


@dataclass(frozen=True)
class Observation:
    """What the scaler sees at ``at_s``; parts a source cannot see stay empty."""

    at_s: float
    rates_rps: dict[str, float]
    """Requests per second arriving at each function over the window: smooth, for scaling down."""
    source: str
    window_s: float
    recent_rps: dict[str, float] = field(default_factory=dict)
    """The same over the last interval: quick, for scaling up."""
    recent_window_s: float = 5.0
    """The length of the interval ``recent_rps`` is taken over."""
    codes: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per function: answers by HTTP status code over the last interval."""
    workflow_answers: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """Per workflow: (ok, late, rejected) answers over the last interval (the router's)."""
    workflow_shed: dict[str, float] = field(default_factory=dict)
    """Per workflow: requests shed at the entry (429) over the last interval (the router's)."""
    workflow_shed_window: dict[str, float] = field(default_factory=dict)
    """The same over the window (the span of ``rates_rps``): shed requests are
    offered load, and their count over the last interval alone would put one
    interval's burst into the window's rate."""
    functions: dict[str, FunctionReading] = field(default_factory=dict)
    """Per function: queue, execution time and batch size (its replicas')."""
    workflow_arrival_cv2: dict[str, float] = field(default_factory=dict)
    """Per workflow: the squared coefficient of variation of the gaps between
    its arrivals over the window (the router's; 1 is Poisson)."""
    workflow_hop_ms: dict[str, float] = field(default_factory=dict)
    """Per workflow: the mean time a hop between stages took over the window (the router's)."""
    gateways: Optional[int] = None
    """The gateway replicas whose counters it sums (``gateway_pods``; 1
    without); None where not known (Prometheus sums every gateway's)."""


class MetricsSource(Protocol):
    def observe(self, now_s: float) -> Optional[Observation]:
        """The current observation, or None when there is no usable data."""


def _fetch(url: str, timeout_s: float) -> Optional[bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status != 200:
                return None
            body = response.read(MAX_SCRAPE_BYTES + 1)
            return None if len(body) > MAX_SCRAPE_BYTES else body
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _function_name(label: str) -> str:
    return label.split(".", 1)[0]


def _plausible(value: float) -> bool:
    return is_number(value) and value >= 0


def parse_samples(text: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every sample; ValueError on a broken page."""
    return [(s.name, s.labels, float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def parse_gateway(text: str) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """(started per function, answers per (function, code)) from gateway metrics text."""
    started: dict[str, float] = {}
    answers: dict[tuple[str, str], float] = {}
    for name, labels, value in parse_samples(text):
        if "function_name" not in labels or not _plausible(value):
            continue
        fn = _function_name(labels["function_name"])
        if name in (STARTED, STARTED + "_total"):  # the parser adds _total to a counter's sample
            started[fn] = started.get(fn, 0.0) + value
        elif name == INVOCATIONS:
            key = (fn, labels.get("code", ""))
            answers[key] = answers.get(key, 0.0) + value
    return started, answers


def parse_invocations(text: str) -> dict[str, float]:
    """Total answers per function (all status codes) from gateway metrics text."""
    totals: dict[str, float] = {}
    for (fn, _code), value in parse_gateway(text)[1].items():
        totals[fn] = totals.get(fn, 0.0) + value
    return totals


class Deltas:
    """Increases of counters between two scrapes: a key seen for the first
    time, or whose counter went down (reset), has no increase yet."""

    def __init__(self) -> None:
        self.last: dict = {}

    def update(self, totals: Mapping) -> dict:
        out = {k: v - self.last[k] for k, v in totals.items() if k in self.last and v >= self.last[k]}
        self.last = dict(totals)
        return out


class GatewaySum:
    """The counters of several gateways as those of one gateway that served
    what all of them served: each gateway's increase since it was last
    read, added up. A gateway read for the first time adds nothing (when
    its counts came is not known); a counter of one that went down was
    reset (a restarted gateway) and counts from 0, as Prometheus's
    ``increase`` takes it; one gone adds nothing more. So the sum never
    goes down, and a gateway that comes or goes is no counter reset. An
    increase above ``MAX_RATE_RPS`` over the time since the last reading is
    a counter that jumped, not traffic: that reading adds nothing (None),
    and the next counts from the values it said — a jump added once would
    stay in the sum, where a float no longer counts single requests."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[dict, dict]] = {}
        """url -> (started, answers) as that gateway last said them."""
        self.read_s: Optional[float] = None
        """When they were read."""
        self.started: dict[str, float] = {}
        self.answers: dict[tuple[str, str], float] = {}

    def add(self, pages: Mapping[str, tuple[dict, dict]],
            now_s: float) -> Optional[tuple[dict[str, float], dict[tuple[str, str], float]]]:
        """The summed counters after reading ``pages`` (url -> (started,
        answers)) at ``now_s``; None where a counter jumped."""
        limit = math.inf if self.read_s is None else MAX_RATE_RPS * max(now_s - self.read_s, 0.0)
        increases: list[tuple[dict, object, float]] = []
        last = {}
        for url, (started, answers) in pages.items():
            before = self.last.get(url)
            for total, now, then in ((self.started, started, before and before[0]),
                                     (self.answers, answers, before and before[1])):
                for key, value in now.items():
                    was = (then or {}).get(key)
                    if before is not None:
                        increases.append((total, key, value if was is None or value < was else value - was))
            # a counter missing from one page keeps its value: read again later, it is no new counter
            last[url] = ({**before[0], **started}, {**before[1], **answers}) if before else (started, answers)
        self.last, self.read_s = last, now_s
        if any(increase > limit for _, _, increase in increases):
            return None
        for total, key, increase in increases:
            total[key] = total.get(key, 0.0) + increase
        for started, answers in pages.values():  # a function seen has a total, if only 0
            for total, now in ((self.started, started), (self.answers, answers)):
                for key in now:
                    total.setdefault(key, 0.0)
        return dict(self.started), dict(self.answers)


@dataclass
class GatewayScrape:
    url: str
    window_s: float = 30.0
    timeout_s: float = 2.0
    router_url: Optional[str] = None
    """The workflow router's /metrics, for answers by class per workflow."""
    replicas: Optional[Callable[[], Mapping[str, list[str]]]] = None
    """Each function's replica /_esg/metrics URLs, now."""
    gateways: Optional[Callable[[], Optional[list[str]]]] = None
    """Every gateway replica's /metrics URL, now (``gateways.GatewayPods``;
    None: not known), read instead of ``url``: each serves part of the traffic."""
    summed: GatewaySum = field(default_factory=GatewaySum)
    history: deque = field(default_factory=deque)
    """(time_s, arrivals per function, shed per workflow since the scrape before, the increases of the
    router's sums per workflow since the scrape before — arrival gaps and hops, by counter name) of the
    scrapes within the window."""
    codes: Deltas = field(default_factory=Deltas)
    router: Deltas = field(default_factory=Deltas)
    router_sums: Deltas = field(default_factory=Deltas)
    replica_counters: Deltas = field(default_factory=Deltas)

    def observe(self, now_s: float) -> Optional[Observation]:
        counters = self._gateway_counters(now_s)
        if counters is None:
            return None
        started, answers = counters
        arrivals = dict(started)
        for (fn, _code), value in answers.items():
            if fn not in started:  # a gateway without the started counter: answers stand in
                arrivals[fn] = arrivals.get(fn, 0.0) + value
        codes: dict[str, dict[str, float]] = {}
        for (fn, code), value in self.codes.update(answers).items():
            codes.setdefault(fn, {})[code] = value
        # every counter is read at every scrape, so that increases span the same interval
        workflow_answers, shed, sums = self._router_answers() if self.router_url else ({}, {}, {})
        functions = self._replica_readings() if self.replicas is not None else {}
        if self.history and any(arrivals.get(f, 0.0) < v for f, v in self.history[-1][1].items()):
            self.history.clear()  # a counter reset: the gateway restarted
        self.history.append((now_s, arrivals, shed, sums))
        while len(self.history) > 2 and self.history[0][0] < now_s - self.window_s:
            self.history.popleft()
        if len(self.history) < 2:
            return None
        (t0, first, _, _), (t1, last, _, _) = self.history[0], self.history[-1]
        (tp, previous, _, _) = self.history[-2]
        shed_window: dict[str, float] = {}
        sums_window: dict[str, dict[str, float]] = {}
        for _, _, increases, sum_increases in list(self.history)[1:]:  # each entry's increase spans the interval before it
            for workflow, value in increases.items():
                shed_window[workflow] = shed_window.get(workflow, 0.0) + value
            for workflow, by_name in sum_increases.items():
                window = sums_window.setdefault(workflow, {})
                for name, value in by_name.items():
                    window[name] = window.get(name, 0.0) + value
        if t1 <= t0 or t1 <= tp:
            return None
        rates = {f: (v - first.get(f, 0.0)) / (t1 - t0) for f, v in last.items()}
        recent = {f: (v - previous.get(f, 0.0)) / (t1 - tp) for f, v in last.items()}
        if any(not 0 <= r <= MAX_RATE_RPS for r in (*rates.values(), *recent.values())):
            self.history.clear()  # a counter that jumped: not traffic; start again
            return None
        cv2 = {workflow: gap_cv2(*(s[name] for name in GAP_COUNTERS)) for workflow, s in sums_window.items()
               if all(name in s for name in GAP_COUNTERS)}
        hops = {workflow: hop_ms(s.get(HOP_COUNTERS[0], 0.0), s.get(HOP_COUNTERS[1], 0.0))
                for workflow, s in sums_window.items()}
        return Observation(now_s, rates, "gateway", t1 - t0, recent, t1 - tp, codes, workflow_answers, shed,
                           shed_window, functions, cv2, {w: ms for w, ms in hops.items() if ms is not None},
                           len(self.summed.last) if self.gateways is not None else 1)

    def _gateway_counters(self, now_s: float) -> Optional[tuple[dict[str, float], dict[tuple[str, str], float]]]:
        """(started per function, answers per (function, code)): the
        gateway's counters, or with ``gateways`` those of one gateway that
        served what all of them served (:class:`GatewaySum`); None where a
        gateway cannot be read — with several, its share of the traffic
        is not known."""
        urls = [self.url] if self.gateways is None else self.gateways()
        if not urls:
            return None
        if len(urls) == 1:
            bodies = [_fetch(urls[0], self.timeout_s)]
        else:
            with ThreadPoolExecutor(min(8, len(urls))) as pool:
                bodies = list(pool.map(lambda u: _fetch(u, self.timeout_s), urls))
        pages = {}
        for url, body in zip(urls, bodies):
            if body is None:
                return None
            try:
                pages[url] = parse_gateway(body.decode("utf-8", "replace"))
            except (ValueError, TypeError):
                return None
        return pages[self.url] if self.gateways is None else self.summed.add(pages, now_s)

    def _router_answers(self) -> tuple[dict[str, tuple[float, float, float]], dict[str, float],
                                       dict[str, dict[str, float]]]:
        """From the router's counters, over the interval since the scrape
        before: answers by class and requests shed per workflow, and the
        increases of its sums (arrival gaps, hops) by counter name."""
        body = _fetch(self.router_url, self.timeout_s)
        totals, sum_totals = {}, {}
        if body is not None:
            try:
                for name, labels, value in parse_samples(body.decode("utf-8", "replace")):
                    if name == WORKFLOW_REQUESTS and _plausible(value):
                        totals[(labels.get("workflow", ""), labels.get("slo", ""))] = value
                    elif name in GAP_COUNTERS + HOP_COUNTERS and _plausible(value):
                        sum_totals[(labels.get("workflow", ""), name)] = value
            except (ValueError, TypeError):
                totals, sum_totals = {}, {}
        sums: dict[str, dict[str, float]] = {}
        for (workflow, name), value in self.router_sums.update(sum_totals).items():
            sums.setdefault(workflow, {})[name] = value
        return (*answers_by_class(self.router.update(totals)), sums)

    def _replica_readings(self) -> dict[str, FunctionReading]:
        urls = {url: fn for fn, many in (self.replicas() or {}).items() for url in many}
        with ThreadPoolExecutor(max(1, min(8, len(urls)))) as pool:
            pages = dict(zip(urls, pool.map(lambda u: _fetch(u, self.timeout_s), urls)))
        queue: dict[str, float] = {}
        counters: dict[tuple[str, str], float] = {}
        for url, body in pages.items():
            if body is None:
                continue
            try:
                samples = parse_samples(body.decode("utf-8", "replace"))
            except (ValueError, TypeError):
                continue
            fn = urls[url]
            for name, _labels, value in samples:
                if not _plausible(value):
                    continue
                if name == C.METRIC_QUEUE_LENGTH:
                    queue[fn] = queue.get(fn, 0.0) + value
                elif name in (EXEC_SUM, EXEC_COUNT, BATCH_SUM, EXEC_CPU, WAIT_SUM, WAIT_COUNT):
                    counters[(url, name)] = value
        warm = {url for (url, name), value in self.replica_counters.last.items()
                if name == EXEC_COUNT and value >= WARM_BATCHES}
        per_function: dict[str, dict[str, float]] = {}
        for (url, name), value in self.replica_counters.update(counters).items():
            if url not in warm:
                continue
            sums = per_function.setdefault(urls[url], {})
            sums[name] = sums.get(name, 0.0) + value
        readings = {}
        for fn in set(queue) | set(per_function):
            sums = per_function.get(fn, {})
            batches, busy_s = sums.get(EXEC_COUNT, 0.0), sums.get(EXEC_SUM, 0.0)
            readings[fn] = FunctionReading(
                queue.get(fn, 0.0),
                busy_s / batches * 1000.0 if batches else None,
                sums.get(BATCH_SUM, 0.0) / batches if batches else None,
                sums[EXEC_CPU] / busy_s if batches and busy_s > 0 and EXEC_CPU in sums else None,
                (sums[WAIT_COUNT], sums.get(WAIT_SUM, 0.0) * 1000.0) if sums.get(WAIT_COUNT) else None)
        return readings


@dataclass
class PrometheusQuery:
    base_url: str
    window_s: float = 30.0
    timeout_s: float = 2.0
    recent_s: float = 5.0

    def query(self, window_s: Optional[float] = None, counter: str = STARTED) -> str:
        """Arrivals per function (started invocations) over the window."""
        return f"sum by (function_name) (rate({counter}[{int(window_s or self.window_s)}s]))"

    def observe(self, now_s: float) -> Optional[Observation]:
        counter = STARTED
        rates = self._values(self.query())
        if not rates:  # a gateway without the started counter: answers stand in
            counter = INVOCATIONS
            rates = self._values(self.query(counter=counter))
        if not rates:  # no OpenFaaS gateway (Knative Services): the functions count their own arrivals
            counter = FUNCTION_STARTED
            rates = self._values(self.query(counter=counter))
        if not rates:
            return None  # no series: Prometheus has not scraped the gateway or the functions (yet)
        recent = self._values(self.query(self.recent_s, counter)) or {}
        if any(not 0 <= r <= MAX_RATE_RPS for r in (*rates.values(), *recent.values())):
            return None
        r = int(self.recent_s)
        codes: dict[str, dict[str, float]] = {}
        answered = FUNCTION_ANSWERS if counter == FUNCTION_STARTED else INVOCATIONS  # by status code
        for (fn, code), value in (self._values(
                f"sum by (function_name, code) (increase({answered}[{r}s]))", ("function_name", "code"))
                or {}).items():
            codes.setdefault(fn, {})[code] = value
        queue = self._values(f"sum by (function_name) ({C.METRIC_QUEUE_LENGTH})") or {}
        exec_ms = self._ratio(EXEC_SUM, EXEC_COUNT)
        batch = self._ratio(BATCH_SUM, f"{C.METRIC_BATCH_SIZE}_count")
        cpu = self._ratio(EXEC_CPU, EXEC_SUM)
        waited = self._values(f"sum by (function_name) (increase({WAIT_COUNT}[{r}s]))") or {}
        wait_s = self._values(f"sum by (function_name) (increase({WAIT_SUM}[{r}s]))") or {}
        functions = {fn: FunctionReading(queue.get(fn, 0.0),
                                         exec_ms[fn] * 1000.0 if fn in exec_ms else None, batch.get(fn), cpu.get(fn),
                                         (waited[fn], wait_s.get(fn, 0.0) * 1000.0) if waited.get(fn) else None)
                     for fn in set(queue) | set(exec_ms) | set(waited)}
        answers, shed = self._router_answers(r)
        _, shed_window = self._router_answers(int(self.window_s))
        return Observation(now_s, rates, "prometheus", self.window_s, recent, self.recent_s, codes, answers, shed,
                           shed_window, functions, self._arrival_cv2(), self._hop_ms())

    def _router_answers(self, span_s: int) -> tuple[dict[str, tuple[float, float, float]], dict[str, float]]:
        """Per workflow, (ok, late, rejected) answers and requests shed at the
        entry over the span, where Prometheus scrapes the router (its
        ``esg_workflow_requests_total{workflow,slo}``); else none."""
        return answers_by_class(self._values(
            f"sum by (workflow, slo) (increase({WORKFLOW_REQUESTS}[{span_s}s]))", ("workflow", "slo")) or {})

    def _arrival_cv2(self) -> dict[str, float]:
        """Per workflow, the gaps' cv² over the window, from the router's
        counters where Prometheus scrapes the router (else none: Poisson).
        ``increase`` extrapolates the three sums alike, which the ratio
        ``n·Σg² / (Σg)²`` does not see."""
        sums = [self._window_increase(name) for name in GAP_COUNTERS]
        return {workflow: gap_cv2(*(s[workflow] for s in sums)) for workflow in sums[0]
                if all(workflow in s for s in sums)}

    def _hop_ms(self) -> dict[str, float]:
        """Per workflow, the mean time a hop between stages took over the window (the router's)."""
        count, total = (self._window_increase(name) for name in HOP_COUNTERS)
        hops = {workflow: hop_ms(count[workflow], total.get(workflow, 0.0)) for workflow in count}
        return {workflow: ms for workflow, ms in hops.items() if ms is not None}

    def _window_increase(self, counter: str) -> dict[str, float]:
        """Per workflow, a router counter's increase over the window."""
        return self._values(f"sum by (workflow) (increase({counter}[{int(self.window_s)}s]))", ("workflow",)) or {}

    def _ratio(self, numerator: str, denominator: str) -> dict[str, float]:
        w = int(self.window_s)
        values = self._values(f"sum by (function_name) (rate({numerator}[{w}s])) / "
                              f"sum by (function_name) (rate({denominator}[{w}s]))") or {}
        return {fn: v for fn, v in values.items() if v > 0}  # NaN (no batches) was dropped already

    def _values(self, query: str, labels: tuple[str, ...] = ("function_name",)) -> Optional[dict]:
        url = self.base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
        body = _fetch(url, self.timeout_s)
        if body is None:
            return None
        try:
            doc = loads_json(body)
            if doc.get("status") != "success":
                return None
            values: dict = {}
            for item in doc["data"]["result"]:
                metric = item["metric"]
                if not all(metric.get(label) for label in labels):
                    continue
                key = tuple(_function_name(metric[x]) if x == "function_name" else metric[x] for x in labels)
                key = key[0] if len(key) == 1 else key
                value = float(item["value"][1])
                if _plausible(value):
                    values[key] = values.get(key, 0.0) + value
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None
        return values


def answers_by_class(increases: Mapping[tuple[str, str], float]) -> tuple[dict[str, tuple[float, float, float]],
                                                                          dict[str, float]]:
    """Per workflow, (ok, late, rejected) answers and the requests shed at the
    entry, from the increases of the router's requests counter by (workflow, slo)."""
    answers: dict[str, list[float]] = {}
    shed: dict[str, float] = {}
    for (workflow, slo), value in increases.items():
        row = answers.setdefault(workflow, [0.0, 0.0, 0.0])  # a workflow the router counts has its answers read
        column = {"met": 0, "missed": 1, "rejected": 2}.get(slo)
        if column is not None:
            row[column] += value
        elif slo == "shed":
            shed[workflow] = value
    return {w: (a[0], a[1], a[2]) for w, a in answers.items()}, shed


def hop_ms(count: float, sum_s: float) -> Optional[float]:
    """The mean hop in ms from the router's hop summary over a window; None
    without hops, or where the mean is beyond any plausible hop."""
    if not (count > 0 and sum_s >= 0):
        return None
    mean_ms = sum_s / count * 1000.0
    return mean_ms if mean_ms <= MAX_HOP_MS else None


def make_source(kind: str, url: str, window_s: float, interval_s: float = 5.0,
                gateways: Optional[Callable[[], Optional[list[str]]]] = None) -> MetricsSource:
    """``gateways`` (a gateway source only): every gateway replica's metrics URL, now."""
    if kind == "gateway":
        return GatewayScrape(url, window_s, gateways=gateways)
    return PrometheusQuery(url, window_s, recent_s=max(interval_s, 5.0))
