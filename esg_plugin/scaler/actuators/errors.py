"""The platform API's failures, named (as kopf names them): what each status
means to the scaler, and whether a retry can help.

``api_error`` maps what a client raises — the ``kubernetes`` client's
``ApiException`` (``status``, ``reason``, a ``Status`` document as body),
``urllib``'s ``HTTPError`` (the OpenFaaS gateway), or no answer at all
(connection refused, timeout, reset) — to one of these. Every actuator
reports a named error; none lets a client's own type escape.
"""

from __future__ import annotations

from typing import Optional

from ...errors import ESGError
from ...jsontext import loads_json


class ApiError(ESGError):
    """A call to the platform's API failed."""

    retry = False
    """Whether the same call may succeed if made again."""

    def __init__(self, message: str, status: Optional[int] = None, reason: str = ""):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class NotFound(ApiError):
    """404: the function (its Deployment or Service) is gone."""


class Conflict(ApiError):
    """409: the object changed since it was read (a stale resourceVersion).
    Read it again, decide the patch again, and retry."""

    retry = True


class Invalid(ApiError):
    """400 or 422: the server refused the object or the patch as written."""


class Forbidden(ApiError):
    """401 or 403: the scaler's account may not do this (see its Role)."""


class Unavailable(ApiError):
    """429, 5xx or no answer: the server is busy or away; back off and retry."""

    retry = True


class TimedOut(Unavailable):
    """No answer within the request's timeout (``ApiCalls``): the server is
    stalled. Not retried — asking again waits as long; the next iteration
    asks again."""

    retry = False


class NotAsked(Unavailable):
    """A call not made: an earlier call of the same iteration got no answer
    at all (``ApiCalls``). Said with that one; the next iteration asks."""

    retry = False


class Unreadable(ApiError):
    """The server answered, but a record in its answer does not say what its
    format says (a HAMi annotation, ``gpu_room.py``): not believed."""


def _message(body, fallback: str) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else the fallback."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            doc = loads_json(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            return doc["message"]
    return fallback


def _timed_out(err: Exception) -> bool:
    """A timeout: Python's own, or urllib3's (the kubernetes client's
    transport), or one carried as the reason of an error around it
    (urllib's ``URLError``, urllib3's ``MaxRetryError``)."""
    reason = getattr(err, "reason", None)
    if isinstance(reason, Exception) and reason is not err:
        return _timed_out(reason)
    return isinstance(err, TimeoutError) or (type(err).__module__.split(".")[0] == "urllib3"
                                             and "Timeout" in type(err).__name__)


def _no_answer(err: Exception) -> bool:
    # urllib3's errors (the kubernetes client's transport) are not OSErrors
    return isinstance(err, OSError) or type(err).__module__.split(".")[0] == "urllib3"


def api_error(err: Exception) -> Optional[ApiError]:
    """The named error for what a client raised; None when it is not an
    API failure at all (a bug: let it propagate)."""
    if isinstance(err, ApiError):
        return err
    status = getattr(err, "status", None)
    if not isinstance(status, int):
        status = getattr(err, "code", None)  # urllib.error.HTTPError
    if isinstance(status, int) and status > 0:
        body = getattr(err, "body", None)
        if body is None and hasattr(err, "read"):
            try:
                body = err.read(64 * 1024)
            except (OSError, ValueError):
                body = None
        reason = str(getattr(err, "reason", "") or "")
        message = _message(body, (str(err).splitlines() or [reason])[0])
        kind = {404: NotFound, 409: Conflict, 400: Invalid, 422: Invalid, 401: Forbidden, 403: Forbidden,
                429: Unavailable}.get(status, Unavailable if status >= 500 else ApiError)
        return kind(f"HTTP {status} {reason}: {message}".replace(" : ", ": "), status, reason)
    if _timed_out(err):
        return TimedOut(f"no answer in time: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
    if _no_answer(err):
        return Unavailable(f"no answer: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
    return None
