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
        ("batch_sizes", [0, 2, 4], "must lie in 1..4096"),
        ("batch_sizes", [1, 2, 4097], "must lie in 1..4096"),
        # an integer past a C long was taken, and planning it ended in an OverflowError (found by
        # make fuzz at FUZZ_SEED=73 FUZZ_CASES=20000)
        ("batch_sizes", [1, 2, 10**400], "must lie in 1..4096"),
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


def test_the_shipped_gpu_profile_was_measured_through_the_functions_and_falls_with_the_share():
    """profiles/gpu-h200.json (bench/gpu_profile.sh on a lent H200): a valid
    SPEC §1 file, the image stages timed through binary V2 inside green
    contexts, and at the largest batch the smallest share slower than the
    whole GPU for the ResNets and ESPCN (the issue's bar; the data, not a
    speed measured by this test)."""
    import json
    from pathlib import Path

    from esg_plugin.loaders import load_profiles

    path = Path(__file__).resolve().parents[2] / "profiles" / "gpu-h200.json"
    profiles = load_profiles(path)
    doc = json.loads(path.read_text())
    assert doc["device"] == "NVIDIA H200" and "green-context" in doc["measured_by"]["share_mechanism"]
    # a GPU share is reserved; a CPU share (threads) is time-shared (esg up's busy capacity)
    assert not profiles.time_shared and load_profiles(path.with_name("cpu-2core.json")).time_shared
    for name in ("resnet50", "resnet18", "espcn"):
        assert doc["measured_by"]["paths"][name] == "v2-binary"
        p = profiles[name]
        assert p.gpu_shares[0] == 10 and p.gpu_shares[-1] == 100
        assert p.latency_ms[-1][0] > 1.3 * p.latency_ms[-1][-1], name

