"""SLA clocks on the working-day calendar: rungs fire once, pauses and extensions move deadlines, BPMN
boundaries route overdue steps, provisional deadlines are recomputed. Time travels; nothing sleeps."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from engine import cases, escalation, projection, sla, sla_views, tasks
from engine.calendar import WorkCalendar
from engine.clock import SHANGHAI, FixedClock
from engine.errors import Conflict, InvalidInput
from engine.runtime import Runtime
from engine.store.models import audit_event, outbox
from tests.conftest import deploy_folder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def sh(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.fixture
def slaed(rt: Runtime) -> Runtime:
    deploy_folder(rt, FIXTURES / "slaed", FIXTURES / "forms")
    return rt


def start(rt: Runtime) -> cases.CaseView:
    return cases.start_case("slaed", rt=rt, actor="gw_g1", title="时限测试", kind="demo", grid_id="g1")


def ready(rt: Runtime, case_id: int) -> dict[str, tasks.TaskView]:
    return {t.task_spec: t for t in tasks.case_tasks(case_id, rt=rt) if t.state == "ready"}


def audit_count(rt: Runtime, case_id: int, action: str) -> int:
    with rt.db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(audit_event)
                .where(audit_event.c.case_id == case_id, audit_event.c.action == action)
            ).scalar()
            or 0
        )


def test_a_task_clock_gets_its_rungs_from_the_bpmn_properties(slaed: Runtime) -> None:
    started = start(slaed)  # Monday 2025-03-03 09:00
    [clock] = sla_views.case_clocks(started.id, rt=slaed)
    assert (clock.task_spec, clock.budget, clock.state, clock.status) == (
        "handle",
        "2WH",
        "running",
        "on_time",
    )
    assert clock.warn_due_at == sh("2025-03-03T10:00")
    assert clock.due_at == sh("2025-03-03T11:00")
    assert clock.org_unit_id == "g1" and not clock.provisional


def test_each_rung_fires_exactly_once_and_the_bpmn_boundary_routes_the_overdue_step(
    slaed: Runtime, clock: FixedClock
) -> None:
    started = start(slaed)
    clock.set(sh("2025-03-03T10:00:01"))
    assert [rung for _, rung in escalation.fire_due_rungs(rt=slaed).fired] == ["warning"]
    assert escalation.fire_due_rungs(rt=slaed).fired == []  # nothing twice
    assert sla_views.case_clocks(started.id, rt=slaed)[0].status == "warning"

    clock.set(sh("2025-03-03T11:00:01"))
    assert [rung for _, rung in escalation.fire_due_rungs(rt=slaed).fired] == ["overdue"]
    assert escalation.fire_due_rungs(rt=slaed).fired == []
    assert set(ready(slaed, started.id)) == {"escalated"}  # sla_overdue boundary → community
    [handle_clock] = sla_views.case_clocks(started.id, rt=slaed)
    assert handle_clock.state == "stopped" and handle_clock.status == "overdue"
    assert handle_clock.consumed_seconds == 2 * 3600 + 1  # stopped by the boundary at 11:00:01
    assert (audit_count(slaed, started.id, "sla.warning"), audit_count(slaed, started.id, "sla.overdue")) == (
        1,
        1,
    )
    with slaed.db.read() as conn:
        topics = [r[0] for r in conn.execute(select(outbox.c.topic).where(outbox.c.case_id == started.id))]
    assert topics.count("sla.warning") == 1 and topics.count("sla.overdue") == 2  # handlers + their leader


def test_a_rung_of_a_completed_step_does_not_fire(slaed: Runtime, clock: FixedClock) -> None:
    started = start(slaed)
    tasks.complete_task(
        ready(slaed, started.id)["handle"].id, rt=slaed, actor="gw_g1", data={"action": "done"}
    )
    clock.set(sh("2025-03-10T12:00"))
    assert escalation.fire_due_rungs(rt=slaed).fired == []
    [stopped] = sla_views.case_clocks(started.id, rt=slaed)
    assert (stopped.state, stopped.status, stopped.consumed_seconds) == ("stopped", "on_time", 0)


def test_suspending_stops_the_clock_and_resuming_moves_the_deadline_by_the_paused_working_time(
    slaed: Runtime, clock: FixedClock
) -> None:
    started = start(slaed)
    clock.set(sh("2025-03-03T09:30"))
    assert sla.suspend_case(started.id, rt=slaed, actor="supervisor_s1", reason="等待司法鉴定") == 1
    clock.set(sh("2025-03-04T09:30"))  # a whole working day later
    assert escalation.fire_due_rungs(rt=slaed).fired == []  # a suspended step's rungs do not fire
    with pytest.raises(Conflict) as refused:
        tasks.complete_task(
            ready(slaed, started.id)["handle"].id, rt=slaed, actor="gw_g1", data={"action": "done"}
        )
    assert refused.value.code == "case.suspended"
    assert sla.resume_case(started.id, rt=slaed, actor="supervisor_s1") == 1
    [resumed] = sla_views.case_clocks(started.id, rt=slaed)
    assert resumed.due_at == sh("2025-03-04T11:00")  # Mon 11:00 + 7.5 working hours paused
    assert resumed.pauses[0]["reason"] == "等待司法鉴定" and resumed.pauses[0]["to"]
    assert resumed.consumed_seconds == 30 * 60


def test_an_approved_extension_grows_the_budget_and_the_clock_follows_the_handler(
    slaed: Runtime, clock: FixedClock
) -> None:
    started = start(slaed)
    clock.set(sh("2025-03-03T09:30"))
    tasks.complete_task(
        ready(slaed, started.id)["handle"].id, rt=slaed, actor="gw_g1", data={"action": "request_extension"}
    )
    [held] = sla_views.case_clocks(started.id, rt=slaed)[:1]
    assert held.state == "running" and held.task_spec == "handle"  # held by the street's decision
    decision = ready(slaed, started.id)["extension_decision"]
    with pytest.raises(InvalidInput) as capped:
        tasks.complete_task(
            decision.id,
            rt=slaed,
            actor="street_s1",
            data={"decision": "approve", "extension": "3WH", "reason": "需协调多部门"},
        )
    assert capped.value.code == "sla.extension_cap"
    tasks.complete_task(
        decision.id,
        rt=slaed,
        actor="street_s1",
        data={"decision": "approve", "extension": "2WH", "reason": "需协调多部门"},
    )
    clocks = {c.task_spec: c for c in sla_views.case_clocks(started.id, rt=slaed)}
    assert clocks["handle"].due_at == sh("2025-03-03T14:30")  # 11:00 + 2WH across lunch
    assert clocks["handle"].extensions[0]["added"] == "2WH"
    assert clocks["handle"].task_id == ready(slaed, started.id)["handle"].id  # same clock, back with handler
    assert clocks["extension_decision"].state == "stopped"


def test_a_rejected_extension_leaves_the_budget_alone(slaed: Runtime) -> None:
    started = start(slaed)
    tasks.complete_task(
        ready(slaed, started.id)["handle"].id, rt=slaed, actor="gw_g1", data={"action": "request_extension"}
    )
    decision = ready(slaed, started.id)["extension_decision"]
    tasks.complete_task(decision.id, rt=slaed, actor="street_s1", data={"decision": "reject"})
    handle = next(c for c in sla_views.case_clocks(started.id, rt=slaed) if c.task_spec == "handle")
    assert handle.due_at == sh("2025-03-03T11:00") and handle.extensions == []


def test_a_deadline_in_an_uncovered_year_is_provisional_then_recomputed_when_its_overlay_arrives(
    slaed: Runtime, clock: FixedClock, tmp_path: Path
) -> None:
    slaed.calendar = WorkCalendar(tmp_path)
    clock.set(sh("2026-12-31T17:00"))
    started = start(slaed)
    [clock_view] = sla_views.case_clocks(started.id, rt=slaed)
    assert clock_view.provisional and "2027" in (clock_view.provisional_reason or "")
    assert clock_view.due_at == sh("2027-01-01T10:00")  # weekends only: Friday counts, for now
    assert [c.id for c in sla_views.provisional_clocks(rt=slaed)] == [clock_view.id]
    (tmp_path / "2027.json").write_text(
        json.dumps({"year": 2027, "holidays": {"2027-01-01": "元旦"}, "workdays": {}}), encoding="utf-8"
    )
    assert sla.recompute_provisional(rt=slaed) == 1
    [recomputed] = sla_views.case_clocks(started.id, rt=slaed)
    assert not recomputed.provisional and recomputed.due_at == sh("2027-01-04T10:00")
    assert "2027:" in recomputed.calendar_version


def test_reminders_and_supervision_by_hand_are_logged_and_notified(slaed: Runtime) -> None:
    started = start(slaed)
    escalation.remind(started.id, rt=slaed, actor="street_s1", note="请尽快处理")
    escalation.supervise(started.id, rt=slaed, actor="supervisor_d", note="群众多次反映")
    assert audit_count(slaed, started.id, "case.reminder") == 1
    assert audit_count(slaed, started.id, "case.supervision") == 1
    assert cases.get_case(started.id, rt=slaed).priority == "urgent"
    with slaed.db.read() as conn:
        payloads = [
            r[0] for r in conn.execute(select(outbox.c.payload).where(outbox.c.topic == "case.reminder"))
        ]
    assert payloads and all(p["note"] == "请尽快处理" and p["by"] == "street_s1" for p in payloads)
    with pytest.raises(InvalidInput):
        escalation.remind(started.id, rt=slaed, actor="street_s1", note="  ")
    with pytest.raises(Conflict) as not_suspended:
        sla.resume_case(started.id, rt=slaed, actor="supervisor_s1")
    assert not_suspended.value.code == "case.not_suspended"


def test_why_is_this_red_is_answered_from_the_clock_alone(slaed: Runtime, clock: FixedClock) -> None:
    started = start(slaed)
    clock.set(sh("2025-03-03T11:30"))
    [view] = sla_views.case_clocks(started.id, rt=slaed)
    lines = sla_views.explain_clock(view, calendar=slaed.calendar)
    assert any("2WH" in line for line in lines) and any(
        "截止 2025-03-03T11:00:00+08:00" in line for line in lines
    )
    assert [number for _, number, _ in sla_views.overdue_cases(rt=slaed)] == [started.number]


def test_a_scheduler_killed_mid_batch_loses_nothing_and_doubles_nothing(
    slaed: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warnings nothing catches fire set-based, one transaction per batch: killed between two batches,
    the first batch stays fired; killed inside the second, none of it is written."""
    first, second = start(slaed), start(slaed)
    clock.set(sh("2025-03-03T10:00:01"))
    real = projection.enqueue_many
    batches: list[int] = []

    def dies_in_second_batch(conn: Connection, rows: Sequence[Mapping[str, object]]) -> None:
        batches.append(len(rows))
        real(conn, rows)  # the clock, case and audit rows of this batch are written by now
        if len(batches) == 2:
            raise KeyboardInterrupt  # the process is killed before the batch commits

    monkeypatch.setattr(projection, "enqueue_many", dies_in_second_batch)
    with pytest.raises(KeyboardInterrupt):
        escalation.fire_due_rungs(rt=slaed, limit=1)
    assert (audit_count(slaed, first.id, "sla.warning"), audit_count(slaed, second.id, "sla.warning")) == (
        1,
        0,
    )
    monkeypatch.setattr(projection, "enqueue_many", real)
    restarted = Runtime(db=slaed.db, clock=clock)
    assert [rung for _, rung in escalation.fire_due_rungs(rt=restarted).fired] == [
        "warning"
    ]  # only the second
    assert escalation.fire_due_rungs(rt=restarted).fired == []
    assert audit_count(slaed, first.id, "sla.warning") == 1
    assert audit_count(slaed, second.id, "sla.warning") == 1
    assert [c.status for c in sla_views.case_clocks(second.id, rt=slaed)] == ["warning"]
    with slaed.db.read() as conn:
        topics = [r[0] for r in conn.execute(select(outbox.c.topic).where(outbox.c.case_id == second.id))]
    assert topics.count("sla.warning") == 1
    assert batches == [1, 1]


def test_a_scheduler_killed_between_two_case_steps_loses_nothing_and_doubles_nothing(
    slaed: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overdue rung the diagram catches runs in the case's own step."""
    first, second = start(slaed), start(slaed)
    clock.set(sh("2025-03-03T10:00:01"))
    assert len(escalation.fire_due_rungs(rt=slaed).fired) == 2  # the warnings, set-based
    clock.set(sh("2025-03-03T11:00:01"))
    real = escalation.fire_rungs_of_case
    calls: list[int] = []

    def dies_on_second(case_id: int, *, rt: Runtime) -> list[tuple[int, str]]:
        calls.append(case_id)
        if case_id == second.id:
            raise KeyboardInterrupt  # the process is killed here
        return real(case_id, rt=rt)

    monkeypatch.setattr(escalation, "fire_rungs_of_case", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        escalation.fire_due_rungs(rt=slaed)
    monkeypatch.setattr(escalation, "fire_rungs_of_case", real)
    restarted = Runtime(db=slaed.db, clock=clock)
    assert [rung for _, rung in escalation.fire_due_rungs(rt=restarted).fired] == [
        "overdue"
    ]  # only the second
    assert audit_count(slaed, first.id, "sla.overdue") == 1
    assert audit_count(slaed, second.id, "sla.overdue") == 1
    assert calls == [first.id, second.id]
    assert set(ready(slaed, second.id)) == {"escalated"}


def test_set_based_firing_writes_what_a_step_would(slaed: Runtime, clock: FixedClock) -> None:
    """The batch path bumps the case version like a step, keeps a cached workflow usable, and a rung of
    a clock caught by a boundary is left to the case's own step."""
    started = start(slaed)
    version = cases.get_case(started.id, rt=slaed).version
    clock.set(sh("2025-03-03T10:00:01"))
    batch = escalation.fire_rung_batch(slaed)
    assert [rung for _, rung in batch.fired] == ["warning"] and batch.stepwise == []
    assert cases.get_case(started.id, rt=slaed).version == version + 1
    clock.set(sh("2025-03-03T11:00:01"))
    batch = escalation.fire_rung_batch(slaed)
    assert batch.fired == [] and batch.stepwise == [started.id]  # handle_overdue catches sla_overdue
    assert audit_count(slaed, started.id, "sla.overdue") == 0


def test_clock_arithmetic_uses_working_time_not_wall_time() -> None:
    calendar = WorkCalendar()
    plan = sla.schedule(
        calendar,
        started_at=sh("2025-09-30T16:00"),
        kind="working",
        budget_seconds=3 * 7.5 * 3600,  # type: ignore[arg-type]
        warn_pct=80,
        paused=0,
        supervise_after="1WD",
        escalate_after="5WD",
    )
    assert plan.due_at == sh("2025-10-11T16:00")  # National Day week skipped, make-up Saturday counted
    assert plan.supervise_at == sh("2025-10-13T16:00")
    assert plan.due_at.astimezone(UTC) - timedelta(hours=0) == plan.due_at


def test_a_clock_counts_in_its_units_working_hours_and_records_them(
    slaed: Runtime, clock: FixedClock
) -> None:
    from engine import orgs

    with slaed.db.write() as conn:
        orgs.set_working_hours(conn, "c1", "08:00-12:00,14:00-18:00")  # the grid g1 inherits it
    clock.set(sh("2025-03-03T11:00"))
    started = start(slaed)
    [view] = sla_views.case_clocks(started.id, rt=slaed)
    assert view.working_hours == "08:00-12:00, 14:00-18:00"
    assert view.due_at == sh("2025-03-03T15:00")  # 11–12, then 14–15 (the default would give 14:30)
    with slaed.db.write() as conn:
        orgs.set_working_hours(conn, "c1", None)
    [unchanged] = sla_views.case_clocks(
        started.id, rt=slaed
    )  # a running clock keeps the hours it started with
    assert unchanged.due_at == sh("2025-03-03T15:00")


def test_a_case_whose_rungs_fail_is_marked_an_incident_unless_the_database_was_only_busy(
    slaed: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overdue rungs the diagram catches run case by case: a failing case becomes an incident and the
    others fire; a case refused only because the database stayed busy is left for the next round."""
    broken, busy, fine = start(slaed), start(slaed), start(slaed)
    clock.set(sh("2025-03-03T10:00:01"))
    assert len(escalation.fire_due_rungs(rt=slaed).fired) == 3  # the warnings
    clock.set(sh("2025-03-03T11:00:01"))
    real = escalation.fire_rungs_of_case

    def failing(case_id: int, *, rt: Runtime) -> list[tuple[int, str]]:
        if case_id == broken.id:
            raise Conflict("case.engine_error", "the process could not continue")
        if case_id == busy.id:
            raise Conflict("store.busy", "another writer held the database")
        return real(case_id, rt=rt)

    monkeypatch.setattr(escalation, "fire_rungs_of_case", failing)
    report = escalation.fire_due_rungs(rt=slaed)
    assert report.failed == {broken.id: "case.engine_error", busy.id: "store.busy"}
    assert report.cases == {fine.id}
    assert cases.get_case(broken.id, rt=slaed).status == "incident"
    assert cases.get_case(busy.id, rt=slaed).status == "open"
    monkeypatch.setattr(escalation, "fire_rungs_of_case", real)
    assert [rung for _, rung in escalation.fire_due_rungs(rt=slaed).fired] == ["overdue"]  # the busy one, now
    assert set(ready(slaed, busy.id)) == {"escalated"}


def test_firing_can_be_limited_to_named_cases_however_many_are_named(
    slaed: Runtime, clock: FixedClock
) -> None:
    """A worker message names the cases it fires; the names go to the database in fixed-size groups,
    padded, so a list of any length (here over the largest group) finds exactly those cases."""
    first, second, third = start(slaed), start(slaed), start(slaed)
    clock.set(sh("2025-03-03T10:00:01"))
    assert escalation.fire_due_rungs(rt=slaed, case_ids=[second.id]).cases == {second.id}
    many = [*range(10_000, 11_500), third.id, second.id]
    assert escalation.fire_due_rungs(rt=slaed, case_ids=many).cases == {third.id}
    assert escalation.fire_due_rungs(rt=slaed).cases == {first.id}
    assert escalation.fire_due_rungs(rt=slaed).fired == []
