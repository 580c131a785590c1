"""JSON text from outside the process: an HTTP body, an API's answer, an
annotation anyone with a patch right can write.

``json.loads`` raises ``RecursionError``, not ``ValueError``, for a
document nested deeper than its parser follows — from about a thousand
levels, so ``"[" * 1000``, one kilobyte, is enough — and a caller's
``except ValueError`` let it through: a Lease's record of that shape
stopped every iteration of the scaler that read it. :func:`loads_json`
makes it a ``ValueError`` like any other text that is not JSON. (Files
are read by ``loaders.py``, which checks their nesting first.)
"""

from __future__ import annotations

import json
from typing import Union


def loads_json(text: Union[str, bytes, bytearray]) -> object:
    """``json.loads``; a document nested too deeply to parse is a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to parse") from None
