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
