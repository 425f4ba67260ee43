"""Which budget and thresholds a task's clock uses, and where each came from: a case variable (per
category) > the task's property > the process's property > the built-in default. Bad values that are
set are refused, never skipped."""

from __future__ import annotations

import pytest

from engine import spiff
from engine.errors import InvalidInput
from engine.sla_policy import policy_for, value_problem

HANDLE = {
    "sla": "5WD",
    "sla_from": "sla_budget",
    "warn_at": "75%",
    "warn_at_from": "sla_warn_at",
    "supervise_after_from": "sla_supervise_after",
    "escalate_after": "3WD",
    "escalate_after_from": "sla_escalate_after",
}
PROCESS = {"warn_at": "60%", "supervise_after": "2WH", "escalate_after": "10WD"}


def meta(properties: dict[str, str], process_properties: dict[str, str] | None = None) -> spiff.TaskMeta:
    return spiff.TaskMeta(
        bpmn_id="handle",
        name="处置",
        lane_id="department",
        lane_name="职能部门",
        form_key="work_order/handle",
        properties=properties,
        process_properties=process_properties or {},
    )


def test_category_variables_win_over_task_and_process_properties() -> None:
    data = {
        "sla_budget": "2WD",
        "sla_warn_at": "50%",
        "sla_supervise_after": "4WH",
        "sla_escalate_after": "1WD",
    }
    policy = policy_for(meta(HANDLE, PROCESS), data)
    assert policy is not None
    assert (policy.budget, policy.warn_pct, policy.supervise_after, policy.escalate_after) == (
        "2WD",
        50,
        "4WH",
        "1WD",
    )
    assert policy.sources == {
        "sla": "variable:sla_budget",
        "warn_at": "variable:sla_warn_at",
        "supervise_after": "variable:sla_supervise_after",
        "escalate_after": "variable:sla_escalate_after",
    }


def test_without_the_variables_the_task_then_the_process_then_the_default_applies() -> None:
    policy = policy_for(meta(HANDLE, {"supervise_after": "2WH"}), {})
    assert policy is not None
    assert (policy.budget, policy.warn_pct, policy.supervise_after, policy.escalate_after) == (
        "5WD",
        75,
        "2WH",
        "3WD",
    )
    assert policy.sources == {
        "sla": "task",
        "warn_at": "task",
        "supervise_after": "process",
        "escalate_after": "task",
    }
    bare = policy_for(meta({"sla": "1WD"}), {})
    assert bare is not None
    assert (bare.warn_pct, bare.supervise_after, bare.escalate_after) == (None, "1WD", "5WD")
    assert set(bare.sources.values()) == {"task", "default"}


def test_the_process_default_fills_every_threshold_a_task_leaves_open() -> None:
    policy = policy_for(meta({"sla": "1WD"}, PROCESS), {})
    assert policy is not None
    assert (policy.warn_pct, policy.supervise_after, policy.escalate_after) == (60, "2WH", "10WD")
    assert policy.sources["warn_at"] == policy.sources["escalate_after"] == "process"


@pytest.mark.parametrize("unset", [None, ""])
def test_an_empty_dmn_cell_or_a_missing_variable_means_not_set(unset: object) -> None:
    data = {"sla_budget": unset, "sla_warn_at": unset, "sla_supervise_after": unset}
    policy = policy_for(meta(HANDLE, PROCESS), data)
    assert policy is not None
    assert (policy.budget, policy.warn_pct, policy.supervise_after) == ("5WD", 75, "2WH")


def test_a_task_without_a_budget_has_no_clock_whatever_its_thresholds_say() -> None:
    assert policy_for(meta({"warn_at_from": "sla_warn_at"}, PROCESS), {"sla_warn_at": "bogus"}) is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("sla_warn_at", "120%"),
        ("sla_warn_at", 50),
        ("sla_warn_at", "0%"),
        ("sla_supervise_after", "1 day"),
        ("sla_escalate_after", "P1M"),
        ("sla_escalate_after", ["1WD"]),
    ],
)
def test_an_invalid_threshold_from_data_is_refused_naming_task_variable_and_value(
    variable: str, value: object
) -> None:
    with pytest.raises(InvalidInput) as refused:
        policy_for(meta(HANDLE, PROCESS), {variable: value})
    err = refused.value
    assert err.code == "sla.invalid_threshold"
    assert err.details["task"] == "handle" and err.details["variable"] == variable
    assert err.details["property"] == f"{variable.removeprefix('sla_')}_from"
    assert "handle" in err.message and variable in err.message and repr(value)[:20] in err.message
    assert err.details["value"] == (value if not isinstance(value, list) else repr(value))


@pytest.mark.parametrize("value", ["five days", 5, "P1M"])
def test_an_invalid_budget_from_data_is_refused_not_replaced_by_the_fallback(value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        policy_for(meta(HANDLE), {"sla_budget": value})
    assert refused.value.code == "sla.invalid_budget"
    assert refused.value.details["variable"] == "sla_budget"


def test_an_invalid_process_property_in_a_stored_spec_is_refused_at_run_time_too() -> None:
    with pytest.raises(InvalidInput) as refused:
        policy_for(meta({"sla": "1WD"}, {"warn_at": "100%"}), {})
    assert refused.value.code == "sla.invalid_threshold"
    assert refused.value.details["variable"] is None and "process property" in refused.value.message


def test_task_meta_stored_before_process_properties_existed_still_loads() -> None:
    stored = {
        "bpmn_id": "handle",
        "name": "处置",
        "lane_id": "department",
        "lane_name": "职能部门",
        "form_key": "work_order/handle",
        "properties": {"sla": "5WD", "warn_at": "80%"},
    }
    loaded = spiff.TaskMeta.from_dict(stored)
    assert loaded.process_properties == {}
    policy = policy_for(loaded, {})
    assert policy is not None and (policy.warn_pct, policy.supervise_after) == (80, "1WD")
    assert spiff.TaskMeta.from_dict(loaded.to_dict()) == loaded


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("warn_at", "1%", True),
        ("warn_at", "99%", True),
        ("warn_at", "100%", False),
        ("warn_at", "80", False),
        ("warn_at", 80, False),
        ("supervise_after", "4WH", True),
        ("supervise_after", "P2D", True),
        ("supervise_after", "P1Y", False),
        ("escalate_after", "", False),
        ("sla", "1.5WH", True),
    ],
)
def test_one_syntax_for_properties_dmn_cells_and_variables(name: str, value: object, ok: bool) -> None:
    assert (value_problem(name, value) is None) is ok
