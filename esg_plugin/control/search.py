"""The search: the plan the law makes for a workflow at a rate.

ESG (or the exact oracle) against the margin's budget, ``SLO × (1 −
margin)``, queueing-aware, with the utilisation of each stage's instances a
decision (several targets); within what the capacity leaves
(``capacity.py``) — where the GPUs are counted, a plan on time fits where
its instances and the other workflows' find a GPU each, else the same
budget is searched below the most room a GPU has left. When nothing fits:
the degraded plan that still meets the SLO if any, within the capacity,
else the least late one that fits (:meth:`Search.find`). A search asked
again within the tick with the same inputs gives its answer again
(:meth:`Search.choose`); a plan with some stages held at their share is
:meth:`Search.pinned`. ``docs/control.md``, point 4. Pure: the plans of
the other workflows are read from the caller's :class:`ControlState`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..model import ModelError, ProfileSet, Workflow
from ..model.plan import path_latency_ms
from ..model.tail import plan_miss_share
from ..planner import PlannerError, build_problem, get_policy, plan_with_fallback
from ..planner.limits import NO_LIMITS, SearchLimits
from .capacity import Capacity, ceiling_pct, held_gpus, no_room_shares
from .errors import ControlError
from .settings import ControlSettings

DEGRADED_QUANTILES = (0.95, 0.9)
"""Degraded plans: the queueing-wait quantiles tried, in turn, below the
configured one, before the mean."""
BISECTION_HALVINGS = 40
"""Where even the cheapest plan holds more than the capacity, the largest
rate that fits is found to within 2^-this of the wanted one …"""
BISECTION_LEVELS = 5
"""… pricing the midpoints of this many halvings at once (31 rates)."""
DEGRADED_BUDGET_FACTORS = (1.1, 1.25, 1.5, 2.0, 4.0)
"""Then budgets beyond the SLO (the mean wait), tightest first: the cheapest
plan that the model says is late by the least, before the fastest (dearest)."""
WANTED = ("any", "fits", "on_time")
"""What a caller of :meth:`Search.find` reads: any answer, only one that
``fits`` (for the margin's budget), only one on time by the model."""


class Search:
    """The law's search (one per :class:`ControlLaw`), within ``capacity``."""

    def __init__(self, settings: ControlSettings, policy: str, capacity: Capacity):
        self.settings = settings
        self.policy = policy
        self.capacity = capacity

    def pinned(self, workflow, ws, state, profiles, rate_rps, arrival_cv2, pinned: dict, wanted: str = "any"):
        """The plan with the ``pinned`` stages kept at their share, or None
        when that share cannot run at all (or, with ``wanted``, when the
        plan is not of the kind wanted: :meth:`find`)."""
        try:
            return self.choose(workflow, ws, state, profiles, rate_rps, arrival_cv2, pinned, wanted=wanted)
        except (PlannerError, ModelError):
            return None

    def choose(self, workflow, ws, state, profiles, rate_rps, arrival_cv2, shares=None, now_s=None,
               wanted: str = "any"):
        """(problem, choices, stats, fits): the plan for the margin budget,
        else the degraded plan with the highest expected hit rate that fits
        the capacity (a plan on time: in total and, with ``packed_capacity``,
        one instance per GPU with room — where none on time does, the first
        on time within the total): the smaller margins on the margin's grid, the SLO
        itself as budget, then less confidence in the
        tail (lower quantiles of the queueing wait, then its mean), then
        budgets a little beyond the SLO, tightest first; the fastest plan
        only when none of those fits. With ``now_s``, an unpinned search
        asked again within the tick with the same inputs gives its answer
        again (``WorkflowState.searched``). ``wanted``: :meth:`find`'s."""
        if now_s is None or shares is not None:
            return self.find(workflow, ws, state, profiles, rate_rps, arrival_cv2, shares, wanted=wanted)
        capacity = self.capacity.left_gpus(workflow, state)
        others = self.capacity.others_instances(workflow, state)
        asked = (now_s, workflow.hop_ms, rate_rps, arrival_cv2, ws.margin, capacity,
                 tuple(id(profiles[st.function]) for st in workflow.stages), tuple(ws.no_room.items()),
                 tuple(sorted(others.items())))
        if ws.searched is not None and ws.searched[0] == asked:
            return ws.searched[1]
        found = self.find(workflow, ws, state, profiles, rate_rps, arrival_cv2, capacity=capacity, others=others,
                          wanted=wanted)
        ws.searched = None if found is None else (asked, found)
        return found

    def find(self, workflow, ws, state, profiles, rate_rps, arrival_cv2, shares=None, capacity=None,
             others=None, wanted: str = "any"):
        """:meth:`choose`'s search. Where the caller reads the answer only if
        it is of one kind, ``wanted`` (``WANTED``) stops the search as soon as
        the answer is known not to be, with None: ``"fits"``, a plan for
        the margin's budget (``fits``); ``"on_time"``, a plan on time by the
        model (a budget within the SLO). Where every answer is at this rate
        (the cheapest plan fits the capacity); otherwise the answer is the
        search's at the largest rate that fits, asked with the same
        ``wanted``: the answer given is the one ``"any"`` gives, or None in
        its place."""
        if wanted not in WANTED:
            raise ControlError(f"wanted must be one of {WANTED}, got {wanted!r}")
        s = self.settings
        utilisations = tuple(s.utilisations)
        first = 1.0 - ws.margin
        below = no_room_shares(ws)
        planned = s.queue_quantile  # the wait's quantile the plans budget (None: its mean) …
        tail = s.wait_quantile(rate_rps, arrival_cv2)  # … and first, where a plan meets the margin's budget so
        if not s.degraded_cheapest:
            return plan_with_fallback(workflow, profiles, rate_rps, self.policy, first, utilisations[0], arrival_cv2,
                                      shares, utilisations[1:], planned, s.no_wait_options, s.queueing_model,
                                      below)
        solve = get_policy(self.policy)
        capacity = self.capacity.left_gpus(workflow, state) if capacity is None else capacity
        others = self.capacity.others_instances(workflow, state) if others is None else others

        def build(quantile, shares_below):
            return self.problem(workflow, profiles, rate_rps, arrival_cv2, quantile, shares, shares_below)

        quantiles = [planned] + [q for q in DEGRADED_QUANTILES if planned is not None
                                 and arrival_cv2 is not None and q < planned] + [None]
        # the margin's own grid down to none: a margin out of reach gives the plan
        # for the largest margin in reach, not a looser one
        steps = math.ceil(ws.margin / s.margin_step - 1e-9)
        grid = [first + k * (1.0 - first) / steps for k in range(steps)] if steps else [first]
        built = {planned: build(planned, below)}
        if s.margin_in_reach and ws.margin >= s.max_margin - 1e-9 and ws.boost >= s.max_boost - 1e-9:
            # no plan is faster than every stage at its fastest: the budgets below are out of reach
            reach = path_latency_ms(workflow, {name: menu.min_latency_ms for name, menu
                                               in built[planned].menus.items()}) / workflow.slo_ms
            if first < reach < 1.0:
                grid = [reach * (1 + 1e-9)] + [factor for factor in grid if factor > reach]
        attempts = [(planned, factor) for factor in grid]
        if tail != planned and attempts[0] == (planned, first):
            # ``low_rate_tail``: the tail of the wait at the margin's budget, where a plan meets it; else as ever
            attempts.insert(0, (tail, first))
        on_margin = attempts[:attempts.index((planned, first)) + 1] if (planned, first) in attempts else []
        attempts += [(q, 1.0) for q in dict.fromkeys(quantiles)]
        attempts += [(None, factor) for factor in DEGRADED_BUDGET_FACTORS]
        # what the cheapest plan holds is the same at every budget and quantile (each menu keeps its cheapest)
        fitting_at_all = _least_cost(built[planned].menus) <= capacity
        decided = wanted != "any" and fitting_at_all
        if wanted == "fits" and decided and not on_margin:
            return None  # the margin's budget is out of reach
        problem, hopeless = None, False
        within = SearchLimits(cost_ceiling_pct=ceiling_pct(capacity))  # a search for a plan that cannot fit stops early
        if s.path_tail and tail != planned and fitting_at_all and attempts[0] == (tail, first):
            # ``path_tail``: the plan for a lower quantile of each stage's wait, where the waits along each
            # path stay within what the path leaves for them for all but the tolerance's share of requests
            for quantile in path_tail_quantiles(planned, tail):
                if quantile not in built:
                    built[quantile] = build(quantile, below)
                lower = dataclasses.replace(built[quantile], budget_ms=workflow.slo_ms * first)
                choices, stats = solve(lower, within)
                if choices is not None and self.capacity.packs(others, choices) and \
                        plan_miss_share(workflow, choices, rate_rps, lower.budget_ms, arrival_cv2,
                                        s.queueing_model) <= 1.0 - tail:
                    return lower, choices, stats, True
        capped: dict = {}  # per quantile: the menus below the room left beside the others (None: none runs there)
        unpacked = None  # the first plan on time within the capacity in total that finds no GPU one by one
        unsearched = None  # the last attempt, when no plan of it could fit the capacity: searched only for its stats
        for index, (quantile, factor) in enumerate(attempts):
            if wanted == "fits" and decided and index == len(on_margin) and unpacked is None:
                return None  # the margin's budget gave no plan within the capacity
            if wanted == "on_time" and decided and factor > 1.0:
                return unpacked  # the budgets left are beyond the SLO
            if quantile not in built:  # the menus depend on the quantile, not on the budget
                built[quantile] = build(quantile, below)
            if factor > 1.0 and self.hopeless_counts():
                executions_ms = fastest_executions_ms(workflow, profiles)
                if executions_ms > workflow.slo_ms:
                    # no plan meets the SLO: the fastest executions alone take longer — the cheapest, below
                    problem, hopeless = dataclasses.replace(built[quantile], budget_ms=executions_ms), True
                    break
            problem = dataclasses.replace(built[quantile], budget_ms=workflow.slo_ms * factor)
            if not fitting_at_all:
                unsearched = problem  # every plan costs more than the capacity: no search finds one that fits
                continue
            unsearched = None
            if factor > 1.0 and unpacked is not None:
                return unpacked  # no plan on time finds a GPU each: the first on time, as without packing
            choices, stats = solve(problem, within)
            if choices is None:  # none within the budget, or none within the capacity (the ceiling)
                continue
            found = problem, choices, stats, (quantile, factor) in on_margin
            if factor > 1.0 or self.capacity.packs(others, choices):
                return found
            # on time and within the total, but not one by one on the GPUs: the same
            # budget with no share larger than the most room a GPU has left beside the others
            unpacked = unpacked or found
            if quantile not in capped:
                try:
                    capped[quantile] = build(quantile, self.capacity.below_room(workflow, below, others))
                except (PlannerError, ModelError):  # some stage cannot run there
                    capped[quantile] = None
            if capped[quantile] is not None:
                narrow = dataclasses.replace(capped[quantile], budget_ms=workflow.slo_ms * factor)
                again, again_stats = solve(narrow, within)
                if again is not None and self.capacity.packs(others, again):
                    return narrow, again, again_stats, found[3]
        if unpacked is not None:
            return unpacked
        fastest = problem.choices(problem.fastest())
        if not hopeless and held_gpus(fastest) <= capacity:
            return problem, fastest, stats, False
        cheapest = {stage: len(menu.options) - 1 for stage, menu in problem.menus.items()}
        choices = problem.choices(cheapest)
        if held_gpus(choices) > capacity and rate_rps > s.min_rate_rps:
            # even the cheapest plan does not fit: cover the largest rate that does
            fits = self.capacity.fitting(workflow, profiles, capacity, shares, below)
            # a price rises with the rate: where the least rate does not fit, none does (the bisection's 0)
            low = _largest_fitting(rate_rps, fits) if fits(np.array([s.min_rate_rps]))[0] else 0.0
            if low > 0:
                return self.find(workflow, ws, state, profiles, low, arrival_cv2, shares, wanted=wanted)
        if unsearched is not None:  # (then even the fastest plan holds more than the capacity)
            stats = solve(unsearched, NO_LIMITS)[1]
        return problem, choices, stats, False

    def problem(self, workflow: Workflow, profiles: ProfileSet, rate_rps: float, arrival_cv2, quantile,
                shares=None, shares_below=None):
        """:func:`problem_for` with the law's settings."""
        return problem_for(self.settings, workflow, profiles, rate_rps, arrival_cv2, quantile, shares, shares_below)

    def hopeless_counts(self) -> bool:
        """Is a workflow no plan can serve within its SLO planned at its
        cheapest (``late_plans``)? Where capacity is reserved (GPU shares);
        on a time-shared node the executions' slowness is in part the
        plan's own contention, and admission answers a full node."""
        return self.settings.late_plans and self.settings.busy_capacity is None


def path_tail_quantiles(planned, tail: float) -> tuple:
    """``path_tail``'s quantiles of each stage's wait, lowest first: the
    planned one (None: the mean), then those whose share of waits beyond
    them is the tail's share times 2^k, k = 6 … 1 (at a tail of 99%:
    0.36, 0.68, 0.84, 0.92, 0.96, 0.98) — each above the planned one and
    below the tail."""
    miss = 1.0 - tail
    ladder = [1.0 - miss * 2 ** k for k in range(6, 0, -1) if miss * 2 ** k < 1.0]
    return (planned,) + tuple(q for q in ladder if planned is None or q > planned)


def problem_for(settings: ControlSettings, workflow: Workflow, profiles: ProfileSet, rate_rps: float, arrival_cv2,
                quantile, shares=None, shares_below=None):
    """The planning problem as the law builds it (its utilisation
    targets, no-wait options and queueing model), the SLO as budget."""
    utilisations = tuple(settings.utilisations)
    return build_problem(workflow, profiles, rate_rps, utilisations[0], shares=shares, arrival_cv2=arrival_cv2,
                         utilisations=utilisations[1:], queue_quantile=quantile, no_wait=settings.no_wait_options,
                         queueing_model=settings.queueing_model, shares_below=shares_below)


def fastest_executions_ms(workflow: Workflow, profiles: ProfileSet) -> float:
    """The workflow's latency were every stage at its function's fastest
    execution (as calibrated: ``profiles``), with no wait at all
    (``late_plans``): above the SLO, no plan meets it. Over every
    configuration the function runs, whatever shares its stage is held to
    now — a share kept while instances start, one held below for want of
    room, the room a GPU has left: a plan late for want of capacity is
    no hopeless one."""
    return path_latency_ms(workflow, {st.name: float(profiles[st.function].runnable_arrays()[2].min())
                                      for st in workflow.stages})


def _largest_fitting(high: float, fits) -> float:
    """The lower end of [0, ``high``] bisected ``BISECTION_HALVINGS`` times
    by ``fits`` (an array of rates in, whether each fits out: monotone),
    the midpoints of ``BISECTION_LEVELS`` halvings priced at once — the
    ones one halving at a time would ask for, to the bit."""
    low = 0.0
    for _ in range(BISECTION_HALVINGS // BISECTION_LEVELS):
        intervals, middles = [(low, high)], []  # heap order: node i's lower half is 2i + 1, its upper 2i + 2
        for lo, hi in intervals:
            middles.append((lo + hi) / 2)
            if len(intervals) < 2 ** BISECTION_LEVELS - 1:
                intervals += [(lo, middles[-1]), (middles[-1], hi)]
        fit, node = fits(np.array(middles)), 0
        for _ in range(BISECTION_LEVELS):
            if fit[node]:
                low, node = middles[node], 2 * node + 2
            else:
                high, node = middles[node], 2 * node + 1
    return low


def _least_cost(menus) -> float:
    """What the cheapest plan of these menus holds (as :func:`held_gpus` counts): every plan holds at least
    this."""
    return sum(menu.min_cost_pct for menu in menus.values()) / 100.0
