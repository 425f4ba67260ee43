"""``engine.tasks.work_page`` against a plain reading of its rule, on SQLite and PostgreSQL: a person's
ready tasks (claimed by them, or unclaimed in a (role, unit) they hold), oldest first by (created_at,
id), a page at a time after a cursor. Random tasks over random units, people and states, with
instants shared by several tasks so the id decides; every page size, every cursor position."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, insert, select

from engine import tasks
from engine.demo_org import load_demo_org
from engine.store.db import Database
from engine.store.models import case, human_task, membership
from tests.conftest import insert_bare_spec_version

AT = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
PEOPLE = ["community_c1", "community_c2", "dept_urban_1", "gw_g1", "street_s1", "caller_1"]


def _fill(conn: Connection, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    load_demo_org(conn, now=AT, password_for=lambda _p: "not-used-here-1")
    insert_bare_spec_version(conn, "p", AT)
    held = [
        (r.role, r.org_unit_id) for r in conn.execute(select(membership.c.role, membership.c.org_unit_id))
    ]
    rows: list[dict[str, object]] = []
    for n in range(40):
        conn.execute(
            insert(case).values(
                id=n + 1,
                number=f"WO{n}",
                kind="work_order",
                process_id="p",
                spec_version_id=1,
                title=f"案件{n}",
                status="open",
                version=n % 5 + 1,
                data={},
                created_at=AT,
                updated_at=AT,
            )
        )
        for k in range(rng.randint(1, 6)):
            role, unit = rng.choice(held)
            row = {
                "id": f"t{n:02d}-{k}-{rng.randint(0, 9)}",
                "case_id": n + 1,
                "task_spec": "handle",
                "name": "处置",
                "role": role,
                "org_unit_id": unit,
                "assignee_id": rng.choice([None, None, *PEOPLE]),
                "state": rng.choice(["ready", "ready", "completed", "cancelled"]),
                "created_at": AT + timedelta(minutes=rng.randint(0, 12)),  # many ties
            }
            conn.execute(insert(human_task).values(**row))
            rows.append(row)
    return rows


def _expected(conn: Connection, rows: list[dict[str, object]], person: str) -> list[str]:
    mine = {
        (r.role, r.org_unit_id)
        for r in conn.execute(select(membership).where(membership.c.person_id == person))
    }
    listed = [
        r
        for r in rows
        if r["state"] == "ready"
        and (
            r["assignee_id"] == person or (r["assignee_id"] is None and (r["role"], r["org_unit_id"]) in mine)
        )
    ]
    return [str(r["id"]) for r in sorted(listed, key=lambda r: (r["created_at"], r["id"]))]


@pytest.mark.parametrize("seed", [1, 2])
def test_work_pages_are_the_ready_tasks_of_the_person_oldest_first(db: Database, seed: int) -> None:
    with db.write() as conn:
        rows = _fill(conn, seed)
    with db.read() as conn:
        for person in PEOPLE:
            expected = _expected(conn, rows, person)
            whole = tasks.work_page(conn, person, limit=500)
            assert [t.id for t in whole] == expected, person
            assert all(
                t.case_number == f"WO{t.case_id - 1}" and t.case_version == (t.case_id - 1) % 5 + 1
                for t in whole
            )
            for limit in (1, 2, 3, 7):
                seen: list[str] = []
                after = None
                while True:
                    page = tasks.work_page(conn, person, limit=limit, after=after)
                    assert len(page) <= limit
                    seen += [t.id for t in page]
                    if len(page) < limit:
                        break
                    after = (page[-1].created_at, page[-1].id)
                assert seen == expected, (person, limit)
        assert tasks.work_page(conn, "nobody", limit=10) == []


def test_each_source_of_a_work_page_is_read_in_index_order(db: Database) -> None:
    """SQLite's plan: every source (the claims and each queue) is an index search in page order, so it
    stops at the page size, with no sort of its own; only the few rows the sources give are sorted."""
    if db.dialect != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    params = {"person_id": "p", "limit": 20, "role_0": "r", "unit_0": "u", "role_1": "r", "unit_1": "v"}
    with db.read() as conn:
        for after in (False, True):
            sql = tasks._work_statement(2, after).sql
            values = (
                {**params, "after_at": "2025-03-03 01:00:00.000000", "after_id": "x"} if after else params
            )
            plan = [(r[0], r[1], r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, values)]
            steps = [step for _id, _parent, step in plan]
            sources = {node for node, _parent, step in plan if step.startswith("MATERIALIZE s")}
            assert len(sources) == 3, steps
            seek = " AND (created_at,id)>(?,?)" if after else ""  # the cursor seeks inside the index
            inside = [step for _node, parent, step in plan if parent in sources]
            assert sorted(inside) == [
                f"SEARCH human_task USING INDEX ix_human_task_claimed (assignee_id=? AND state=?{seek})",
                *2
                * [
                    "SEARCH human_task USING INDEX ix_human_task_queue"
                    f" (role=? AND org_unit_id=? AND state=? AND assignee_id=?{seek})"
                ],
            ], steps
            assert not [step for step in steps if step.startswith("SCAN human_task")], steps
