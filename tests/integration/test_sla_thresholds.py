"""Rung thresholds per process and per category, through a real DMN: the clock uses the category's
values (routing table) over the task's, the task's over the process's, the process's over the
built-in defaults; records where each came from; and refuses a step whose data holds a bad value.
Specs and clocks stored before any of this still run. Time travels; nothing sleeps."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from engine import cases, escalation, sla_views, tasks
from engine.clock import SHANGHAI, FixedClock
from engine.errors import InvalidInput
from engine.runtime import Runtime
from engine.store.models import sla_clock, spec_version
from tests.conftest import deploy_folder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def sh(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.fixture
def tiered(rt: Runtime) -> Runtime:
    deploy_folder(rt, FIXTURES / "tiered", FIXTURES / "forms")
    return rt


def start(rt: Runtime, category: str) -> cases.CaseView:
    return cases.start_case(
        "tiered", rt=rt, actor="gw_g1", title="分级时限", kind="demo", grid_id="g1", category=category
    )


def ready(rt: Runtime, case_id: int) -> dict[str, tasks.TaskView]:
    return {t.task_spec: t for t in tasks.case_tasks(case_id, rt=rt) if t.state == "ready"}


def accept(rt: Runtime, case_id: int) -> None:
    tasks.complete_task(ready(rt, case_id)["accept"].id, rt=rt, actor="gw_g1", data={})


def clock_of(rt: Runtime, case_id: int, task_spec: str) -> sla_views.ClockView:
    return [c for c in sla_views.case_clocks(case_id, rt=rt) if c.task_spec == task_spec][-1]


def thresholds(clock: sla_views.ClockView) -> tuple[str, int | None, str | None, str | None]:
    return clock.budget, clock.warn_pct, clock.supervise_after, clock.escalate_after


def test_an_urgent_category_takes_its_thresholds_from_the_routing_table(tiered: Runtime) -> None:
    case = start(tiered, "fire_hazard")  # Monday 2025-03-03 09:00
    accept(tiered, case.id)
    handle = clock_of(tiered, case.id, "handle")
    assert thresholds(handle) == ("2WD", 50, "4WH", "1WD")
    assert handle.policy_sources == {
        "sla": "variable:sla_budget",
        "warn_at": "variable:sla_warn_at",
        "supervise_after": "variable:sla_supervise_after",
        "escalate_after": "variable:sla_escalate_after",
    }
    assert handle.due_at == sh("2025-03-05T09:00")
    assert handle.warn_due_at == sh("2025-03-04T09:00")  # half of 2 working days
    assert handle.supervise_at == sh("2025-03-05T14:30")  # 4 working hours after, across lunch
    assert handle.escalate_at == sh("2025-03-06T09:00")


def test_an_empty_cell_leaves_the_task_then_the_process_value(tiered: Runtime) -> None:
    case = start(tiered, "noise")
    accept(tiered, case.id)
    handle = clock_of(tiered, case.id, "handle")
    assert thresholds(handle) == ("5WD", 75, "2WH", "3WD")
    assert handle.policy_sources == {
        "sla": "variable:sla_budget",
        "warn_at": "task",
        "supervise_after": "process",
        "escalate_after": "task",
    }
    other = start(tiered, "welfare")  # the table's catch-all row: every cell empty
    accept(tiered, other.id)
    assert clock_of(tiered, other.id, "handle").policy_sources == {**handle.policy_sources, "sla": "task"}


def test_process_wide_defaults_apply_to_a_task_that_says_nothing(tiered: Runtime) -> None:
    case = start(tiered, "noise")
    acceptance = clock_of(tiered, case.id, "accept")
    assert thresholds(acceptance) == ("1WD", 60, "2WH", "5WD")
    assert acceptance.policy_sources == {
        "sla": "task",
        "warn_at": "process",
        "supervise_after": "process",
        "escalate_after": "default",
    }


def test_the_rungs_fire_at_the_categorys_thresholds(tiered: Runtime, clock: FixedClock) -> None:
    urgent, ordinary = start(tiered, "fire_hazard"), start(tiered, "noise")
    accept(tiered, urgent.id)
    accept(tiered, ordinary.id)
    clock.set(sh("2025-03-04T09:00:01"))  # the urgent handler is at 50%, the ordinary one is not at 75%
    case_of = {clock_of(tiered, c.id, "handle").id: c.id for c in (urgent, ordinary)}  # handle clocks
    fired = escalation.fire_due_rungs(rt=tiered).fired
    assert [(case_of[c], rung) for c, rung in fired if c in case_of] == [(urgent.id, "warning")]
    clock.set(sh("2025-03-05T14:30:01"))  # urgent: overdue and supervised (4WH after the deadline)
    fired = escalation.fire_due_rungs(rt=tiered).fired
    assert [rung for c, rung in fired if case_of.get(c) == urgent.id] == ["overdue", "supervise"]
    assert cases.get_case(urgent.id, rt=tiered).priority == "urgent"
    assert clock_of(tiered, ordinary.id, "handle").status == "on_time"


def test_explain_says_where_each_threshold_came_from(tiered: Runtime) -> None:
    case = start(tiered, "noise")
    accept(tiered, case.id)
    lines = sla_views.explain_clock(clock_of(tiered, case.id, "handle"), calendar=tiered.calendar)
    text = "\n".join(lines)
    assert "时限 5WD（依据：变量 sla_budget）" in text
    assert "用时 75%" in text and "（依据：任务属性）" in text
    assert "督办：超期后 2WH，2025-03-10T11:00:00+08:00（依据：流程属性）" in text
    assert "升级：超期后 3WD" in text


@pytest.mark.parametrize(
    ("category", "code", "variable", "value"),
    [
        ("bad_warn", "sla.invalid_threshold", "sla_warn_at", "120%"),
        ("bad_budget", "sla.invalid_budget", "sla_budget", "P1M"),
    ],
)
def test_a_bad_value_from_the_routing_table_refuses_the_step_and_changes_nothing(
    tiered: Runtime, category: str, code: str, variable: str, value: str
) -> None:
    case = start(tiered, category)
    before = cases.get_case(case.id, rt=tiered).version
    with pytest.raises(InvalidInput) as refused:
        accept(tiered, case.id)
    err = refused.value
    assert err.code == code
    assert (err.details["task"], err.details["variable"], err.details["value"]) == ("handle", variable, value)
    assert "handle" in err.message and variable in err.message and value in err.message
    assert cases.get_case(case.id, rt=tiered).version == before
    assert set(ready(tiered, case.id)) == {"accept"}
    assert [c.task_spec for c in sla_views.case_clocks(case.id, rt=tiered)] == ["accept"]


def test_a_spec_stored_before_process_defaults_existed_still_runs(tiered: Runtime) -> None:
    with tiered.db.write() as conn:
        row = conn.execute(
            select(spec_version.c.id, spec_version.c.task_meta).where(spec_version.c.process_id == "tiered")
        ).one()
        old = {
            name: {k: v for k, v in meta.items() if k != "process_properties"}
            for name, meta in row.task_meta.items()
        }
        conn.execute(update(spec_version).where(spec_version.c.id == row.id).values(task_meta=old))
    restarted = Runtime(db=tiered.db, clock=tiered.clock)  # a fresh spec cache reads the old metadata
    case = start(restarted, "fire_hazard")
    acceptance = clock_of(restarted, case.id, "accept")
    assert thresholds(acceptance) == ("1WD", None, "1WD", "5WD")  # no process level: built-in defaults
    accept(restarted, case.id)
    assert thresholds(clock_of(restarted, case.id, "handle")) == ("2WD", 50, "4WH", "1WD")


def test_a_clock_started_before_sources_were_recorded_still_reads_and_explains(tiered: Runtime) -> None:
    case = start(tiered, "noise")
    with tiered.db.write() as conn:
        conn.execute(update(sla_clock).where(sla_clock.c.case_id == case.id).values(policy_sources=None))
    [old] = sla_views.case_clocks(case.id, rt=tiered)
    assert old.policy_sources is None
    lines = sla_views.explain_clock(old, calendar=tiered.calendar)
    assert any(line.startswith("预警（黄灯）：用时 60%") and "依据" not in line for line in lines)
    accept(tiered, case.id)  # the old clock stops, the next starts as usual
    assert clock_of(tiered, case.id, "accept").state == "stopped"
