"""Task actions in the engine, on SQLite and PostgreSQL: 退单 and 延期 as actions the work order's diagram
declares, and 改派 — who may, where to, what follows the task (routing variable, SLA clock, audit,
outbox) and that a refused action leaves the case as it was. Time travels; nothing sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from engine import audit, cases, sla, sla_views, tasks
from engine.clock import SHANGHAI, FixedClock
from engine.errors import Conflict, EngineError, InvalidInput, PermissionDenied
from engine.runtime import Runtime
from engine.store.models import audit_event, human_task, outbox, person, sla_clock
from tests.conftest import REPO, deploy_folder


def sh(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.fixture
def wo(rt: Runtime) -> Runtime:
    deploy_folder(rt, REPO / "workflows" / "work_order", REPO / "forms")
    return rt


def ready(rt: Runtime, case_id: int, spec: str) -> tasks.TaskView:
    [task] = [t for t in tasks.case_tasks(case_id, rt=rt) if t.task_spec == spec and t.state == "ready"]
    return task


def order_at_claim(rt: Runtime) -> int:
    """A garbage work order of g1 (→ 城管), accepted and dispatched: 部门领单 is ready (Monday 09:00)."""
    started = cases.start_case(
        "work_order",
        rt=rt,
        actor="gw_g1",
        title="垃圾清运不及时",
        kind="work_order",
        grid_id="g1",
        category="garbage",
        channel="hotline_12345",
    )
    tasks.complete_task(
        ready(rt, started.id, "accept").id, rt=rt, actor="community_c1", data={"decision": "accept"}
    )
    tasks.complete_task(
        ready(rt, started.id, "dispatch").id, rt=rt, actor="street_s1", data={"dispatch_decision": "confirm"}
    )
    return started.id


def order_at_handle(rt: Runtime) -> int:
    case_id = order_at_claim(rt)
    tasks.complete_task(
        ready(rt, case_id, "claim").id, rt=rt, actor="dept_urban_1", data={"claim_decision": "claim"}
    )
    return case_id


def state(rt: Runtime, case_id: int) -> tuple[object, ...]:
    """Everything a refused action must leave as it was."""
    with rt.db.read() as conn:
        counts = tuple(
            conn.execute(select(func.count()).select_from(t).where(t.c.case_id == case_id)).scalar()
            for t in (audit_event, outbox)
        )
        rows = conn.execute(
            select(
                human_task.c.id, human_task.c.org_unit_id, human_task.c.assignee_id, human_task.c.state
            ).where(human_task.c.case_id == case_id)
        ).all()
        clocks = conn.execute(select(sla_clock.c.id, sla_clock.c.org_unit_id, sla_clock.c.due_at)).all()
    return (
        cases.get_case(case_id, rt=rt).version,
        counts,
        sorted(map(tuple, rows)),
        sorted(map(tuple, clocks)),
    )


def events(rt: Runtime, case_id: int, action: str) -> list[audit.AuditEvent]:
    with rt.db.read() as conn:
        return [e for e in audit.timeline(conn, case_id) if e.action == action]


def clock_of(rt: Runtime, case_id: int, key: str) -> sla_views.ClockView:
    [found] = [
        c for c in sla_views.case_clocks(case_id, rt=rt) if c.task_spec == key and c.state != "stopped"
    ]
    return found


def refused(rt: Runtime, case_id: int, action: object, error: type[EngineError], code: str) -> None:
    before = state(rt, case_id)
    with pytest.raises(error) as caught:
        action()  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    assert state(rt, case_id) == before


# --- 退单 and 延期 as actions of the diagram -------------------------------------------------------------


def test_returning_a_claim_completes_it_down_the_return_path_with_the_declared_fields(wo: Runtime) -> None:
    case_id = order_at_claim(wo)
    claim = ready(wo, case_id, "claim")
    refused(
        wo,
        case_id,
        lambda: tasks.return_task(
            claim.id, rt=wo, actor="dept_market_1", reason="不归我管", reason_code="other"
        ),
        PermissionDenied,
        "task.not_candidate",
    )
    refused(
        wo,
        case_id,
        lambda: tasks.return_task(
            claim.id, rt=wo, actor="dept_urban_1", reason="错派", reason_code="other", expected_version=1
        ),
        Conflict,
        "case.stale_version",
    )
    done = tasks.return_task(
        claim.id,
        rt=wo,
        actor="dept_urban_1",
        reason="过期食品属市场监管职责",
        reason_code="not_responsible",
        expected_version=claim.case_version,
    )
    assert (done.state, done.completed_by, done.case_version) == (
        "completed",
        "dept_urban_1",
        claim.case_version + 1,
    )
    [event] = events(wo, case_id, "task.returned")
    assert event.actor_id == "dept_urban_1" and event.task_id == claim.id
    assert isinstance(event.after, dict) and event.after["action"] == "return"
    assert event.after["data"] == {
        "claim_decision": "return",
        "return_note": "过期食品属市场监管职责",
        "return_reason": "not_responsible",
    }
    assert ready(wo, case_id, "dispatch").org_unit_id == "s1"  # 退单 → the street dispatches again
    refused(
        wo,
        case_id,
        lambda: tasks.return_task(claim.id, rt=wo, actor="dept_urban_1", reason="再退", reason_code="other"),
        Conflict,
        "task.already_completed",
    )
    dispatch = ready(wo, case_id, "dispatch")
    refused(
        wo,
        case_id,
        lambda: tasks.return_task(dispatch.id, rt=wo, actor="street_s1", reason="派单不能退"),
        Conflict,
        "task.action_unsupported",
    )


def test_an_extension_request_hands_the_handlers_clock_to_the_street_and_back_saying_who_spent_what(
    wo: Runtime, clock: FixedClock
) -> None:
    case_id = order_at_handle(wo)  # handle: Monday 09:00, the garbage budget of the routing table
    handle = ready(wo, case_id, "handle")
    started = clock_of(wo, case_id, "handle")
    assert started.org_unit_id == "dept_urban"
    clock.set(sh("2025-03-03T10:00"))
    tasks.request_extension(handle.id, rt=wo, actor="dept_urban_1", days=3, reason="需协调施工方整改设备")
    [asked] = events(wo, case_id, "task.extension_requested")
    assert isinstance(asked.after, dict) and asked.after["data"] == {
        "handle_result": "request_extension",
        "extension_days": 3,
        "extension_reason": "需协调施工方整改设备",
    }
    decision = ready(wo, case_id, "extension_decision")
    held = clock_of(wo, case_id, "handle")
    assert (held.id, held.org_unit_id, held.task_id, held.due_at) == (
        started.id,
        "s1",
        decision.id,
        started.due_at,
    )
    clock.set(sh("2025-03-03T10:30"))
    refused(
        wo,
        case_id,
        lambda: tasks.decide_extension(decision.id, rt=wo, actor="street_s1", approve=True),
        InvalidInput,
        "sla.extension_missing",
    )
    tasks.decide_extension(
        decision.id, rt=wo, actor="street_s1", approve=True, days=3, comment="同意延期3个工作日"
    )
    back = clock_of(wo, case_id, "handle")
    assert back.id == started.id and back.org_unit_id == "dept_urban"
    assert back.due_at is not None and started.due_at is not None
    assert back.due_at > started.due_at and [e["added"] for e in back.extensions] == ["3WD"]
    # the clock follows the diagram's routing, so the engine ("system") moves it, not a person
    assert [(h.from_unit, h.to_unit, h.spent_seconds, h.actor) for h in back.handovers] == [
        ("dept_urban", "s1", 3600, "system"),
        ("s1", "dept_urban", 1800, "system"),
    ]
    explained = sla_views.explain_clock(back, calendar=wo.calendar)
    assert [line.split("：", 1)[1] for line in explained if line.startswith("改派 ")] == [
        "dept_urban → s1，dept_urban 用时 60 分钟工作时间（system）",
        "s1 → dept_urban，s1 用时 30 分钟工作时间（system）",
    ]
    hand_overs = [(e.before, e.after) for e in events(wo, case_id, "sla.handed_over")]
    assert [
        (b["org_unit_id"], b["spent_seconds"], a["org_unit_id"])
        for b, a in hand_overs
        if isinstance(b, dict) and isinstance(a, dict)
    ] == [
        ("dept_urban", 3600, "s1"),
        ("s1", 1800, "dept_urban"),
    ]
    [decided] = events(wo, case_id, "task.extension_decided")
    assert isinstance(decided.after, dict) and decided.after["data"] == {
        "extension_result": "approve",
        "approved_days": 3,
        "extension_comment": "同意延期3个工作日",
    }


def test_deciding_an_extension_by_completing_the_decision_task_with_form_data_still_works(
    wo: Runtime,
) -> None:
    case_id = order_at_handle(wo)
    due = clock_of(wo, case_id, "handle").due_at
    tasks.request_extension(
        ready(wo, case_id, "handle").id, rt=wo, actor="dept_urban_1", days=2, reason="等配件"
    )
    decision = ready(wo, case_id, "extension_decision")
    tasks.complete_task(
        decision.id,
        rt=wo,
        actor="supervisor_s1",
        data={"extension_result": "reject", "extension_comment": "请按期办结"},
    )
    assert clock_of(wo, case_id, "handle").due_at == due
    assert [e.action for e in events(wo, case_id, "task.completed") if e.task_id == decision.id] == [
        "task.completed"
    ]


# --- 改派 ------------------------------------------------------------------------------------------------


def test_the_street_reassigns_a_misrouted_order_and_the_diagrams_next_steps_follow_it(
    wo: Runtime, clock: FixedClock
) -> None:
    case_id = order_at_claim(wo)
    claim = ready(wo, case_id, "claim")
    clock.set(sh("2025-03-03T09:45"))
    moved = tasks.reassign_task(
        claim.id,
        rt=wo,
        actor="street_s1",
        reason="过期食品属市场监管职责",
        org_unit_id="dept_market",
        expected_version=claim.case_version,
    )
    assert (moved.id, moved.org_unit_id, moved.assignee_id, moved.state) == (
        claim.id,
        "dept_market",
        None,
        "ready",
    )
    assert moved.case_version == claim.case_version + 1 == cases.get_case(case_id, rt=wo).version
    claim_clock = clock_of(wo, case_id, "claim")
    assert claim_clock.org_unit_id == "dept_market" and claim_clock.task_id == claim.id
    [event] = events(wo, case_id, "task.reassigned")
    assert event.actor_id == "street_s1"
    assert event.before == {"org_unit_id": "dept_urban", "assignee_id": None}
    assert isinstance(event.after, dict) and event.after["variables"] == {"lead_department": "dept_market"}
    assert event.after["clocks"] == [
        {
            "clock_id": claim_clock.id,
            "clock_key": "claim",
            "from_unit": "dept_urban",
            "to_unit": "dept_market",
            "consumed_seconds": 2700,
            "spent_seconds": 2700,
        }
    ]
    with wo.db.read() as conn:
        notices = conn.execute(
            select(outbox.c.recipient_id, outbox.c.payload).where(
                outbox.c.case_id == case_id, outbox.c.topic == "task.reassigned"
            )
        ).all()
    assert [(n.recipient_id, n.payload["role"], n.payload["org_unit_id"]) for n in notices] == [
        (None, "department", "dept_market")
    ]
    assert [t.id for t in tasks.list_tasks(rt=wo, person_id="dept_market_1")] == [claim.id]
    assert tasks.list_tasks(rt=wo, person_id="dept_urban_1") == []
    tasks.complete_task(claim.id, rt=wo, actor="dept_market_1", data={"claim_decision": "claim"})
    assert ready(wo, case_id, "handle").org_unit_id == "dept_market"


def test_a_grid_leader_gives_a_claimed_task_to_the_other_grid_worker_and_both_are_told(rt: Runtime) -> None:
    started = cases.start_case("demo", rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1")
    handle = ready(rt, started.id, "handle")
    tasks.claim_task(handle.id, rt=rt, actor="gw_g1")
    moved = tasks.reassign_task(handle.id, rt=rt, actor="gl_g1", reason="王建国请假", assignee_id="gw_g1_2")
    assert (moved.org_unit_id, moved.assignee_id) == ("g1", "gw_g1_2")
    assert clock_of(rt, started.id, "handle").org_unit_id == "g1"
    assert events(rt, started.id, "sla.handed_over") == []
    with rt.db.read() as conn:
        told = conn.execute(
            select(outbox.c.topic, outbox.c.recipient_id)
            .where(outbox.c.case_id == started.id, outbox.c.topic.in_(["task.reassigned", "task.withdrawn"]))
            .order_by(outbox.c.id)
        ).all()
    assert [tuple(t) for t in told] == [("task.reassigned", "gw_g1_2"), ("task.withdrawn", "gw_g1")]
    back_to_list = tasks.reassign_task(
        handle.id, rt=rt, actor="community_c1", reason="放回网格共享列表", org_unit_id="g1"
    )
    assert back_to_list.assignee_id is None
    assert handle.id in [t.id for t in tasks.list_tasks(rt=rt, person_id="gw_g1")]


@pytest.mark.parametrize(
    ("actor", "target", "error", "code"),
    [
        ("gw_g1", {"assignee_id": "gw_g1_2"}, PermissionDenied, "task.reassign_forbidden"),  # the handler
        ("caller_1", {"assignee_id": "gw_g1_2"}, PermissionDenied, "task.reassign_forbidden"),
        ("gl_g5", {"assignee_id": "gw_g1_2"}, PermissionDenied, "task.reassign_forbidden"),  # another grid
        ("supervisor_s2", {"assignee_id": "gw_g1_2"}, PermissionDenied, "task.reassign_forbidden"),
        ("gl_g1", {"org_unit_id": "g2"}, PermissionDenied, "task.reassign_forbidden"),  # beyond its grid
        (
            "supervisor_s1",
            {"org_unit_id": "g5"},
            PermissionDenied,
            "task.reassign_forbidden",
        ),  # another street
        ("no_such_person", {"assignee_id": "gw_g1_2"}, EngineError, "person.not_found"),
        ("street_s1", {"assignee_id": "gw_g3"}, InvalidInput, "task.reassign_not_candidate"),
        ("street_s1", {"assignee_id": "community_c1"}, InvalidInput, "task.reassign_not_candidate"),
        ("street_s1", {"assignee_id": "ghost"}, InvalidInput, "task.reassign_unknown_person"),
        ("street_s1", {"org_unit_id": "s1"}, InvalidInput, "task.reassign_unit_kind"),
        ("street_s1", {"org_unit_id": "ghost"}, InvalidInput, "task.reassign_unknown_unit"),
        ("street_s1", {"org_unit_id": "g2_m1"}, InvalidInput, "task.reassign_no_candidate"),
        ("street_s1", {}, InvalidInput, "task.reassign_no_target"),
        ("street_s1", {"org_unit_id": "g1"}, InvalidInput, "task.reassign_unchanged"),
    ],
)
def test_reassigning_is_refused_for_the_wrong_people_and_targets_and_changes_nothing(
    rt: Runtime, actor: str, target: dict[str, str], error: type[EngineError], code: str
) -> None:
    started = cases.start_case("demo", rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1")
    handle = ready(rt, started.id, "handle")
    refused(
        rt,
        started.id,
        lambda: tasks.reassign_task(handle.id, rt=rt, actor=actor, reason="改派", **target),  # type: ignore[arg-type]
        error,
        code,
    )


def test_reassigning_needs_a_reason_an_open_case_and_the_version_the_caller_saw(rt: Runtime) -> None:
    started = cases.start_case("demo", rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1")
    handle = ready(rt, started.id, "handle")

    def move(**kwargs: object) -> object:
        given: dict[str, object] = {"reason": "改派", "assignee_id": "gw_g1_2", **kwargs}
        return lambda: tasks.reassign_task(handle.id, rt=rt, actor="street_s1", **given)  # type: ignore[arg-type]

    refused(rt, started.id, move(reason="  "), InvalidInput, "task.reason_required")
    refused(rt, started.id, move(expected_version=handle.case_version + 5), Conflict, "case.stale_version")
    sla.suspend_case(started.id, rt=rt, actor="street_s1", reason="等待鉴定")
    refused(rt, started.id, move(), Conflict, "case.suspended")
    sla.resume_case(started.id, rt=rt, actor="street_s1")
    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "已处置"})
    refused(rt, started.id, move(), Conflict, "task.already_completed")
    verify = ready(rt, started.id, "verify")
    tasks.complete_task(verify.id, rt=rt, actor="community_c1", data={"verify_result": "pass"})
    before = state(rt, started.id)
    with pytest.raises(Conflict) as closed:
        tasks.reassign_task(verify.id, rt=rt, actor="street_s1", reason="改派", org_unit_id="c2")
    assert closed.value.code == "case.closed" and state(rt, started.id) == before


def test_two_reassignments_attribute_the_clock_to_each_unit_in_turn(rt: Runtime, clock: FixedClock) -> None:
    started = cases.start_case("demo", rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1")
    handle = ready(rt, started.id, "handle")
    clock.advance(timedelta(hours=1))
    tasks.reassign_task(handle.id, rt=rt, actor="community_c1", reason="第二网格人手足", org_unit_id="g2")
    clock.set(sh("2025-03-03T13:45"))  # 10:00 → 12:00 and 13:30 → 13:45 count: 2h15m of working time
    tasks.reassign_task(handle.id, rt=rt, actor="street_s1", reason="回到第一网格", org_unit_id="g1")
    spent = [
        (e.before["org_unit_id"], e.before["spent_seconds"], e.after["consumed_seconds"])
        for e in events(rt, started.id, "sla.handed_over")
        if isinstance(e.before, dict) and isinstance(e.after, dict)
    ]
    assert spent == [("g1", 3600, 3600), ("g2", 8100, 11700)]
    assert clock_of(rt, started.id, "handle").org_unit_id == "g1"


def test_a_task_nobody_could_be_assigned_is_placed_by_someone_above_the_case(rt: Runtime) -> None:
    with rt.db.write() as conn:  # nobody works in g1 any more: the new task finds no unit
        conn.execute(update(person).where(person.c.id.in_(["gw_g1", "gw_g1_2"])).values(active=False))
    started = cases.start_case("demo", rt=rt, actor="resident_1", title="楼道堆物", kind="demo", grid_id="g1")
    handle = ready(rt, started.id, "handle")
    assert (handle.role, handle.org_unit_id) == ("grid_worker", None)
    refused(
        rt,
        started.id,
        lambda: tasks.reassign_task(
            handle.id, rt=rt, actor="community_c1", reason="改派", assignee_id="gw_g2"
        ),
        InvalidInput,
        "task.reassign_no_target",
    )
    refused(
        rt,
        started.id,
        lambda: tasks.reassign_task(handle.id, rt=rt, actor="community_c3", reason="改派", org_unit_id="g5"),
        PermissionDenied,
        "task.reassign_forbidden",
    )
    placed = tasks.reassign_task(
        handle.id, rt=rt, actor="community_c1", reason="由第二网格代办", org_unit_id="g2"
    )
    assert (placed.org_unit_id, placed.assignee_id) == ("g2", None)
    assert [t.id for t in tasks.list_tasks(rt=rt, person_id="gw_g2")] == [handle.id]
