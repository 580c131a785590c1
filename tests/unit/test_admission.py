"""The admission limit alone: pure, no clock."""

import pytest

from esg_plugin.control.admission import AdmissionSettings, ConcurrencyLimit


def test_a_machine_that_keeps_up_is_never_refused():
    limit = ConcurrencyLimit(AdmissionSettings(max_limit=64))
    for _ in range(1000):
        assert limit.admit(10)
        limit.record(missed=False)
    assert limit.limit == 64 and not limit.admit(64)


def test_a_bad_window_cuts_the_limit_below_what_was_in_flight_and_good_answers_raise_it_again():
    s = AdmissionSettings(target_miss=0.1, window=10, decrease=0.5, max_limit=100)
    limit = ConcurrencyLimit(s)
    for i in range(10):
        assert limit.admit(i % 8)  # at most 8 in flight
        limit.record(missed=i < 2)  # 20% missed > 10%
    assert limit.limit == pytest.approx(4.0)  # half of the 8 in flight, not of 100
    assert limit.admit(3) and not limit.admit(4)
    for _ in range(4):
        limit.record(missed=False)  # 4 answers in time: about one more in flight (+1/limit each)
    assert 4.9 < limit.limit < 5.0


def test_the_limit_never_falls_below_its_floor():
    limit = ConcurrencyLimit(AdmissionSettings(window=2, min_limit=2))
    for _ in range(50):
        limit.admit(0)
        limit.record(missed=True)
    assert limit.limit == 2 and limit.admit(1) and not limit.admit(2)


@pytest.mark.parametrize("bad", [dict(target_miss=1.0), dict(window=0), dict(decrease=1.0), dict(min_limit=0),
                                 dict(min_limit=5, max_limit=4)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        AdmissionSettings(**bad)
