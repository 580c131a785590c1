"""The evaluation's claims about ESG, on every shipped workload (seed 1).

docs/EVALUATION.md reports all seeds; this checks the claims it makes:
ESG meets 99% everywhere and is the cheapest of the peers' policies that
does; it is the cheapest that reaches 95% on the workloads where the docs
say so (on `steps` and `diurnal` a baseline reaches 95% more cheaply, as the
docs explain). ``optimal`` is the same control law with the exact oracle
instead of the A* search: ESG stays within 5% of its cost.
"""

import pytest

from esg_plugin.loaders import load_profiles, load_workload
from esg_plugin.sim import POLICY_NAMES, SimConfig, make_policy, simulate
from esg_plugin.sim.report import summarize

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def outcomes(examples_dir_module):
    profiles = load_profiles(examples_dir_module / "profiles/synthetic.json")
    results = {}
    for name in ("mixed", "steps", "diurnal", "azure"):
        workload = load_workload(examples_dir_module / f"workloads/{name}.yaml")
        workflows = [w.workflow for w in workload.workflows]
        results[name] = {
            p: summarize(simulate(workload, profiles, make_policy(p, workflows, profiles), SimConfig(seed=1)))
            for p in POLICY_NAMES
        }
    return results


@pytest.fixture(scope="module")
def examples_dir_module():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("workload", ["mixed", "steps", "diurnal", "azure"])
def test_esg_meets_99_percent_and_is_the_cheapest_policy_that_does(outcomes, workload):
    runs = outcomes[workload]
    assert runs["esg"]["slo_hit_rate"] >= 0.99
    for name, run in runs.items():
        if run["slo_hit_rate"] >= 0.99 and name != "optimal":
            assert runs["esg"]["cost"] <= run["cost"] + 1e-9, name
    assert runs["esg"]["cost"] <= runs["optimal"]["cost"] * 1.05


@pytest.mark.parametrize("workload", ["mixed", "azure"])
def test_esg_is_the_cheapest_policy_that_reaches_95_percent(outcomes, workload):
    runs = outcomes[workload]
    for name, run in runs.items():
        if run["slo_hit_rate"] >= 0.95 and name != "optimal":
            assert runs["esg"]["cost"] <= run["cost"] + 1e-9, name
