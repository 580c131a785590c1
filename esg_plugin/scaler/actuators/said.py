"""What a platform's record says, believed only as a number in its range:
an annotation or an env value (a string anyone may edit), a count in a
JSON document. One check for every actuator's reading (``base.said_state``,
the gateway's replicas, HAMi's records in ``gpu_room.py``); a value that
is not believed is :class:`~.errors.Unreadable`, naming where it is said
and what it says."""

from __future__ import annotations

from .errors import Unreadable


def said_number(raw: object, what: str, low: float, high: float, whole: bool = True) -> float:
    """A number one of a function's objects says — an annotation or an env
    value (a string), a count (an int) — believed only as a number (a whole
    one where ``whole``) in [``low``, ``high``]; else :class:`Unreadable`,
    naming ``what`` and what it says. A hand edit or a typo on one function
    (``min-scale: two``) is that function's, not a failure of the whole
    actuator."""
    try:
        if isinstance(raw, bool) or raw is None:
            raise ValueError
        if not whole:
            value = float(raw)
        elif isinstance(raw, float):
            value = int(raw) if raw.is_integer() else None  # 2.5 replicas are not 2
        else:
            value = int(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or not low <= value <= high:  # NaN is in no range; the bounds are finite
        kind = "a whole number" if whole else "a number"
        raise Unreadable(f"{what} says {raw!r}: not {kind} in {low:g}..{high:g}")
    return value
