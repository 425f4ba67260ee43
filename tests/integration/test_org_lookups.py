"""The organisation lookups a step remembers (``orgs.Lookups``), on SQLite and PostgreSQL: every kind of
change to the organisation moves ``org_revision`` — made through gridcase or by hand on another
connection — and the next step then asks the database again: a membership ended between a claim and its
complete, a grid worker gone inactive, a unit's working hours changed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update

from engine import cases, orgs, tasks
from engine.errors import PermissionDenied
from engine.runtime import Runtime
from engine.store.db import Database
from engine.store.models import org_revision, person
from tests.conftest import START


def revision(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(org_revision.c.n)).scalar_one())


def by_hand(db: Database, sql: str) -> None:
    """A statement on a connection of its own, as in a database console."""
    console = Database.for_tests(db.url)
    try:
        with console.engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        console.dispose()


def start_demo(rt: Runtime) -> int:
    return cases.start_case("demo", rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1").id


def ready(rt: Runtime, case_id: int, spec: str) -> tasks.TaskView:
    [task] = [t for t in tasks.case_tasks(case_id, rt=rt) if t.task_spec == spec and t.state == "ready"]
    return task


def test_every_change_to_the_organisation_moves_its_revision(rt: Runtime) -> None:
    db = rt.db
    changes = [
        lambda conn: orgs.add_unit(conn, id="g9", name="九网格", kind="grid", parent_id="c1", now=START),
        lambda conn: orgs.add_person(conn, id="gw_g9", name="网格员九", phone=None, password=None, now=START),
        lambda conn: orgs.add_membership(conn, person_id="gw_g9", org_unit_id="g9", role="grid_worker"),
        lambda conn: orgs.set_working_hours(conn, "g9", "08:00-12:00,14:00-18:00"),
        lambda conn: conn.execute(update(person).where(person.c.id == "gw_g9").values(active=False)),
        lambda conn: conn.execute(text("DELETE FROM membership WHERE person_id = 'gw_g9'")),
        lambda conn: conn.execute(text("DELETE FROM person WHERE id = 'gw_g9'")),
        lambda conn: conn.execute(text("DELETE FROM org_unit WHERE id = 'g9'")),
    ]
    for change in changes:
        before = revision(db)
        with db.write() as conn:
            change(conn)
        assert revision(db) > before
    before = revision(db)
    with db.write() as conn:  # a new password or name answers no lookup
        conn.execute(update(person).where(person.c.id == "gw_g1").values(name="网格员甲", password_hash="x"))
    assert revision(db) == before


def test_a_membership_ended_between_claim_and_complete_is_not_acted_on(rt: Runtime) -> None:
    """The claim found gw_g1 may act and the answer is remembered; the membership is then ended by hand
    on another connection, and the complete is refused."""
    handle = ready(rt, start_demo(rt), "handle")
    tasks.claim_task(handle.id, rt=rt, actor="gw_g1")
    by_hand(rt.db, "DELETE FROM membership WHERE person_id = 'gw_g1' AND role = 'grid_worker'")
    with pytest.raises(PermissionDenied) as refused:
        tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "已清理"})
    assert refused.value.code == "task.not_candidate"
    assert ready(rt, handle.case_id, "handle").state == "ready"


def test_a_new_task_is_not_given_to_a_unit_whose_holders_became_inactive(rt: Runtime) -> None:
    """The first case's 处置 goes to grid g1 (its grid workers are active) and the answer is remembered;
    with both grid workers made inactive, no unit from g1 up has an active one, and the next case's
    处置 is left unassigned (for the command centre to reassign)."""
    assert ready(rt, start_demo(rt), "handle").org_unit_id == "g1"
    by_hand(rt.db, "UPDATE person SET active = false WHERE id IN ('gw_g1', 'gw_g1_2')")
    later = cases.start_case("demo", rt=rt, actor="community_c1", title="占道", kind="demo", grid_id="g1")
    assert ready(rt, later.id, "handle").org_unit_id is None


def test_a_clock_counts_in_the_hours_its_unit_keeps_when_it_starts(rt: Runtime) -> None:
    """The 处置 clock of a g1 case counts in the default hours; g1's hours are then set by hand, and the
    clock of the next 处置 (after a failed 核查) counts in them."""
    case_id = start_demo(rt)
    handle = ready(rt, case_id, "handle")
    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "已清理"})
    by_hand(rt.db, "UPDATE org_unit SET working_hours = '07:00-11:00,13:00-17:00' WHERE id = 'g1'")
    verify = ready(rt, case_id, "verify")
    tasks.complete_task(verify.id, rt=rt, actor="community_c1", data={"verify_result": "fail"})
    with rt.db.read() as conn:
        hours = [
            row[0]
            for row in conn.execute(
                text(
                    "SELECT working_hours FROM sla_clock"
                    " WHERE case_id = :c AND task_spec = 'handle' ORDER BY id"
                ),
                {"c": case_id},
            )
        ]
    assert hours == [None, "07:00-11:00,13:00-17:00"]
