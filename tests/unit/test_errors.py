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
