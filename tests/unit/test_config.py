"""The planning model of SPEC §3, checked against hand-computed figures."""

import random

import numpy as np
import pytest

from esg_plugin.model import Config, ModelError, all_options, evaluate, option_arrays, replicas_needed
from esg_plugin.synthetic import BATCH_SIZES, GPU_SHARES, random_monotone_profile


def test_batch_one_has_no_wait():
    o = evaluate(Config(1, 40), exec_ms=20.0, stage_rate_rps=30.0)
    # one instance serves 1000*1/20 = 50 rps; 30 / (0.8*50) = 0.75 -> 1 replica
    assert (o.replicas, o.wait_ms, o.latency_ms, o.cost_pct) == (1, 0.0, 20.0, 40)
    assert o.cost == 0.4


def test_batching_wait_and_replicas():
    o = evaluate(Config(4, 50), exec_ms=50.0, stage_rate_rps=200.0)
    # mu = 1000*4/50 = 80 rps; 200 / (0.8*80) = 3.125 -> 4 replicas
    # w = 1000 * 3 * 4 / 200 = 60 ms
    assert o.replicas == 4
    assert o.wait_ms == pytest.approx(60.0)
    assert o.latency_ms == pytest.approx(110.0)
    assert o.cost_pct == 200


def test_exact_multiple_is_not_rounded_up_by_float_noise():
    # 40 rps at 0.8 * 50 rps per instance is exactly 1 instance
    assert replicas_needed(40.0, 1, 20.0, 0.8) == 1
    assert replicas_needed(40.0000001, 1, 20.0, 0.8) == 2


def test_bad_rate_or_utilisation():
    with pytest.raises(ModelError, match="arrival rate must be positive"):
        evaluate(Config(1, 10), 5.0, 0.0)
    with pytest.raises(ModelError, match="utilisation target"):
        evaluate(Config(1, 10), 5.0, 10.0, utilisation=1.5)


def test_vectorised_evaluation_matches_the_scalar_one():
    rng = random.Random(7)
    for _ in range(100):
        profile = random_monotone_profile(rng, "f", BATCH_SIZES, GPU_SHARES, null_rate=0.5)
        rate = rng.uniform(0.05, 2000.0)
        rho = rng.uniform(0.3, 1.0)
        arrays = option_arrays(profile, rate, rho)
        assert arrays.options() == all_options(profile, rate, rho)


def test_no_wait_options_run_partial_batches_without_a_fill_wait():
    from esg_plugin.model import FunctionProfile

    profile = FunctionProfile("f", (2, 4), (50, 100), ((10.0, 6.0), (16.0, 9.0)))
    plain = option_arrays(profile, 5.0, 0.8, 1.0)
    more = option_arrays(profile, 5.0, 0.8, 1.0, no_wait=True)
    extra = more.wait_ms == 0.0
    assert (plain.wait_ms > 0).all()
    # per share, the fastest batch size without a wait (batch 2: it is faster than 4)
    assert sorted(zip(more.batch_size[extra], more.gpu_share[extra])) == [(2, 50), (2, 100)]
    # sized as if each batch held one item: at least as many replicas as the waiting ones
    for i in np.flatnonzero(extra):
        same = (plain.batch_size == more.batch_size[i]) & (plain.gpu_share == more.gpu_share[i])
        assert more.replicas[i] >= plain.replicas[same].max()


def test_no_batch_without_a_wait_where_batch_1_runs_at_least_as_fast():
    from esg_plugin.model import FunctionProfile

    profile = FunctionProfile("f", (1, 2, 4), (50, 100), ((8.0, 5.0), (7.0, 6.0), (16.0, 9.0)))
    more = option_arrays(profile, 5.0, 0.8, 1.0, no_wait=True)
    extra = (more.wait_ms == 0.0) & (more.batch_size > 1)
    # at 50% batch 2 (7 ms) beats batch 1 (8 ms); at 100% batch 1 (5 ms) is the fastest
    assert sorted(zip(more.batch_size[extra], more.gpu_share[extra])) == [(2, 50)]


def test_the_vectorised_queueing_wait_equals_the_scalar_one():
    import numpy as np

    from esg_plugin.model.config import queueing_delay_ms, queueing_delays_ms

    rng = np.random.default_rng(1)
    b, e, n = rng.choice([1, 2, 4, 8], 200), rng.uniform(1, 50, 200), rng.integers(1, 30, 200)
    vector = queueing_delays_ms(80.0, b, e, n, 1.7)
    scalar = np.array([queueing_delay_ms(80.0, int(x), float(y), int(z), 1.7) for x, y, z in zip(b, e, n)])
    assert np.allclose(vector, scalar)


@pytest.mark.parametrize("rate", ["x", [1], float("nan"), float("inf"), -1, 0])
def test_a_rate_that_is_no_positive_number_is_a_model_error_not_a_crash(rate):
    from esg_plugin.synthetic import example_profiles

    with pytest.raises(ModelError, match="arrival rate must be positive"):
        option_arrays(example_profiles()["resnet18"], rate)


def _simulated_mean_wait(cv2: float, utilisation: float, servers: int, requests: int, seed: int) -> float:
    """Mean wait (in execution times) of a queue of ``servers`` replicas of
    execution time 1, fed by renewal arrivals with gamma gaps of squared
    coefficient of variation ``cv2`` (as ``bench/queueing_wait.py``)."""
    rng = np.random.default_rng(seed)
    rate, shape = utilisation * servers, 1.0 / cv2
    free, total = np.zeros(servers), 0.0
    for at in np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), requests)):
        j = int(free.argmin())
        start = max(at, free[j])
        total += start - at
        free[j] = start + 1.0
    return total / requests


def _model_mean_wait(cv2: float, utilisation: float, servers: int, model: str = "renewal") -> float:
    from esg_plugin.model.config import queueing_delays_ms

    return float(queueing_delays_ms(utilisation * servers, np.array([1]), np.array([1000.0]), np.array([servers]),
                                    cv2, model=model)[0]) / 1000.0


@pytest.mark.parametrize("cv2,utilisation,servers", [(10.0, 0.1, 2), (10.0, 0.3, 1), (4.0, 0.1, 4), (16.0, 0.6, 2)])
def test_the_wait_of_bursty_arrivals_is_the_one_a_simulated_queue_shows(cv2, utilisation, servers):
    """Gamma gaps at cv² 4–16 (the generator's bursty arrivals): the renewal
    model's mean wait is within 25% of a simulated queue's, where the
    Allen–Cunneen model the planner uses gives 1–50% of it at these loads (a
    burst waits however little the instances are busy on average)."""
    simulated = _simulated_mean_wait(cv2, utilisation, servers, requests=60_000, seed=7)
    assert 0.75 < _model_mean_wait(cv2, utilisation, servers) / simulated < 1.25
    assert _model_mean_wait(cv2, utilisation, servers, model="allen-cunneen") / simulated < 0.6


def test_for_poisson_arrivals_both_models_give_the_m_d_c_wait():
    """At cv² 1, σ = ρ: the renewal model is Erlang C at the load itself,
    halved for deterministic service — what Allen–Cunneen gives there too."""
    from esg_plugin.model.config import queueing_delays_ms

    rng = np.random.default_rng(3)
    b, e, n = rng.choice([1, 2, 4, 8], 200), rng.uniform(1, 50, 200), rng.integers(1, 30, 200)
    for rate in (5.0, 80.0, 400.0):
        new = queueing_delays_ms(rate, b, e, n, 1.0 * b, model="renewal")  # cv² 1 per batch
        old = queueing_delays_ms(rate, b, e, n, 1.0 * b)
        assert np.allclose(new, old, rtol=1e-12, equal_nan=True)


def test_sigma_solves_its_equation_and_grows_with_burstiness():
    from esg_plugin.model.config import renewal_sigma

    rho = np.linspace(0.01, 0.98, 50)
    assert np.array_equal(renewal_sigma(rho, 1.0), rho)
    before = None
    for cv2 in (0.25, 0.5, 2.0, 4.0, 10.0, 16.0):
        sigma, k = renewal_sigma(rho, cv2), 1.0 / cv2
        assert np.allclose(sigma, (k * rho / (k * rho + 1.0 - sigma)) ** k, atol=1e-9)
        assert ((0 < sigma) & (sigma < 1)).all()
        assert (sigma > rho).all() if cv2 > 1 else (sigma < rho).all()
        if before is not None:
            assert (sigma > before).all()
        before = sigma
    even = renewal_sigma(np.array([0.5]), 0.0)[0]  # D/M/1: σ = exp(−(1 − σ)/ρ)
    assert even == pytest.approx(np.exp(-(1.0 - even) / 0.5), abs=1e-7) and 0 < even < 0.5
    assert renewal_sigma(np.array([0.0]), 10.0)[0] == 0.0


def test_an_unknown_queueing_model_is_a_model_error():
    from esg_plugin.model.config import queueing_delays_ms

    with pytest.raises(ModelError, match="unknown queueing model"):
        queueing_delays_ms(1.0, np.array([1]), np.array([1.0]), np.array([1]), 1.0, model="kingman")


def test_erlang_b_over_arrays_is_the_recursion_run_for_each_configuration():
    """``_erlang_b`` runs the recursion on the configurations that still need
    it (ordered by replicas, stopped where B < 1e-12 above the load): each
    value is the plain recursion's for that configuration alone."""
    from esg_plugin.model.config import _erlang_b

    def plain(a: float, servers: int) -> float:
        b = 1.0
        for k in range(1, servers + 1):
            b = a * b / (k + a * b)
        return b

    rng = np.random.default_rng(11)
    for _ in range(50):
        count = int(rng.integers(1, 300))
        n = rng.integers(1, int(rng.integers(1, 150)) + 1, count)
        offered = rng.uniform(0.0, 1.2, count) * n
        got = _erlang_b(offered, n)
        want = np.array([plain(a, int(c)) for a, c in zip(offered, n)])
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert len(_erlang_b(np.array([]), np.array([], dtype=np.int64))) == 0


def test_the_least_cost_is_the_cheapest_option_without_evaluating_the_others():
    """``LeastCosts`` (the control law's search for the largest rate a
    capacity fits) is, at each rate, the least cost among ``option_arrays``'
    options, at a share where one is given (∞ where there is none); at the
    planner's level ``CheapestPlanCosts`` is what the cheapest plan of the
    menus holds."""
    from esg_plugin.model import LeastCosts, ProfileSet, Stage, Workflow
    from esg_plugin.planner import CheapestPlanCosts, build_problem
    rng = random.Random(12)
    targets = (0.6, 0.7, 0.8, 0.9, 0.4, 0.3, 0.2, 0.1, 0.05)
    for _ in range(50):
        profile = random_monotone_profile(rng, "f", BATCH_SIZES, GPU_SHARES)
        rates = [rng.uniform(0.05, 400.0) for _ in range(12)]
        no_wait = rng.random() < 0.5
        share = rng.choice(profile.gpu_shares)
        least, at_share, below = LeastCosts([(profile, 1, None)], 0.5, targets, no_wait).at(rates), \
            LeastCosts([(profile, 1, share)], 0.5, targets, no_wait).at(rates), \
            LeastCosts([(profile, 1, None, share)], 0.5, targets, no_wait).at(rates)
        for i, rate in enumerate(rates):
            arrays = option_arrays(profile, rate, 0.5, utilisations=targets, no_wait=no_wait)
            assert least[i] == arrays.cost_pct.min()
            costs = arrays.cost_pct[arrays.gpu_share == share]
            assert at_share[i] == (costs.min() if len(costs) else np.inf)
            costs = arrays.cost_pct[arrays.gpu_share < share]
            assert below[i] == (costs.min() if len(costs) else np.inf)
    with pytest.raises(ModelError):
        LeastCosts([(profile, 1, None)]).at([1.0, -2.0])
    profiles = ProfileSet("t", {f"f{i}": random_monotone_profile(rng, f"f{i}", BATCH_SIZES, GPU_SHARES)
                                for i in range(3)})
    workflow = Workflow.build("w", 200.0, [Stage("a", "f0"), Stage("b", "f1", ("a",)), Stage("c", "f2", ("a",))])
    rates = [0.5, 7.0, 60.0]
    costs = CheapestPlanCosts(workflow, profiles, 0.5, shares={"b": 50}, utilisations=targets, no_wait=True,
                              shares_below={"c": 60}).at(rates)
    for rate, cost in zip(rates, costs):
        problem = build_problem(workflow, profiles, rate, 0.5, shares={"b": 50}, utilisations=targets, no_wait=True,
                                shares_below={"c": 60})
        assert cost == sum(menu.min_cost_pct for menu in problem.menus.values())
        assert set(problem.arrays["c"].gpu_share) == {g for g in profiles["f2"].runnable_arrays()[1] if g < 60}
