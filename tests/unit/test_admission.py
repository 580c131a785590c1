"""The admission limit alone: pure, no clock."""

import math

import pytest

from esg_plugin.control.admission import AdmissionSettings, ConcurrencyLimit


def test_a_machine_that_keeps_up_is_never_refused():
    limit = ConcurrencyLimit(AdmissionSettings(max_limit=64))
    for _ in range(1000):
        assert limit.admit(10)
        limit.record(0.5)
    assert limit.limit == 64 and not limit.admit(64)


def test_a_bad_window_cuts_the_limit_below_what_was_in_flight_and_good_answers_raise_it_again():
    s = AdmissionSettings(target_miss=0.1, window=10, decrease=0.5, max_limit=100)
    limit = ConcurrencyLimit(s)
    for i in range(10):
        assert limit.admit(0)
        limit.record(0.3)  # at low load: the baseline
    assert limit.limit == 100
    for i in range(10):
        assert limit.admit(i % 8)  # at most 8 in flight
        limit.record(2.0 if i < 2 else 0.5)  # 20% missed > 10%, the median inflated (0.5 > 1.3 x 0.3)
    assert limit.limit == pytest.approx(4.0)  # half of the 8 in flight, not of 100
    assert limit.admit(3) and not limit.admit(4)
    for _ in range(9):
        limit.record(0.3)  # answers in time move nothing until the window is judged
    assert limit.limit == pytest.approx(4.0)
    limit.record(0.3)  # a good window: one more in flight
    assert limit.limit == pytest.approx(5.0)


def test_a_bursts_misses_answered_in_the_next_window_are_charged_to_the_level_it_was_admitted_at():
    """A burst of 20 admitted at once is answered over two windows; the
    second opened after the burst was admitted and saw few in flight. Its
    misses are the burst's: the limit falls from what the burst had in
    flight, not from the second window's own peak (which cut it to 2)."""
    s = AdmissionSettings(target_miss=0.1, window=10, decrease=0.75, max_limit=64)
    limit = ConcurrencyLimit(s)
    for _ in range(10):
        assert limit.admit(0)
        limit.record(0.3, alone=True, others=0)  # the baseline
    burst = list(range(20))  # the others in flight as each is admitted
    for others in burst:
        assert limit.admit(others)
    for others in burst[:10]:
        limit.record(0.5 if others < 5 else math.inf, others=others)
    assert limit.limit == pytest.approx(15.0)  # 0.75 x the 20 in flight
    assert limit.admit(0) and limit.admit(1)  # the next window sees two in flight
    for others in burst[10:]:
        limit.record(math.inf, others=others)
    assert limit.limit == pytest.approx(15.0 * 0.75)  # not 0.75 x 2
    old = ConcurrencyLimit(s)  # without the level each answer was admitted at
    for _ in range(10):
        old.admit(0)
        old.record(0.3, alone=True)
    for others in burst:
        old.admit(others)
    for others in burst[:10]:
        old.record(0.5 if others < 5 else math.inf)
    old.admit(0), old.admit(1)
    for _ in burst[10:]:
        old.record(math.inf)
    assert old.limit == pytest.approx(1.5)


def test_misses_on_a_machine_slow_for_every_request_shed_nothing():
    """A third of the answers miss however few are in flight: refusing
    requests would not help the others, so the limit does not fall."""
    limit = ConcurrencyLimit(AdmissionSettings(window=10, max_limit=64))
    for _ in range(100):
        limit.admit(1)
        for ratio in (0.7, 0.75, 0.8, 0.7, 0.72, 0.78, 1.2, 1.3, 1.1, 0.74):
            limit.record(ratio)
    assert limit.limit == 64


def test_a_limit_that_settles_where_the_misses_are_few():
    """A machine on which latency grows with the requests in flight (0.3 of
    the SLO each): the limit settles at 3 (0.9 of the SLO: near, not over)
    and holds there instead of sawing into 4, where every answer is late."""
    s = AdmissionSettings(target_miss=0.1, window=20, max_limit=64)
    limit = ConcurrencyLimit(s)
    for _ in range(20):
        limit.admit(0)
        limit.record(0.3, alone=True)  # the baseline: one in flight
    limits = []
    in_flight = 0
    for _ in range(4000):
        in_flight = min(int(limit.limit), 8)
        assert limit.admit(in_flight - 1)
        limit.record(0.3 * in_flight, alone=in_flight == 1)
        limits.append(limit.limit)
    assert set(limits[len(limits) // 2:]) == {3.0}


def test_answers_near_the_slo_and_slowed_by_load_hold_the_limit():
    limit = ConcurrencyLimit(AdmissionSettings(window=10, max_limit=64, headroom=0.8))
    limit.limit = 5.0
    for _ in range(10):
        limit.admit(0)
        limit.record(0.5, alone=True)
    assert limit.limit == 6.0
    for _ in range(10):
        limit.admit(2)
        limit.record(0.9)  # all in time, all near the SLO, 1.8 x what they take alone: queueing
    assert limit.limit == 6.0


def test_answers_near_the_slo_without_queueing_raise_a_limit_a_step_had_cut():
    """A workflow whose answers lie near its SLO even alone (a classifier
    of 0.8 of the SLO): after a burst of misses cut its limit, calm windows
    at the baseline raise it again, one a window."""
    limit = ConcurrencyLimit(AdmissionSettings(window=10, max_limit=64, headroom=0.8))
    for _ in range(10):
        limit.admit(0)
        limit.record(0.85, alone=True)  # near the SLO, one in flight
    assert limit.limit == 64
    for i in range(10):
        limit.admit(i % 4)  # a step: 4 in flight, most late
        limit.record(2.0 if i < 6 else 0.9)
    assert limit.limit == pytest.approx(3.0)
    for _ in range(5):
        for i in range(10):
            limit.admit(i % 2)  # in time again, half of them alone
            limit.record(0.86, alone=i % 2 == 0)
    assert limit.limit == pytest.approx(8.0)


def test_without_answers_of_requests_alone_near_answers_still_hold_the_limit():
    limit = ConcurrencyLimit(AdmissionSettings(window=10, max_limit=64, headroom=0.8))
    limit.limit = 5.0
    for _ in range(30):
        limit.admit(3)
        limit.record(0.85)  # never alone: nothing says this is not queueing
    assert limit.limit == 5.0


def test_the_limit_never_falls_below_its_floor():
    limit = ConcurrencyLimit(AdmissionSettings(window=2, min_limit=2))
    for _ in range(50):
        limit.admit(0)
        limit.record(math.inf)
    assert limit.limit == 2 and limit.admit(1) and not limit.admit(2)


@pytest.mark.parametrize("bad", [dict(target_miss=1.0), dict(window=0), dict(decrease=1.0), dict(increase=0), dict(headroom=0), dict(inflation=0.9),
                                 dict(calm_inflation=0.9), dict(calm_inflation=1.5, inflation=1.3), dict(baseline_drift=1.0), dict(min_limit=0),
                                 dict(min_limit=5, max_limit=4), dict(scope="node")])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        AdmissionSettings(**bad)


@pytest.mark.parametrize("rate_rps", [1.2, 1.6, 2.0, 5.0, 20.0])
def test_a_rate_limit_lets_random_arrivals_below_its_rate_through_and_holds_an_excess(rate_rps):
    """Poisson arrivals at 80% of the limit: few refused (a one-second
    bucket refused up to a quarter at these rates); at twice the limit:
    the rate admitted, give or take the bucket."""
    import random

    from esg_plugin.control.admission import RateLimit

    for load, check in ((0.8, lambda refused, n, admitted, span: refused / n <= 0.05),
                        (2.0, lambda refused, n, admitted, span: admitted <= rate_rps * span + limit.burst)):
        rng = random.Random(7)
        limit = RateLimit(rate_rps, now_s=0.0)
        t, refused, n = 0.0, 0, 4000
        for _ in range(n):
            t += rng.expovariate(load * rate_rps)
            refused += not limit.admit(t)
        assert check(refused, n, n - refused, t), (load, refused, n, t)


def test_the_machine_scope_names_one_limit_for_all_workflows():
    assert AdmissionSettings().scope_of("a") == AdmissionSettings().scope_of("b")
    per_workflow = AdmissionSettings(scope="workflow")
    assert per_workflow.scope_of("a") != per_workflow.scope_of("b")


def test_at_a_shared_limit_a_workflow_below_its_part_is_still_admitted():
    """Three workflows share a limit of 6: each one's part is 2. At the
    limit, a workflow with fewer than 2 in flight is admitted, one with 2
    is not; below the limit anyone is; without ``partitioned``, or alone
    behind its limit, the limit is the limit. The part is at least one."""
    limit = ConcurrencyLimit(AdmissionSettings(max_limit=6))
    assert limit.part(3) == 2 and limit.admit(6, own=0, sharing=3) and limit.admit(7, own=1, sharing=3)
    assert not limit.admit(6, own=2, sharing=3) and limit.admit(5, own=5, sharing=3)
    assert not limit.admit(6, own=0, sharing=1)
    assert not ConcurrencyLimit(AdmissionSettings(max_limit=6, partitioned=False)).admit(6, own=0, sharing=3)
    small = ConcurrencyLimit(AdmissionSettings(max_limit=2))
    assert small.part(3) == 1 and small.admit(2, own=0, sharing=3) and not small.admit(2, own=1, sharing=3)


def test_a_rate_limit_admits_its_rate_on_average_and_its_burst_at_once():
    from esg_plugin.control.admission import RATE_BURST_S, RateLimit

    limit = RateLimit(4.0, now_s=0.0)
    burst = int(4.0 * RATE_BURST_S)
    assert [limit.admit(0.0) for _ in range(burst + 1)] == [True] * burst + [False]  # the bucket at once
    assert limit.admit(0.1) is False and limit.admit(0.25) is True        # then one every 1/4 s
    admitted = sum(limit.admit(t / 100) for t in range(100, 1100))        # 10 s at 100 tries a second
    assert 40 <= admitted <= 40 + burst  # 4 a second, plus what was banked before (at most the burst)
    limit.set(1.0, now_s=11.0, burst=1.0)                                 # a lower rate holds at once
    assert limit.burst == 1.0 and sum(limit.admit(11.0 + t / 10) for t in range(50)) <= 6
    assert limit.admit(5.0) is False  # a clock that steps back refills nothing
    with pytest.raises(ValueError, match="positive rate"):
        limit.set(float("nan"), 20.0)
