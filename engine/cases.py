"""Cases: start one on the newest spec version of its process, read it back, list its timeline.

The work-order verbs of the glossary (accept, dispatch, return_case …) are user tasks of the BPMN and
go through ``engine.tasks.complete_task``; this module owns the case row itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import Connection, Row, select, update

from engine import audit, specs, spiff
from engine.clock import FixedClock
from engine.errors import InvalidInput, NotFound
from engine.projection import refresh
from engine.runtime import CASE_ROW, Runtime, Step, lock_case, save_instance
from engine.store import fastsql
from engine.store.models import case

KINDS = {"work_order": "WO", "dispute": "DS", "grid_event": "GE", "demo": "DM"}
MAX_TITLE = 200


@dataclass(frozen=True, slots=True)
class CaseView:
    id: int
    number: str
    kind: str
    process_id: str
    spec_version_id: int
    title: str
    category: str | None
    channel: str | None
    grid_id: str | None
    status: str
    priority: str
    outcome: str | None
    related_case_id: int | None
    version: int
    created_at: datetime
    closed_at: datetime | None
    next_wake_at: datetime | None
    data: dict[str, object]


def _view(row: Row[tuple[object, ...]] | Mapping[str, Any]) -> CaseView:
    m: Mapping[str, Any] = row if isinstance(row, Mapping) else dict(row._mapping)
    return CaseView(
        **{name: m[name] for name in CaseView.__dataclass_fields__ if name != "data"},
        data=dict(m["data"] or {}),
    )


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """What opening a case needs; ``variables`` become routing data of the workflow."""

    process_id: str
    title: str
    kind: str = "work_order"
    grid_id: str | None = None
    category: str | None = None
    channel: str | None = None
    data: Mapping[str, object] = field(default_factory=dict)
    variables: Mapping[str, object] = field(default_factory=dict)
    idempotency_key: str | None = None
    related_case_id: int | None = None

    def checked(self) -> CaseRequest:
        title = (self.title or "").strip()
        if not title or len(title) > MAX_TITLE:
            raise InvalidInput(
                "case.invalid_title",
                f"a case needs a title of 1 to {MAX_TITLE} characters",
                {"fields": {"title": f"required, at most {MAX_TITLE} characters"}},
            )
        if self.kind not in KINDS:
            raise InvalidInput(
                "case.unknown_kind",
                f"unknown case kind '{self.kind}'",
                {"kind": self.kind, "known": list(KINDS)},
            )
        return self if title == self.title else replace(self, title=title)


def start_case(
    process_id: str,
    *,
    rt: Runtime,
    actor: str | None,
    title: str,
    kind: str = "work_order",
    grid_id: str | None = None,
    category: str | None = None,
    channel: str | None = None,
    data: Mapping[str, object] | None = None,
    variables: Mapping[str, object] | None = None,
    idempotency_key: str | None = None,
    check: Callable[[Connection], None] | None = None,
) -> CaseView:
    """Open a case on the newest deployed version of ``process_id`` and run it to its first wait.

    A retried request with the same ``idempotency_key`` returns the case the first one opened. ``check``
    runs first in the same transaction (the caller's right to report into the grid, say).
    """
    request = CaseRequest(
        process_id,
        title,
        kind,
        grid_id,
        category,
        channel,
        dict(data or {}),
        dict(variables or {}),
        idempotency_key,
    )
    return start_request(request, rt=rt, actor=actor, check=check)[0]


def start_request(
    request: CaseRequest,
    *,
    rt: Runtime,
    actor: str | None,
    check: Callable[[Connection], None] | None = None,
) -> tuple[CaseView, bool]:
    """``start_case`` for a request already gathered; returns (case, replayed): ``replayed`` when the
    request's idempotency key had opened the case before."""
    request = request.checked()
    now = rt.now()
    early = _start_early(request, rt=rt, now=now)
    with rt.db.write() as conn:
        if request.idempotency_key is not None:
            existing = conn.execute(
                select(case).where(case.c.idempotency_key == request.idempotency_key)
            ).first()
            if existing is not None:
                return _view(existing), True
        if check is not None:
            check(conn)
        case_id, instance = open_case(conn, request, rt=rt, actor=actor, now=now, early=early)
        result = fastsql.fetch_mappings(conn, CASE_ROW, {"case_id": case_id})[0]
    rt.workflows.put(case_id, 1, instance)
    if result["next_wake_at"] is not None:
        rt.woke(result["next_wake_at"])  # type: ignore[arg-type]
    return _view(result), False


def _routing(request: CaseRequest) -> dict[str, object]:
    """The variables a new case's workflow starts with (what routing DMNs read)."""
    return {
        "case_kind": request.kind,
        "category": request.category,
        "channel": request.channel,
        "grid_id": request.grid_id,
        **dict(request.variables),
    }


def _start_early(request: CaseRequest, *, rt: Runtime, now: datetime) -> tuple[int, spiff.Instance] | None:
    """The new case's workflow run to its first wait before the write transaction, on the version this
    process last opened a case of the process on: starting a workflow reads nothing from the database,
    and on SQLite every writer queues for one lock, so the work done here is not done in the queue.
    ``open_case`` keeps it only when that version is still the newest; any failure here means the start
    is simply done again inside the transaction, where it raises as it always did."""
    entry = rt.specs.newest_seen(request.process_id)
    if entry is None:
        return None
    try:
        instance = spiff.Instance.start(
            entry.spec, entry.subprocess_specs, rt.sandbox, _routing(request), FixedClock(now)
        )
        instance.prepare_delta()
    except Exception:  # a speculative start: the real one inside the transaction reports
        return None
    return entry.id, instance


def open_case(
    conn: Connection,
    request: CaseRequest,
    *,
    rt: Runtime,
    actor: str | None,
    now: datetime,
    early: tuple[int, spiff.Instance] | None = None,
) -> tuple[int, spiff.Instance]:
    """Insert the case, start its workflow and project it, inside the caller's transaction (``early``: a
    workflow already started on a version, used when that version is the newest)."""
    unit_path = None
    if request.grid_id:
        found = fastsql.fetch(conn, _UNIT_PATH, {"unit_id": request.grid_id})
        if not found:
            raise NotFound(
                "org.unit_not_found", f"unit {request.grid_id!r} does not exist", {"id": request.grid_id}
            )
        unit_path = str(found[0][0])
    version_id = specs.latest_version_id(conn, request.process_id)
    entry = rt.specs.get(conn, version_id)
    rt.specs.saw_newest(request.process_id, version_id)
    if early is not None and early[0] == version_id:
        instance = early[1]
    else:
        instance = spiff.Instance.start(
            entry.spec, entry.subprocess_specs, rt.sandbox, _routing(request), rt.clock
        )
    values = {
        "number": f"tmp{uuid4().hex[:24]}",  # replaced by the real number below
        "kind": request.kind,
        "process_id": request.process_id,
        "spec_version_id": version_id,
        "title": request.title,
        "category": request.category,
        "channel": request.channel,
        "grid_id": request.grid_id,
        "unit_path": unit_path,
        "priority": "normal",
        "status": "open",
        "version": 1,
        "data": dict(request.data),
        "reporter_id": actor,
        "related_case_id": request.related_case_id,
        "idempotency_key": request.idempotency_key,
        "created_by": actor,
        "created_at": now,
        "updated_at": now,
    }
    case_id = int(str(fastsql.fetch(conn, _INSERT_CASE, values)[0][0]))
    number = f"{KINDS[request.kind]}{now:%Y%m%d}{case_id:06d}"
    fastsql.execute(conn, _NUMBER, {"case_id": case_id, "number": number})
    row = lock_case(conn, case_id)
    step = Step(rt, conn, row, entry, now, 1, loaded=instance)
    save_instance(conn, case_id, instance, now)
    refresh(step, actor=actor)
    if step.case_values:
        conn.execute(update(case).where(case.c.id == case_id).values(**step.case_values))
    audit.record(
        conn,
        "case.started",
        at=now,
        actor_id=actor,
        case_id=case_id,
        after={
            "process_id": request.process_id,
            "spec_version_id": version_id,
            "title": request.title,
            "category": request.category,
            "channel": request.channel,
            "grid_id": request.grid_id,
            "related_case_id": request.related_case_id,
        },
    )
    return case_id, instance


_UNIT_PATH = fastsql.Statement("SELECT path FROM org_unit WHERE id = :unit_id")
_INSERT_CASE = fastsql.Statement(
    'INSERT INTO "case" (number, kind, process_id, spec_version_id, title, category, channel, grid_id,'
    " unit_path, priority, status, version, data, reporter_id, related_case_id, idempotency_key, created_by,"
    " created_at, updated_at) VALUES (:number, :kind, :process_id, :spec_version_id, :title, :category,"
    " :channel, :grid_id, :unit_path, :priority, :status, :version, :data, :reporter_id, :related_case_id,"
    " :idempotency_key, :created_by, :created_at, :updated_at) RETURNING id",
    json=frozenset({"data"}),
    instants=frozenset({"created_at", "updated_at"}),
)
_NUMBER = fastsql.Statement('UPDATE "case" SET number = :number WHERE id = :case_id')


def get_case(case_id: int, *, rt: Runtime) -> CaseView:
    with rt.db.read() as conn:
        row = conn.execute(select(case).where(case.c.id == case_id)).first()
    if row is None:
        raise NotFound("case.not_found", f"case {case_id} does not exist", {"case_id": case_id})
    return _view(row)


def find_case(reference: str, *, rt: Runtime) -> CaseView:
    """A case by id or by number (``WO20261121000001``)."""
    with rt.db.read() as conn:
        query = (
            select(case).where(case.c.id == int(reference))
            if reference.isdigit()
            else select(case).where(case.c.number == reference)
        )
        row = conn.execute(query).first()
    if row is None:
        raise NotFound("case.not_found", f"no case '{reference}'", {"reference": reference})
    return _view(row)
