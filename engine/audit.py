"""The append-only audit trail: one event per action (who, what, when, before, after).

Rows are only ever inserted; nothing in the engine updates or deletes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from engine.store import fastsql


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    case_id: int | None
    at: datetime
    actor_id: str | None
    action: str
    task_id: str | None
    before: object
    after: object


def record(
    conn: Connection,
    action: str,
    *,
    at: datetime,
    actor_id: str | None,
    case_id: int | None = None,
    task_id: str | None = None,
    before: Mapping[str, object] | None = None,
    after: Mapping[str, object] | None = None,
) -> None:
    fastsql.execute(
        conn,
        _INSERT,
        {
            "case_id": case_id,
            "at": at,
            "actor_id": actor_id,
            "action": action,
            "task_id": task_id,
            "before": dict(before) if before is not None else None,
            "after": dict(after) if after is not None else None,
        },
    )


def record_many(conn: Connection, events: Sequence[Mapping[str, object]]) -> None:
    """Insert many events at once (keys as ``record``'s arguments, ``action`` included)."""
    if events:
        fastsql.execute(conn, _INSERT, [{**_NO_TASK, **e} for e in events])


_NO_TASK: dict[str, object] = {"task_id": None, "before": None, "after": None}
_INSERT = fastsql.Statement(
    "INSERT INTO audit_event (case_id, at, actor_id, action, task_id, before, after)"
    " VALUES (:case_id, :at, :actor_id, :action, :task_id, :before, :after)",
    json=frozenset({"before", "after"}),
    instants=frozenset({"at"}),
)


def timeline(conn: Connection, case_id: int) -> list[AuditEvent]:
    """The case's events, oldest first."""
    return events_of(fastsql.fetch_mappings(conn, TIMELINE, {"case_id": case_id}))


def events_of(rows: Sequence[Mapping[str, object]]) -> list[AuditEvent]:
    """The events of ``TIMELINE``'s rows (for a caller that reads them with other queries at once)."""
    return [
        AuditEvent(
            int(str(r["id"])),
            r["case_id"],  # type: ignore[arg-type]
            r["at"],  # type: ignore[arg-type]
            r["actor_id"],  # type: ignore[arg-type]
            str(r["action"]),
            r["task_id"],  # type: ignore[arg-type]
            r["before"],
            r["after"],
        )
        for r in rows
    ]


TIMELINE = fastsql.Statement(  # a case's events, oldest first; ``:case_id``
    "SELECT id, case_id, at, actor_id, action, task_id, before, after FROM audit_event"
    " WHERE case_id = :case_id ORDER BY id",
    result_json=frozenset({"before", "after"}),
    result_instants=frozenset({"at"}),
)
