"""The role × endpoint × org-scope matrix: every demo role sees exactly the cases of its scope, gets 404
(never data) for the rest, sees personal data only where its role needs it, and may act — claim,
reassign, return, ask for and decide extensions, send messages — only where the engine lets it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from engine import cases, tasks
from engine.runtime import Runtime
from tests.api.conftest import Tokens, World, ready_task

ALL = set("ABCDEFGHI")
S1 = set("ABDFHI")  # grids g1–g4 (street s1)
G1 = set("ADFH")
# person → (cases visible, cases whose personal data shows in clear)
SCOPES: dict[str, tuple[set[str], set[str]]] = {
    "gw_g1": (G1, G1),
    "gl_g1": (G1, G1),
    "gw_g5": (set("CEG"), set("CEG")),
    "community_c1": (G1, G1),
    "street_s1": (S1, set()),
    "street_s2": (set("CEG"), set()),
    "dept_urban_1": ({"D"}, {"D"}),
    "dept_market_1": ({"E"}, {"E"}),
    "dept_fire_1": (set(), set()),
    "mediator_s1": ({"F", "I"}, {"F", "I"}),
    "mediator_s2": (set(), set()),
    "judicial_1": ({"I"}, {"I"}),
    "cc_1": (ALL, set()),
    "caller_1": (ALL, ALL),
    "owner_1": (set(), set()),
    "supervisor_d": (ALL, set()),
    "supervisor_s1": (S1, set()),
    "supervisor_s2": (set("CEG"), set()),
    "resident_1": ({"H"}, {"H"}),
}


def letters(world: World, ids: list[int]) -> set[str]:
    by_id = {v: k for k, v in world.ids.items()}
    return {by_id[i] for i in ids}


@pytest.mark.parametrize("person", sorted(SCOPES))
def test_each_role_lists_and_reads_exactly_the_cases_of_its_scope(
    person: str, world: World, client: FlaskClient, tokens: Tokens
) -> None:
    visible, clear = SCOPES[person]
    listed = client.get("/api/cases?limit=100", headers=tokens[person])
    assert listed.status_code == 200
    assert letters(world, [c["id"] for c in listed.get_json()["items"]]) == visible
    for letter, case_id in world.ids.items():
        got = client.get(f"/api/cases/{case_id}", headers=tokens[person])
        if letter not in visible:
            assert got.status_code == 404, (person, letter)
            assert got.get_json() == {
                "code": "case.not_found",
                "message": f"case {case_id} does not exist",
                "details": {"case_id": case_id},
            }
            continue
        body = got.get_json()
        assert got.status_code == 200 and got.headers["ETag"] == f'"{body["version"]}"'
        reporter = body["data"]["reporter"]
        if letter in clear:
            assert not body["personal_data_masked"] and reporter["phone"] == "13912345678", (person, letter)
        else:
            assert body["personal_data_masked"], (person, letter)
            assert reporter["phone"] == "139****5678" and reporter["address_detail"] == "****"
            assert "110101199001011234" not in got.get_data(as_text=True)


def test_masked_timelines_hide_the_phone_numbers_of_dispute_parties(
    world: World, client: FlaskClient, tokens: Tokens
) -> None:
    clear = client.get(f"/api/cases/{world['F']}", headers=tokens["mediator_s1"]).get_data(as_text=True)
    masked = client.get(f"/api/cases/{world['F']}", headers=tokens["supervisor_s1"]).get_data(as_text=True)
    assert "13800000001" in clear
    assert "13800000001" not in masked and "138****0001" in masked


@pytest.mark.parametrize(
    ("person", "letter", "spec", "status", "code"),
    [
        ("gw_g1", "A", "handle", 200, None),  # candidate
        ("gw_g1_2", "A", "handle", 200, None),  # second grid worker of g1 (一格多员)
        ("supervisor_s1", "A", "handle", 200, None),  # takeover in the subtree
        ("supervisor_d", "C", "handle", 200, None),
        ("gw_g5", "A", "handle", 404, "task.not_found"),  # another grid: the task does not exist
        ("supervisor_s2", "A", "handle", 404, "task.not_found"),
        ("dept_urban_1", "A", "handle", 404, "task.not_found"),
        ("community_c1", "A", "handle", 403, "task.not_candidate"),  # sees it, not its step
        ("street_s1", "A", "handle", 403, "task.not_candidate"),
        ("cc_1", "A", "handle", 403, "task.not_candidate"),
        ("dept_urban_1", "D", "handle", 200, None),
        ("dept_market_1", "D", "handle", 404, "task.not_found"),
        ("mediator_s1", "F", "tier2", 200, None),
        ("mediator_s2", "F", "tier2", 404, "task.not_found"),
        ("gw_g1", "F", "tier2", 403, "task.not_candidate"),
        ("judicial_1", "I", "tier3", 200, None),
        ("mediator_s1", "I", "tier3", 403, "task.not_candidate"),
        ("dept_civil_affairs_1", "I", "tier3", 404, "task.not_found"),
        ("owner_1", "A", "handle", 404, "task.not_found"),
        ("resident_1", "H", "handle", 403, "task.not_candidate"),  # own case: sees it, cannot act
    ],
)
def test_claiming_succeeds_for_candidates_and_is_refused_without_data_for_everyone_else(
    person: str,
    letter: str,
    spec: str,
    status: int,
    code: str | None,
    world: World,
    api_rt: Runtime,
    client: FlaskClient,
    tokens: Tokens,
) -> None:
    task_id = ready_task(api_rt, world[letter], spec)
    got = client.post(f"/api/tasks/{task_id}/claim", headers=tokens[person])
    assert got.status_code == status, got.get_json()
    if code is not None:
        assert got.get_json()["code"] == code
        assert set(got.get_json()["details"]) <= {"task_id", "role", "org_unit_id"}
        detail = client.get(f"/api/tasks/{task_id}", headers=tokens[person])
        assert detail.status_code == (404 if status == 404 else 200)
        if status == 403:
            assert detail.get_json()["actionable"] is False
    else:
        assert got.get_json()["assignee_id"] == person


# The task actions beyond claim, for every demo role. What each person may do (anything else is refused:
# 403 when they can see the case, 404 with no data when they cannot):
#   A                   改派 world case A's step "handle" (grid worker, g1) to the other grid worker gw_g1_2
#   D                   改派 world case D's step "handle" (城管 dept_urban) to 市场监管 dept_market
#   return              退单 a work order's 部门领单 (城管)
#   extension_request   延期申请 on a work order's 处置 (城管)
#   extension_decision  延期审批 of a work order (street s1)
MAY_ACT: dict[str, set[str]] = {
    "gl_g1": {"A"},  # a grid leader moves work between the people of the grid
    "community_c1": {"A"},  # a community between its grids — but departments are not its to route
    "street_s1": {"A", "D", "extension_decision"},
    "supervisor_s1": {"A", "D", "extension_decision"},  # takes over the street's decision (代办)
    "supervisor_d": {"A", "D", "return", "extension_request", "extension_decision"},
    "cc_1": {"A", "D"},
    "dept_urban_1": {"return", "extension_request"},  # its own steps, but it may not reassign them
}
ACTION_PEOPLE = sorted({*SCOPES, "gw_g1_2"})
ORDERS_VISIBLE = {p for p, (seen, _) in SCOPES.items() if "A" in seen} | {"gw_g1_2", "dept_urban_1"}
FORBIDDEN = {"reassign": "task.reassign_forbidden"}


@pytest.mark.parametrize("person", ACTION_PEOPLE)
def test_task_actions_succeed_for_the_roles_allowed_and_are_refused_without_data_for_everyone_else(
    person: str,
    world: World,
    orders: dict[str, int],
    api_rt: Runtime,
    client: FlaskClient,
    tokens: Tokens,
) -> None:
    seen = SCOPES[person][0] if person in SCOPES else G1
    checks: list[tuple[str, int, str, str, dict[str, object], bool]] = [
        (
            "A",
            world["A"],
            "handle",
            "reassign",
            {"assignee_id": "gw_g1_2", "reason": "王建国请假"},
            "A" in seen,
        ),
        (
            "D",
            world["D"],
            "handle",
            "reassign",
            {"org_unit_id": "dept_market", "reason": "派错"},
            "D" in seen,
        ),
        (
            "return",
            orders["claim"],
            "claim",
            "return",
            {"reason": "非本部门职责", "reason_code": "not_responsible"},
            person in ORDERS_VISIBLE,
        ),
        (
            "extension_request",
            orders["handle"],
            "handle",
            "extension-request",
            {"days": 3, "reason": "需协调施工方"},
            person in ORDERS_VISIBLE,
        ),
        (
            "extension_decision",
            orders["extension_decision"],
            "extension_decision",
            "extension-decision",
            {"decision": "approve", "days": 3, "comment": "同意"},
            person in ORDERS_VISIBLE,
        ),
    ]
    for key, case_id, spec, path, body, visible in checks:
        task_id = ready_task(api_rt, case_id, spec)
        version = cases.get_case(case_id, rt=api_rt).version
        got = client.post(f"/api/tasks/{task_id}/{path}", json=body, headers=tokens[person])
        answer = got.get_json()
        after = cases.get_case(case_id, rt=api_rt).version
        if key in MAY_ACT.get(person, set()):
            assert got.status_code == 200, (person, key, answer)
            assert got.headers["ETag"] == f'"{after}"' and after == version + 1
            moved = {"A": ("g1", "gw_g1_2", "ready"), "D": ("dept_market", None, "ready")}
            if key in moved:
                assert (answer["org_unit_id"], answer["assignee_id"], answer["state"]) == moved[key]
            else:
                assert answer["state"] == "completed" and answer["completed_by"] == person
            continue
        assert after == version, (person, key)  # nothing stored
        if visible:
            assert got.status_code == 403, (person, key, answer)
            assert answer["code"] == FORBIDDEN.get(path, "task.not_candidate"), (person, key)
            assert set(answer["details"]) <= {"task_id", "role", "org_unit_id"}
        else:
            assert got.status_code == 404, (person, key, answer)
            assert answer == {
                "code": "task.not_found",
                "message": f"no task {task_id}",
                "details": {"task_id": task_id},
            }


@pytest.mark.parametrize(
    ("person", "letter", "status"),
    [
        ("supervisor_s1", "A", 200),
        ("supervisor_d", "C", 200),
        ("cc_1", "F", 200),
        ("supervisor_s1", "C", 404),
        ("gw_g1", "A", 403),
        ("street_s1", "A", 403),
        ("resident_1", "H", 403),
        ("mediator_s1", "F", 403),
    ],
)
def test_only_supervisors_and_the_command_centre_of_the_area_send_messages(
    person: str, letter: str, status: int, world: World, client: FlaskClient, tokens: Tokens
) -> None:
    got = client.post(
        f"/api/cases/{world[letter]}/messages", json={"name": "sla_overdue"}, headers=tokens[person]
    )
    assert got.status_code == status, got.get_json()
    if status == 200:
        assert got.headers["ETag"] == f'"{got.get_json()["version"]}"'


def test_work_lists_hold_only_the_callers_own_tasks(
    world: World, client: FlaskClient, tokens: Tokens
) -> None:
    def specs_of(person: str) -> set[tuple[int, str]]:
        got = client.get("/api/tasks", headers=tokens[person])
        assert got.status_code == 200 and got.get_json()["next_cursor"] is None
        return {(t["case_id"], t["task_spec"]) for t in got.get_json()["items"]}

    assert specs_of("gw_g1") == {(world["A"], "handle"), (world["H"], "handle")}
    assert specs_of("dept_urban_1") == {(world["D"], "handle")}
    assert specs_of("mediator_s1") == {(world["F"], "tier2")}
    assert specs_of("judicial_1") == {(world["I"], "tier3")}
    assert specs_of("owner_1") == set() and specs_of("resident_1") == set()


def test_the_work_list_pages_with_a_cursor_without_repeats_or_gaps(
    world: World, api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    for n in range(5):
        client.post(
            "/api/cases",
            json={"process_id": "demo", "title": f"巡查 {n}", "grid_id": "g1", "channel": "grid_patrol"},
            headers=tokens["gw_g1"],
        )
    whole = client.get("/api/tasks", headers=tokens["gw_g1"]).get_json()["items"]
    assert len(whole) == 7
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/tasks{query}", headers=tokens["gw_g1"]).get_json()
        seen += [t["id"] for t in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        if pages == 1:  # a task finished between pages drops out; nothing repeats, nothing is skipped
            tasks.complete_task(whole[0]["id"], rt=api_rt, actor="gw_g1", data={"result": "已处置"})
    assert seen == [t["id"] for t in whole] and pages == 3
    for bad in ("nonsense", "dDIwMjUtMDMtMDM", "eA"):
        got = client.get(f"/api/tasks?cursor={bad}", headers=tokens["gw_g1"])
        assert got.status_code == 422 and got.get_json()["code"] == "search.bad_cursor", bad
    got = client.get("/api/tasks?limit=0", headers=tokens["gw_g1"])
    assert got.status_code == 422 and set(got.get_json()["details"]["fields"]) == {"limit"}


@pytest.mark.parametrize(
    ("person", "grid", "status"),
    [
        ("gw_g1", "g1", 201),
        ("gw_g1", "g1_m1", 201),  # a micro-grid of their grid
        ("resident_1", "g1", 201),
        ("cc_1", "g7", 201),  # the hotline reports anywhere in the district
        ("street_s1", "g3", 201),
        ("gw_g1", "g2", 403),
        ("resident_1", "g5", 403),
        ("dept_urban_1", "g1", 403),
        ("owner_1", "g1", 403),
        ("mediator_s1", "g1", 403),
    ],
)
def test_intake_is_allowed_into_the_grids_of_the_callers_units_only(
    person: str, grid: str, status: int, api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    body = {"process_id": "demo", "title": "垃圾满溢", "grid_id": grid, "channel": "wechat"}
    got = client.post("/api/cases", json=body, headers=tokens[person])
    assert got.status_code == status, got.get_json()
    if status == 403:
        assert got.get_json()["code"] == "case.report_forbidden"
        assert client.get("/api/cases", headers=tokens["supervisor_d"]).get_json()["items"] == []


@pytest.mark.parametrize(
    ("person", "status"),
    [("owner_1", 201), ("supervisor_d", 403), ("cc_1", 403), ("gw_g1", 403), ("resident_1", 403)],
)
def test_only_process_owners_deploy_specs(
    person: str, status: int, client: FlaskClient, tokens: Tokens
) -> None:
    from tests.conftest import REPO

    raw = (
        (REPO / "workflows" / "demo" / "demo.bpmn").read_bytes().replace(b"\xe6\xbc\x94\xe7\xa4\xba", b"DEMO")
    )
    for path in ("/api/specs/validate", "/api/specs/deploy"):
        got = client.post(
            path,
            data={"files": [(__import__("io").BytesIO(raw), "demo.bpmn")]},
            headers=tokens[person],
            content_type="multipart/form-data",
        )
        expected = status if path.endswith("deploy") else (200 if status == 201 else 403)
        assert got.status_code == expected, got.get_json()


@pytest.mark.parametrize(("person", "status"), [("gw_g1", 200), ("supervisor_d", 200), ("resident_1", 403)])
def test_members_are_listed_for_staff_with_other_peoples_phones_masked(
    person: str, status: int, client: FlaskClient, tokens: Tokens
) -> None:
    got = client.get("/api/org/units/g1/members", headers=tokens[person])
    assert got.status_code == status
    if status == 200:
        for member in got.get_json():
            assert member["phone"] is None or "****" in member["phone"] or member["person_id"] == person


def test_everyone_signed_in_reads_the_org_tree_and_spec_versions_but_nobody_anonymous(
    client: FlaskClient, tokens: Tokens
) -> None:
    for person in ("resident_1", "owner_1", "gw_g1"):
        tree = client.get("/api/org/units", headers=tokens[person])
        assert tree.status_code == 200 and tree.get_json()[0]["id"] == "district"
        assert client.get("/api/specs", headers=tokens[person]).status_code == 200
    for path in ("/api/org/units", "/api/specs", "/api/cases", "/api/tasks", "/api/me", "/api/auth/tokens"):
        got = client.get(path)
        assert got.status_code == 401 and got.get_json()["code"] == "auth.required"
