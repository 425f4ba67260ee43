"""SLA over HTTP: 挂起/恢复, 催办, 督办 and direct 延期 per role and area, clocks explained, the
supervision lists scoped to the caller's area, and the caller's own notifications. Time travels with the
test clock; nothing sleeps."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from engine import notify, sla_views
from engine.calendar import WorkCalendar
from engine.clock import SHANGHAI, FixedClock
from engine.runtime import Runtime
from tests.api.conftest import FIXTURES, Tokens, report
from tests.conftest import deploy_folder

# X: a timed case in g1 (street s1), Y: one in g5 (street s2); both start Monday 2025-03-03 09:00 with
# the step "handle" on 2WH (warn at 50%): due 11:00.
Cases = dict[str, int]


def sh(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def slaed(api_rt: Runtime) -> Cases:
    deploy_folder(api_rt, FIXTURES / "slaed", FIXTURES / "forms")
    return {
        "X": report(api_rt, "gw_g1", "slaed", "g1", "时限案件 X"),
        "Y": report(api_rt, "gw_g5", "slaed", "g5", "时限案件 Y"),
    }


def post(client: FlaskClient, path: str, headers: dict[str, str], body: object = None) -> tuple[int, dict]:
    got = (
        client.post(path, json=body, headers=headers)
        if body is not None
        else client.post(path, headers=headers)
    )
    return got.status_code, got.get_json()


def is_not_found(body: dict, case_id: int) -> bool:
    return body == {
        "code": "case.not_found",
        "message": f"case {case_id} does not exist",
        "details": {"case_id": case_id},
    }


ACTIONS: dict[str, tuple[str, dict[str, str] | None]] = {
    "suspend": ("suspend", {"reason": "等待鉴定"}),
    "remind": ("remind", {"note": "请尽快处理"}),
    "supervise": ("supervise", {"note": "列入督办"}),
    "extend": ("extensions", {"clock": "handle", "added": "1WH", "reason": "需协调"}),
}
# person → the actions they may take on X (g1); None: X is not visible to them at all (404)
MAY: dict[str, set[str] | None] = {
    "street_s1": {"suspend", "remind", "extend"},
    "supervisor_s1": {"suspend", "remind", "supervise", "extend"},
    "supervisor_d": {"suspend", "remind", "supervise", "extend"},
    "cc_1": {"suspend", "remind", "supervise"},
    "gw_g1": set(),
    "gl_g1": set(),
    "community_c1": set(),
    "caller_1": set(),
    "street_s2": None,
    "supervisor_s2": None,
    "gw_g5": None,
    "dept_urban_1": None,
    "mediator_s1": None,
    "owner_1": None,
    "resident_1": None,
}
FORBIDDEN = {
    "suspend": "sla.suspend_forbidden",
    "remind": "sla.remind_forbidden",
    "supervise": "sla.supervise_forbidden",
    "extend": "sla.extend_forbidden",
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("person", sorted(MAY))
def test_each_sla_action_is_allowed_exactly_for_the_roles_of_the_cases_area(
    person: str, action: str, slaed: Cases, client: FlaskClient, tokens: Tokens
) -> None:
    path, body = ACTIONS[action]
    case_id = slaed["X"]
    status, got = post(client, f"/api/cases/{case_id}/{path}", tokens[person], body)
    allowed = MAY[person]
    if allowed is None:
        assert status == 404 and is_not_found(got, case_id), (person, action, got)
    elif action in allowed:
        assert status == 200, (person, action, got)
        assert got["case_id"] == case_id and got["clocks"][0]["clock_key"] == "handle"
    else:
        assert status == 403 and got["code"] == FORBIDDEN[action], (person, action, got)
        assert got["details"] == {"case_id": case_id}
    timeline = client.get(f"/api/cases/{case_id}", headers=tokens["supervisor_d"]).get_json()["timeline"]
    acted = {"suspend": "case.suspended", "remind": "case.reminder", "supervise": "case.supervision"}
    acted["extend"] = "sla.extended"
    assert (acted[action] in [e["action"] for e in timeline]) == bool(allowed and action in allowed)


def test_resume_has_the_rules_of_suspend_and_refuses_a_case_that_is_not_suspended(
    slaed: Cases, client: FlaskClient, tokens: Tokens
) -> None:
    x = slaed["X"]
    status, got = post(client, f"/api/cases/{x}/resume", tokens["street_s1"])
    assert status == 409 and got["code"] == "case.not_suspended"
    assert post(client, f"/api/cases/{x}/suspend", tokens["cc_1"], {"reason": "等待鉴定"})[0] == 200
    status, got = post(client, f"/api/cases/{x}/suspend", tokens["cc_1"], {"reason": "又一次"})
    assert status == 409 and got["code"] == "case.suspended"
    for person, expected in (("gw_g1", 403), ("street_s2", 404), ("resident_1", 404), ("street_s1", 200)):
        status, got = post(client, f"/api/cases/{x}/resume", tokens[person])
        assert status == expected, (person, got)
    assert got["status"] == "open" and got["clocks"][0]["state"] == "running"


def test_suspend_then_resume_moves_the_deadline_by_the_paused_working_time(
    slaed: Cases, client: FlaskClient, tokens: Tokens, clock: FixedClock, api_rt: Runtime
) -> None:
    x, auth = slaed["X"], tokens["supervisor_s1"]
    before = client.get(f"/api/cases/{x}/clocks", headers=auth)
    assert before.status_code == 200 and before.headers["ETag"] == f'"{before.get_json()["version"]}"'
    [handle] = before.get_json()["clocks"]
    assert at(handle["due_at"]) == sh("2025-03-03T11:00") and handle["state"] == "running"
    thresholds = ("warn_pct", "supervise_after", "escalate_after", "policy_sources")
    view = sla_views.case_clocks(x, rt=api_rt)[0]
    assert {k: handle[k] for k in thresholds} == {k: getattr(view, k) for k in thresholds}
    assert set(handle["policy_sources"]) == {"sla", "warn_at", "supervise_after", "escalate_after"}
    assert handle["supervise_at"] is not None and at(handle["supervise_at"]) == view.supervise_at
    clock.set(sh("2025-03-03T09:30"))
    suspended = client.post(f"/api/cases/{x}/suspend", json={"reason": "等待司法鉴定"}, headers=auth)
    body = suspended.get_json()
    assert suspended.status_code == 200 and body["status"] == "suspended"
    assert suspended.headers["ETag"] == f'"{body["version"]}"'
    assert body["clocks"][0]["state"] == "paused" and body["clocks"][0]["pauses"][0]["to"] is None
    clock.set(sh("2025-03-04T09:30"))  # a whole working day (7.5 WH) later
    resumed = client.post(f"/api/cases/{x}/resume", headers={**auth, "If-Match": suspended.headers["ETag"]})
    body = resumed.get_json()
    assert resumed.status_code == 200 and body["status"] == "open" and body["sla_status"] == "on_time"
    [handle] = body["clocks"]
    assert at(handle["due_at"]) == sh("2025-03-04T11:00") and body["due_at"] == handle["due_at"]
    assert handle["pauses"][0]["reason"] == "等待司法鉴定" and handle["pauses"][0]["actor"] == "supervisor_s1"
    assert handle["consumed_seconds"] == 30 * 60
    assert any("挂起" in line and "等待司法鉴定" in line for line in handle["explain"])
    assert any(line.startswith("截止 2025-03-04T11:00") for line in handle["explain"])


def test_a_stale_if_match_is_409_and_changes_nothing(
    slaed: Cases, client: FlaskClient, tokens: Tokens
) -> None:
    x, auth = slaed["X"], tokens["street_s1"]
    version = client.get(f"/api/cases/{x}/clocks", headers=auth).get_json()["version"]
    assert post(client, f"/api/cases/{x}/remind", auth, {"note": "快"})[0] == 200  # bumps the version
    stale = {**auth, "If-Match": f'"{version}"'}
    for path, body in (("suspend", {"reason": "x"}), ("extensions", ACTIONS["extend"][1])):
        status, got = post(client, f"/api/cases/{x}/{path}", stale, body)
        assert (
            status == 409 and got["code"] == "case.stale_version" and got["details"]["version"] == version + 1
        )
    after = client.get(f"/api/cases/{x}/clocks", headers=auth).get_json()
    assert after["status"] == "open" and after["clocks"][0]["extensions"] == []
    post(client, f"/api/cases/{x}/suspend", {**auth, "If-Match": f'"{version + 1}"'}, {"reason": "x"})
    status, got = post(client, f"/api/cases/{x}/resume", stale)
    assert status == 409 and got["code"] == "case.stale_version"


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("suspend", {}, {"reason"}),
        ("suspend", {"reason": ""}, {"reason"}),
        ("suspend", {"reason": "   "}, {"reason"}),
        ("suspend", {"reason": "x" * 501}, {"reason"}),
        ("suspend", {"reason": "ok", "until": "tomorrow"}, {"until"}),
        ("remind", {"note": 3}, {"note"}),
        ("supervise", {}, {"note"}),
        ("extensions", {"clock": "handle", "added": "3 days", "reason": "x"}, {"added"}),
        ("extensions", {"clock": "handle", "added": "0WD", "reason": "x"}, {"added"}),
        ("extensions", {"added": "1WH", "reason": "x"}, {"clock"}),
        ("extensions", {"clock": "handle", "added": "1WH"}, {"reason"}),
    ],
)
def test_bad_input_is_422_with_field_errors_and_changes_nothing(
    path: str, body: dict[str, object], fields: set[str], slaed: Cases, client: FlaskClient, tokens: Tokens
) -> None:
    x = slaed["X"]
    got = client.post(f"/api/cases/{x}/{path}", json=body, headers=tokens["supervisor_s1"])
    assert got.status_code == 422 and got.get_json()["code"] == "request.invalid"
    assert set(got.get_json()["details"]["fields"]) == fields
    assert client.get(f"/api/cases/{x}", headers=tokens["supervisor_s1"]).get_json()["version"] == 1


def test_a_direct_extension_moves_the_deadline_and_engine_rules_come_back_as_4xx(
    slaed: Cases, client: FlaskClient, tokens: Tokens
) -> None:
    x, auth = slaed["X"], tokens["street_s1"]
    base = f"/api/cases/{x}/extensions"
    status, got = post(client, base, auth, {"clock": "handle", "added": "3WD", "reason": "需协调"})
    assert status == 422 and got["code"] == "sla.extension_cap"  # 3WD is more than the 2WH budget
    status, got = post(client, base, auth, {"clock": "handle", "added": "PT1H", "reason": "需协调"})
    assert status == 422 and got["code"] == "sla.extension_unit"
    status, got = post(client, base, auth, {"clock": "nothing", "added": "1WH", "reason": "需协调"})
    assert status == 409 and got["code"] == "sla.no_open_clock"
    status, got = post(client, base, auth, {"clock": "handle", "added": "2WH", "reason": "需协调多部门"})
    assert status == 200
    [handle] = got["clocks"]
    assert at(handle["due_at"]) == sh("2025-03-03T14:30")  # 11:00 + 2WH across lunch
    assert handle["extensions"][0]["by"] == "street_s1" and handle["budget_seconds"] == 4 * 3600
    assert any("延期 +2WH" in line for line in handle["explain"])
    status, got = post(client, base, auth, {"clock": "handle", "added": "1WH", "reason": "再延"})
    assert status == 422 and got["code"] == "sla.extension_cap"


def test_supervise_raises_priority_and_reaches_the_workflow(
    slaed: Cases, client: FlaskClient, tokens: Tokens
) -> None:
    x = slaed["X"]
    status, got = post(client, f"/api/cases/{x}/supervise", tokens["supervisor_s1"], {"note": "限期办结"})
    assert status == 200
    detail = client.get(f"/api/cases/{x}", headers=tokens["supervisor_s1"]).get_json()
    assert detail["priority"] == "urgent" and detail["version"] == got["version"]
    assert any(e["action"] == "case.supervision" for e in detail["timeline"])


@pytest.mark.parametrize(
    ("person", "letters"),
    [
        ("gw_g1", "X"),
        ("caller_1", "XY"),
        ("supervisor_d", "XY"),
        ("street_s2", "Y"),
        ("dept_urban_1", ""),
        ("resident_1", ""),
        ("owner_1", ""),
    ],
)
def test_clocks_are_read_by_whoever_sees_the_case_and_nobody_else(
    person: str, letters: str, slaed: Cases, client: FlaskClient, tokens: Tokens
) -> None:
    for letter, case_id in slaed.items():
        got = client.get(f"/api/cases/{case_id}/clocks", headers=tokens[person])
        if letter in letters:
            assert got.status_code == 200 and got.get_json()["clocks"][0]["task_spec"] == "handle"
        else:
            assert got.status_code == 404 and is_not_found(got.get_json(), case_id), (person, letter)


def test_a_case_without_clocks_has_sla_status_none(
    api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    case_id = report(api_rt, "gw_g1", "api_dispatch", "g1", "无时限")
    got = client.get(f"/api/cases/{case_id}/clocks", headers=tokens["gw_g1"]).get_json()
    assert (got["sla_status"], got["due_at"], got["clocks"]) == ("none", None, [])


@pytest.mark.parametrize(
    ("person", "letters"),
    [
        ("street_s1", "X"),
        ("supervisor_s1", "X"),
        ("street_s2", "Y"),
        ("supervisor_s2", "Y"),
        ("cc_1", "XY"),
        ("supervisor_d", "XY"),
        ("gw_g1", None),
        ("community_c1", None),
        ("caller_1", None),
        ("dept_urban_1", None),
        ("resident_1", None),
        ("owner_1", None),
    ],
)
def test_the_overdue_list_holds_the_callers_area_only(
    person: str, letters: str | None, slaed: Cases, client: FlaskClient, tokens: Tokens, clock: FixedClock
) -> None:
    assert client.get("/api/supervision/overdue", headers=tokens["cc_1"]).get_json() == []  # not yet due
    clock.set(sh("2025-03-03T11:30"))
    got = client.get("/api/supervision/overdue", headers=tokens[person])
    if letters is None:
        assert got.status_code == 403 and got.get_json()["code"] == "supervision.forbidden"
        return
    rows = got.get_json()
    assert got.status_code == 200 and {r["case_id"] for r in rows} == {slaed[k] for k in letters}
    row = rows[0]
    assert row["task_spec"] == "handle" and row["task_name"] == "处置" and row["state"] == "running"
    assert at(row["due_at"]) == sh("2025-03-03T11:00") and row["case_title"].startswith("时限案件")
    assert row["case_number"] and row["task_id"] and row["status"] in ("on_time", "warning", "overdue")


def test_a_suspended_case_is_not_on_the_overdue_list(
    slaed: Cases, client: FlaskClient, tokens: Tokens, clock: FixedClock
) -> None:
    post(client, f"/api/cases/{slaed['X']}/suspend", tokens["cc_1"], {"reason": "等待鉴定"})
    clock.set(sh("2025-03-03T11:30"))
    rows = client.get("/api/supervision/overdue?limit=10", headers=tokens["cc_1"]).get_json()
    assert [r["case_id"] for r in rows] == [slaed["Y"]]
    bad = client.get("/api/supervision/overdue?limit=0", headers=tokens["cc_1"])
    assert bad.status_code == 422 and set(bad.get_json()["details"]["fields"]) == {"limit"}


def test_the_provisional_list_holds_deadlines_of_uncovered_years_in_the_callers_area(
    api_rt: Runtime, client: FlaskClient, tokens: Tokens, clock: FixedClock, tmp_path: Path
) -> None:
    api_rt.calendar = WorkCalendar(tmp_path)
    deploy_folder(api_rt, FIXTURES / "slaed", FIXTURES / "forms")
    report(api_rt, "gw_g1", "slaed", "g1", "年前案件")  # covered year
    clock.set(sh("2026-12-31T17:00"))
    late = {
        "X": report(api_rt, "gw_g1", "slaed", "g1", "跨年 X"),
        "Y": report(api_rt, "gw_g5", "slaed", "g5", "跨年 Y"),
    }
    for person, letters in (("street_s1", "X"), ("supervisor_s2", "Y"), ("cc_1", "XY")):
        rows = client.get("/api/supervision/provisional", headers=tokens[person]).get_json()
        assert {r["case_id"] for r in rows} == {late[k] for k in letters}, person
        assert all(r["provisional"] and "2027" in r["provisional_reason"] for r in rows)
    assert client.get("/api/supervision/provisional", headers=tokens["gw_g1"]).status_code == 403
    [explained] = client.get(f"/api/cases/{late['X']}/clocks", headers=tokens["gw_g1"]).get_json()["clocks"]
    assert explained["provisional"] and any(line.startswith("暂定") for line in explained["explain"])


# --- notifications ----------------------------------------------------------------------------------


def deliver(rt: Runtime) -> None:
    notify.drain_outbox(rt=rt, notifier=notify.InAppNotifier(rt.db, clock=rt.clock))


def test_notifications_are_the_callers_own_and_marking_read_touches_only_those(
    slaed: Cases, api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    post(client, f"/api/cases/{slaed['X']}/remind", tokens["street_s1"], {"note": "请今天办结"})
    deliver(api_rt)

    def inbox(person: str, query: str = "") -> list[dict]:
        got = client.get(f"/api/notifications{query}", headers=tokens[person])
        assert got.status_code == 200
        return got.get_json()

    [mine] = [n for n in inbox("gw_g1") if n["topic"] == "case.reminder"]
    [theirs] = [n for n in inbox("gw_g1_2") if n["topic"] == "case.reminder"]  # the other g1 worker
    assert mine["case_id"] == slaed["X"] and "催办" in mine["title"] and mine["read_at"] is None
    assert not [n for n in inbox("gw_g5") if n["topic"] == "case.reminder"]  # another grid
    status, got = post(
        client, "/api/notifications/read", tokens["gw_g1"], {"ids": [mine["id"], theirs["id"]]}
    )
    assert status == 200 and got == {"marked": 1}
    assert mine["id"] not in {n["id"] for n in inbox("gw_g1", "?unread=true")}
    assert [n["read_at"] for n in inbox("gw_g1") if n["id"] == mine["id"]] != [None]
    assert theirs["id"] in {n["id"] for n in inbox("gw_g1_2", "?unread=true")}  # untouched
    status, got = post(client, "/api/notifications/read", tokens["gw_g1"], {"ids": [mine["id"]]})
    assert status == 200 and got == {"marked": 0}  # already read


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"ids"}),
        ({"ids": []}, {"ids"}),
        ({"ids": "n1"}, {"ids"}),
        ({"ids": ["1:gw_g1"], "all": True}, {"all"}),
    ],
)
def test_marking_read_with_a_bad_body_is_422(
    body: dict[str, object], fields: set[str], client: FlaskClient, tokens: Tokens
) -> None:
    got = client.post("/api/notifications/read", json=body, headers=tokens["gw_g1"])
    assert got.status_code == 422 and set(got.get_json()["details"]["fields"]) == fields


def test_notifications_need_a_signed_in_caller(client: FlaskClient) -> None:
    assert client.get("/api/notifications").status_code == 401
    assert client.post("/api/notifications/read", json={"ids": ["1:gw_g1"]}).status_code == 401
