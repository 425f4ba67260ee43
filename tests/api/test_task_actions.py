"""Task actions over HTTP beyond claim and complete: 改派 (reassign) to another person or unit, 退单 with a
reason, 延期申请 and its decision — the targets the engine refuses, If-Match, closed tasks, and that a
refused request stores nothing. Who may act, role by role, is in test_scope_matrix.py."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from engine import audit, cases, tasks
from engine.clock import FixedClock
from engine.runtime import Runtime
from engine.store.models import audit_event, human_task, outbox, sla_clock
from tests.api.conftest import Tokens, World, ready_task


def footprint(rt: Runtime, case_id: int) -> tuple[object, ...]:
    """Everything a refused request must leave as it was."""
    with rt.db.read() as conn:
        counts = [
            conn.execute(select(func.count()).select_from(table).where(table.c.case_id == case_id)).scalar()
            for table in (audit_event, outbox)
        ]
        rows = conn.execute(
            select(human_task.c.id, human_task.c.org_unit_id, human_task.c.assignee_id, human_task.c.state)
            .where(human_task.c.case_id == case_id)
            .order_by(human_task.c.id)
        ).all()
        clocks = conn.execute(
            select(sla_clock.c.org_unit_id, sla_clock.c.due_at).where(sla_clock.c.case_id == case_id)
        ).all()
    return (
        cases.get_case(case_id, rt=rt).version,
        *counts,
        [tuple(r) for r in rows],
        [tuple(c) for c in clocks],
    )


def outbox_rows(rt: Runtime, case_id: int, topic: str) -> list[tuple[str | None, dict[str, object]]]:
    with rt.db.read() as conn:
        rows = conn.execute(
            select(outbox.c.recipient_id, outbox.c.payload)
            .where(outbox.c.case_id == case_id, outbox.c.topic == topic)
            .order_by(outbox.c.id)
        ).all()
    return [(r.recipient_id, dict(r.payload)) for r in rows]


def events(rt: Runtime, case_id: int, action: str) -> list[audit.AuditEvent]:
    with rt.db.read() as conn:
        return [e for e in audit.timeline(conn, case_id) if e.action == action]


def if_match(rt: Runtime, case_id: int) -> dict[str, str]:
    return {"If-Match": f'"{cases.get_case(case_id, rt=rt).version}"'}


# --- 改派 -----------------------------------------------------------------------------------------------


def test_reassigning_a_claimed_task_gives_it_to_the_other_grid_worker_and_tells_both(
    world: World, api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    a = world["A"]
    task_id = ready_task(api_rt, a, "handle")
    assert client.post(f"/api/tasks/{task_id}/claim", headers=tokens["gw_g1"]).status_code == 200
    headers = {**tokens["community_c1"], **if_match(api_rt, a)}
    got = client.post(
        f"/api/tasks/{task_id}/reassign",
        json={"assignee_id": "gw_g1_2", "reason": "王建国请假"},
        headers=headers,
    )
    body = got.get_json()
    assert got.status_code == 200, body
    assert (body["id"], body["org_unit_id"], body["assignee_id"], body["state"]) == (
        task_id,
        "g1",
        "gw_g1_2",
        "ready",
    )
    assert got.headers["ETag"] == f'"{cases.get_case(a, rt=api_rt).version}"' == f'"{body["case_version"]}"'
    [reassigned] = outbox_rows(api_rt, a, "task.reassigned")
    assert reassigned[0] == "gw_g1_2" and reassigned[1]["by"] == "community_c1"
    [withdrawn] = outbox_rows(api_rt, a, "task.withdrawn")
    assert withdrawn[0] == "gw_g1"
    [event] = events(api_rt, a, "task.reassigned")
    assert event.actor_id == "community_c1" and event.before == {"org_unit_id": "g1", "assignee_id": "gw_g1"}
    assert event.after == {
        "org_unit_id": "g1",
        "assignee_id": "gw_g1_2",
        "reason": "王建国请假",
        "variables": {},
        "clocks": [],  # same unit: the clock stays where it is
    }
    mine = {t["id"] for t in client.get("/api/tasks", headers=tokens["gw_g1_2"]).get_json()["items"]}
    theirs = {t["id"] for t in client.get("/api/tasks", headers=tokens["gw_g1"]).get_json()["items"]}
    assert task_id in mine and task_id not in theirs
    refused = client.post(
        f"/api/tasks/{task_id}/complete", json={"data": {"result": "已处置"}}, headers=tokens["gw_g1"]
    )
    assert refused.status_code == 403 and refused.get_json()["code"] == "task.assigned_to_other"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"assignee_id": "nobody_here", "reason": "改派"}, 422, "task.reassign_unknown_person"),
        ({"assignee_id": "gl_g1", "reason": "改派"}, 422, "task.reassign_not_candidate"),  # not a grid worker
        ({"assignee_id": "gw_g2", "reason": "改派"}, 422, "task.reassign_not_candidate"),  # not of g1
        ({"assignee_id": "gw_g2", "org_unit_id": "g1", "reason": "改派"}, 422, "task.reassign_not_candidate"),
        ({"org_unit_id": "c1", "reason": "改派"}, 422, "task.reassign_unit_kind"),
        ({"org_unit_id": "dept_urban", "reason": "改派"}, 422, "task.reassign_unit_kind"),
        ({"org_unit_id": "no_such_unit", "reason": "改派"}, 422, "task.reassign_unknown_unit"),
        ({"org_unit_id": "g1_m1", "reason": "改派"}, 422, "task.reassign_no_candidate"),  # nobody works there
        ({"org_unit_id": "g1", "reason": "改派"}, 422, "task.reassign_unchanged"),
        ({"reason": "改派"}, 422, "task.reassign_no_target"),
        ({"org_unit_id": "g5", "reason": "改派"}, 403, "task.reassign_forbidden"),  # another street's grid
        ({"assignee_id": "gw_g1_2"}, 422, "request.invalid"),
        ({"assignee_id": "gw_g1_2", "reason": "   "}, 422, "request.invalid"),
        ({"assignee_id": "gw_g1_2", "reason": "改派", "priority": "high"}, 422, "request.invalid"),
        ({"assignee_id": "", "reason": "改派"}, 422, "request.invalid"),
    ],
)
def test_reassigning_to_a_target_that_cannot_take_the_task_is_refused_and_stores_nothing(
    body: dict[str, object],
    status: int,
    code: str,
    world: World,
    api_rt: Runtime,
    client: FlaskClient,
    tokens: Tokens,
) -> None:
    a = world["A"]
    task_id = ready_task(api_rt, a, "handle")
    before = footprint(api_rt, a)
    got = client.post(f"/api/tasks/{task_id}/reassign", json=body, headers=tokens["street_s1"])
    assert (got.status_code, got.get_json()["code"]) == (status, code), got.get_json()
    assert footprint(api_rt, a) == before


def test_reassigning_with_a_stale_if_match_or_a_finished_task_is_409_and_stores_nothing(
    world: World, api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    a = world["A"]
    task_id = ready_task(api_rt, a, "handle")
    body = {"assignee_id": "gw_g1_2", "reason": "改派"}
    stale = {**tokens["street_s1"], "If-Match": f'"{cases.get_case(a, rt=api_rt).version - 1}"'}
    before = footprint(api_rt, a)
    got = client.post(f"/api/tasks/{task_id}/reassign", json=body, headers=stale)
    assert got.status_code == 409 and got.get_json()["code"] == "case.stale_version"
    assert footprint(api_rt, a) == before
    tasks.complete_task(task_id, rt=api_rt, actor="gw_g1", data={"result": "已处置"})
    before = footprint(api_rt, a)
    got = client.post(f"/api/tasks/{task_id}/reassign", json=body, headers=tokens["street_s1"])
    assert got.status_code == 409 and got.get_json()["code"] == "task.already_completed"
    assert footprint(api_rt, a) == before
    verify = ready_task(api_rt, a, "verify")
    tasks.complete_task(verify, rt=api_rt, actor="community_c1", data={"verify_result": "pass"})
    got = client.post(
        f"/api/tasks/{verify}/reassign",
        json={"org_unit_id": "c2", "reason": "改派"},
        headers=tokens["street_s1"],
    )
    assert got.status_code == 409 and got.get_json()["code"] == "case.closed"


def test_reassigning_a_misrouted_order_hands_its_clock_to_the_new_department_and_audits_who_spent_what(
    orders: dict[str, int], api_rt: Runtime, client: FlaskClient, tokens: Tokens, clock: FixedClock
) -> None:
    w = orders["claim"]
    claim = ready_task(api_rt, w, "claim")
    [before] = [
        c
        for c in client.get(f"/api/cases/{w}/clocks", headers=tokens["street_s1"]).get_json()["clocks"]
        if c["task_spec"] == "claim"
    ]
    assert before["org_unit_id"] == "dept_urban" and before["state"] == "running"
    clock.advance(timedelta(minutes=40))
    got = client.post(
        f"/api/tasks/{claim}/reassign",
        json={"org_unit_id": "dept_market", "reason": "过期食品属市场监管职责"},
        headers={**tokens["street_s1"], **if_match(api_rt, w)},
    )
    assert got.status_code == 200, got.get_json()
    assert (got.get_json()["org_unit_id"], got.get_json()["assignee_id"]) == ("dept_market", None)
    [after] = [
        c
        for c in client.get(f"/api/cases/{w}/clocks", headers=tokens["street_s1"]).get_json()["clocks"]
        if c["task_spec"] == "claim"
    ]
    # the same clock goes on: same start and deadline, now spending 市场监管's time
    assert after["id"] == before["id"] and after["org_unit_id"] == "dept_market"
    assert [(h["from_unit"], h["to_unit"], h["spent_seconds"], h["reason"]) for h in after["handovers"]] == [
        ("dept_urban", "dept_market", 2400, "过期食品属市场监管职责")
    ]
    assert any(
        line.startswith("改派 ") and "dept_urban → dept_market，dept_urban 用时 40 分钟工作时间" in line
        for line in after["explain"]
    )
    assert (after["started_at"], after["due_at"], after["state"]) == (
        before["started_at"],
        before["due_at"],
        "running",
    )
    [handed] = events(api_rt, w, "sla.handed_over")
    assert handed.before == {"org_unit_id": "dept_urban", "spent_seconds": 2400}
    assert (
        isinstance(handed.after, dict)
        and handed.after["spent_seconds"] == 2400
        and handed.after["org_unit_id"] == "dept_market"
    )
    [moved] = events(api_rt, w, "task.reassigned")
    assert isinstance(moved.after, dict) and moved.after["variables"] == {"lead_department": "dept_market"}
    assert [(c["from_unit"], c["to_unit"], c["spent_seconds"]) for c in moved.after["clocks"]] == [
        ("dept_urban", "dept_market", 2400)
    ]
    [notice] = outbox_rows(api_rt, w, "task.reassigned")
    assert notice[0] is None and (notice[1]["role"], notice[1]["org_unit_id"]) == (
        "department",
        "dept_market",
    )
    # 市场监管 now sees and claims it; the diagram's next step goes to it too
    assert client.get(f"/api/tasks/{claim}", headers=tokens["dept_market_1"]).get_json()["actionable"] is True
    done = client.post(
        f"/api/tasks/{claim}/complete",
        json={"data": {"claim_decision": "claim"}},
        headers=tokens["dept_market_1"],
    )
    assert done.status_code == 200, done.get_json()
    assert tasks.get_task(ready_task(api_rt, w, "handle"), rt=api_rt).org_unit_id == "dept_market"
    clock.advance(timedelta(minutes=20))
    moved_again = client.post(
        f"/api/tasks/{ready_task(api_rt, w, 'handle')}/reassign",
        json={"org_unit_id": "dept_urban", "reason": "需城管配合拆除"},
        headers=tokens["cc_1"],
    )
    assert moved_again.status_code == 200
    handle_hand_over = events(api_rt, w, "sla.handed_over")[-1]
    assert isinstance(handle_hand_over.after, dict) and handle_hand_over.after["clock_key"] == "handle"
    assert handle_hand_over.before == {"org_unit_id": "dept_market", "spent_seconds": 1200}


# --- 退单 -----------------------------------------------------------------------------------------------


def test_returning_a_claim_completes_it_with_the_fields_its_diagram_declares(
    orders: dict[str, int], api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    w = orders["claim"]
    claim = ready_task(api_rt, w, "claim")
    body = {"reason": "过期食品属市场监管职责", "reason_code": "not_responsible"}
    stale = {**tokens["dept_urban_1"], "If-Match": '"1"'}
    before = footprint(api_rt, w)
    got = client.post(f"/api/tasks/{claim}/return", json=body, headers=stale)
    assert got.status_code == 409 and got.get_json()["code"] == "case.stale_version"
    for bad, code in (
        ({"reason": "没有原因代码"}, "form.invalid"),  # the claim form requires its reason code
        ({"reason": "原因代码不在列表中", "reason_code": "bored"}, "form.invalid"),
        ({"reason_code": "not_responsible"}, "request.invalid"),
        ({"reason": "", "reason_code": "not_responsible"}, "request.invalid"),
    ):
        refused = client.post(f"/api/tasks/{claim}/return", json=bad, headers=tokens["dept_urban_1"])
        assert (refused.status_code, refused.get_json()["code"]) == (422, code), refused.get_json()
    assert footprint(api_rt, w) == before
    got = client.post(
        f"/api/tasks/{claim}/return", json=body, headers={**tokens["dept_urban_1"], **if_match(api_rt, w)}
    )
    assert got.status_code == 200, got.get_json()
    assert got.get_json()["state"] == "completed" and got.get_json()["completed_by"] == "dept_urban_1"
    [event] = events(api_rt, w, "task.returned")
    assert isinstance(event.after, dict) and event.after["action"] == "return"
    assert event.after["data"] == {
        "claim_decision": "return",
        "return_note": "过期食品属市场监管职责",
        "return_reason": "not_responsible",
    }
    dispatch = ready_task(api_rt, w, "dispatch")  # back to the street (退单计数 +1)
    assert tasks.get_task(dispatch, rt=api_rt).org_unit_id == "s1"
    again = client.post(f"/api/tasks/{claim}/return", json=body, headers=tokens["dept_urban_1"])
    assert again.status_code == 409 and again.get_json()["code"] == "task.already_completed"


def test_an_action_the_tasks_diagram_does_not_declare_is_409_and_stores_nothing(
    orders: dict[str, int], world: World, api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    attempts = [
        (world["A"], "handle", "gw_g1", "return", {"reason": "退回"}, []),
        (world["D"], "handle", "dept_urban_1", "extension-request", {"days": 2, "reason": "忙"}, []),
        (
            orders["claim"],
            "claim",
            "dept_urban_1",
            "extension-request",
            {"days": 2, "reason": "忙"},
            ["return"],
        ),
        (orders["handle"], "handle", "dept_urban_1", "return", {"reason": "退回"}, ["extension_request"]),
        (
            orders["handle"],
            "handle",
            "dept_urban_1",
            "extension-decision",
            {"decision": "reject"},
            ["extension_request"],
        ),
    ]
    for case_id, spec, person, path, body, offered in attempts:
        task_id = ready_task(api_rt, case_id, spec)
        before = footprint(api_rt, case_id)
        got = client.post(f"/api/tasks/{task_id}/{path}", json=body, headers=tokens[person])
        assert got.status_code == 409, got.get_json()
        assert got.get_json()["code"] == "task.action_unsupported"
        assert got.get_json()["details"]["offered"] == offered
        assert footprint(api_rt, case_id) == before
        detail = client.get(f"/api/tasks/{task_id}", headers=tokens[person]).get_json()
        assert detail["actions"] == offered


# --- 延期 -----------------------------------------------------------------------------------------------


def handle_due(client: FlaskClient, tokens: Tokens, case_id: int) -> str:
    clocks = client.get(f"/api/cases/{case_id}/clocks", headers=tokens["street_s1"]).get_json()["clocks"]
    [handle] = [c for c in clocks if c["task_spec"] == "handle" and c["state"] != "stopped"]
    return str(handle["due_at"])


def test_an_extension_request_goes_to_the_street_whose_decision_through_complete_grows_the_clock(
    orders: dict[str, int], api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    w = orders["handle"]
    handle = ready_task(api_rt, w, "handle")
    due = handle_due(client, tokens, w)
    for bad in (
        {"days": 0, "reason": "x"},
        {"days": 3},
        {"days": "3", "reason": "x"},
        {"days": 3, "reason": "x", "y": 1},
    ):
        got = client.post(f"/api/tasks/{handle}/extension-request", json=bad, headers=tokens["dept_urban_1"])
        assert (got.status_code, got.get_json()["code"]) == (422, "request.invalid"), bad
    too_long = client.post(
        f"/api/tasks/{handle}/extension-request",
        json={"days": 25, "reason": "工期长"},
        headers=tokens["dept_urban_1"],
    )
    assert (too_long.status_code, too_long.get_json()["code"]) == (422, "form.invalid")  # the form allows 20
    got = client.post(
        f"/api/tasks/{handle}/extension-request",
        json={"days": 3, "reason": "需协调施工方整改设备"},
        headers={**tokens["dept_urban_1"], **if_match(api_rt, w)},
    )
    assert got.status_code == 200, got.get_json()
    [asked] = events(api_rt, w, "task.extension_requested")
    assert isinstance(asked.after, dict) and asked.after["data"] == {
        "handle_result": "request_extension",
        "extension_days": 3,
        "extension_reason": "需协调施工方整改设备",
    }
    decision = ready_task(api_rt, w, "extension_decision")
    detail = client.get(f"/api/tasks/{decision}", headers=tokens["street_s1"]).get_json()
    assert detail["actionable"] is True and detail["actions"] == ["extension_decision"]
    assert handle_due(client, tokens, w) == due  # the handler's clock runs on while the street decides
    decided = client.post(
        f"/api/tasks/{decision}/complete",
        json={"data": {"extension_result": "approve", "approved_days": 3, "extension_comment": "同意"}},
        headers={**tokens["street_s1"], **if_match(api_rt, w)},
    )
    assert decided.status_code == 200, decided.get_json()
    assert datetime.fromisoformat(handle_due(client, tokens, w)) > datetime.fromisoformat(due)
    assert [e.after["added"] for e in events(api_rt, w, "sla.extended") if isinstance(e.after, dict)] == [
        "3WD"
    ]
    assert ready_task(api_rt, w, "handle")


def test_the_extension_decision_action_approves_with_days_or_rejects_with_a_comment(
    orders: dict[str, int], api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    w = orders["extension_decision"]
    decision = ready_task(api_rt, w, "extension_decision")
    due = handle_due(client, tokens, w)
    before = footprint(api_rt, w)
    for bad, code in (
        ({"decision": "approve"}, "sla.extension_missing"),
        ({"decision": "reject"}, "form.invalid"),  # the form wants the reason for a refusal
        ({"decision": "reject", "days": 2, "comment": "不同意"}, "task.days_without_approval"),
        ({"decision": "approve", "days": 21}, "form.invalid"),
        ({"decision": "maybe", "days": 2}, "request.invalid"),
    ):
        got = client.post(f"/api/tasks/{decision}/extension-decision", json=bad, headers=tokens["street_s1"])
        assert (got.status_code, got.get_json()["code"]) == (422, code), (bad, got.get_json())
    assert footprint(api_rt, w) == before
    got = client.post(
        f"/api/tasks/{decision}/extension-decision",
        json={"decision": "approve", "days": 2, "comment": "同意延期2个工作日"},
        headers={**tokens["supervisor_s1"], **if_match(api_rt, w)},
    )
    assert got.status_code == 200 and got.get_json()["completed_by"] == "supervisor_s1"
    [decided] = events(api_rt, w, "task.extension_decided")
    assert isinstance(decided.after, dict) and decided.after["data"] == {
        "extension_result": "approve",
        "approved_days": 2,
        "extension_comment": "同意延期2个工作日",
    }
    extended = handle_due(client, tokens, w)
    assert datetime.fromisoformat(extended) > datetime.fromisoformat(due)
    handle = ready_task(api_rt, w, "handle")
    asked = client.post(
        f"/api/tasks/{handle}/extension-request",
        json={"days": 5, "reason": "仍需等待配件"},
        headers=tokens["dept_urban_1"],
    )
    assert asked.status_code == 200
    second = ready_task(api_rt, w, "extension_decision")
    got = client.post(
        f"/api/tasks/{second}/extension-decision",
        json={"decision": "reject", "comment": "请按期办结"},
        headers=tokens["street_s1"],
    )
    assert got.status_code == 200, got.get_json()
    assert handle_due(client, tokens, w) == extended
    assert len(events(api_rt, w, "sla.extended")) == 1
