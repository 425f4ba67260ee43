"""Fixtures for the JSON API tests: the app on the ``rt`` runtime (SQLite, and PostgreSQL when
DATABASE_URL is set), bearer tokens for demo people, a small world of cases in several grids,
departments and mediation tiers to test scoping against, and work orders waiting at the steps that offer
task actions (退单, 延期申请, 延期审批)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import marshmallow as ma
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.config import Config
from api.schemas.dumping import ResponseSchema
from engine import access, accounts, casework, tasks
from engine.runtime import Runtime
from tests.conftest import REPO, deploy_folder

FIXTURES = REPO / "tests" / "fixtures"
REPORTER = {
    "name": "彭德明",
    "phone": "13912345678",
    "id_number": "110101199001011234",
    "address_detail": "3栋2单元501",
}


@pytest.fixture(autouse=True)
def dumps_checked_against_marshmallow(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every response the API tests dump goes through ``ResponseSchema``'s plan and through marshmallow's
    own ``Schema.dump``; the two must be equal (same keys, order and values)."""
    planned = ResponseSchema.dump
    checked: list[str] = []

    def dump(self: ResponseSchema, obj: object, *, many: bool | None = None) -> object:
        fast = planned(self, obj, many=many)
        slow = ma.Schema.dump(self, obj, many=many)
        assert fast == slow and repr(fast) == repr(slow), (type(self).__name__, fast, slow)
        checked.append(type(self).__name__)
        return fast

    monkeypatch.setattr(ResponseSchema, "dump", dump)
    yield checked


@pytest.fixture
def api_rt(rt: Runtime) -> Runtime:
    deploy_folder(rt, REPO / "workflows" / "mediation", REPO / "forms")
    deploy_folder(rt, FIXTURES / "api_dispatch", FIXTURES / "forms")
    return rt


@pytest.fixture
def app(api_rt: Runtime, tmp_path: Path) -> Flask:
    config = Config(testing=True, secret_key="test-secret", attachments_dir=tmp_path / "attachments")
    return create_app(config, runtime=api_rt)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Tokens:
    """``tokens["gw_g1"]`` → the Authorization header of a bearer token for that demo person."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._issued: dict[str, str] = {}

    def token(self, person_id: str) -> str:
        if person_id not in self._issued:
            self._issued[person_id] = accounts.issue_token(person_id, rt=self.rt).token
        return self._issued[person_id]

    def __getitem__(self, person_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(person_id)}"}


@pytest.fixture
def tokens(api_rt: Runtime) -> Tokens:
    return Tokens(api_rt)


def ready_task(rt: Runtime, case_id: int, spec: str) -> str:
    found = [t.id for t in tasks.case_tasks(case_id, rt=rt) if t.task_spec == spec and t.state == "ready"]
    assert len(found) == 1, (case_id, spec, found)
    return found[0]


def report(rt: Runtime, person: str, process: str, grid: str, title: str) -> int:
    with rt.db.read() as conn:
        who = access.principal(conn, person)
    intake = casework.Intake(
        process_id=process, title=title, grid_id=grid, channel="grid_patrol", data={"reporter": REPORTER}
    )
    view, _ = casework.report_case(who, intake, rt=rt)
    return view.id


def step(rt: Runtime, case_id: int, spec: str, person: str, data: dict[str, object]) -> None:
    tasks.complete_task(ready_task(rt, case_id, spec), rt=rt, actor=person, data=data)


INTAKE = {
    "dispute_type": "neighbourhood",
    "parties": [
        {"name": "张某", "party_role": "applicant", "phone": "13800000001"},
        {"name": "李某", "party_role": "respondent"},
    ],
    "summary": "楼上漏水",
    "application_form": "oral_registration",
    "rights_notice_given": True,
    "consent_to_mediate": True,
}


@dataclass(frozen=True)
class World:
    """Case ids by letter: A demo g1, B demo g3, C demo g5, D dispatched g1 → 城管, E dispatched g5 →
    市场监管, F dispute g1 at tier 2 (mediator s1), G dispute g5 at tier 1, H demo g1 reported by
    resident_1, I dispute g3 at tier 3 (司法所)."""

    ids: dict[str, int]

    def __getitem__(self, letter: str) -> int:
        return self.ids[letter]


def build_world(rt: Runtime) -> World:
    ids = {
        "A": report(rt, "gw_g1", "demo", "g1", "楼道堆物 A"),
        "B": report(rt, "gw_g3", "demo", "g3", "路灯不亮 B"),
        "C": report(rt, "gw_g5", "demo", "g5", "井盖缺失 C"),
        "D": report(rt, "gw_g1", "api_dispatch", "g1", "占道经营 D"),
        "E": report(rt, "gw_g5", "api_dispatch", "g5", "过期食品 E"),
        "F": report(rt, "gw_g1", "mediation", "g1", "邻里漏水纠纷 F"),
        "G": report(rt, "gw_g5", "mediation", "g5", "停车位纠纷 G"),
        "H": report(rt, "resident_1", "demo", "g1", "噪声扰民 H"),
        "I": report(rt, "gw_g3", "mediation", "g3", "宅基地纠纷 I"),
    }
    step(rt, ids["D"], "dispatch", "street_s1", {"department": "dept_urban"})
    step(rt, ids["E"], "dispatch", "street_s2", {"department": "dept_market"})
    for letter, worker in (("F", "gw_g1"), ("G", "gw_g5"), ("I", "gw_g3")):
        step(rt, ids[letter], "intake", worker, INTAKE)
    for letter, worker in (("F", "gw_g1"), ("I", "gw_g3")):
        step(rt, ids[letter], "tier1", worker, {"tier1_result": "escalate", "mediation_notes": "初调"})
    step(rt, ids["I"], "tier2", "mediator_s1", {"tier2_result": "failed", "mediation_notes": "二级"})
    return World(ids)


@pytest.fixture
def world(api_rt: Runtime) -> World:
    return build_world(api_rt)


ORDER_STAGES = ("claim", "handle", "extension_decision")


def work_order_at(rt: Runtime, stage: str, title: str) -> int:
    """A work order of grid g1 (category garbage → 城管 dept_urban), driven to ``stage``: the department's
    claim, its handling, or the street's decision on its extension request."""
    with rt.db.read() as conn:
        who = access.principal(conn, "gw_g1")
    intake = casework.Intake(
        process_id="work_order",
        title=title,
        grid_id="g1",
        channel="hotline_12345",
        category="garbage",
        data={"reporter": REPORTER, "description": "东门垃圾站三天未清运"},
    )
    case_id = casework.report_case(who, intake, rt=rt)[0].id
    step(rt, case_id, "accept", "community_c1", {"decision": "accept"})
    step(rt, case_id, "dispatch", "street_s1", {"dispatch_decision": "confirm"})
    later: tuple[tuple[str, str, str, dict[str, object]], ...] = (
        ("handle", "claim", "dept_urban_1", {"claim_decision": "claim"}),
        (
            "extension_decision",
            "handle",
            "dept_urban_1",
            {"handle_result": "request_extension", "extension_days": 3, "extension_reason": "需协调施工方"},
        ),
    )
    for done, spec, person, data in later:
        if ORDER_STAGES.index(stage) < ORDER_STAGES.index(done):
            break
        step(rt, case_id, spec, person, data)
    return case_id


@pytest.fixture
def orders(api_rt: Runtime) -> dict[str, int]:
    """Work orders of g1 (the shipped work_order process) waiting at each of ``ORDER_STAGES``."""
    deploy_folder(api_rt, REPO / "workflows" / "work_order", REPO / "forms")
    return {stage: work_order_at(api_rt, stage, f"垃圾清运不及时（{stage}）") for stage in ORDER_STAGES}


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app on a real threaded werkzeug server on 127.0.0.1 (port chosen by the OS)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
