"""Shared fixtures: example files and small hand-made profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from esg_plugin.model import FunctionProfile, ProfileSet

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


def tiny_profile(name: str, latency_ms, batch_sizes=(1, 2), gpu_shares=(50, 100)) -> FunctionProfile:
    return FunctionProfile(name, tuple(batch_sizes), tuple(gpu_shares), tuple(tuple(r) for r in latency_ms))


@pytest.fixture
def tiny_profiles() -> ProfileSet:
    """Three functions with 2 batch sizes x 2 shares each."""
    return ProfileSet(
        device="test",
        functions={
            "a": tiny_profile("a", [[20.0, 10.0], [30.0, 16.0]]),
            "b": tiny_profile("b", [[40.0, 22.0], [60.0, 35.0]]),
            "c": tiny_profile("c", [[10.0, 6.0], [14.0, 9.0]]),
        },
    )
