"""The tail of the queueing waits along a path (``esg_plugin/model/tail.py``)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from esg_plugin.control import ControlLaw, ControlSettings, Observation, WorkflowObservation
from esg_plugin.model import ModelError
from esg_plugin.model.config import queueing_delays_ms
from esg_plugin.model.tail import GRID_POINTS, path_miss_share, plan_miss_share
from esg_plugin.sim.generate import random_workload


def test_one_wait_is_its_own_tail_and_two_add_up_as_their_sum_does():
    """One stage: P(wait > s) = p·exp(−s / mean); two that always wait
    with the same mean: the sum is Erlang-2, P = (1 + s/m)·exp(−s/m).
    The grid rounds each wait up, so the share is never below the exact
    one, and above it by little."""
    for p, mean_ms, slack_ms in ((0.3, 2.0, 5.0), (1.0, 10.0, 3.0), (0.05, 1.0, 20.0)):
        exact = p * math.exp(-slack_ms / mean_ms)
        got = path_miss_share([(p, mean_ms)], slack_ms)
        assert exact - 1e-12 <= got <= p * math.exp(-slack_ms * (1 - 1 / GRID_POINTS) / mean_ms) + 1e-12
    m, s = 4.0, 12.0
    exact = (1 + s / m) * math.exp(-s / m)
    got = path_miss_share([(1.0, m), (1.0, m)], s)
    assert exact - 1e-12 <= got <= exact * 1.05


def test_the_share_bounds_a_sampled_sum_and_is_far_below_the_sum_of_the_stages_quantiles():
    """Seeded random paths of 2–8 stages, each waiting with probability
    0.01–0.5: the share is at least what 200,000 sampled requests show
    (less three standard errors), and the slack that leaves 1% of them
    late is well below the sum of the stages' own 99% quantiles — the
    point of planning the path's tail rather than each stage's."""
    rng = random.Random(7)
    draws = np.random.default_rng(7)
    for _ in range(20):
        waits = [(rng.uniform(0.01, 0.5), rng.uniform(0.5, 10.0)) for _ in range(rng.randint(2, 8))]
        quantiles_ms = sum(m * max(0.0, math.log(p / 0.01)) for p, m in waits)  # each stage's 99% quantile
        total = sum(np.where(draws.random(200_000) < p, draws.exponential(m, 200_000), 0.0) for p, m in waits)
        for slack_ms in (0.5 * quantiles_ms, quantiles_ms, float(np.quantile(total, 0.99))):
            sampled = float((total > slack_ms).mean())
            assert path_miss_share(waits, slack_ms) >= sampled - 3 * math.sqrt(sampled * (1 - sampled) / 200_000)
        assert path_miss_share(waits, quantiles_ms) < 0.01


def test_a_wait_that_cannot_be_believed_is_refused_and_the_edges_are_plain():
    assert path_miss_share([], 5.0) == 0.0
    assert path_miss_share([(0.0, 3.0), (0.5, 0.0)], 5.0) == 0.0  # nobody waits, or for nothing
    assert path_miss_share([(0.2, 3.0)], 0.0) == 1.0  # no slack at all: any wait is late
    assert path_miss_share([(0.2, math.inf)], 50.0) == 1.0  # a stage that cannot keep up
    for bad in ((1.5, 2.0), (-0.1, 2.0), (math.nan, 2.0), (0.5, -1.0), (0.5, math.nan)):
        with pytest.raises(ModelError):
            path_miss_share([bad], 5.0)


def test_a_plans_share_counts_every_path_of_a_dag():
    """A DAG's requests wait along each entry-to-exit path: the share of a
    diamond's plan (every stage at one option, its queueing wait the mean
    ``queueing_delays_ms`` gives) is its two paths' shares summed, each
    path's that of a chain of the same three stages."""
    from esg_plugin.model import Config, Stage, StageOption, Workflow

    wf = Workflow.build("w", 60.0, [Stage("a", "f"), Stage("b", "f", ("a",)), Stage("c", "f", ("a",)),
                                    Stage("d", "f", ("b", "c"))], hop_ms=1.0)
    rate = 40.0
    mean = float(queueing_delays_ms(rate, np.array([1.0]), np.array([10.0]), np.array([1]), 1.0)[0])
    option = StageOption(Config(1, 100), 10.0, 1, 0.0, 10.0 + mean, 100, mean)
    choices = {s: option for s in "abcd"}
    share = plan_miss_share(wf, choices, rate, 60.0, 1.0, "allen-cunneen")
    chain = Workflow.build("w", 60.0, [Stage("a", "f"), Stage("b", "f", ("a",)), Stage("d", "f", ("b",))], hop_ms=1.0)
    one_path = plan_miss_share(chain, {s: option for s in "abd"}, rate, 60.0, 1.0, "allen-cunneen")
    assert one_path > 0 and share == pytest.approx(min(1.0, 2 * one_path))


def test_a_long_chain_at_a_light_load_is_planned_for_its_paths_tail_not_each_stages():
    """``path_tail``: random-4761, a chain of 7 stages at 8.7 rps (below
    ``low_rate_tail``'s line): each stage at its wait's 99% quantile held
    far more than the chain's tail needs; the plan at a lower quantile
    whose path share is within the tolerance holds less."""
    case = random_workload(4761)
    wf = case.workload.workflows[0].workflow
    plans = {}
    for on in (True, False):
        law = ControlLaw([wf], case.profiles, ControlSettings(path_tail=on))
        state = law.new_state()
        decision = law.step(Observation(0.0, {wf.name: WorkflowObservation(8.7, 8.7, 30.0)}), state, 0.0)
        plans[on] = decision.plans[wf.name]
    assert plans[True].cost < plans[False].cost
