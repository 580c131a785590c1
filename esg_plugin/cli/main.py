"""``esg``: one command, one subcommand per job.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback);
3 ``esg plan`` found no plan that meets the SLO (the best-effort plan is
still printed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import ESGError
from . import plan as plan_command
from . import profile as profile_command
from . import scaler as scaler_command
from . import up as up_command
from . import simulate as simulate_command

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INFEASIBLE = 3


class UsageError(Exception):
    """A bad command line, reported as one line and exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and an exception we catch)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="esg",
        description="ESG: pipeline-conscious scheduling of DNN workflows on serverless platforms with shareable GPUs.",
        epilog="Exit codes: 0 ok, 2 bad input, 3 no plan meets the SLO (esg plan).",
    )
    parser.add_argument("--version", action="version", version=f"esg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    plan_command.register(commands)
    simulate_command.register(commands)
    profile_command.register(commands)
    scaler_command.register(commands)
    up_command.register(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "run", None):
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        return args.run(args)
    except UsageError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ESGError as err:  # every error of the package (esg_plugin/errors.py)
        print(f"esg: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `esg plan ... | head`
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
