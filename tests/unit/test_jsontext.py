"""JSON from outside the process nested deeper than ``json.loads`` follows
(``jsontext.py``): every reader of such text answers it as text that is not
JSON — its ``RecursionError`` is no ``ValueError``, and slipped past each
``except ValueError``."""

import pytest

from esg_plugin.jsontext import loads_json
from esg_plugin.scaler import sources
from esg_plugin.scaler.actuators import gpu_room
from esg_plugin.scaler.actuators.errors import Unreadable, _message
from esg_plugin.scaler.actuators.lease import Lease

DEEP = "[" * 3000 + "]" * 3000
"""Valid JSON, 6 KB, three thousand levels deep."""


def test_json_nested_too_deeply_to_parse_is_a_value_error_like_any_text_that_is_not_json():
    assert loads_json('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert loads_json(b"[[1]]") == [[1]]
    for text in (DEEP, "[" * 3000, "{" * 3000):
        with pytest.raises(ValueError):
            loads_json(text)


def test_the_scalers_readers_take_json_nested_too_deeply_as_not_json(monkeypatch):
    with pytest.raises(Unreadable, match="not JSON"):  # a HAMi node's registration
        gpu_room.node_devices(DEEP)
    assert _message(DEEP.replace("[", "{\"a\":", 1), "fallback") == "fallback"  # an API's error body
    monkeypatch.setattr(sources, "_fetch", lambda url, timeout_s: DEEP.encode())  # Prometheus's answer
    assert sources.PrometheusQuery("http://prometheus").observe(0.0) is None
    lease = Lease(None, None, "openfaas-fn", "esg-scaler", 15.0, candidate="a")  # the Lease's record
    lease.said = DEEP
    assert lease.learned_record() is None
