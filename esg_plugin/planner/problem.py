"""The planning problem: one menu of evaluated configurations per stage.

Every planner starts from :func:`build_problem`. A stage's *menu* keeps only
its Pareto-optimal configurations (no other configuration of the stage is
both no slower and no dearer): a dominated configuration can be swapped for
its dominator in any plan without raising latency or cost, so dropping it
never loses an optimal plan. The menu is sorted by latency ascending, and so
by cost strictly descending.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional

import numpy as np

from ..limits import MAX_RATE_RPS, MIN_RATE_RPS, is_number
from ..model import (
    DEFAULT_UTILISATION,
    LATENCY_TOLERANCE_MS,
    Config,
    LeastCosts,
    ModelError,
    OptionArrays,
    ProfileSet,
    StageOption,
    Workflow,
    option_arrays,
)
from ..model.config import DEFAULT_QUEUEING_MODEL
from .errors import PlannerError


@dataclass(frozen=True)
class StageMenu:
    """The Pareto front of one stage's configurations, fastest first."""

    stage: str
    options: tuple[StageOption, ...]
    latencies_ms: tuple[float, ...]
    costs_pct: tuple[int, ...]
    considered: int = 0
    """How many configurations the front was taken from."""

    @staticmethod
    def from_options(stage: str, options: list[StageOption]) -> "StageMenu":
        if not options:
            raise PlannerError(f"stage '{stage}' has no runnable configuration")
        ordered = sorted(options, key=lambda o: (o.latency_ms, o.cost_pct, o.config))
        front: list[StageOption] = []
        for option in ordered:
            if not front or option.cost_pct < front[-1].cost_pct:
                front.append(option)
        return StageMenu._of(stage, front, len(options))

    @staticmethod
    def from_arrays(stage: str, arrays: OptionArrays) -> "StageMenu":
        """The same menu as :meth:`from_options`, without building an object
        per dominated configuration."""
        if len(arrays.latency_ms) == 0:
            raise PlannerError(f"stage '{stage}' has no runnable configuration")
        order = np.lexsort((arrays.gpu_share, arrays.batch_size, arrays.cost_pct, arrays.latency_ms))
        costs = arrays.cost_pct[order]
        best_before = np.minimum.accumulate(costs)
        keep = np.empty(len(order), dtype=bool)
        keep[0] = True
        keep[1:] = costs[1:] < best_before[:-1]
        front = arrays.options_at(order[keep])
        return StageMenu._of(stage, front, len(order))

    @staticmethod
    def _of(stage: str, front: list[StageOption], considered: int) -> "StageMenu":
        return StageMenu(
            stage=stage,
            options=tuple(front),
            latencies_ms=tuple(o.latency_ms for o in front),
            costs_pct=tuple(o.cost_pct for o in front),
            considered=considered,
        )

    @property
    def min_latency_ms(self) -> float:
        return self.latencies_ms[0]

    @property
    def min_cost_pct(self) -> int:
        return self.costs_pct[-1]

    @property
    def cheapest_latency_ms(self) -> float:
        """Latency of the cheapest configuration: more budget than this buys nothing."""
        return self.latencies_ms[-1]

    def cheapest_within(self, latency_ms: float) -> Optional[int]:
        """Index of the cheapest option no slower than ``latency_ms``, or None."""
        i = bisect_right(self.latencies_ms, latency_ms + LATENCY_TOLERANCE_MS) - 1
        return i if i >= 0 else None


@dataclass(frozen=True)
class Problem:
    """A workflow, its menus at one request rate, and its latency budget."""

    workflow: Workflow
    rate_rps: float
    budget_ms: float
    """End-to-end latency allowed: the SLO, or what is left when replanning."""
    menus: Mapping[str, StageMenu]
    utilisation: float = DEFAULT_UTILISATION
    arrays: Mapping[str, OptionArrays] = field(default_factory=dict)
    """Every runnable configuration of each stage, evaluated (for baselines
    that consider configurations off the Pareto front)."""
    queue_quantile: Optional[float] = None
    """The quantile of the queueing wait the menus' latencies hold (None: the mean)."""

    def choices(self, picks: Mapping[str, int]) -> dict[str, StageOption]:
        return {s: self.menus[s].options[i] for s, i in picks.items()}

    def fastest(self) -> dict[str, int]:
        """The minimum-latency plan: every stage at its fastest configuration."""
        return {s: 0 for s in self.menus}


def check_rate(rate_rps: float) -> float:
    if not is_number(rate_rps):
        raise ModelError(f"the request rate must be a number, got {rate_rps!r}")
    if not MIN_RATE_RPS <= rate_rps <= MAX_RATE_RPS:
        raise ModelError(f"the request rate must lie in [{MIN_RATE_RPS:g}, {MAX_RATE_RPS:g}] rps, got {rate_rps:g}")
    return float(rate_rps)


def build_problem(
    workflow: Workflow,
    profiles: ProfileSet,
    rate_rps: float,
    utilisation: float = DEFAULT_UTILISATION,
    budget_ms: Optional[float] = None,
    restrict: Optional[Mapping[str, Config]] = None,
    shares: Optional[Mapping[str, int]] = None,
    arrival_cv2: Optional[float] = None,
    utilisations: tuple[float, ...] = (),
    queue_quantile: Optional[float] = None,
    no_wait: bool = False,
    queueing_model: str = DEFAULT_QUEUEING_MODEL,
    shares_below: Optional[Mapping[str, int]] = None,
) -> Problem:
    """Evaluate every stage's configurations at ``rate_rps``.

    ``restrict`` pins stages to one configuration (used by ``--explain``);
    ``shares`` keeps some stages at one GPU share (a restart the control law
    will not pay for);
    ``arrival_cv2`` turns on the queueing-aware latency (``model/config.py``);
    ``utilisations`` adds each configuration at these utilisation targets
    (the replica count becomes a decision, see ``option_arrays``);
    ``queue_quantile`` plans the queueing wait's quantile, not its mean;
    ``no_wait`` adds every batch size above 1 without a batching wait;
    ``queueing_model`` is the queueing wait's model (``model/config.py``);
    ``shares_below`` keeps some stages below a GPU share (one the cluster
    found no room for).
    """
    rate_rps = check_rate(rate_rps)
    if not 0 < utilisation <= 1:
        raise ModelError(f"the utilisation target must lie in (0, 1], got {utilisation:g}")
    workflow.check_profiles(profiles)
    restrict = restrict or {}
    menus = {}
    arrays = {}
    for stage in workflow.stages:
        evaluated = (profiles[stage.function], rate_rps * stage.fanout, utilisation, arrival_cv2,
                     tuple(utilisations), stage.fanout, queue_quantile, no_wait, queueing_model)
        held = ((shares or {}).get(stage.name), (shares_below or {}).get(stage.name))
        try:
            arrays[stage.name], menu = _stage(evaluated, *held)
        except PlannerError as err:
            raise PlannerError(f"stage '{stage.name}' {err}") from None
        if stage.name not in restrict:
            menus[stage.name] = replace(menu, stage=stage.name)
            continue
        options = [o for o in arrays[stage.name].options() if o.config == restrict[stage.name]]
        if not options:
            raise PlannerError(f"stage '{stage.name}' cannot run at {restrict[stage.name]}")
        menus[stage.name] = StageMenu.from_options(stage.name, options)
    budget = workflow.slo_ms if budget_ms is None else budget_ms
    return Problem(workflow=workflow, rate_rps=rate_rps, budget_ms=budget, menus=menus, utilisation=utilisation,
                   arrays=arrays, queue_quantile=queue_quantile if arrival_cv2 is not None else None)


STAGE_CACHE_ENTRIES = 512
"""Stages evaluated kept for reuse (:func:`_stage`): a re-plan of the
control law builds the problem of one rate up to five times — unpinned,
then with some stages held at a share — and a stage no share holds is the
same stage each time."""


def _stage(evaluated: tuple, share: Optional[int], below: Optional[int]):
    """(the stage's configurations, its menu under no stage's name):
    ``option_arrays(*evaluated)``, those at ``share`` where given, those
    below ``below`` where given, and their Pareto front. Cached
    (:data:`STAGE_CACHE_ENTRIES`): a pure function of its arguments, the
    same values as evaluating again, shared read-only."""
    try:
        hash(evaluated)
    except TypeError:  # not numbers: option_arrays's checks say what is wrong
        return _evaluate_stage(evaluated, share, below)
    return _cached_stage(evaluated, share, below)


@functools.lru_cache(maxsize=STAGE_CACHE_ENTRIES)
def _cached_stage(evaluated: tuple, share: Optional[int], below: Optional[int]):
    return _evaluate_stage(evaluated, share, below)


def _evaluate_stage(evaluated: tuple, share: Optional[int], below: Optional[int]):
    arrays = option_arrays(*evaluated)
    if share is not None:
        arrays = arrays.where(arrays.gpu_share == share)
        if len(arrays.exec_ms) == 0:
            raise PlannerError(f"cannot run at {share}% share")
    if below is not None:
        arrays = arrays.where(arrays.gpu_share < below)
        if len(arrays.exec_ms) == 0:
            raise PlannerError(f"cannot run below {below}% share")
    if len(arrays.exec_ms) == 0:
        raise PlannerError("has no runnable configuration")
    for column in arrays:
        column.setflags(write=False)
    return arrays, StageMenu.from_arrays("", arrays)


class CheapestPlanCosts:
    """What the cheapest plan of :func:`build_problem` with these arguments
    holds — the sum of its menus' least costs (a menu keeps its stage's
    cheapest configuration) — at any rate, without evaluating the
    configurations: for a search of the largest rate at which some plan
    fits a capacity. Prepared once per workflow and profiles, priced at an
    array of rates by :meth:`at`."""

    def __init__(self, workflow: Workflow, profiles: ProfileSet, utilisation: float = DEFAULT_UTILISATION,
                 shares: Optional[Mapping[str, int]] = None, utilisations: tuple[float, ...] = (),
                 no_wait: bool = False, shares_below: Optional[Mapping[str, int]] = None):
        workflow.check_profiles(profiles)
        self.pinned = bool(shares) or bool(shares_below)
        self.least = LeastCosts([(profiles[stage.function], stage.fanout, (shares or {}).get(stage.name),
                                  (shares_below or {}).get(stage.name))
                                 for stage in workflow.stages], utilisation, utilisations, no_wait)

    def at(self, rates_rps) -> np.ndarray:
        """The cheapest plan's cost (share-percent) at each of ``rates_rps``."""
        rates = np.asarray(rates_rps, dtype=float).reshape(-1)
        if not ((rates >= MIN_RATE_RPS) & (rates <= MAX_RATE_RPS)).all():
            raise ModelError(f"the request rates must lie in [{MIN_RATE_RPS:g}, {MAX_RATE_RPS:g}] rps")
        total = self.least.at(rates)
        if not np.isfinite(total).all():
            raise PlannerError("a stage has no configuration that runs at some of these rates"
                               + (" at the shares it is held to" if self.pinned else ""))
        return total
