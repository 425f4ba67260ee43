"""Deploy-time checks of SLA thresholds: process-wide defaults on ``<bpmn:process>``, the ``*_from``
properties that read a case variable, and the literal DMN output cells feeding those variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import specs
from tests.unit.test_specs import around, bpmn, check, errors, line_of, only_error, user_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def process_properties(**values: str) -> str:
    props = "".join(f'<camunda:property name="{k}" value="{v}"/>' for k, v in values.items())
    return (
        f"<bpmn:extensionElements><camunda:properties>{props}</camunda:properties></bpmn:extensionElements>"
    )


@pytest.fixture
def forms(tmp_path: Path) -> Path:
    folder = tmp_path / "forms"
    (folder / "t").mkdir(parents=True)
    schema = {"type": "object", "properties": {"result": {"type": "string"}}}
    (folder / "t" / "handle.schema.json").write_text(json.dumps(schema), encoding="utf-8")
    return folder


Edit = tuple[str, str] | None  # (old text, new text) in a fixture file


def tiered(dmn_edit: Edit = None, bpmn_edit: Edit = None) -> dict[str, bytes]:
    sources = specs.read_sources([FIXTURES / "tiered"])
    for name, edit in (("tiered/tiered.dmn", dmn_edit), ("tiered/tiered.bpmn", bpmn_edit)):
        if edit is not None:
            text = sources[name].decode()
            assert edit[0] in text
            sources[name] = text.replace(edit[0], edit[1]).encode()
    return sources


def test_process_wide_thresholds_are_read_into_every_user_task(forms: Path) -> None:
    body = process_properties(warn_at="60%", supervise_after="2WH") + around(
        user_task("a", properties={"sla": "1WD"}), user_task("b"), path=("a", "b")
    )
    result = check({"p.bpmn": bpmn(body)}, forms)
    assert result.ok, [str(p) for p in result.problems]
    tasks = result.processes["p"].user_tasks
    assert (
        tasks["a"].process_properties
        == tasks["b"].process_properties
        == {
            "warn_at": "60%",
            "supervise_after": "2WH",
        }
    )
    assert tasks["a"].properties == {"sla": "1WD"}


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("warn_at", "120%", "between 1% and 99%"),
        ("supervise_after", "1 day", "not a duration"),
        ("escalate_after", "P1M", "months"),
    ],
)
def test_a_bad_process_wide_threshold_is_refused_with_the_process_and_its_line(
    forms: Path, key: str, value: str, words: str
) -> None:
    source = bpmn(process_properties(**{key: value}) + around(user_task("a"), path=("a",)))
    problem = only_error(check({"p.bpmn": source}, forms))
    assert (problem.file, problem.element_id) == ("p.bpmn", "p")
    assert problem.line == line_of(source, f'name="{key}"')
    assert key in problem.message and value in problem.message and words in problem.message


@pytest.mark.parametrize("key", ["sla", "sla_from", "warn_at_from", "sla_holds"])
def test_a_task_only_property_on_the_process_is_refused_not_ignored(forms: Path, key: str) -> None:
    source = bpmn(process_properties(**{key: "5WD"}) + around(user_task("a"), path=("a",)))
    problem = only_error(check({"p.bpmn": source}, forms))
    assert problem.element_id == "p" and "belongs on a user task" in problem.message


def test_other_process_properties_are_left_alone(forms: Path) -> None:
    source = bpmn(process_properties(owner="街道办") + around(user_task("a"), path=("a",)))
    result = check({"p.bpmn": source}, forms)
    assert result.ok and result.processes["p"].user_tasks["a"].process_properties == {}


@pytest.mark.parametrize("key", ["sla_from", "warn_at_from", "escalate_after_from"])
def test_a_from_property_must_name_a_variable(forms: Path, key: str) -> None:
    task = user_task("a", properties={"sla": "1WD", key: "sla warn at"})
    problem = only_error(check({"p.bpmn": bpmn(around(task, path=("a",)))}, forms))
    assert problem.element_id == "a" and key in problem.message and "case variable" in problem.message


def test_the_tiered_fixture_validates_expressions_and_empty_cells_are_left_for_run_time() -> None:
    result = check(tiered(), FIXTURES / "forms")
    assert result.ok, [str(p) for p in result.problems]


@pytest.mark.parametrize(
    ("cell", "bad", "words"),
    [
        ("rule_fire_hazard_warn", '"150%"', "between 1% and 99%"),
        ("rule_fire_hazard_warn", "50", "written as text"),
        ("rule_fire_hazard_supervise", '"4 hours"', "not a duration"),
        ("rule_fire_hazard_budget", '"P1M"', "months"),
    ],
)
def test_a_bad_literal_in_a_dmn_column_read_by_a_task_is_refused_at_its_cell(
    cell: str, bad: str, words: str
) -> None:
    old = {
        "rule_fire_hazard_warn": '"50%"',
        "rule_fire_hazard_supervise": '"4WH"',
        "rule_fire_hazard_budget": '"2WD"',
    }[cell]
    sources = tiered(dmn_edit=(f'id="{cell}"><text>{old}<', f'id="{cell}"><text>{bad}<'))
    problem = only_error(check(sources, FIXTURES / "forms"))
    assert (problem.file, problem.element_id) == ("tiered/tiered.dmn", cell)
    assert problem.line == line_of(sources["tiered/tiered.dmn"], f'id="{cell}"')
    assert "of task 'handle'" in problem.message and words in problem.message


def test_a_dmn_column_no_task_reads_as_a_threshold_is_not_checked() -> None:
    sources = tiered(
        dmn_edit=('id="rule_fire_hazard_warn"><text>"50%"<', 'id="rule_fire_hazard_warn"><text>"150%"<'),
        bpmn_edit=('<camunda:property name="warn_at_from" value="sla_warn_at" />', ""),
    )
    assert errors(check(sources, FIXTURES / "forms")) == []
