"""Admission at a workflow's entry: shed with 429 rather than let every
request time out when the load exceeds what the machine can serve.

An adaptive limit on the requests in flight, additive increase and
multiplicative decrease (as TCP's congestion window, Netflix's
``concurrency-limits`` and Envoy's adaptive concurrency filter), with a
band in which it holds:

- a request is admitted while fewer than ``limit`` are in flight, or, at
  a limit that workflows share, while its workflow has fewer than its part
  of it in flight (below); else it is refused at once (the router answers
  429 with ``Retry-After``);
- each answer to an admitted request is its latency over its SLO (∞ for a
  504 or a stage's 429); they are judged ``window`` at a time:
  - more than ``target_miss`` of them over 1 (missed) **and** the window's
    median latency inflated by load — over ``inflation`` times the
    baseline, the lowest window median seen lately — the limit falls to
    ``decrease`` times the most that were in flight during that window or
    when any of its answers was admitted (or the limit, if lower);
  - at most ``target_miss`` of them missed, and either at most
    ``target_miss`` over ``headroom`` (near the SLO) or the median within
    ``calm_inflation`` of the median latency of the recent requests that
    were *alone* when admitted (nothing else in flight in their scope: no
    queueing shows): the limit rises by ``increase``, up to ``max_limit``;
  - else it holds.

Misses without inflated latency (a machine that is slow for every
request, however few are in flight) are not shed for: refusing requests
would not make the others faster, only lose them — measured under ``esg
up`` at 1x on a slow day, a limit judged on misses alone shed a third of
the requests and the SLO hit rate of all requests fell from 68% to 55%.
This is the gradient of Netflix's ``Gradient2`` limit (the long-run
latency over the current one), used as a gate. The baseline drifts up by
``baseline_drift`` per window, so a machine that became slower for good
(a busy neighbour) becomes the new baseline.

The second way up is for a workflow whose answers lie near its SLO even
without load (an image classifier of 100 ms in a 200 ms SLO, on a shared
core): judged on nearness alone, its limit never rose again after a rate
step had cut it — measured under ``esg up`` beside a one-core hog, the
replicas the step called for were serving and every admitted answer met
the SLO, yet the limit, near the mean in flight, turned away a fifth of
the arrivals for the rest of the run (and the other workflows' with them,
under the machine scope). It is judged against the requests that ran
alone, not against the baseline: the baseline drifts up to whatever the
latency has been for a while, queueing included, so "near the baseline"
would let a limit at which every answer queues rise into misses, and saw.

The limit moves only at a judgement. Raising it with each good answer (by
1/limit, as TCP does per acknowledgement) adds window/limit within one
window — +10 at a limit of 2 with a window of 20 — before its misses can be
counted; and without the band, the limit saws between the last value that
met the SLO and the first that did not, so half the windows miss. Both were
measured under ``esg up`` at 3x: 38% of the admitted requests met the SLO.

The level a window's answers were admitted at counts, not only the
concurrency seen while the window was open: a burst of 25 requests
admitted at once is answered over two windows, and the second, opened
after the burst was admitted, saw 2–3 in flight — judged on that peak
alone, its misses (the burst's own) cut the limit to about 2, and good
windows took tens of seconds to raise it again while the cores were 88%
idle (``python bench/up_random.py``, seed 4: gamma arrivals with cv 3.9 on
the image workflow, which then turned away requests with one to three in
flight; ``tests/unit/test_admission.py`` replays the two windows).

The limit starts at ``max_limit``: a machine that keeps up never refuses a
request. Pure: no clock, no I/O; the router owns the limits and calls them
under its lock.

Scope (``scope``): ``"machine"`` (the default) puts every workflow behind
one limit on their requests in flight together, judged on all their
answers: the workflows share the machine's cores (or GPUs), so one
workflow's load makes another's requests late, and a limit per workflow
would shed only the workflow that misses while the others keep the machine
busy. ``"workflow"``: one limit per workflow, for workflows that do not
share hardware.

Each workflow's part of a shared limit (``partitioned``, as Netflix's
partitioned limiter guarantees each partition its percentage of the
limit): at the limit, a workflow with fewer than its part in flight — the
limit over the workflows sharing it, at least one — is still admitted; a
request is refused only at the limit and only where its workflow holds
its part already. One workflow's burst fills a shared limit with its own requests:
measured under ``esg up`` on a random workload (``python
bench/up_random.py --seeds 33``: gamma arrivals of cv 3.2 on the image
workflow at about 5 rps beside a text workflow of cv 2.1), the text
workflow, none of whose admitted requests was late, was refused 16% of
its requests — a fifth of those with none of its own in flight, behind
four to six of the image workflow's (counted from that run's
``requests.json`` by a throw-away script). Borrowing the others' unused parts stays
allowed (below the limit anyone is admitted), so a workflow alone gets the
whole limit; at most the limit plus the parts of the workflows below
theirs are in flight at once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Optional


SCOPES = ("machine", "workflow")


@dataclass(frozen=True)
class AdmissionSettings:
    target_miss: float = 0.1
    """A window of answers with more misses than this lowers the limit."""
    window: int = 20
    """Answers per judgement."""
    decrease: float = 0.75
    """The limit's factor after a bad window."""
    increase: float = 1.0
    """Added to the limit after a window with few answers near the SLO."""
    headroom: float = 0.8
    """An answer later than this fraction of its SLO is near it: the limit does not grow."""
    inflation: float = 1.3
    """A window's median latency over the baseline beyond which misses are load's doing."""
    calm_inflation: float = 1.1
    """A window's median latency within this of the alone requests' shows no queueing:
    with few misses, the limit rises even when answers lie near the SLO."""
    baseline_drift: float = 0.05
    """The baseline's rise per window towards the current medians."""
    min_limit: int = 1
    max_limit: int = 1024
    scope: str = "machine"
    """``machine``: one limit over all workflows; ``workflow``: one each (see the module)."""
    partitioned: bool = True
    """At a shared limit, a workflow below its part of it is still admitted (see the module)."""

    def __post_init__(self) -> None:
        if not (0 <= self.target_miss < 1 and self.window >= 1 and 0 < self.decrease < 1 and self.increase > 0
                and 0 < self.headroom <= 1 and 1 <= self.calm_inflation <= self.inflation
                and 0 <= self.baseline_drift < 1
                and 1 <= self.min_limit <= self.max_limit):
            raise ValueError("admission settings: need 0 <= target_miss < 1, window >= 1, 0 < decrease < 1, "
                             "increase > 0, 0 < headroom <= 1, 1 <= calm_inflation <= inflation, 0 <= baseline_drift < 1, "
                             "1 <= min_limit <= max_limit")
        if self.scope not in SCOPES:
            raise ValueError(f"admission settings: scope must be one of {', '.join(SCOPES)}, not {self.scope!r}")

    def scope_of(self, workflow: str) -> str:
        """The name of the limit a workflow's requests count against."""
        return "*" if self.scope == "machine" else workflow


class ConcurrencyLimit:
    """The adaptive in-flight limit of one workflow (see the module)."""

    def __init__(self, settings: AdmissionSettings = AdmissionSettings()):
        self.settings = settings
        self.limit = float(settings.max_limit)
        self.ratios: list[float] = []
        """Latency over SLO of this window's answers so far."""
        self.baseline = math.inf
        """The lowest window median latency over SLO lately (see the module)."""
        self.peak = 0
        """The most requests in flight since the last judgement, or when one of
        this window's answers was admitted."""
        self.alone: deque[float] = deque(maxlen=settings.window)
        """Latency over SLO of the last answers to requests admitted with nothing else in flight
        (judged on once they fill a quarter of a window)."""

    def admit(self, in_flight: int, own: int = 0, sharing: int = 1) -> bool:
        """Whether one more request may start while ``in_flight`` are
        running, ``own`` of them the asking workflow's, ``sharing`` workflows
        behind this limit: below the limit, yes; at it, only a workflow with
        fewer than its part in flight (``partitioned``; see the module)."""
        part = self.part(sharing)
        if in_flight >= math.floor(self.limit) and not (part is not None and own < part):
            return False
        self.peak = max(self.peak, in_flight + 1)
        return True

    def part(self, sharing: int) -> Optional[int]:
        """A workflow's part of the limit when ``sharing`` workflows share
        it, at least one request; None where there is none (not
        ``partitioned``, or a workflow alone behind its limit)."""
        if not self.settings.partitioned or sharing <= 1:
            return None
        return max(1, math.floor(self.limit / sharing))

    def record(self, latency_over_slo: float, alone: bool = False, others: Optional[int] = None) -> None:
        """The answer to an admitted request: its latency over its SLO
        (``math.inf`` for a request that failed the SLO without a latency);
        ``others``: how many other requests were in flight in its scope when it
        was admitted, where known; ``alone`` (nothing else was) says the same
        where the count is not known."""
        s = self.settings
        value = latency_over_slo if latency_over_slo >= 0 else math.inf  # NaN or negative: a miss
        if others is not None and others >= 0:
            self.peak = max(self.peak, others + 1)
            alone = others == 0
        self.ratios.append(value)
        if alone and math.isfinite(value):
            self.alone.append(value)
        if len(self.ratios) < s.window:
            return
        ratios, self.ratios = sorted(self.ratios), []
        median = ratios[len(ratios) // 2]
        missed = sum(r > 1.0 for r in ratios)
        near = sum(r > s.headroom for r in ratios)
        if math.isfinite(median):
            self.baseline = min(median, self.baseline * (1 + s.baseline_drift)) if math.isfinite(self.baseline) \
                else median
        inflated = not math.isfinite(median) or median > s.inflation * self.baseline
        alone = sorted(self.alone)
        calm = (len(alone) * 4 >= s.window and math.isfinite(median)
                and median <= s.calm_inflation * alone[len(alone) // 2])
        few = s.target_miss * len(ratios)
        if missed > few and inflated:
            self.limit = max(float(s.min_limit), min(self.limit, float(self.peak)) * s.decrease)
        elif missed <= few and (near <= few or calm):
            self.limit = min(float(s.max_limit), self.limit + s.increase)
        self.peak = 0


RATE_BURST_S = 5.0
"""A rate limit's bucket holds this many seconds of its rate (at least
``RATE_MIN_BURST`` requests). With one second, Poisson arrivals at 60% of
a 1.6 requests/s limit — a workflow at a low rate held to its part of a
full node, as under ``esg up`` — were a quarter of them refused: the limit
meant to hold the average rate shed the random bursts of a rate well below
it. With five seconds (and at least five), Poisson arrivals at 80% of the
limit are refused about 2% of the time at 1.2 requests/s and under 0.1%
from 5 requests/s up (``python bench/ratelimit.py`` prints the table);
a sustained excess is still held to the rate, after at most one bucket."""
RATE_MIN_BURST = 5.0


class RateLimit:
    """At most ``rate_rps`` admissions a second on average and ``burst`` at
    once: a token bucket, for a workflow the control law planned below its
    rate because the node is full (``Decision.admit_rps``). Pure: the
    caller gives the time."""

    def __init__(self, rate_rps: float, now_s: float, burst: Optional[float] = None):
        self.rate_rps = 0.0
        self.burst = 1.0
        self.tokens = 0.0
        self.at_s = now_s
        self.set(rate_rps, now_s, burst)
        self.tokens = self.burst  # a new limit starts full

    def set(self, rate_rps: float, now_s: float, burst: Optional[float] = None) -> None:
        """A new rate (and burst: ``RATE_BURST_S`` of it, at least ``RATE_MIN_BURST``, unless given)."""
        if not (math.isfinite(rate_rps) and rate_rps > 0):
            raise ValueError(f"a rate limit needs a positive rate, got {rate_rps!r}")
        self._refill(now_s)
        self.rate_rps = rate_rps
        self.burst = max(RATE_MIN_BURST, rate_rps * RATE_BURST_S) if burst is None else max(1.0, burst)
        self.tokens = min(self.tokens, self.burst)

    def admit(self, now_s: float) -> bool:
        self._refill(now_s)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def _refill(self, now_s: float) -> None:
        elapsed = max(0.0, now_s - self.at_s)  # a clock that steps back refills nothing
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_rps)
        self.at_s = max(self.at_s, now_s)
