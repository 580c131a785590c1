"""Replanning with the budget left, and --explain's reasons."""

import pytest

from esg_plugin.loaders import load_profiles, load_workflow
from esg_plugin.model import Workflow, path_latency_ms
from esg_plugin.planner import PlannerError, explain_plan, plan_workflow, replan_downstream


@pytest.fixture
def video(examples_dir):
    return load_workflow(examples_dir / "workflows/video.yaml"), load_profiles(examples_dir / "profiles/synthetic.json")


def test_replan_plans_only_the_downstream_stages_against_the_time_left(video):
    workflow, profiles = video
    generous = replan_downstream(workflow, profiles, 200, after_stage="upscale", remaining_ms=300)
    tight = replan_downstream(workflow, profiles, 200, after_stage="upscale", remaining_ms=120)
    assert set(generous.stages) == {"detect", "classify", "caption"}
    assert generous.slo_ms == 300 - workflow.hop_ms
    assert generous.feasible and tight.feasible
    assert tight.latency_ms <= 120 - workflow.hop_ms + 1e-9
    assert tight.cost >= generous.cost
    # the same as planning the sub-workflow directly with that budget
    direct = plan_workflow(workflow.downstream_of("upscale"), profiles, 200, budget_ms=118)
    assert (direct.cost, direct.latency_ms) == (tight.cost, tight.latency_ms)


def test_replan_with_no_time_left_is_infeasible_and_fastest(video):
    workflow, profiles = video
    plan = replan_downstream(workflow, profiles, 200, after_stage="classify", remaining_ms=1)
    assert not plan.feasible
    assert list(plan.stages) == ["caption"]
    with pytest.raises(PlannerError, match="remaining_ms must be a number"):
        replan_downstream(workflow, profiles, 200, after_stage="classify", remaining_ms=float("nan"))


def test_explain_reasons_hold(video):
    relaxed, profiles = video
    fastest_ms = plan_workflow(relaxed, profiles, 600, budget_ms=1.0).latency_ms  # infeasible: the fastest plan
    workflow = Workflow.build(relaxed.name, fastest_ms * 1.3, relaxed.stages, relaxed.hop_ms)
    plan = plan_workflow(workflow, profiles, 600)
    assert plan.feasible
    explained = explain_plan(workflow, profiles, plan, 0.8)
    fastest = {s: min(o.latency_ms for o in _options(workflow, profiles, s, 600)) for s in workflow.stage_names}
    reasons = set()
    for stage, rejections in explained.items():
        for r in rejections:
            reasons.add(r.reason)
            assert r.option.cost < plan.stages[stage].cost
            bound = path_latency_ms(workflow, {**fastest, stage: r.option.latency_ms})
            if r.reason == "latency":
                assert bound > plan.slo_ms
            elif r.reason == "cost":
                assert bound <= plan.slo_ms + 1e-9
    assert {"latency", "cost", "dominated"} <= reasons


def _options(workflow, profiles, stage, rate):
    from esg_plugin.model import all_options
    s = workflow.stage(stage)
    return all_options(profiles[s.function], rate * s.fanout)
