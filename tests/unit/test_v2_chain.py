"""A whole workflow as one Open Inference Protocol model
(``esg_plugin/runtime/v2.py``: ``chain_order``, ``infer_chain``), as both
routers use it."""

import pytest

from esg_plugin.runtime.v2 import HEADER, ProtocolError, Tensor, chain_order, encode_response, infer_chain, parse_infer


def test_a_chain_is_ordered_whatever_order_its_stages_are_listed_in():
    assert chain_order({"c": ["b"], "a": [], "b": ["a"]}) == ["a", "b", "c"]
    assert chain_order({"only": []}) == ["only"]


@pytest.mark.parametrize("after, fanout", [
    ({"a": [], "b": ["a"], "c": ["a"]}, None),  # a fork: c would get b's outputs
    ({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, None),  # a join
    ({"a": [], "b": []}, None),  # two entries
    ({"a": [], "b": ["a"]}, {"b": 2}),  # fan-out calls
])
def test_a_workflow_that_is_not_a_chain_is_refused_with_the_reason(after, fanout):
    with pytest.raises(ProtocolError, match="not a chain"):
        chain_order(after, fanout)


def test_an_unknown_predecessor_is_named():
    with pytest.raises(ProtocolError, match="unknown stage 'x'"):
        chain_order({"a": ["x"]})


def test_tensors_pass_through_the_chain_in_binary_by_name():
    calls = []

    def call(stage, model, body, headers):
        request = parse_infer(model, body, headers[HEADER])
        calls.append((stage, model, sorted(request.inputs), headers["X-Id"]))
        x = request.inputs["x"]
        out = Tensor("x", x.datatype, x.shape, bytes(b ^ 0xFF for b in x.data))  # each stage flips the bytes
        body, extra = encode_response(request, {"x": out})
        return body, {HEADER.lower(): extra.get(HEADER)} if HEADER in extra else {}

    data = bytes(range(8))
    out = infer_chain({"x": Tensor("x", "UINT8", [8], data)}, [("s1", "m1"), ("s2", "m2"), ("s3", "m3")], call,
                      {"X-Id": "r"})
    assert out["x"].data == bytes(b ^ 0xFF for b in data)  # three flips
    assert [c[:2] for c in calls] == [("s1", "m1"), ("s2", "m2"), ("s3", "m3")]
    assert all(c[2] == ["x"] and c[3] == "r" for c in calls)


def test_a_stage_answering_outside_the_protocol_is_named():
    with pytest.raises(ProtocolError, match="stage 's1' answered outside the protocol"):
        infer_chain({"x": Tensor("x", "UINT8", [1], b"\x01")}, [("s1", "m1")], lambda *a: (b"not json", {}), {})


def test_one_parser_for_model_paths_in_the_runtime_and_both_routers():
    from esg_plugin.runtime.v2 import model_path

    assert model_path("/v2/models/w/infer") == ("w", ["infer"])
    assert model_path("v2/models/w/versions/3/infer?x=1") == ("w", ["infer"])
    assert model_path("/v2/models/w") == ("w", [])
    assert model_path("/v2/models/w/versions") == ("w", ["versions"])  # no version named: not a version path
    assert model_path("/v2/health/ready") is None and model_path("/workflow/w") is None
