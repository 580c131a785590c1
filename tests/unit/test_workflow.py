"""Workflows from YAML documents and stack.yml annotations (SPEC §2)."""

import pytest

from esg_plugin.model import ModelError, Stage, Workflow, parse_workflow, workflows_from_stack


def doc(**overrides):
    base = {
        "name": "traffic",
        "slo_ms": 250,
        "hop_ms": 2,
        "stages": [
            {"name": "detect", "function": "ssd"},
            {"name": "car", "function": "resnet50", "after": ["detect"]},
            {"name": "face", "function": "resnet18", "after": ["detect"], "fanout": 2},
        ],
    }
    base.update(overrides)
    return base


def test_parses_the_spec_example():
    wf = parse_workflow(doc())
    assert wf.name == "traffic" and wf.slo_ms == 250 and wf.hop_ms == 2
    assert wf.entries == ("detect",)
    assert set(wf.exits) == {"car", "face"}
    assert wf.stage("face").fanout == 2
    assert wf.topological_order()[0] == "detect"
    assert not wf.is_chain()


def test_hop_defaults_to_zero_and_chain_is_recognised():
    wf = parse_workflow({"name": "c", "slo_ms": 10, "stages": [
        {"name": "x", "function": "f"}, {"name": "y", "function": "g", "after": "x"}]})
    assert wf.hop_ms == 0 and wf.is_chain()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"slo_ms": 0}, "slo_ms must be positive"),
        ({"slo_ms": -5}, "slo_ms must be positive"),
        ({"slo_ms": "fast"}, "slo_ms must be a number"),
        ({"hop_ms": -1}, "hop_ms must not be negative"),
        ({"stages": []}, "has no stages"),
        ({"stages": [{"name": "a", "function": "f"}, {"name": "a", "function": "g"}]}, "duplicate stage name 'a'"),
        ({"stages": [{"name": "a", "function": "f", "after": ["ghost"]}]}, "comes after 'ghost', which is not a stage"),
        ({"stages": [{"name": "a", "function": "f", "after": ["b"]}, {"name": "b", "function": "g", "after": ["a"]}]},
         "has a cycle"),
        ({"stages": [{"name": "a", "function": "f", "after": ["a"]}]}, "comes after itself"),
        ({"stages": [{"name": "a", "function": "f", "fanout": 0}]}, "fanout must be an integer >= 1"),
        ({"stages": [{"name": "a"}]}, "'function' must be a non-empty string"),
        ({"stages": [{"name": "a", "function": "f", "colour": "red"}]}, "unknown field(s): colour"),
        ({"extra": 1}, "unknown workflow field(s): extra"),
    ],
)
def test_rejects_bad_workflows_with_a_clear_message(change, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_workflow(doc(**change))


def test_cycle_message_names_the_cycle():
    with pytest.raises(ModelError) as err:
        parse_workflow(doc(stages=[
            {"name": "a", "function": "f", "after": ["c"]},
            {"name": "b", "function": "f", "after": ["a"]},
            {"name": "c", "function": "f", "after": ["b"]},
        ]))
    assert "->" in str(err.value) and "\n" not in str(err.value)


def test_missing_profile_is_named(tiny_profiles):
    wf = parse_workflow(doc())
    with pytest.raises(ModelError, match="stage 'detect' uses function 'ssd', which has no profile"):
        wf.check_profiles(tiny_profiles)


def stack(functions):
    return {"version": 1.0, "provider": {"name": "openfaas"}, "functions": functions}


def test_stack_annotations_give_the_same_workflow_as_yaml():
    data = stack({
        "ssd": {"lang": "esg-python3", "annotations": {
            "com.esg.workflow": "traffic", "com.esg.stage": "detect", "com.esg.slo-ms": "250", "com.esg.hop-ms": "2"}},
        "resnet50": {"lang": "esg-python3", "annotations": {
            "com.esg.workflow": "traffic", "com.esg.stage": "car", "com.esg.after": "detect"}},
        "resnet18": {"lang": "esg-python3", "annotations": {
            "com.esg.workflow": "traffic", "com.esg.stage": "face", "com.esg.after": "detect",
            "com.esg.fanout": "2"}},
        "unrelated": {"lang": "python3"},
    })
    from_stack = workflows_from_stack(data)["traffic"]
    from_yaml = parse_workflow(doc())
    assert from_stack.to_dict() == from_yaml.to_dict()


def test_stack_stage_defaults_to_function_name_and_profile_annotation():
    data = stack({
        "pre": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": 100}},
        "cls-a": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "pre", "com.esg.profile": "resnet18"}},
    })
    wf = workflows_from_stack(data)["w"]
    assert wf.stage_names == ("pre", "cls-a")
    assert wf.stage("cls-a").function == "resnet18"


@pytest.mark.parametrize(
    "functions, message",
    [
        ({"a": {"annotations": {"com.esg.workflow": "w"}}}, "no function carries 'com.esg.slo-ms'"),
        ({"a": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "10"}},
          "b": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "20", "com.esg.after": "a"}}},
         "disagree on com.esg.slo-ms"),
        ({"a": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "soon"}}}, "must be a number"),
        ({"a": {"lang": "python3"}}, "carries a 'com.esg.workflow' annotation"),
        ({"a": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "10", "com.esg.after": "z"}}},
         "not a stage of the workflow"),
    ],
)
def test_stack_errors(functions, message):
    with pytest.raises(ModelError, match=message):
        workflows_from_stack(stack(functions))


def test_downstream_of_keeps_only_later_stages():
    wf = Workflow.build("w", 100, [
        Stage("a", "f"), Stage("b", "f", ("a",)), Stage("c", "f", ("a",)), Stage("d", "f", ("b", "c"))])
    down = wf.downstream_of("b")
    assert down.stage_names == ("d",)
    assert down.stage("d").after == ()
    with pytest.raises(ModelError, match="is an exit"):
        wf.downstream_of("d")
    with pytest.raises(ModelError, match="has no stage 'zz'"):
        wf.downstream_of("zz")


def test_paths_are_every_entry_to_exit_path():
    diamond = Workflow.build("w", 50.0, [Stage("a", "f"), Stage("b", "f", ("a",)), Stage("c", "f", ("a",)),
                                         Stage("d", "f", ("b", "c"))])
    assert sorted(diamond.paths()) == [("a", "b", "d"), ("a", "c", "d")]
    assert Workflow.build("one", 5.0, [Stage("x", "f")]).paths() == (("x",),)
    two_entries = Workflow.build("w2", 50.0, [Stage("a", "f"), Stage("b", "f"), Stage("c", "f", ("a", "b"))])
    assert sorted(two_entries.paths()) == [("a", "c"), ("b", "c")]
