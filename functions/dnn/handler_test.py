"""Runs inside `faas-cli build` (the template's test stage) for the stage
picked by ESG_FUNCTION."""

import json
from types import SimpleNamespace

from .handler import NAME, STAGE, handle_batch


def event(body: bytes):
    return SimpleNamespace(body=body, headers={"Content-Type": "application/json"}, method="POST", query={},
                           path="/")


def test_a_batch_answers_each_event_and_rejects_malformed_ones():
    good = json.dumps(STAGE.sample(0)).encode()
    results = handle_batch([event(good), event(b"not json"), event(good)], None)
    assert [r["statusCode"] for r in results] == [200, 400, 200], NAME
    assert results[0]["body"] == results[2]["body"]
    assert "error" in results[1]["body"]
