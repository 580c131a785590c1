from types import SimpleNamespace

from .handler import handle_batch


def event(body: bytes):
    return SimpleNamespace(body=body, headers={}, method="POST", query={}, path="/")


def test_one_result_per_event_in_order():
    results = handle_batch([event(b'{"n": 1}'), event(b"oops"), event(b'{"n": 3}')], None)
    assert [r["statusCode"] for r in results] == [200, 400, 200]
    assert results[0]["body"]["received"] == {"n": 1}
    assert results[2]["body"]["batch_size"] == 3
