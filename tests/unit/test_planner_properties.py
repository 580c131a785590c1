"""Property tests: ESG is exact on chains; the oracle is exact everywhere;
re-planning one path of a DAG finds that path's cheapest plan.

Random cases come from ``esg_plugin.synthetic.random_case``: random monotone
profiles (latency rising with batch size, falling with share, sometimes
null), random rates, hops, fan-outs and SLOs between 0.6x and 3x the fastest
plan's latency, so that about a fifth are infeasible.
"""

import dataclasses
import itertools
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esg_plugin.model import LATENCY_TOLERANCE_MS, ModelError
from esg_plugin.planner import NO_LIMITS, PlannerError, SearchLimits, get_policy, plan_workflow
from esg_plugin.planner.esg import _EsgSolver
from esg_plugin.planner import improve
from esg_plugin.planner.problem import build_problem
from esg_plugin.synthetic import random_case

from .brute_force import brute_force, plan_count

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 6))
def test_esg_matches_the_oracle_on_chains(seed, n):
    workflow, profiles, rate = random_case(random.Random(seed), n, chain=True)
    esg = plan_workflow(workflow, profiles, rate, policy="esg")
    oracle = plan_workflow(workflow, profiles, rate, policy="optimal")
    assert esg.feasible == oracle.feasible
    if oracle.feasible:
        assert esg.cost_pct == oracle.cost_pct
        assert esg.latency_ms == pytest.approx(oracle.latency_ms, abs=1e-6)
        assert esg.latency_ms <= workflow.slo_ms + 1e-9
        assert esg.stats.proven_optimal


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 6))
def test_esg_matches_the_oracle_on_chains_with_full_axes(seed, n):
    workflow, profiles, rate = random_case(random.Random(seed), n, chain=True, full_axes=True)
    esg = plan_workflow(workflow, profiles, rate, policy="esg")
    oracle = plan_workflow(workflow, profiles, rate, policy="optimal")
    assert (esg.feasible, esg.cost_pct if esg.feasible else None) == (
        oracle.feasible, oracle.cost_pct if oracle.feasible else None)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4), chain=st.booleans())
def test_the_oracle_matches_brute_force(seed, n, chain):
    workflow, profiles, rate = random_case(random.Random(seed), n, chain=chain)
    if plan_count(workflow, profiles, rate) > 50_000:
        return
    expected = brute_force(workflow, profiles, rate)
    oracle = plan_workflow(workflow, profiles, rate, policy="optimal")
    if expected is None:
        assert not oracle.feasible
    else:
        assert oracle.feasible
        assert (oracle.cost_pct, round(oracle.latency_ms, 6)) == (expected[0], round(expected[1], 6))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 8))
def test_esg_on_dags_is_feasible_exactly_when_the_oracle_is_and_never_cheaper(seed, n):
    workflow, profiles, rate = random_case(random.Random(seed), n, chain=False)
    esg = plan_workflow(workflow, profiles, rate, policy="esg")
    oracle = plan_workflow(workflow, profiles, rate, policy="optimal")
    assert esg.feasible == oracle.feasible
    if oracle.feasible:
        assert esg.latency_ms <= workflow.slo_ms + 1e-9
        assert esg.cost_pct >= oracle.cost_pct
    else:
        # the best-effort plan is the fastest one: every stage at its fastest
        assert esg.latency_ms == pytest.approx(oracle.latency_ms)


def test_esg_is_within_5_percent_of_the_oracle_on_most_small_dags():
    """The quality goal of docs/planner.md on a fixed sample (bench/dag_quality.py
    measures more cases): within 5% on at least 95% of feasible instances."""
    rng = random.Random(2024)
    ratios = []
    for _ in range(300):
        workflow, profiles, rate = random_case(rng, rng.randint(2, 8), chain=False)
        oracle = plan_workflow(workflow, profiles, rate, policy="optimal")
        if oracle.feasible:
            ratios.append(plan_workflow(workflow, profiles, rate).cost_pct / oracle.cost_pct)
    assert len(ratios) > 200
    assert sum(r <= 1.05 for r in ratios) / len(ratios) >= 0.95


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 60))
def test_esg_on_large_dags_fits_whenever_the_fastest_plan_does(seed, n):
    workflow, profiles, rate = random_case(random.Random(seed), n, chain=False, full_axes=True)
    esg = plan_workflow(workflow, profiles, rate)
    fastest = plan_workflow(workflow, profiles, rate, budget_ms=-1.0)  # nothing fits: the fastest plan
    assert esg.feasible == (fastest.latency_ms <= workflow.slo_ms + 1e-9)
    if esg.feasible:
        assert esg.latency_ms <= workflow.slo_ms + 1e-9
        assert esg.cost <= fastest.cost


def _path_plans(dag, chosen, path):
    """Every plan of ``path``'s stages with the others at the fixed times
    ``improve._replan_path`` holds them to (earliest, or latest after a
    stage of the path), as (cost, picks), by enumeration."""
    hop = dag.hop_ms
    lat = dag.latencies(chosen)
    earliest, latest = dag.earliest_finish(lat), dag.latest_finish(lat)
    on_path = set(path)
    after = [False] * len(chosen)
    for i in range(len(chosen)):
        after[i] = i not in on_path and any(p in on_path or after[p] for p in dag.preds[i])
    fixed = [latest[i] if after[i] else earliest[i] for i in range(len(chosen))]
    for combo in itertools.product(*(range(len(dag.menus[i].latencies_ms)) for i in path)):
        end, fits = None, True
        for i, k in zip(path, combo):
            begin = max([fixed[p] + hop for p in dag.preds[i] if p not in on_path] + [0.0 if end is None else end + hop])
            end = begin + dag.menus[i].latencies_ms[k]
            due = min([fixed[q] - lat[q] - hop for q in dag.succs[i] if q not in on_path]
                      + ([] if dag.succs[i] else [dag.budget_ms]), default=float("inf"))
            if end > due + LATENCY_TOLERANCE_MS:
                fits = False
                break
        if fits:
            yield sum(dag.menus[i].costs_pct[k] for i, k in zip(path, combo)), list(combo)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 7))
def test_re_planning_a_path_finds_its_cheapest_plan_with_the_other_stages_held(seed, n):
    rng = random.Random(seed)
    workflow, profiles, rate = random_case(rng, n, chain=False)
    try:
        problem = build_problem(workflow, profiles, rate, budget_ms=workflow.slo_ms)
    except (ModelError, PlannerError):
        return
    dag = improve._Dag(problem)
    chosen = [rng.randrange(len(menu.latencies_ms)) for menu in dag.menus]  # a random plan, if it fits
    if max(dag.earliest_finish(dag.latencies(chosen))) > dag.budget_ms:
        chosen = [0] * len(dag.menus)
        if max(dag.earliest_finish(dag.latencies(chosen))) > dag.budget_ms:
            return
    for path in improve._candidate_paths(dag, dag.latencies(chosen)):
        if math.prod(len(dag.menus[i].latencies_ms) for i in path) > 20_000:
            continue
        plans = dict(_path_plans(dag, chosen, path))  # cost -> some plan of that cost
        current = sum(dag.menus[i].costs_pct[chosen[i]] for i in path)
        got, _ = improve._replan_path(dag, chosen, path)
        if min(plans) < current:
            assert got is not None
            assert sum(dag.menus[i].costs_pct[k] for i, k in zip(path, got)) == min(plans)
            assert got in [picks for cost, picks in _path_plans(dag, chosen, path) if cost == min(plans)]
        else:
            assert got is None


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8), chain=st.booleans(), policy=st.sampled_from(["esg", "optimal"]))
def test_a_cost_ceiling_gives_the_plan_without_it_or_none(seed, n, chain, policy):
    """``SearchLimits.cost_ceiling_pct`` (the control law's capacity): the
    plan the search gives without a ceiling where it holds no more than the
    ceiling, else None — the ceiling only ends searches sooner."""
    workflow, profiles, rate = random_case(random.Random(seed), n, chain=chain, full_axes=n > 4)
    problem = build_problem(workflow, profiles, rate)
    solve = get_policy(policy)
    free, _ = solve(problem, NO_LIMITS)
    if free is None:
        assert solve(problem, SearchLimits(cost_ceiling_pct=10**9))[0] is None
        return
    cost = sum(option.cost_pct for option in free.values())
    for ceiling in (cost - 1, cost, cost + 1, cost // 2, 0):
        within, _ = solve(problem, SearchLimits(cost_ceiling_pct=ceiling))
        assert within == (free if cost <= ceiling else None)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), chain=st.booleans(),
       factor=st.floats(0.5, 1.5))
def test_the_cost_floor_of_a_dag_is_below_every_plan_within_the_budget(seed, n, chain, factor):
    """The bounds ESG's search skips a DAG by under a ceiling: no plan
    within the budget holds less (brute force over every plan)."""
    workflow, profiles, rate = random_case(random.Random(seed), n, chain=chain)
    if plan_count(workflow, profiles, rate) > 20_000:
        return
    workflow = dataclasses.replace(workflow, slo_ms=workflow.slo_ms * factor)
    expected = brute_force(workflow, profiles, rate)
    if expected is None:
        return
    problem = build_problem(workflow, profiles, rate)
    solver = _EsgSolver(problem, NO_LIMITS, "room", True)
    order = tuple(workflow.topological_order())
    assert not solver._floor_above(order, problem.budget_ms + LATENCY_TOLERANCE_MS, expected[0])
