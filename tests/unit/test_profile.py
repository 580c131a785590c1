"""Profiles: parsing and validation (SPEC §1)."""

import copy
import json

import pytest

from esg_plugin.model import ModelError, parse_profiles

GOOD = {
    "device": "cpu-2core",
    "share_unit": "percent of the node's cores",
    "functions": {
        "resnet50": {
            "batch_sizes": [1, 2, 4],
            "gpu_shares": [50, 100],
            "latency_ms": [[40.0, 22.0], [70.0, 38.0], [None, 70.0]],
            "memory_mb": [900, 950, 1100],
            "cold_start_ms": 1800,
        }
    },
}


def test_parses_and_round_trips():
    profiles = parse_profiles(GOOD)
    p = profiles["resnet50"]
    assert p.latency(2, 100) == 38.0
    assert p.latency(4, 50) is None
    assert p.cold_start_ms == 1800
    assert list(p.configurations())[0] == (1, 50, 40.0)
    assert len(list(p.configurations())) == 5
    assert json.loads(json.dumps(profiles.to_dict()))["functions"]["resnet50"]["latency_ms"][2] == [None, 70.0]


def test_unknown_configuration_is_an_error():
    with pytest.raises(ModelError, match="no entry for batch size 3"):
        parse_profiles(GOOD)["resnet50"].latency(3, 50)


def with_change(path, value):
    data = copy.deepcopy(GOOD)
    target = data["functions"]["resnet50"]
    if value is KeyError:
        del target[path]
    else:
        target[path] = value
    return data


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("batch_sizes", [1, 1, 4], "strictly increasing"),
        ("batch_sizes", [0, 2, 4], "must lie in >= 1"),
        ("batch_sizes", [1, 2.5, 4], "must hold integers"),
        ("gpu_shares", [50, 150], "must lie in 1..100"),
        ("gpu_shares", [100, 50], "strictly increasing"),
        ("latency_ms", [[40.0, 22.0], [70.0, 38.0]], "one row per batch size"),
        ("latency_ms", [[40.0], [70.0, 38.0], [None, 70.0]], "one value per share"),
        ("latency_ms", [[40.0, -1.0], [70.0, 38.0], [None, 70.0]], "must be a positive number"),
        ("latency_ms", [[None, None], [None, None], [None, None]], "every configuration is null"),
        ("memory_mb", [900], "one value per batch size"),
        ("cold_start_ms", -5, "non-negative"),
        ("latency_ms", KeyError, "is missing 'latency_ms'"),
    ],
)
def test_rejects_bad_profiles(field, value, message):
    with pytest.raises(ModelError, match=message):
        parse_profiles(with_change(field, value))


def test_rejects_a_document_without_functions():
    with pytest.raises(ModelError, match="non-empty 'functions'"):
        parse_profiles({"device": "x", "functions": {}})
    with pytest.raises(ModelError, match="JSON object"):
        parse_profiles([1, 2])
