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
