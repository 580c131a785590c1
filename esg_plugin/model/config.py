"""Configurations of one stage and the planning model of SPEC §3.

Given a configuration ``(batch_size, gpu_share)`` of a stage and the stage's
arrival rate, :func:`evaluate` computes everything the planner needs:

==================  ====================================================
exec_ms             ``e = L_f(b, g)``
replicas            ``n = max(1, ceil(λ_s / (ρ · μ)))``, ``μ = 1000 · b / e``
wait_ms             ``w = 1000 · (b − 1) · n / λ_s`` (0 when ``b = 1``)
latency_ms          ``ℓ = w + e``
cost_pct            ``n · g``: percent of one GPU held (cost = cost_pct / 100)
==================  ====================================================

Cost is kept as an integer number of share-percent so that the planners
compare costs exactly; it becomes GPU-equivalents only in the Plan's JSON.

**Extension: queueing-aware latency** (off unless ``arrival_cv2`` is given).
SPEC §3's latency has no queueing term, yet ``n`` instances at utilisation
``ρ`` sharing one queue make requests wait. With ``arrival_cv2`` (the squared
coefficient of variation of request inter-arrival times: 1 for Poisson) the
latency gains ``queue_ms``, the expected wait of a batch for a free instance:
the M/M/c wait (Erlang C, ``c = n`` servers, batches arriving at ``λ_s / b``)
scaled by Allen–Cunneen's ``(c_a² + c_s²) / 2`` with deterministic service
(``c_s² = 0``) and batch inter-arrival variability ``c_a² = arrival_cv2 / b``
(a batch is the sum of ``b`` gaps). The simulator's ``esg`` policy plans
with it; ``esg plan`` does not unless asked (``--queueing-cv2``).

**A second model, not planned with by default** (``model="renewal"``;
``ControlSettings.queueing_model`` chooses for the control law): the GI/M/c
queue whose gaps are gamma-distributed at ``c_a²`` — an arrival waits
with probability ``P`` and then for an exponential time of mean
``e / (c (1 − σ))``, where ``σ`` is the root in (0, 1) of
``σ = A*(cμ (1 − σ))`` (``A*`` the gaps' Laplace transform,
:func:`renewal_sigma`) and ``P`` is taken as Erlang C at an offered load of
``cσ`` (exact for Poisson arrivals, where ``σ = ρ``, and for one instance,
where ``P = σ``); times ``c_a² / (c_a² + 1)`` for deterministic service
(one half for Poisson, as above). For one stage fed bursty arrivals (cv²
4–16) it is within 15% of a simulated queue's mean wait and 26% of its
99th percentile, where Allen–Cunneen gives 0–96% of the mean
(``bench/queueing_wait.py`` prints both). The control law does not plan
with it: on the 590 development workloads it cost 1.6% more GPUs for
0.01 point of hit rate (3.9% for 0.07 point with the utilisation targets
down to 0.05) — the law's feedback had been fitted around the old
model's error, and a burst's wait, paid mostly at the first stage slower
than the ones before it, is charged by a per-stage model at every stage
(``docs/EVALUATION.md``, the twenty-eighth session).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import numpy as np

from ..limits import MAX_REPLICAS, is_number
from .errors import ModelError
from .profile import FunctionProfile

DEFAULT_UTILISATION = 0.8
DEFAULT_QUEUEING_MODEL = "allen-cunneen"
"""The queueing wait's model planned with unless a caller asks for another (the module doc)."""
QUEUEING_MODELS = (DEFAULT_QUEUEING_MODEL, "renewal")
#: Tolerance when rounding ``λ_s / (ρ·μ)`` up, so that 2.0000000001 replicas
#: computed in floating point count as 2.
_CEIL_TOLERANCE = 1e-9


class Config(NamedTuple):
    """A batch size and a GPU share (percent)."""

    batch_size: int
    gpu_share: int


class StageOption(NamedTuple):
    """A configuration of one stage, evaluated at that stage's arrival rate."""

    config: Config
    exec_ms: float
    replicas: int
    wait_ms: float
    latency_ms: float
    cost_pct: int
    queue_ms: float = 0.0
    """Expected queueing wait (the queueing-aware extension; 0 without it)."""

    @property
    def cost(self) -> float:
        """GPU-equivalents held."""
        return self.cost_pct / 100.0


def replicas_needed(stage_rate_rps: float, batch_size: int, exec_ms: float, utilisation: float) -> int:
    """``n = max(1, ceil(λ_s / (ρ · μ)))`` with ``μ = 1000 · b / e``.

    Computed as ``λ_s · e / (ρ · 1000 · b)``, the same operations in the same
    order as :func:`option_arrays`, so both give identical replica counts.
    """
    return max(1, math.ceil(stage_rate_rps * exec_ms / (utilisation * 1000.0 * batch_size) - _CEIL_TOLERANCE))


def queueing_delay_ms(stage_rate_rps: float, batch_size: int, exec_ms: float, replicas: int,
                      arrival_cv2: float, model: str = DEFAULT_QUEUEING_MODEL, quantile: float | None = None) -> float:
    """Expected wait of a batch for one of ``replicas`` instances (see the
    module doc): the M/M/c wait (Erlang C) scaled by Allen–Cunneen's
    ``(c_a² + c_s²) / 2`` with deterministic service (or ``model``'s); with
    ``quantile``, that quantile of the wait. One configuration of
    :func:`queueing_delays_ms`."""
    one = queueing_delays_ms(stage_rate_rps, np.array([batch_size]), np.array([float(exec_ms)]),
                             np.array([replicas]), arrival_cv2, quantile, model)
    return float(one[0])


def check_inputs(stage_rate_rps: float, utilisation: float, arrival_cv2: float | None) -> None:
    """ModelError for a rate, utilisation target or variability the model cannot use."""
    if not (is_number(stage_rate_rps) and stage_rate_rps > 0):
        raise ModelError(f"the arrival rate must be positive (a number), got {stage_rate_rps!r} rps")
    if not (is_number(utilisation) and 0 < utilisation <= 1):
        raise ModelError(f"the utilisation target must lie in (0, 1], got {utilisation!r}")
    if arrival_cv2 is not None and not (is_number(arrival_cv2) and arrival_cv2 >= 0):
        raise ModelError(f"arrival_cv2 must be a non-negative number, got {arrival_cv2!r}")


def evaluate(
    config: Config,
    exec_ms: float,
    stage_rate_rps: float,
    utilisation: float = DEFAULT_UTILISATION,
    arrival_cv2: float | None = None,
    replicas: int | None = None,
    queueing_model: str = DEFAULT_QUEUEING_MODEL,
    queue_quantile: float | None = None,
) -> StageOption:
    """The SPEC §3 quantities of one configuration at one arrival rate
    (plus the queueing term of ``queueing_model`` when ``arrival_cv2`` is
    given: its mean, or its ``queue_quantile``), with the fewest replicas
    that keep the utilisation target, or with ``replicas``."""
    check_inputs(stage_rate_rps, utilisation, arrival_cv2)
    n = replicas_needed(stage_rate_rps, config.batch_size, exec_ms, utilisation) if replicas is None else replicas
    wait_ms = 0.0 if config.batch_size == 1 else 1000.0 * (config.batch_size - 1) * n / stage_rate_rps
    queue_ms = 0.0
    if arrival_cv2 is not None:
        queue_ms = queueing_delay_ms(stage_rate_rps, config.batch_size, exec_ms, n, arrival_cv2, queueing_model,
                                     queue_quantile)
    return StageOption(
        config=config,
        exec_ms=exec_ms,
        replicas=n,
        wait_ms=wait_ms,
        latency_ms=wait_ms + exec_ms + queue_ms,
        cost_pct=n * config.gpu_share,
        queue_ms=queue_ms,
    )


def all_options(
    profile: FunctionProfile,
    stage_rate_rps: float,
    utilisation: float = DEFAULT_UTILISATION,
    arrival_cv2: float | None = None,
) -> list[StageOption]:
    """Every runnable configuration of a function, evaluated at one rate."""
    return [
        evaluate(Config(b, g), e, stage_rate_rps, utilisation, arrival_cv2) for b, g, e in profile.configurations()
    ]


class OptionArrays(NamedTuple):
    """Every runnable configuration of a function at one rate, as arrays
    (one entry per configuration, batch-major): the vectorised twin of
    :func:`all_options`, for planners that evaluate thousands of them."""

    batch_size: np.ndarray
    gpu_share: np.ndarray
    exec_ms: np.ndarray
    replicas: np.ndarray
    wait_ms: np.ndarray
    latency_ms: np.ndarray
    cost_pct: np.ndarray
    queue_ms: np.ndarray

    def options_at(self, indices) -> list[StageOption]:
        """The configurations at ``indices`` as StageOptions (Python numbers)."""
        b, g, e, n, w, lat, cost, q = (column[indices].tolist() for column in self)
        return [StageOption(Config(*config), *rest) for config, *rest in zip(zip(b, g), e, n, w, lat, cost, q)]

    def where(self, mask: np.ndarray) -> "OptionArrays":
        """The configurations where ``mask`` holds."""
        return OptionArrays(*(column[mask] for column in self))

    def options(self) -> list[StageOption]:
        """Every configuration as a StageOption (what :func:`all_options` returns)."""
        return self.options_at(slice(None))


OPTION_CACHE_ENTRIES = 512
"""Option arrays kept for reuse (at most about 25 KB each: 60 configurations
at 5 utilisation targets): the control law re-plans at rates on a 5% grid,
and a re-plan searches the same stages up to three times (a share pinned or
not), so most arrays are asked for again."""


def option_arrays(
    profile: FunctionProfile,
    stage_rate_rps: float,
    utilisation: float = DEFAULT_UTILISATION,
    arrival_cv2: float | None = None,
    utilisations: Sequence[float] = (),
    fanout: int = 1,
    queue_quantile: float | None = None,
    no_wait: bool = False,
    queueing_model: str = DEFAULT_QUEUEING_MODEL,
) -> OptionArrays:
    """:func:`all_options` as arrays; identical values.

    ``utilisations`` (an extension, for the control law): evaluate every
    configuration at each of these targets too, so that the replica count
    — the utilisation of each instance — becomes a decision of the planner
    like batch size and share (duplicates removed). ``fanout`` (queueing-aware
    latency only): the ``fanout`` calls of one request arrive together, so the
    last of them waits ``ceil(ceil(fanout / b) / n) − 1`` executions for an
    instance. ``queue_quantile`` (queueing-aware latency only): the wait is
    that quantile of the waiting time rather than its mean (see
    :func:`queueing_delays_ms`). ``no_wait``: each batch size above 1 is also
    offered with no batching wait (timeout 0): a batch leaves with what is
    queued, planned as if it held one item (its replicas and queueing sized
    for that) — the choice a low rate needs when the profile has no batch 1.
    ``queueing_model``: :func:`queueing_delays_ms`'s ``model``.

    The result is read-only and may be shared: it is cached
    (:data:`OPTION_CACHE_ENTRIES`), a pure function of the arguments.
    """
    key = (profile, stage_rate_rps, utilisation, arrival_cv2, tuple(utilisations), fanout, queue_quantile, no_wait,
           queueing_model)
    try:
        hash(key)
    except TypeError:  # not numbers: the checks say what is wrong
        return _option_arrays(*key)
    return _cached_option_arrays(key)


@functools.lru_cache(maxsize=OPTION_CACHE_ENTRIES)
def _cached_option_arrays(key: tuple) -> OptionArrays:
    arrays = _option_arrays(*key)
    for column in arrays:
        column.setflags(write=False)
    return arrays


def _option_arrays(profile, stage_rate_rps, utilisation, arrival_cv2, utilisations, fanout, queue_quantile,
                   no_wait, queueing_model) -> OptionArrays:
    check_inputs(stage_rate_rps, utilisation, arrival_cv2)
    b, g, e, fill = _configurations(profile, no_wait)
    targets = _targets(utilisation, utilisations)
    wanted = _replicas_wanted(stage_rate_rps, e, _served_per_replica(fill, targets)).ravel()  # target by target
    copies = len(targets)
    b, g, e, fill = (np.concatenate([column] * copies) for column in (b, g, e, fill))
    # a configuration that needs more replicas than a platform runs is not one (and an int64 would overflow)
    possible = np.isfinite(wanted) & (wanted <= MAX_REPLICAS)
    if not possible.any():
        raise ModelError(f"function '{profile.name}' needs more than {MAX_REPLICAS} replicas at "
                         f"{stage_rate_rps:g} rps (utilisation target {utilisation:g}): infeasible")
    b, g, e, fill, n = b[possible], g[possible], e[possible], fill[possible], wanted[possible].astype(np.int64)
    if len(targets) > 1 or no_wait:
        key = ((b.astype(np.int64) * 1000 + g) * (int(n.max()) + 1) + n) * 2 + (fill == b)  # one per (b, g, n, fill)
        _, first = np.unique(key, return_index=True)
        keep = np.sort(first)
        b, g, e, n, fill = b[keep], g[keep], e[keep], n[keep], fill[keep]
    wait_ms = np.where(fill == 1, 0.0, 1000.0 * (fill - 1) * n / stage_rate_rps)
    if arrival_cv2 is None:
        queue_ms = np.zeros(len(e))
    else:
        queue_ms = queueing_delays_ms(stage_rate_rps, fill, e, n, arrival_cv2, queue_quantile, queueing_model)
        if fanout > 1:
            queue_ms = queue_ms + fanout_rounds_ms(fanout, fill, n, e)
    return OptionArrays(b, g, e, n, wait_ms, wait_ms + e + queue_ms, n * g, queue_ms)


def fanout_rounds_ms(fanout: int, fill, n, e):
    """The wait of a fan-out's last call for an instance: the ``fanout``
    calls of one request arrive together, ``ceil(fanout / fill)`` batches
    on ``n`` instances, so the last waits ``ceil(batches / n) − 1``
    executions (0 for one call)."""
    return (np.ceil(np.ceil(fanout / fill) / n) - 1) * e


def _targets(utilisation: float, utilisations: Sequence[float]) -> list[float]:
    """The utilisation targets to evaluate at: ``utilisation``, then the
    others (duplicates dropped); ModelError for one outside (0, 1]."""
    targets = [utilisation] + [u for u in utilisations if u != utilisation]
    for u in targets:
        if not (is_number(u) and 0 < u <= 1):
            raise ModelError(f"the utilisation target must lie in (0, 1], got {u!r}")
    return targets


def _served_per_replica(fill: np.ndarray, targets: Sequence[float]) -> np.ndarray:
    """The divisor of :func:`_replicas_wanted` for each configuration at
    each utilisation target, one row per target: target × 1000 ms × the
    items a batch is planned to hold, so that a stage rate × a batch's
    execution time over it is the replicas that rate needs."""
    return np.array(targets)[:, None] * 1000.0 * fill


def _replicas_wanted(stage_rate_rps, e: np.ndarray, served: np.ndarray) -> np.ndarray:
    """The replicas each configuration needs (``served`` from
    :func:`_served_per_replica`: one row per target; or a column of rates
    at one target, one row per rate), as floats: ∞ or above
    :data:`MAX_REPLICAS` where it cannot keep up."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.maximum(1, np.ceil(stage_rate_rps * e / served - _CEIL_TOLERANCE))


class LeastCosts:
    """The least cost (replicas × share) of functions at any rate, summed:
    each function's least among the configurations :func:`option_arrays`
    offers with these arguments — at its ``share`` only, where given — at
    ``fanout`` times the rate, without evaluating them: at each
    configuration's highest utilisation target, where it needs the fewest
    replicas. Prepared once (:func:`_cheapest_candidates`), priced at an
    array of rates by :meth:`at`: for a search of the largest rate a
    capacity fits, which prices the same functions at many rates.

    ``functions``: (profile, fanout, share or None[, a share to stay below
    or None]) of each, one or more."""

    def __init__(self, functions: Sequence[tuple[FunctionProfile, int, int | None]
                                           | tuple[FunctionProfile, int, int | None, int | None]],
                 utilisation: float = DEFAULT_UTILISATION, utilisations: Sequence[float] = (),
                 no_wait: bool = False):
        if not functions:
            raise ModelError("no functions to price")
        target = max(_targets(utilisation, utilisations))
        parts = [(fanout, _cheapest_candidates(profile, target, no_wait, share, below[0] if below else None))
                 for profile, fanout, share, *below in functions]
        self.runnable = all(len(columns[0]) for _, columns in parts)  # else a function has no configuration
        self.fanout = np.concatenate([np.full(len(columns[0]), fanout) for fanout, columns in parts])
        self.exec_ms, self.served, self.gpu_share = (np.concatenate([columns[i] for _, columns in parts])
                                                     for i in range(3))
        self.starts = np.cumsum([0] + [len(columns[0]) for _, columns in parts[:-1]])  # each function's first

    def at(self, rates_rps) -> np.ndarray:
        """The sum of the functions' least costs (share-percent) at each of
        ``rates_rps``; ∞ where one cannot run (where :func:`option_arrays`
        raises, or offers nothing at the share)."""
        rates = np.asarray(rates_rps, dtype=float).reshape(-1)
        if not (np.isfinite(rates) & (rates > 0)).all():
            raise ModelError("the rates must be positive numbers")
        if not self.runnable:
            return np.full(len(rates), np.inf)
        n = _replicas_wanted(rates[:, None] * self.fanout, self.exec_ms, self.served)  # one row per rate
        costs = np.where(np.isfinite(n) & (n <= MAX_REPLICAS), n * self.gpu_share, np.inf)
        return np.minimum.reduceat(costs, self.starts, axis=1).sum(axis=1)  # whole numbers: exact in any order


_SAME_RATIO = 1e-9
"""How much more execution per unit served a configuration may need than its share's least and still be kept
by :func:`_cheapest_candidates`: far above float rounding, so that none that the rounding could make the cheapest
is left out."""


@functools.lru_cache(maxsize=OPTION_CACHE_ENTRIES)
def _cheapest_candidates(profile: FunctionProfile, target: float, no_wait: bool, share: int | None,
                         below: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exec_ms, served per replica at ``target``, share) of the
    configurations that can be the cheapest at some rate: at one share the
    cost is the replica count times the share, and the replica count grows
    with the execution per unit served, so only the least of each share's
    can be (those within :data:`_SAME_RATIO` of it kept, rounding aside).
    Only those at ``share`` where given, below ``below`` where given."""
    b, g, e, fill = _configurations(profile, no_wait)
    if share is not None:
        b, g, e, fill = (column[g == share] for column in (b, g, e, fill))
    if below is not None:
        b, g, e, fill = (column[g < below] for column in (b, g, e, fill))
    served = _served_per_replica(fill, [target])[0]
    ratio = e / served
    shares, which = np.unique(g, return_inverse=True)
    least = np.full(len(shares), np.inf)
    np.minimum.at(least, which, ratio)
    keep = ratio <= least[which] * (1.0 + _SAME_RATIO)
    columns = e[keep], served[keep], g[keep]
    for column in columns:
        column.setflags(write=False)
    return columns


@functools.lru_cache(maxsize=OPTION_CACHE_ENTRIES)
def _configurations(profile: FunctionProfile, no_wait: bool) -> tuple[np.ndarray, ...]:
    """(batch sizes, shares, exec_ms, items a batch is planned to hold) of
    every configuration offered: the runnable ones, and with ``no_wait`` the
    batch sizes worth running without a fill wait (holding one item)."""
    b, g, e = profile.runnable_arrays()
    fill = b.copy()
    if no_wait and (b > 1).any():
        more = _fastest_without_wait(b, g, e)
        b, g, e = np.concatenate([b, b[more]]), np.concatenate([g, g[more]]), np.concatenate([e, e[more]])
        fill = np.concatenate([fill, np.ones(len(more), dtype=fill.dtype)])
    for column in (b, g, e, fill):
        column.setflags(write=False)
    return b, g, e, fill


def _fastest_without_wait(b: np.ndarray, g: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Indices of the batch sizes worth offering without a fill wait: at one
    share, every such option (and batch 1) serves one item per execution,
    so the fastest of them runs no longer and needs no more replicas for a
    utilisation target than the others. Per share: the fastest batch size
    above 1, unless batch 1 is at least as fast. (The slower ones could
    reach the front only through the rounding of their replica count — a
    replica count the fastest is not offered at — which is no reason to
    batch; offering them all doubled the menus and the search's time.)"""
    first = _fastest_per_share(np.flatnonzero(b > 1), g, e)
    ones = _fastest_per_share(np.flatnonzero(b == 1), g, e)
    if len(first) and len(ones):
        at = np.minimum(np.searchsorted(g[ones], g[first]), len(ones) - 1)
        beaten = (g[ones][at] == g[first]) & (e[ones][at] <= e[first])
        first = first[~beaten]
    return first


def _fastest_per_share(indices: np.ndarray, g: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Of ``indices``, the one with the least execution time per share, by share."""
    if len(indices) == 0:
        return indices
    ordered = indices[np.lexsort((e[indices], g[indices]))]
    shares = g[ordered]
    return ordered[np.concatenate(([True], shares[1:] != shares[:-1]))]


def queueing_delays_ms(stage_rate_rps: float, b: np.ndarray, e: np.ndarray, n: np.ndarray,
                       arrival_cv2: float, quantile: float | None = None,
                       model: str = DEFAULT_QUEUEING_MODEL) -> np.ndarray:
    """:func:`queueing_delay_ms` over arrays of configurations (the Erlang B
    recursion run for all of them at once); ``model="renewal"``: the GI/M/c
    wait for gamma gaps (the module doc), not planned with by default.

    With ``quantile`` q, the q-quantile of the wait instead of its mean: in
    M/M/c a batch waits longer than t with probability ``C · exp(−(cμ − λ) t)``
    (C the Erlang C probability of waiting at all), so the quantile is
    ``ln(C / (1 − q))⁺ / (cμ − λ)``, scaled like the mean by Allen–Cunneen's
    factor (renewal: ``P`` and ``cμ(1 − σ)`` in their place, scaled by its
    factor). A latency objective is about the tail, not the mean.
    """
    if quantile is not None and not 0 < quantile < 1:
        raise ModelError(f"the queueing quantile must lie in (0, 1), got {quantile!r}")
    offered, stable, waiting, service = wait_parts(stage_rate_rps, b, e, n, arrival_cv2, model)
    with np.errstate(divide="ignore", invalid="ignore"):
        if quantile is not None:
            waiting = np.log(np.maximum(waiting / (1.0 - quantile), 1.0))
        delay = waiting * e / (n - offered) * service
    return np.where(stable, delay, np.inf)


def wait_parts(stage_rate_rps: float, b: np.ndarray, e: np.ndarray, n: np.ndarray, arrival_cv2: float,
               model: str = DEFAULT_QUEUEING_MODEL):
    """The parts of :func:`queueing_delays_ms`'s wait, per configuration:
    (the offered load in erlangs as the model takes it, whether the queue
    is stable, the probability that a batch waits at all, the service
    factor). A batch that waits, waits an exponential time of mean
    ``e / (n − offered) × service`` (``model/tail.py`` sums such waits
    along a path)."""
    if model not in QUEUEING_MODELS:
        raise ModelError(f"unknown queueing model {model!r}")
    offered = stage_rate_rps / b * e / 1000.0  # erlangs
    stable = offered < n
    batch_cv2 = arrival_cv2 / b
    if model == "renewal":  # Erlang C at the load cσ: σ takes ρ's place
        offered = np.where(stable, n * renewal_sigma(np.where(stable, offered / n, 0.0), batch_cv2), offered)
    blocking = _erlang_b(offered, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        waiting = blocking / (1.0 - offered / n * (1.0 - blocking))
    # deterministic service: (c_a² + 0) / (c_a² + 1) against the exponential's, or Allen–Cunneen's (c_a² + 0) / 2
    service = batch_cv2 / (batch_cv2 + 1.0) if model == "renewal" else batch_cv2 / 2.0
    return offered, stable, waiting, service


def _erlang_b(offered: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Erlang B of each configuration (``offered`` erlangs on ``n``
    servers) by its recursion ``B(k) = aB(k−1) / (k + aB(k−1))``, run for
    all at once: ordered by ``n``, step k updates the configurations with
    ``n ≥ k`` (a tail of that order) in place. Once k is above every
    remaining load and their B is below 1e-12 it only falls further: 0."""
    order = np.argsort(n, kind="stable")
    servers, load = n[order], offered[order]
    size = len(load)
    blocking = np.ones(size)
    top = int(servers[-1]) if size else 0
    first = np.searchsorted(servers, np.arange(1, top + 2)).tolist()  # first[k - 1]: the first with n ≥ k
    load_max = np.maximum.accumulate(load[::-1])[::-1].tolist()  # the largest load from each position on
    scratch = np.empty(size)
    for k in range(1, top + 1):
        x, blocking_k = scratch[first[k - 1]:], blocking[first[k - 1]:]  # views: updated in place
        np.multiply(load[first[k - 1]:], blocking_k, out=x)
        np.divide(x, x + k, out=blocking_k)  # aB / (k + aB)
        later = first[k]  # those with n > k go on
        if later == size:
            break
        if k > load_max[later] and blocking[later:].max() < 1e-12:
            blocking[later:] = 0.0
            break
    out = np.empty(size)
    out[order] = blocking
    return out


RENEWAL_TOLERANCE = 1e-12
"""Newton's iteration for σ stops once no root moves by more than this."""


def renewal_sigma(rho: np.ndarray, gap_cv2: np.ndarray | float) -> np.ndarray:
    """σ of the GI/M/c queue with gamma-distributed gaps: the root in (0, 1)
    of ``σ = A*(cμ(1 − σ)) = (kρ / (kρ + 1 − σ))^k`` at utilisation ``rho``
    (per instance, < 1), ``k = 1 / gap_cv2`` the gaps' shape. Poisson gaps
    (cv² 1) give ``σ = ρ``; burstier ones a larger σ, more so at a low
    utilisation (cv² 10 at ρ = 0.1: σ ≈ 0.71). Newton's method from below
    (from ρ where the gaps vary more than Poisson's, where σ ≥ ρ, else from
    0): ``σ − A*`` is concave, so the iterates rise to the root and stay
    below it. A cv² of 0 (even gaps) is taken as 1e-9, whose ``A*`` is
    ``exp(−(1 − σ)/ρ)`` (D/M/c) to about seven digits."""
    rho = np.asarray(rho, dtype=float)
    cv2 = np.broadcast_to(np.asarray(gap_cv2, dtype=float), rho.shape)
    k = 1.0 / np.maximum(cv2, 1e-9)
    kr = k * rho
    live = rho > 0.0
    sigma = np.where(cv2 > 1.0, rho, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for _ in range(100):
            x = 1.0 - sigma
            a = np.power(1.0 + x / kr, -k)
            moved = (sigma - a) / (1.0 - k * a / (kr + x))
            sigma = np.where(live, np.minimum(sigma - moved, 1.0), 0.0)
            if not np.abs(moved[live]).max(initial=0.0) > RENEWAL_TOLERANCE:
                break
    return np.where(cv2 == 1.0, rho, sigma)
