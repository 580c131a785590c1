"""stack.yml and workflows/*.yaml describe the same DAGs."""

from pathlib import Path

import yaml

from esg_plugin.loaders import load_workflow, load_workflows

ROOT = Path(__file__).resolve().parents[2]


def test_stack_and_workflow_files_describe_the_same_dags():
    from_stack = load_workflows(ROOT / "stack.yml")
    from_files = {p.stem: load_workflow(p) for p in (ROOT / "workflows").glob("*.yaml")}
    assert set(from_stack) == set(from_files) == {"image", "traffic", "text"}
    for name, workflow in from_files.items():
        assert from_stack[name].to_dict() == workflow.to_dict(), name


def test_every_function_uses_the_template_and_keeps_openfaas_scaling_off():
    stack = yaml.safe_load((ROOT / "stack.yml").read_text())
    for name, fn in stack["functions"].items():
        assert fn["lang"] == "esg-python3", name
        assert (ROOT / fn["handler"]).is_dir(), name
        labels = fn["labels"]
        assert labels["com.openfaas.scale.min"] == labels["com.openfaas.scale.max"], name
        assert labels["com.openfaas.scale.factor"] == "0" and labels["com.openfaas.scale.zero"] == "false", name
        if "annotations" in fn:  # a workflow stage (the router is not)
            assert fn["environment"]["ESG_FUNCTION"] == fn["annotations"]["com.esg.profile"], name
