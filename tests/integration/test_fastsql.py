"""Prepared SQL on the step path stores and reads values exactly as SQLAlchemy Core does, on SQLite and
PostgreSQL: instants (with and without microseconds) and JSON round-trip both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import insert, select

from engine import audit
from engine.store import fastsql
from engine.store.db import Database
from engine.store.models import audit_event, case
from tests.conftest import insert_bare_spec_version

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
