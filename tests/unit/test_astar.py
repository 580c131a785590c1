"""The chain search: blades, dominance, anytime limits."""

import itertools
import random

import pytest

from esg_plugin.model import Config, StageOption, option_arrays
from esg_plugin.planner import PlannerError, SearchLimits, StageMenu, solve_chain
from esg_plugin.planner.astar import _Front
from esg_plugin.synthetic import random_case
from esg_plugin.planner import build_problem


def menu(name, points):
    """A menu from (latency_ms, cost_pct) pairs."""
    options = [StageOption(Config(1, c), lat, 1, 0.0, lat, c) for lat, c in points]
    return StageMenu.from_options(name, options)


def test_menu_keeps_only_the_pareto_front_fastest_first():
    m = menu("s", [(10, 100), (20, 50), (15, 120), (30, 50), (40, 10)])
    assert m.latencies_ms == (10, 20, 40)
    assert m.costs_pct == (100, 50, 10)
    assert m.cheapest_within(25) == 1
    assert m.cheapest_within(5) is None


def test_front_drops_dominated_pairs():
    front = _Front()
    assert front.insert(10.0, 50, 1) == []
    assert front.insert(20.0, 30, 2) == []
    assert front.dominates(25.0, 40)
    assert not front.dominates(15.0, 40)
    assert front.insert(5.0, 30, 3) == [1, 2]   # faster and no dearer than both
    assert front.latencies == [5.0] and front.costs == [30]


def brute(menus, budget):
    best = None
    for combo in itertools.product(*[range(len(m.options)) for m in menus]):
        lat = sum(m.latencies_ms[i] for m, i in zip(menus, combo))
        cost = sum(m.costs_pct[i] for m, i in zip(menus, combo))
        if lat <= budget + 1e-9 and (best is None or (cost, lat) < best):
            best = (cost, lat)
    return best


def test_blades_prune_and_the_answer_is_exact():
    menus = [menu("a", [(5, 90), (10, 40), (30, 10)]), menu("b", [(8, 80), (16, 30), (40, 5)]),
             menu("c", [(2, 50), (6, 20), (25, 1)])]
    for budget in (15.0, 25.0, 40.0, 60.0, 95.0):
        result = solve_chain(menus, budget)
        assert (result.cost_pct, result.latency_ms) == brute(menus, budget)
        assert result.stats.proven_optimal
    tight = solve_chain(menus, 25.0)
    assert tight.stats.pruned_by_latency > 0
    assert tight.stats.pruned_by_cost + tight.stats.pruned_by_dominance > 0


def test_a_cost_ceiling_ends_the_search_once_no_plan_within_it_can_be_found():
    menus, budget = hard_chain()
    exact = solve_chain(menus, budget)
    above = solve_chain(menus, budget, SearchLimits(cost_ceiling_pct=exact.cost_pct))
    assert (above.picks, above.cost_pct) == (exact.picks, exact.cost_pct)
    below = solve_chain(menus, budget, SearchLimits(cost_ceiling_pct=exact.cost_pct - 1))
    assert below.picks is None and below.stats.proven_optimal
    assert below.stats.expanded < exact.stats.expanded
    # the shortcuts answer the ceiling too: every stage at its cheapest, and one stage
    loose = [menu("a", [(5, 90), (10, 40)]), menu("b", [(8, 80), (16, 30)])]
    assert solve_chain(loose, 100.0, SearchLimits(cost_ceiling_pct=69)).picks is None
    assert solve_chain(loose, 100.0, SearchLimits(cost_ceiling_pct=70)).picks == (1, 1)
    assert solve_chain(loose[:1], 7.0, SearchLimits(cost_ceiling_pct=89)).picks is None
    # a limit that stops the search before any plan: the fastest, unless above the ceiling
    fastest_cost = sum(m.costs_pct[0] for m in menus)
    stopped = solve_chain(menus, budget, SearchLimits(max_expansions=1, cost_ceiling_pct=fastest_cost))
    assert stopped.picks == (0,) * len(menus) and not stopped.stats.proven_optimal
    assert solve_chain(menus, budget, SearchLimits(max_expansions=1, cost_ceiling_pct=fastest_cost - 1)).picks is None


def test_infeasible_chain_returns_none():
    menus = [menu("a", [(5, 90)]), menu("b", [(8, 80)])]
    result = solve_chain(menus, 12.0)
    assert result.picks is None


def hard_chain():
    rng = random.Random(5)
    workflow, profiles, rate = random_case(rng, 8, chain=True, slo_factor=(1.3, 1.3), full_axes=True)
    problem = build_problem(workflow, profiles, rate)
    menus = [problem.menus[s] for s in workflow.topological_order()]
    return menus, problem.budget_ms - workflow.hop_ms * 7


def test_expansion_limit_gives_an_anytime_answer_that_fits():
    menus, budget = hard_chain()
    exact = solve_chain(menus, budget)
    assert exact.stats.expanded > 2
    limited = solve_chain(menus, budget, SearchLimits(max_expansions=2))
    assert not limited.stats.proven_optimal
    assert limited.picks is not None
    assert limited.latency_ms <= budget + 1e-9
    assert limited.cost_pct >= exact.cost_pct


def test_time_limit_uses_the_injected_clock():
    menus, budget = hard_chain()
    ticks = itertools.count()
    clock_s = lambda: next(ticks) * 1.0  # noqa: E731 - every reading is one second later
    limited = solve_chain(menus, budget, SearchLimits(time_limit_ms=500, clock_s=clock_s))
    assert not limited.stats.proven_optimal
    assert limited.stats.expanded == 0 and limited.picks is not None


def test_limits_are_validated():
    with pytest.raises(PlannerError, match="needs a clock"):
        SearchLimits(time_limit_ms=5)
    with pytest.raises(PlannerError, match="at least 1"):
        SearchLimits(max_expansions=0)
    with pytest.raises(PlannerError, match="cost_ceiling_pct must be an integer"):
        SearchLimits(cost_ceiling_pct=1.5)


def test_a_problem_built_again_from_the_cache_is_the_problem_built_afresh():
    """``build_problem`` keeps each stage it evaluated (``_stage``): built
    again — unpinned, a stage held at a share, one kept below a share — it
    gives the menus and configurations a fresh evaluation gives, shared
    read-only; a share a stage cannot run at is a PlannerError naming the
    stage each time."""
    from esg_plugin.planner import problem as problem_module

    rng = random.Random(7)
    for _ in range(20):
        wf, profiles, rate = random_case(rng, rng.randint(2, 5), chain=rng.random() < 0.5, full_axes=True)
        first = wf.stages[0]
        share = profiles[first.function].gpu_shares[-1]
        for kwargs in ({}, {"shares": {first.name: share}}, {"shares_below": {first.name: share}},
                       {"arrival_cv2": 2.0, "utilisations": (0.5, 0.9), "no_wait": True}):
            try:
                problem_module._cached_stage.cache_clear()
                fresh = build_problem(wf, profiles, rate, **kwargs)
            except PlannerError as err:
                assert first.name in str(err)
                with pytest.raises(PlannerError, match=first.name):
                    build_problem(wf, profiles, rate, **kwargs)
                continue
            again = build_problem(wf, profiles, rate, **kwargs)
            assert again.menus == fresh.menus
            arrays = option_arrays(profiles[first.function], rate * first.fanout, arrival_cv2=kwargs.get("arrival_cv2"),
                                   utilisations=kwargs.get("utilisations", ()), fanout=first.fanout,
                                   no_wait=kwargs.get("no_wait", False))
            if "shares" in kwargs:
                arrays = arrays.where(arrays.gpu_share == share)
            if "shares_below" in kwargs:
                arrays = arrays.where(arrays.gpu_share < share)
            assert again.menus[first.name] == StageMenu.from_arrays(first.name, arrays)  # as evaluated without it
            for stage, arrays in again.arrays.items():
                assert arrays is fresh.arrays[stage]  # the cached stage, shared
                assert all(not column.flags.writeable for column in arrays)
