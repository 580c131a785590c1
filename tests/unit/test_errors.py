"""One error hierarchy (esg_plugin/errors.py): every error the package
raises at a user is an ESGError, keeps its standard type, and the command
line prints any of them as one line with exit 2."""

import pytest

from esg_plugin.control import ControlError
from esg_plugin.errors import ESGError
from esg_plugin.limits import LimitError
from esg_plugin.loaders import LoadError
from esg_plugin.local.platform import PlatformError
from esg_plugin.model import ModelError
from esg_plugin.planner import PlannerError
from esg_plugin.profiler.run import ProfileError
from esg_plugin.router.router import StageFailed
from esg_plugin.scaler.settings import ScalerSettingsError
from esg_plugin.sim.report import PlotsUnavailable
from esg_plugin.sim.workload import WorkloadError

VALUE_ERRORS = [ControlError, LimitError, LoadError, ModelError, PlannerError, ProfileError, ScalerSettingsError,
                WorkloadError]


@pytest.mark.parametrize("kind", VALUE_ERRORS + [PlatformError, PlotsUnavailable, StageFailed])
def test_every_error_of_the_package_is_an_esg_error(kind):
    assert issubclass(kind, ESGError)


@pytest.mark.parametrize("kind", VALUE_ERRORS)
def test_bad_values_stay_value_errors(kind):
    assert issubclass(kind, ValueError)


def test_the_command_line_prints_any_of_them_as_one_line(monkeypatch, capsys):
    import importlib

    cli = importlib.import_module("esg_plugin.cli.main")

    def broken(args):
        raise PlatformError("function 'x': no handler.py in /nowhere\nsecond line")

    monkeypatch.setattr(cli.plan_command, "run", broken)
    code = cli.main(["plan", "--workflow", "w", "--profiles", "p", "--rate", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err == "esg: error: function 'x': no handler.py in /nowhere\n"


def test_retrying_mends_what_a_retry_can_and_names_the_rest():
    import urllib.error

    from esg_plugin.scaler.actuators import Conflict, Invalid, NotFound, Unavailable, retrying

    slept = []
    answers = iter([Conflict("stale", 409), ConnectionResetError("reset"), "patched"])

    def call():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer
    assert retrying(call, sleep=slept.append) == "patched" and slept == [0.1, 0.2]

    def invalid():
        raise urllib.error.HTTPError("http://gw/system/scale-function/x", 422, "Unprocessable Entity", {}, None)
    slept.clear()
    with pytest.raises(Invalid, match="HTTP 422"):
        retrying(invalid, sleep=slept.append)
    assert slept == []  # a refused body does not get better by waiting

    def gone():
        raise urllib.error.HTTPError("http://gw/system/function/x", 404, "Not Found", {}, None)
    with pytest.raises(NotFound):
        retrying(gone, sleep=slept.append)

    def away():
        raise ConnectionRefusedError("refused")
    with pytest.raises(Unavailable, match="no answer"):
        retrying(away, attempts=3, sleep=slept.append)

    def bug():
        raise KeyError("a bug is not an API failure")
    with pytest.raises(KeyError):
        retrying(bug, sleep=slept.append)


def test_a_call_that_times_out_is_named_so_and_not_retried():
    """A timeout — Python's, urllib's around it, urllib3's (the kubernetes
    client's transport), or one urllib3 carries after its own retries — is
    ``TimedOut``: an ``Unavailable`` that a retry does not mend (asking a
    stalled server again waits as long). A refused connection stays a
    plain ``Unavailable``, retried."""
    import urllib.error

    from urllib3.exceptions import MaxRetryError, ReadTimeoutError

    from esg_plugin.scaler.actuators import TimedOut, Unavailable, api_error

    timeouts = [TimeoutError("timed out"), urllib.error.URLError(TimeoutError("timed out")),
                ReadTimeoutError(None, "/apis/apps/v1", "Read timed out. (read timeout=10)"),
                MaxRetryError(None, "/apis/apps/v1", ReadTimeoutError(None, "/apis/apps/v1", "Read timed out."))]
    for raw in timeouts:
        named = api_error(raw)
        assert type(named) is TimedOut and not named.retry and "no answer in time" in str(named), raw
    refused = api_error(urllib.error.URLError(ConnectionRefusedError(111, "refused")))
    assert type(refused) is Unavailable and refused.retry and refused.status is None


def test_once_a_call_goes_unanswered_the_iteration_asks_nothing_more():
    """``ApiCalls``: each call gets the timeout under the client's keyword;
    a call that times out is made once; a call that gets no answer at all
    (refused, its retries spent) or none in time makes the iteration's
    other calls fail at once (``NotAsked``) without reaching the server;
    an answer (429, 5xx) is retried and asks on; ``new_iteration`` asks
    again."""
    from esg_plugin.scaler.actuators import NotAsked, TimedOut, Unavailable
    from esg_plugin.scaler.actuators.base import ApiCalls

    made, slept = [], []
    outcomes = {}

    def method(name, _request_timeout=None):
        made.append((name, _request_timeout))
        outcome = outcomes.get(name, "ok")
        if isinstance(outcome, list):
            outcome = outcome.pop(0) if outcome else "ok"
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    calls = ApiCalls(timeout_s=2.5, sleep=slept.append)
    assert calls(method, "a") == "ok" and made == [("a", 2.5)]
    outcomes["busy"] = [Unavailable("HTTP 503 Service Unavailable", 503)]
    assert calls(method, "busy") == "ok" and slept == [0.1]  # an answer: retried, and the iteration asks on
    outcomes["stalled"] = TimeoutError("timed out")
    made.clear()
    with pytest.raises(TimedOut):
        calls(method, "stalled")
    assert made == [("stalled", 2.5)]  # once: not retried
    with pytest.raises(NotAsked, match="did not answer"):
        calls(method, "a")
    assert made == [("stalled", 2.5)]  # not made
    calls.new_iteration()
    assert calls(method, "a") == "ok"  # the next iteration asks again
    outcomes["away"] = ConnectionRefusedError(111, "refused")
    made.clear()
    slept.clear()
    with pytest.raises(Unavailable, match="no answer"):
        calls(method, "away", attempts=3)
    assert len(made) == 3 and slept == [0.1, 0.2]  # retried, then no more calls this iteration
    with pytest.raises(NotAsked):
        calls(method, "a")
    keyword = ApiCalls(timeout_s=4.0, keyword="timeout_s")  # the gateway actuator's own keyword
    assert keyword(lambda timeout_s: timeout_s) == 4.0


@pytest.mark.parametrize("raw, whole, low, high, believed", [
    ("3", True, 0, 10, 3), (" 3 ", True, 0, 10, 3), (7, True, 0, 10, 7), ("12.5", False, 0, 100, 12.5),
    (0, True, 0, 10, 0), ("two", True, 0, 10, None), ("3.0", True, 0, 10, None), ("1e3", True, 0, 10_000, None),
    ("-1", True, 0, 10, None), ("11", True, 0, 10, None), ("nan", False, 0, 10, None), ("inf", False, 0, 10, None),
    (True, True, 0, 10, None), (None, True, 0, 10, None), ("", True, 0, 10, None), (10**400, True, 0, 10, None),
    ([], True, 0, 10, None), ("1e400", False, 0, 1e9, None), (2.5, True, 0, 10, None), (3.0, True, 0, 10, 3),
])
def test_a_number_an_object_says_is_believed_only_in_its_range(raw, whole, low, high, believed):
    """What a function's annotation or env says is a string anyone may edit:
    believed only as a (whole) number within the field's range, else
    ``Unreadable``, naming where it is said and what it says."""
    from esg_plugin.scaler.actuators import Unreadable
    from esg_plugin.scaler.actuators.said import said_number

    if believed is None:
        with pytest.raises(Unreadable, match="the annotation x says"):
            said_number(raw, "the annotation x", low, high, whole)
    else:
        assert said_number(raw, "the annotation x", low, high, whole) == believed


def test_a_command_lines_numbers_are_believed_only_in_their_range():
    """``limits.flag`` and ``limits.flags`` (argparse types, the benches'
    and the CLI's): a number, or comma-separated numbers, each finite and
    within the flag's range, else argparse's error naming the range — a
    bench's ``--runs 0`` or ``--rates -1`` used to end in a traceback or to
    run on (``bench/tracking.py --rates -1`` looped for good)."""
    import argparse

    from esg_plugin.limits import flag, flags

    runs, rate, rates = flag(int, 1, 10), flag(float, 1e-3, 100.0), flags(float, 0.0, 1.0)
    assert (runs("3"), rate("2.5"), rates("0, 0.5,1")) == (3, 2.5, [0.0, 0.5, 1.0])
    for parse, text in ((runs, "0"), (runs, "11"), (runs, "2.5"), (runs, "x"), (rate, "-5"), (rate, "nan"),
                        (rate, "inf"), (rate, "1e9"), (rates, "0.5,2"), (rates, "0.5,,1"), (rates, "")):
        with pytest.raises(argparse.ArgumentTypeError, match="must be|expected"):
            parse(text)
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--rates", type=flags(float, 1e-3, 1000.0), default="1,2")
    assert parser.parse_args([]).rates == [1.0, 2.0]  # a default given as text goes through the type too
