"""Capacity: the GPUs a workflow's plan may hold beside the other
workflows' plans, and whether its instances find a GPU each.

Where the GPUs are counted (``capacity_gpus``): what the other
workflows' plans leave (:meth:`Capacity.left_gpus`; for a boosted
workflow, less what the others' plans on time need, ``boost_spare_only``),
whether a plan's instances and theirs pack one by one on the GPUs
(:meth:`Capacity.packs`, ``packed_capacity``; ``packing.py``), the room
the largest free GPU leaves (:meth:`Capacity.below_room`), and whether
the cheapest plan fits at a rate (:meth:`Capacity.fitting`,
:meth:`Capacity.nothing_fits`). On a time-shared node (``busy_capacity``,
``esg up`` on CPU cores): each workflow's part of the busy time
(:meth:`Capacity.busy_part`). ``docs/control.md``, points 4 and 6. Pure:
the plans are read from the caller's :class:`ControlState`.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Mapping, Optional

import numpy as np

from ..model import InstanceGroup, ModelError, ProfileSet, Workflow
from ..planner import CheapestPlanCosts, PlannerError, get_policy
from ..planner.limits import NO_LIMITS
from .packing import fits_on_gpus, most_room_pct, room_after
from .settings import ControlSettings
from .state import ControlState, WorkflowState


class Capacity:
    """The law's capacity (one per :class:`ControlLaw`). ``problem`` builds a
    planning problem as the law does (its settings), the SLO as budget."""

    def __init__(self, workflows: Mapping[str, Workflow], settings: ControlSettings, policy: str,
                 problem: Callable):
        self.workflows = workflows
        self.settings = settings
        self.policy = policy
        self.problem = problem

    def left_gpus(self, workflow: Workflow, state: ControlState) -> float:
        """The GPUs the other workflows' plans leave; with ``fair_share``,
        also less the part of each other workflow's claim (what its plan on
        time holds) that its max-min fair share covers; else, for a workflow
        whose rate the capacity feedback boosts (``boost_spare_only``), less
        what the others' plans on time need beyond what they hold."""
        if self.settings.capacity_gpus is None:
            return math.inf
        others = {name: ws for name, ws in state.workflows.items() if name != workflow.name and ws.plan is not None}
        if self.settings.fair_share:
            claims = {name: self._claim_gpus(name, ws) for name, ws in others.items()}
            shares = fair_shares({**claims, workflow.name: math.inf}, self.settings.capacity_gpus)
            held = sum(max(ws.plan.cost, shares[name]) for name, ws in others.items())
        else:
            mine = state.workflows.get(workflow.name)
            spare_only = self.settings.boost_spare_only and mine is not None and mine.boost > 1.0
            held = sum(max(ws.plan.cost, self._needed_gpus(self.workflows[name], ws)) if spare_only else ws.plan.cost
                       for name, ws in others.items())
        return max(0.0, self.settings.capacity_gpus - held) + 1e-9

    def fair_share_gpus(self, workflow: Workflow, state: ControlState) -> float:
        """The workflow's max-min fair share of the capacity (``fair_share``)
        over every planned workflow's claim, its own included (∞ without a
        capacity)."""
        if self.settings.capacity_gpus is None:
            return math.inf
        claims = {name: self._claim_gpus(name, ws) for name, ws in state.workflows.items() if ws.plan is not None}
        return fair_shares({**claims, workflow.name: claims.get(workflow.name, math.inf)},
                           self.settings.capacity_gpus)[workflow.name]

    def others_instances(self, workflow: Workflow, state: ControlState) -> Counter:
        """The instances the other workflows' plans hold, by share (empty
        unless ``packed_capacity`` counts them)."""
        counts: Counter = Counter()
        if self.settings.capacity_gpus is None or not self.settings.packed_capacity:
            return counts
        for name, other in state.workflows.items():
            if name != workflow.name and other.plan is not None:
                for stage in other.plan.stages.values():
                    counts[stage.gpu_share] += stage.replicas
        return counts

    def packs(self, others: Counter, choices, running: Mapping[str, Optional[InstanceGroup]] = {},
              room: Optional[list[int]] = None) -> bool:
        """Do a plan's instances fit on the GPUs beside the other
        workflows' (``packed_capacity``; always where it is off)? With
        ``running`` (each stage's group as it runs, or None): do its new
        instances — each of a stage moved to another share, those added to
        a stage kept at its share — fit beside those too? A restarted
        stage's old instances serve until its new ones do, so both hold
        their shares meanwhile (``restart_room``). With ``room`` too (each
        GPU's share free now: ``ControlState.gpu_free_pct``): do the new
        instances fit in it, where the instances that run are — not
        packed with them afresh, which a platform does not do."""
        if self.settings.capacity_gpus is None or not self.settings.packed_capacity:
            return True
        if running and room is not None:
            return room_after(new_instances(choices, running), room) is not None
        counts = Counter(others)  # packed afresh: the others', what runs of the plan's stages, and the new
        for stage in choices:
            group = running.get(stage)
            if group is not None:
                counts[group.gpu_share] += group.count
        counts.update(new_instances(choices, running))
        return fits_on_gpus(counts, self.settings.capacity_gpus)

    def below_room(self, workflow: Workflow, below: Optional[dict[str, int]], others: Counter) -> dict[str, int]:
        """The shares every stage is kept below (``build_problem``'s
        ``shares_below``): at most the most share a GPU has left once the
        other workflows' instances are placed, and below ``below``'s."""
        room_pct = most_room_pct(others, self.settings.capacity_gpus)
        return {st.name: min(room_pct + 1, (below or {}).get(st.name, room_pct + 1)) for st in workflow.stages}

    def fitting(self, workflow: Workflow, profiles: ProfileSet, capacity: float, shares=None, below=None):
        """Whether the cheapest plan at each of an array of rates (the least
        rate where below it) holds no more than ``capacity``: an array of
        rates in, one of bools out (``CheapestPlanCosts``)."""
        s = self.settings
        utilisations = tuple(s.utilisations)
        pricing = CheapestPlanCosts(workflow, profiles, utilisations[0], shares=shares,
                                    utilisations=utilisations[1:], no_wait=s.no_wait_options, shares_below=below)
        return lambda rates: pricing.at(np.maximum(rates, s.min_rate_rps)) / 100.0 <= capacity

    def nothing_fits(self, workflow: Workflow, state: ControlState, profiles: ProfileSet) -> bool:
        """Does no plan at any rate fit the capacity the other workflows'
        plans leave (the cheapest plan at the least rate does not)? Then
        :meth:`Search.find` can only answer that its plan does not
        fit: a test that needs only that answer (the wait feedback's) is
        spared it."""
        if self.settings.capacity_gpus is None or not self.settings.degraded_cheapest:
            return False
        fits = self.fitting(workflow, profiles, self.left_gpus(workflow, state), None,
                            no_room_shares(state.workflows.get(workflow.name)))
        return not fits(np.array([self.settings.min_rate_rps]))[0]

    def busy_part(self, name: str, state: ControlState, demand: float) -> float:
        """A workflow's part of ``busy_capacity`` for its ``demand``: all of
        it while every demand fits, else the capacity in proportion to the
        demands (∞ without a capacity)."""
        capacity = self.settings.busy_capacity
        if capacity is None:
            return math.inf
        total = demand + sum(ws.demand for other, ws in state.workflows.items() if other != name)
        return demand if total <= capacity else capacity * demand / total

    def _claim_gpus(self, name: str, ws: WorkflowState) -> float:
        """What a workflow with a plan claims (``fair_share``): what its plan
        on time holds — the plan itself where the capacity did not hold it
        below, else the cheapest plan on time for its rate (where there is
        one, and it holds more)."""
        return max(ws.plan.cost, self._needed_gpus(self.workflows[name], ws))

    def _needed_gpus(self, workflow: Workflow, ws: WorkflowState) -> float:
        """Where the capacity held the workflow's plan below the plan on
        time (``WorkflowState.held_below``), what the cheapest plan on time
        (the SLO as its budget) would hold, in GPUs — a search, made once
        per plan and only when a boosted workflow asks; else 0."""
        if ws.held_below is None:
            return 0.0
        if ws.on_time_gpus is None:
            rate_rps, arrival_cv2, profiles = ws.held_below
            try:
                problem = self.problem(workflow, profiles, max(rate_rps, self.settings.min_rate_rps), arrival_cv2,
                                       self.settings.queue_quantile)
                choices = get_policy(self.policy)(problem, NO_LIMITS)[0]
            except (PlannerError, ModelError):
                choices = None
            ws.on_time_gpus = 0.0 if choices is None else held_gpus(choices)
        return ws.on_time_gpus


def new_instances(choices, running: Mapping[str, Optional[InstanceGroup]]) -> Counter:
    """A plan's instances that do not run yet, by share: every one of a
    stage that runs none or runs another share, those beyond the count
    of a stage kept at its share."""
    counts: Counter = Counter()
    for stage, option in choices.items():
        group, share = running.get(stage), option.config.gpu_share
        if group is None or group.gpu_share != share:
            counts[share] += option.replicas
        else:
            counts[share] += max(0, option.replicas - group.count)
    return counts


def fair_shares(claims: Mapping[str, float], capacity: float) -> dict[str, float]:
    """The max-min fair split of ``capacity`` among ``claims`` (water-filling):
    each claim in turn, the smallest first, gets the whole of it or an even
    part of what is left, whichever is less; nothing is given beyond a
    claim (``fair_share``). A claim may be ∞."""
    shares, left = {}, capacity
    ordered = sorted(claims.items(), key=lambda item: item[1])
    for i, (name, claim) in enumerate(ordered):
        shares[name] = min(claim, left / (len(ordered) - i))
        left -= shares[name]
    return shares


def held_gpus(choices) -> float:
    """The GPUs a plan's choices hold (replicas × share, in GPUs)."""
    return sum(o.cost_pct for o in choices.values()) / 100.0


def ceiling_pct(capacity: float) -> Optional[int]:
    """The most a plan may hold within ``capacity`` GPUs, in percent of a
    GPU, exactly as :func:`held_gpus` counts — a plan the search returns
    under it fits the capacity (None: no capacity)."""
    if math.isinf(capacity):
        return None
    pct = math.floor(capacity * 100.0)
    while (pct + 1) / 100.0 <= capacity:
        pct += 1
    while pct / 100.0 > capacity:
        pct -= 1
    return pct


def no_room_shares(ws: Optional[WorkflowState]) -> Optional[dict[str, int]]:
    """The shares the workflow's stages are planned below (``WorkflowState.no_room``), or None."""
    if ws is None or not ws.no_room:
        return None
    return {stage: share for stage, (share, _) in ws.no_room.items()}
