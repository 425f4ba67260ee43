"""Prepared SQL on the step path stores and reads values exactly as SQLAlchemy Core does, on SQLite and
PostgreSQL: instants (with and without microseconds) and JSON round-trip both ways.

Its writes inside a PostgreSQL transaction are held back and sent with the next statement: the next
read sees them, a failing one fails the whole transaction (as SQLAlchemy's error), a rollback forgets
them, and the last ones go with the COMMIT in one round trip."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, insert, select
from sqlalchemy.exc import IntegrityError

from engine import access, audit, cases, search, tasks
from engine.clock import FixedClock
from engine.demo_org import load_demo_org
from engine.runtime import Runtime
from engine.store import fastsql
from engine.store.db import Database
from engine.store.models import audit_event, case
from tests.conftest import REPO, START, deploy_folder, fresh_database, insert_bare_spec_version

AT = datetime(2025, 3, 3, 1, 0, 0, tzinfo=UTC)  # no microseconds: the text format must still match
LATER = datetime(2025, 3, 3, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))


def test_rows_written_by_prepared_sql_read_back_through_core_unchanged(db: Database) -> None:
    with db.write() as conn:
        audit.record(conn, "case.started", at=AT, actor_id="gw_g1", after={"标题": "噪声", "n": [1, 2]})
        audit.record(conn, "task.completed", at=LATER, actor_id="gw_g1", before=None, after={"ok": True})
    with db.read() as conn:
        rows = conn.execute(select(audit_event).order_by(audit_event.c.id)).all()
        ordered = conn.execute(select(audit_event.c.action).order_by(audit_event.c.at.desc())).scalars().all()
    assert [(r.at, r.after) for r in rows] == [(AT, {"标题": "噪声", "n": [1, 2]}), (LATER, {"ok": True})]
    assert rows[1].before is None
    assert ordered == ["task.completed", "case.started"]  # stored instants still sort as instants


def test_rows_written_by_core_are_read_by_prepared_sql_with_instants_and_json(db: Database) -> None:
    with db.write() as conn:
        insert_bare_spec_version(conn, "p", AT)
        conn.execute(
            insert(case).values(
                number="WO1",
                kind="work_order",
                process_id="p",
                spec_version_id=1,
                title="t",
                priority="normal",
                status="open",
                version=3,
                data={"地址": "东门", "n": 1},
                next_wake_at=LATER,
                created_at=AT,
                updated_at=LATER,
            )
        )
        statement = fastsql.Statement(
            'SELECT * FROM "case" WHERE number = :number',
            result_json=frozenset({"data"}),
            result_instants=frozenset({"next_wake_at", "created_at", "updated_at", "closed_at"}),
        )
        [row] = fastsql.fetch_mappings(conn, statement, {"number": "WO1"})
    assert row["data"] == {"地址": "东门", "n": 1}
    next_wake_at = row["next_wake_at"]
    assert isinstance(next_wake_at, datetime) and next_wake_at == LATER and next_wake_at.tzinfo is not None
    assert row["created_at"] == AT and row["closed_at"] is None and row["version"] == 3


def test_instants_are_stored_as_the_same_text_core_stores(db: Database) -> None:
    """SQL compares stored instants as text on SQLite (``due_at < :now``): prepared SQL must write the
    very text Core writes, whole seconds and four-digit years included."""
    instants = [
        AT,
        LATER,
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    with db.write() as conn:
        for at in instants:
            audit.record(conn, "by.prepared", at=at, actor_id="gw_g1")
            conn.execute(insert(audit_event).values(action="by.core", at=at, actor_id="gw_g1"))
    with db.read() as conn:
        stored = conn.exec_driver_sql("SELECT action, CAST(at AS TEXT) FROM audit_event ORDER BY id").all()
    prepared = [text for action, text in stored if action == "by.prepared"]
    core = [text for action, text in stored if action == "by.core"]
    assert prepared == core and len(core) == len(instants)


_EVENT = fastsql.Statement(
    "INSERT INTO audit_event (id, at, action) VALUES (:id, :at, 'held')", instants=frozenset({"at"})
)
_COUNT = fastsql.Statement("SELECT count(*) FROM audit_event")


def _stored_ids(db: Database) -> list[int]:
    with db.read() as conn:
        return list(conn.execute(select(audit_event.c.id).order_by(audit_event.c.id)).scalars())


def test_a_write_is_seen_by_the_next_read_of_its_transaction_prepared_or_core(db: Database) -> None:
    with db.write() as conn:
        fastsql.execute(conn, _EVENT, {"id": 1, "at": AT})
        assert fastsql.fetch(conn, _COUNT, {}) == [(1,)]
        fastsql.execute(conn, _EVENT, [{"id": 2, "at": AT}, {"id": 3, "at": LATER}])
        assert conn.execute(select(func.count()).select_from(audit_event)).scalar() == 3
        fastsql.execute(conn, _EVENT, {"id": 4, "at": AT})
    assert _stored_ids(db) == [1, 2, 3, 4]  # the last one went with the commit


def test_a_failing_write_fails_its_whole_transaction_with_sqlalchemys_error(db: Database) -> None:
    """On PostgreSQL the duplicate is only sent at the commit; the error is the one Core raises
    (``report_case`` catches SQLAlchemy's IntegrityError), and nothing of the transaction stays."""
    with db.write() as conn:
        fastsql.execute(conn, _EVENT, {"id": 1, "at": AT})
    with pytest.raises(IntegrityError), db.write() as conn:
        fastsql.execute(conn, _EVENT, {"id": 2, "at": AT})
        fastsql.execute(conn, _EVENT, {"id": 1, "at": AT})
    assert _stored_ids(db) == [1]
    with pytest.raises(IntegrityError), db.write() as conn:  # raised at the next read, before it runs
        fastsql.execute(conn, _EVENT, [{"id": 3, "at": AT}, {"id": 1, "at": AT}])
        fastsql.fetch(conn, _COUNT, {})
    with db.write() as conn:  # the connection is fit for the next transaction
        fastsql.execute(conn, _EVENT, {"id": 5, "at": AT})
    assert _stored_ids(db) == [1, 5]


def test_a_rolled_back_transaction_leaves_no_write_behind_for_the_next_one(db: Database) -> None:
    """The pool's one connection serves both transactions: what the first held back is forgotten."""
    pooled = Database(db.url, checkpoint_every_s=3600)
    try:
        with pytest.raises(RuntimeError), pooled.write() as conn:
            fastsql.execute(conn, _EVENT, {"id": 1, "at": AT})
            raise RuntimeError("half-way")
        with pooled.write() as conn:
            fastsql.execute(conn, _EVENT, {"id": 2, "at": AT})
        assert pooled.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    finally:
        pooled.dispose()
    assert _stored_ids(db) == [2]


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Database]:
    """Round trips are PostgreSQL's: SQLite runs in the process."""
    database = fresh_database("postgresql", tmp_path)
    yield database
    database.dispose()


def _round_trips(db: Database, work: Callable[[Connection], object], *, write: bool = True) -> int:
    """How many times the client waited for PostgreSQL while ``work`` ran and its transaction (or read)
    ended: the ReadyForQuery messages in libpq's protocol trace."""
    with tempfile.TemporaryFile() as trace:
        with db.write() if write else db.read() as conn:
            pgconn = conn.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
            pgconn.trace(trace.fileno())
            work(conn)
        pgconn.untrace()
        trace.seek(0)
        return sum(1 for line in trace.read().decode().splitlines() if "\tReadyForQuery\t" in line)


@pytest.mark.postgres
def test_on_postgresql_the_writes_after_the_last_read_go_with_the_commit_in_one_round_trip(
    pg: Database,
) -> None:
    def step(conn: Connection) -> None:
        fastsql.fetch(conn, _COUNT, {})  # the BEGIN goes with it: one round trip
        fastsql.execute(conn, _EVENT, {"id": 101, "at": AT})
        fastsql.execute(conn, _EVENT, [{"id": 102, "at": AT}, {"id": 103, "at": AT}])
        audit.record(conn, "task.completed", at=AT, actor_id="gw_g1")  # id 1, from the sequence

    def one_by_one(conn: Connection) -> None:
        conn.exec_driver_sql("SELECT count(*) FROM audit_event").all()
        for n in (11, 12, 13):
            conn.execute(insert(audit_event).values(id=n, at=AT, action="core"))

    assert _round_trips(pg, step) == 2
    assert _round_trips(pg, one_by_one) == 6  # statement by statement: BEGIN, 4 statements, COMMIT
    assert _round_trips(pg, lambda conn: None) == 0  # a write that wrote nothing sent nothing
    assert len(_stored_ids(pg)) == 7


@pytest.mark.postgres
def test_on_postgresql_a_read_of_several_queries_is_one_round_trip(pg: Database) -> None:
    with pg.write() as conn:
        fastsql.execute(conn, _EVENT, [{"id": 1, "at": AT}, {"id": 2, "at": LATER}])
    found: list[list[list[dict[str, object]]]] = []
    by_id = fastsql.Statement(
        "SELECT id, at FROM audit_event WHERE id = :id", result_instants=frozenset({"at"})
    )
    queries = [(by_id, {"id": 2}), (_COUNT, {}), (by_id, {"id": 9})]
    assert (
        _round_trips(pg, lambda conn: found.append(fastsql.fetch_mappings_of(conn, queries)), write=False)
        == 1
    )
    assert found == [[[{"id": 2, "at": LATER}], [{"count": 2}], []]]


def _traced(db: Database, work: Callable[[], object]) -> int:
    """The round trips of every connection ``work`` checks out (``_round_trips``, for engine calls)."""
    with tempfile.TemporaryFile() as trace:

        def start(dbapi_connection: Any, *_args: object) -> None:
            dbapi_connection.pgconn.trace(trace.fileno())

        def stop(dbapi_connection: Any, *_args: object) -> None:
            dbapi_connection.pgconn.untrace()

        event.listen(db.engine, "checkout", start)
        event.listen(db.engine, "checkin", stop)
        try:
            work()
        finally:
            event.remove(db.engine, "checkout", start)
            event.remove(db.engine, "checkin", stop)
        trace.seek(0)
        return sum(1 for line in trace.read().decode().splitlines() if "\tReadyForQuery\t" in line)


@pytest.mark.postgres
def test_on_postgresql_a_claim_is_three_round_trips_then_two_and_a_case_file_one(pg: Database) -> None:
    """The claim: its BEGIN with the lock and the task's row; whether the actor may take the task (the
    first time: then it is remembered); its writes with the COMMIT. The case file: its five queries.
    (The app's pool adds a ping only for a connection that lay idle or heard from the server:
    ``test_db``.)"""
    rt = Runtime(db=pg, clock=FixedClock(START))
    with pg.write() as conn:
        load_demo_org(conn, now=rt.now(), password_for=lambda _p: "pw")
    deploy_folder(rt, REPO / "workflows" / "demo", REPO / "forms")
    case_id = cases.start_case("demo", rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1").id
    [handle] = [t for t in tasks.case_tasks(case_id, rt=rt) if t.state == "ready"]
    with pg.read() as conn:
        who = access.principal(conn, "gw_g1")
    assert _traced(pg, lambda: tasks.claim_task(handle.id, rt=rt, actor="gw_g1")) == 3
    assert _traced(pg, lambda: search.case_file(who, case_id, rt=rt)) == 1
    assert [t.assignee_id for t in tasks.case_tasks(case_id, rt=rt)] == ["gw_g1"]
    # the next claim by gw_g1 of a g1 task: whether they may act is remembered (``orgs.Lookups``)
    other = cases.start_case("demo", rt=rt, actor="gw_g1", title="占道", kind="demo", grid_id="g1").id
    [next_handle] = [t for t in tasks.case_tasks(other, rt=rt) if t.state == "ready"]
    assert _traced(pg, lambda: tasks.claim_task(next_handle.id, rt=rt, actor="gw_g1")) == 2
