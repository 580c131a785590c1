"""The range of every number that enters the system, in one place.

Files, command-line flags, environment variables, HTTP bodies and metrics
are checked against these: a value must be finite and inside its range,
else it is an error the caller reports — one line and exit 2 on the
command line, a 4xx with a JSON reason over HTTP, "no data" (counted) for
a metric. Nothing outside its range is believed: a rate of 1e300 is a
broken counter or a typo, not traffic, and planning for it overflowed the
replica count to −9223372036854775808.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Union
from .errors import ESGError

Number = Union[int, float]

MAX_RATE_RPS = 1e6
"""A workflow or function rate above this is a broken counter or a typo, not traffic."""
MIN_RATE_RPS = 1e-6
"""The least rate a plan is made for (one request in eleven days); below, a typo."""
MAX_REPLICAS = 10_000
"""Replicas of one function."""
MAX_SEED = 2**32 - 1
"""Random seeds lie in 0..MAX_SEED (numpy's range)."""
MAX_DURATION_S = 7 * 24 * 3600.0
"""A simulated or live run: at most a week."""
MAX_SIMULATED_REQUESTS = 10**7
"""Requests one simulation may generate (peak rates × duration): beyond, the workload is refused."""
MAX_FILE_BYTES = 8 * 1024 * 1024
"""A workflow, stack, workload, settings or profiles file."""
MAX_NESTING = 64
"""Nesting depth of a document (lists and mappings inside each other)."""
MAX_NODES = 1_000_000
"""Values in one document, aliases expanded."""


def is_number(value: object) -> bool:
    """A finite int or float, not a bool (an int too large for a float is not one: 10**400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**1023
    return math.isfinite(value)


class LimitError(ESGError, ValueError):
    """A number outside its documented range (the message names it and the range)."""


def in_range(name: str, value: object, low: Number, high: Number, integer: bool = False,
             low_open: bool = False) -> Number:
    """``value`` if it is a finite number (an integer if asked) in
    [low, high] ((low, high] with ``low_open``), else LimitError."""
    kind = "an integer" if integer else "a number"
    bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise LimitError(f"{name} must be {kind} in {bounds}, got {str(value)[:40]!r}")
    if not (is_number(value) and (low < value if low_open else low <= value) and value <= high):
        shown = f"{value:g}" if isinstance(value, float) else (str(value) if abs(value) < 10**30 else "a huge integer")
        raise LimitError(f"{name} must be {kind} in {bounds}, got {shown}")
    return value


def flag(kind: type, low: Number, high: Number, low_open: bool = False) -> Callable[[str], Number]:
    """An argparse ``type=``: the flag's text parsed as ``kind`` and kept in range."""

    def parse(text: str) -> Number:
        try:
            value = kind(text) if kind is float else int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text[:40]!r}") from None
        try:
            return in_range("the value", value, low, high, integer=kind is int, low_open=low_open)
        except LimitError as err:
            raise argparse.ArgumentTypeError(str(err).replace("the value must be", "must be")) from None

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def flags(kind: type, low: Number, high: Number, low_open: bool = False) -> Callable[[str], list]:
    """An argparse ``type=``: comma-separated numbers, each as :func:`flag` parses and checks it."""
    one = flag(kind, low, high, low_open)

    def parse(text: str) -> list:
        return [one(part.strip()) for part in text.split(",")]

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def check_document(data: object, what: str) -> None:
    """LimitError if a parsed document nests deeper than MAX_NESTING or
    holds more than MAX_NODES values (an alias bomb expands here, bounded)."""
    stack = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise LimitError(f"{what}: more than {MAX_NODES} values")
        if depth > MAX_NESTING:
            raise LimitError(f"{what}: nested deeper than {MAX_NESTING} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value.keys() if not isinstance(k, (str, int, float)))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)
