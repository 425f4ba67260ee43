"""Rungs and escalation (ARCHITECTURE §3): what happens when an SLA clock's instants come, and 催办 / 督办
issued by hand. Clocks themselves — budgets, deadlines, pauses, extensions, hand-over, explanations — are
``engine.sla``'s; this module only reads and marks them.

Rungs: warning (黄) → overdue (红) → supervision (督办) → escalation. Each fires once (``*_fired_at``),
writes an audit event and outbox notifications (the handler's unit, then its leader, then the level
above, at escalation the command centre), and is delivered to the workflow as the BPMN message
``sla_<rung>`` aimed at the task's own boundary events, so the diagram decides what it does.

Firing at scale (``fire_due_rungs``): a rung no boundary event of its task catches changes nothing in
the workflow (``SpecEntry.caught``, read from the spec), so those are fired set-based, a batch of clocks
per transaction (``fire_rung_batch``); a case whose diagram catches a due rung runs in its own step
(``fire_rungs_of_case``). A failing case is logged and marked an incident; the others go on.

Must not import flask, api or celery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select, update

from engine import audit, orgs, projection, sla, timers
from engine.errors import Conflict, EngineError, NotFound
from engine.runtime import Runtime, Step, step
from engine.store import fastsql
from engine.store.models import case, human_task, sla_clock

log = logging.getLogger("gridcase.escalation")


@dataclass(slots=True)
class RungReport:
    fired: list[tuple[int, str]] = field(default_factory=list)  # (clock id, rung)
    failed: dict[int, str] = field(default_factory=dict)  # case id -> error code
    cases: set[int] = field(default_factory=set)  # cases with a rung fired


_RUNG_AT = {
    "warning": "warn_due_at",
    "overdue": "due_at",
    "supervise": "supervise_at",
    "escalate": "escalate_at",
}
_STATUS_AFTER = {"warning": "warning", "overdue": "overdue", "supervise": "overdue", "escalate": "overdue"}


def due_rung_cases(
    rt: Runtime, now: datetime, *, limit: int = 500, case_ids: Sequence[int] | None = None
) -> list[int]:
    """Open cases with a clock whose next rung has come (distinct, earliest first)."""
    query = (
        select(sla_clock.c.case_id, sla_clock.c.next_rung_at)
        .join(case, case.c.id == sla_clock.c.case_id)
        .where(sla_clock.c.state == "running", sla_clock.c.next_rung_at <= now, case.c.status == "open")
    )
    if case_ids is not None:
        query = query.where(sla_clock.c.case_id.in_(list(case_ids)))
    with rt.db.read() as conn:
        rows = conn.execute(query.order_by(sla_clock.c.next_rung_at).limit(limit)).all()
    seen: dict[int, None] = {}
    for row in rows:
        seen.setdefault(int(row.case_id))
    return list(seen)


class _NothingDue(Exception):
    """Raised inside a step that found nothing left to fire, so the step writes nothing."""


_DUE_RUNG = fastsql.Statement(
    "SELECT id FROM sla_clock WHERE case_id = :case_id AND state = 'running'"
    " AND next_rung_at <= :now LIMIT 1",
    instants=frozenset({"now"}),
)


def fire_rungs_of_case(case_id: int, *, rt: Runtime) -> list[tuple[int, str]]:
    """Fire every due, unfired rung of the case's running clocks, in order, in one step.

    Nothing due (already fired by another scheduler, a duplicate message) → no step, no new version.
    """
    with rt.db.read() as conn:
        if not fastsql.fetch(conn, _DUE_RUNG, {"case_id": case_id, "now": rt.now()}):
            return []
    fired: list[tuple[int, str]] = []
    try:
        with step(rt, case_id) as current:
            clocks = [
                sla.as_clock(r)
                for r in current.conn.execute(
                    select(sla_clock).where(
                        sla_clock.c.case_id == case_id,
                        sla_clock.c.state == "running",
                        sla_clock.c.next_rung_at <= current.now,
                    )
                )
            ]
            for clock in clocks:
                for rung in sla.RUNGS:
                    at = clock[_RUNG_AT[rung]]
                    if at is None or at > current.now or clock[sla.FIRED_COLUMN[rung]] is not None:
                        continue
                    _fire(current, clock, rung)
                    fired.append((int(clock["id"]), rung))
            if not fired:
                raise _NothingDue
            projection.refresh(current, actor="system")
    except _NothingDue:
        return []
    return fired


def _fire(current: Step, clock: sla.ClockRow, rung: str) -> None:
    conn, now = current.conn, current.now
    values = dict(clock)
    values[sla.FIRED_COLUMN[rung]] = now
    conn.execute(
        update(sla_clock)
        .where(sla_clock.c.id == clock["id"])
        .values(
            {
                sla.FIRED_COLUMN[rung]: now,
                "status": _STATUS_AFTER[rung],
                "next_rung_at": sla.next_rung(values),
            }
        )
    )
    if rung in ("supervise", "escalate"):
        current.case_values["priority"] = "urgent"
    caught = False
    if clock["task_id"]:
        payload = {"rung": rung, "task_spec": clock["task_spec"], "due_at": sla.iso(clock["due_at"])}
        try:
            caught = current.instance.send_message(
                f"sla_{rung}", payload, current.rt.clock, for_task=clock["task_id"]
            )
        except NotFound:
            caught = False
    audit.record(
        conn,
        f"sla.{rung}",
        at=now,
        actor_id="system",
        case_id=current.case_id,
        task_id=clock["task_id"],
        before={"status": clock["status"], "due_at": sla.iso(clock["due_at"])},
        after={"status": _STATUS_AFTER[rung], "message": f"sla_{rung}", "caught": caught},
    )
    _notify(current, clock, f"sla.{rung}", rung)


def _notify(
    current: Step,
    clock: Mapping[str, object],
    topic: str,
    rung: str,
    extra: Mapping[str, object] | None = None,
) -> None:
    """Outbox rows for the people a rung concerns: the unit's handlers, then its leader, then above."""
    task_id = clock.get("task_id")
    role = _task_roles(current.conn, [task_id]).get(task_id) if isinstance(task_id, str) else None
    payload = _rung_payload(clock, rung, current.case.number, current.case.title)
    for role_to, target in _targets(current.conn, clock, rung, role, {}):
        projection.enqueue(
            current, topic, {"role": role_to, "org_unit_id": target, **payload, **dict(extra or {})}
        )


def _rung_payload(clock: Mapping[str, object], rung: str, number: str, title: object) -> dict[str, object]:
    return {
        "case_number": number,
        "case_title": title,
        "task_spec": clock.get("task_spec"),
        "task_id": clock.get("task_id"),
        "due_at": sla.iso(clock.get("due_at")),
        "rung": rung,
    }


def _targets(
    conn: Connection,
    clock: Mapping[str, object],
    rung: str,
    task_role: str | None,
    above: dict[str, list[orgs.UnitRow]],
) -> list[tuple[str, str]]:
    """(role, org unit) to notify of a rung: the task's role in the clock's unit, from overdue on the
    unit's leader, from 督办 on the supervisor of the level above, and at escalation the command centre.
    ``above`` caches the unit chains of one batch."""
    unit = clock.get("org_unit_id")
    targets: list[tuple[str, str]] = []
    if not isinstance(unit, str):
        return targets
    if task_role:
        targets.append((task_role, unit))
    if rung != "warning":
        targets.append(("leader", unit))
    if rung in ("supervise", "escalate"):
        chain = above.get(unit)
        if chain is None:
            chain = above[unit] = orgs.ancestors(conn, unit)
        if len(chain) > 1:
            targets.append(("supervisor", chain[1].id))
        if rung == "escalate":
            targets.append(("command_centre", chain[-1].id))
    return targets


def _task_roles(conn: Connection, task_ids: Sequence[str]) -> dict[str, str]:
    """Task id -> the role its human task is assigned to."""
    if not task_ids:
        return {}
    rows = conn.execute(
        select(human_task.c.id, human_task.c.role).where(human_task.c.id.in_(sorted(set(task_ids))))
    ).all()
    return {str(r.id): str(r.role) for r in rows if r.role}


def fire_due_rungs(*, rt: Runtime, limit: int = 500, case_ids: Sequence[int] | None = None) -> RungReport:
    """Fire every rung that has come (of ``case_ids`` only, when given).

    Most rungs change nothing in the workflow: no boundary event of the clock's task catches
    ``sla_<rung>`` (read from the spec, ``SpecEntry.caught``). Those are fired set-based, up to ``limit``
    clocks per transaction (``fire_rung_batch``). A case with a rung its diagram catches runs in its own
    step (``fire_rungs_of_case``), which delivers the message. When a batch fails, its cases are fired one
    by one instead, so a bad case is logged and marked an incident while the others still fire.
    """
    report = RungReport()
    tried: set[int] = set()
    while True:
        try:
            batch = fire_rung_batch(rt, limit=limit, case_ids=case_ids)
        except Exception:  # a bug or a bad row must not stop the other cases
            log.exception("a batch of SLA rungs failed; firing its cases one by one")
            stepwise = due_rung_cases(rt, rt.now(), limit=limit, case_ids=case_ids)
            batch = RungBatch(more=True, stepwise=stepwise)
        report.fired.extend(batch.fired)
        report.cases.update(batch.cases)
        stepwise = [c for c in batch.stepwise if c not in tried]
        if not stepwise and (not batch.fired or not batch.more):
            return report
        for case_id in stepwise:
            tried.add(case_id)
            try:
                fired = fire_rungs_of_case(case_id, rt=rt)
                report.fired.extend(fired)
                if fired:
                    report.cases.add(case_id)
            except Conflict as err:
                if err.code in ("case.closed", "case.suspended"):
                    continue  # a rung of a closed or suspended case does not fire
                _failed(rt, report, case_id, err)
            except Exception as err:
                _failed(rt, report, case_id, err)


def _failed(rt: Runtime, report: RungReport, case_id: int, err: Exception) -> None:
    code = err.code if isinstance(err, EngineError) else "internal_error"
    report.failed[case_id] = code
    log.error("SLA rungs of case %s failed: %s", case_id, err, exc_info=not isinstance(err, EngineError))
    timers.mark_incident(rt, case_id, err)


@dataclass(slots=True)
class RungBatch:
    more: bool = False  # the batch was full: more may be due
    fired: list[tuple[int, str]] = field(default_factory=list)  # (clock id, rung)
    cases: list[int] = field(default_factory=list)  # cases with a rung fired
    stepwise: list[int] = field(default_factory=list)  # cases whose diagram catches a due rung


# The due clocks of a batch, with what firing them needs (the case's number, title, version and spec,
# the role of the clock's task), read through prepared SQL: all cases, earliest first (the index on
# sla_clock (state, next_rung_at)); or the cases a worker message names, looked up case by case: the
# CROSS JOIN keeps SQLite's planner on the named cases and the wrapped state/next_rung_at terms keep it
# on the clocks' case_id index (portable SQL; PostgreSQL plans it the same way). The parameter count is
# rounded up to a few fixed sizes so the statements stay few.
_DUE_COLUMNS_SQL = (
    "SELECT k.id, k.case_id, k.task_id, k.task_spec, k.org_unit_id, k.status, k.warn_due_at, k.due_at,"
    " k.supervise_at, k.escalate_at, k.warning_fired_at, k.overdue_fired_at, k.supervise_fired_at,"
    " k.escalate_fired_at, c.number AS case_number, c.title AS case_title,"
    " c.spec_version_id AS case_spec_version_id, c.version AS case_version, t.role AS task_role"
)
_DUE_SQL = (
    _DUE_COLUMNS_SQL
    + ' FROM sla_clock k JOIN "case" c ON c.id = k.case_id LEFT JOIN human_task t ON t.id = k.task_id'
    " WHERE k.state = 'running' AND k.next_rung_at <= :now AND c.status = 'open'"
    " ORDER BY k.next_rung_at LIMIT :limit"
)
_DUE_AMONG_SQL = (
    _DUE_COLUMNS_SQL + ' FROM "case" c CROSS JOIN sla_clock k LEFT JOIN human_task t ON t.id = k.task_id'
    " WHERE k.case_id = c.id AND c.id IN ({names}) AND c.status = 'open'"
    " AND (k.state || '') = 'running' AND COALESCE(k.next_rung_at, k.next_rung_at) <= :now LIMIT :limit"
)
_DUE_INSTANTS = frozenset(
    {
        "warn_due_at",
        "due_at",
        "supervise_at",
        "escalate_at",
        "warning_fired_at",
        "overdue_fired_at",
        "supervise_fired_at",
        "escalate_fired_at",
    }
)
_AMONG_SIZES = (1, 8, 64, 256, 1024)
_DUE: dict[int, fastsql.Statement] = {}


def _due_statement(among: int) -> fastsql.Statement:
    """The due-clock query, for all cases (``among`` 0) or for up to ``among`` named ones."""
    found = _DUE.get(among)
    if found is None:
        names = ", ".join(f":c{i}" for i in range(among))
        sql = _DUE_AMONG_SQL.format(names=names) if among else _DUE_SQL
        found = _DUE.setdefault(
            among, fastsql.Statement(sql, instants=frozenset({"now"}), result_instants=_DUE_INSTANTS)
        )
    return found


def _due_clocks(
    conn: Connection, now: datetime, limit: int, case_ids: Sequence[int] | None
) -> list[sla.ClockRow]:
    if case_ids is None:
        return fastsql.fetch_mappings(conn, _due_statement(0), {"now": now, "limit": limit})
    rows: list[sla.ClockRow] = []
    ids = sorted(set(case_ids))
    while ids and len(rows) < limit:
        size = next((n for n in _AMONG_SIZES if n >= len(ids)), _AMONG_SIZES[-1])
        part, ids = ids[:size], ids[size:]
        params: dict[str, object] = {"now": now, "limit": limit - len(rows)}
        params.update({f"c{i}": part[i] if i < len(part) else -1 for i in range(size)})
        rows += fastsql.fetch_mappings(conn, _due_statement(size), params)
    return rows


_BATCH_CLOCK = fastsql.Statement(
    "UPDATE sla_clock SET status = :status, next_rung_at = :next_rung_at, warning_fired_at = :warning,"
    " overdue_fired_at = :overdue, supervise_fired_at = :supervise, escalate_fired_at = :escalate"
    " WHERE id = :id AND state = 'running'",
    instants=frozenset({"next_rung_at", "warning", "overdue", "supervise", "escalate"}),
)
_BATCH_CASE = fastsql.Statement(
    'UPDATE "case" SET version = version + 1, updated_at = :now,'
    " priority = CASE WHEN :urgent = 1 THEN 'urgent' ELSE priority END WHERE id = :id",
    instants=frozenset({"now"}),
)


def fire_rung_batch(rt: Runtime, *, limit: int = 500, case_ids: Sequence[int] | None = None) -> RungBatch:
    """One transaction: fire the due rungs of up to ``limit`` clocks that no boundary event catches —
    clock status and fired instants, an audit event and outbox notifications per rung, the case's
    version (and priority, from 督办 on) — and name the cases that need their own step.

    The same writes, row for row, as ``fire_rungs_of_case`` makes for a rung nothing catches. Locks: the
    whole database on SQLite (one writer); on PostgreSQL the cases' rows, ``SKIP LOCKED`` (a case in a
    step right now is left to the next round), in the order steps take them (case, then clocks).
    """
    batch = RungBatch()
    with rt.db.write() as conn:
        now = rt.now()
        rows = _due_clocks(conn, now, limit, case_ids)
        batch.more = len(rows) >= limit
        if rows and conn.dialect.name == "postgresql":
            wanted = sorted({int(str(r["case_id"])) for r in rows})
            locked = list(
                conn.execute(
                    select(case.c.id)
                    .where(case.c.id.in_(wanted), case.c.status == "open")
                    .order_by(case.c.id)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            rows = _due_clocks(conn, now, limit, locked) if locked else []  # re-read under the locks
        plan = _plan_batch(rt, conn, rows, now)
        batch.stepwise = plan.stepwise
        if plan.clocks:
            fastsql.execute(conn, _BATCH_CLOCK, plan.clocks)
            fastsql.execute(conn, _BATCH_CASE, plan.cases)
            audit.record_many(conn, plan.audit)
            projection.enqueue_many(conn, plan.outbox)
        batch.fired = plan.fired
        batch.cases = sorted(plan.versions)
    rt.workflows.bumped(plan.versions)
    return batch


@dataclass(slots=True)
class _BatchPlan:
    fired: list[tuple[int, str]] = field(default_factory=list)
    stepwise: list[int] = field(default_factory=list)
    clocks: list[dict[str, object]] = field(default_factory=list)
    cases: list[dict[str, object]] = field(default_factory=list)
    audit: list[dict[str, object]] = field(default_factory=list)
    outbox: list[dict[str, object]] = field(default_factory=list)
    versions: dict[int, int] = field(default_factory=dict)  # case id -> version after the batch


def _plan_batch(rt: Runtime, conn: Connection, rows: list[sla.ClockRow], now: datetime) -> _BatchPlan:
    plan = _BatchPlan()
    stepwise: set[int] = set()
    firing: list[tuple[sla.ClockRow, list[str]]] = []
    for clock in rows:
        case_id = int(clock["case_id"])
        rungs = [
            rung
            for rung in sla.RUNGS
            if clock[_RUNG_AT[rung]] is not None
            and clock[_RUNG_AT[rung]] <= now
            and clock[sla.FIRED_COLUMN[rung]] is None
        ]
        caught = rt.specs.get(conn, int(clock["case_spec_version_id"])).caught.get(str(clock["task_spec"]))
        if clock["task_id"] and caught and any(f"sla_{rung}" in caught for rung in rungs):
            stepwise.add(case_id)
        else:
            firing.append((clock, rungs))
    plan.stepwise = sorted(stepwise)
    above: dict[str, list[orgs.UnitRow]] = {}
    urgent: dict[int, bool] = {}
    for clock, rungs in firing:
        case_id = int(clock["case_id"])
        values = dict(clock)
        status = str(clock["status"])
        for rung in rungs:
            values[sla.FIRED_COLUMN[rung]] = now
            plan.fired.append((int(clock["id"]), rung))
            plan.audit.append(
                {
                    "case_id": case_id,
                    "at": now,
                    "actor_id": "system",
                    "action": f"sla.{rung}",
                    "task_id": clock["task_id"],
                    "before": {"status": status, "due_at": sla.iso(clock["due_at"])},
                    "after": {"status": _STATUS_AFTER[rung], "message": f"sla_{rung}", "caught": False},
                }
            )
            status = _STATUS_AFTER[rung]
            payload = _rung_payload(clock, rung, str(clock["case_number"]), clock["case_title"])
            task_role = str(clock["task_role"]) if clock["task_role"] else None
            for role, target in _targets(conn, clock, rung, task_role, above):
                plan.outbox.append(
                    {
                        "created_at": now,
                        "topic": f"sla.{rung}",
                        "recipient_id": None,
                        "case_id": case_id,
                        "payload": {"role": role, "org_unit_id": target, **payload},
                        "delivered_at": None,
                        "attempts": 0,
                    }
                )
        plan.clocks.append(
            {
                "id": clock["id"],
                "status": status,
                "next_rung_at": sla.next_rung(values),
                **{rung: values[sla.FIRED_COLUMN[rung]] for rung in sla.RUNGS},
            }
        )
        urgent[case_id] = urgent.get(case_id, False) or any(r in ("supervise", "escalate") for r in rungs)
        plan.versions[case_id] = int(clock["case_version"]) + 1
    plan.cases = [{"id": case_id, "now": now, "urgent": int(flag)} for case_id, flag in urgent.items()]
    return plan


def remind(case_id: int, *, rt: Runtime, actor: str, note: str, expected_version: int | None = None) -> None:
    """催办: nudge the current handlers; logged and notified like a rung (no routing change)."""
    _by_hand(
        case_id,
        rt=rt,
        actor=actor,
        note=note,
        action="case.reminder",
        message=None,
        expected_version=expected_version,
    )


def supervise(
    case_id: int, *, rt: Runtime, actor: str, note: str, expected_version: int | None = None
) -> None:
    """督办: formal escalation by a supervisor — raises priority, notifies up the chain, and sends the
    BPMN message ``sla_supervise`` to the open tasks' boundaries (the diagram decides the rest)."""
    _by_hand(
        case_id,
        rt=rt,
        actor=actor,
        note=note,
        action="case.supervision",
        message="sla_supervise",
        expected_version=expected_version,
    )


def _by_hand(
    case_id: int,
    *,
    rt: Runtime,
    actor: str,
    note: str,
    action: str,
    message: str | None,
    expected_version: int | None,
) -> None:
    note = sla.require_reason(note)
    with step(rt, case_id, expected_version=expected_version) as current:
        clocks = sla.clocks_of_case(current.conn, case_id, "running")
        for clock in clocks:
            rung = "supervise" if message else "warning"
            if message and clock["task_id"]:
                current.instance.send_message(
                    message, {"by": actor, "note": note}, rt.clock, for_task=clock["task_id"]
                )
            _notify(current, clock, action, rung, {"by": actor, "note": note})
        if message:
            current.case_values["priority"] = "urgent"
        projection.refresh(current, actor=actor)
        audit.record(
            current.conn,
            action,
            at=current.now,
            actor_id=actor,
            case_id=case_id,
            after={"note": note, "clocks": [c["task_spec"] for c in clocks]},
        )
