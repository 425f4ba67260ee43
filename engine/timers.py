"""BPMN timers: fire what is due. Each due case is handled in its own step (own transaction, row lock),
so one failing case is logged, marked as an incident and skipped while the others go on.

Due cases are found through the indexed ``case.next_wake_at`` column; the step re-reads the row under
its lock, so firing twice (two schedulers, a retry) finds nothing left to do the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select, update

from engine import audit
from engine.errors import EngineError
from engine.projection import refresh
from engine.runtime import Runtime, step
from engine.store.models import case, sla_clock

log = logging.getLogger("gridcase.timers")
BATCH = 500


@dataclass(slots=True)
class FireReport:
    fired: list[int] = field(default_factory=list)  # case ids whose timers fired
    failed: dict[int, str] = field(default_factory=dict)  # case id -> error code
    rungs: int = 0  # SLA rungs fired


def due_cases(rt: Runtime, now: datetime, *, limit: int = BATCH) -> list[int]:
    with rt.db.read() as conn:
        rows = conn.execute(
            select(case.c.id)
            .where(case.c.status == "open", case.c.next_wake_at.is_not(None), case.c.next_wake_at <= now)
            .order_by(case.c.next_wake_at)
            .limit(limit)
        ).all()
    return [int(r[0]) for r in rows]


def due_cases_among(conn: Connection, now: datetime, case_ids: Sequence[int]) -> list[int]:
    """Those of ``case_ids`` whose next BPMN timer has come."""
    rows = conn.execute(
        select(case.c.id).where(
            case.c.id.in_(list(case_ids)),
            case.c.status == "open",
            case.c.next_wake_at.is_not(None),
            case.c.next_wake_at <= now,
        )
    ).all()
    return [int(r[0]) for r in rows]


def next_wake_at(rt: Runtime) -> datetime | None:
    """The earliest instant anything is due: a BPMN timer or an SLA rung."""
    with rt.db.read() as conn:
        timer_due = conn.execute(
            select(case.c.next_wake_at)
            .where(case.c.status == "open", case.c.next_wake_at.is_not(None))
            .order_by(case.c.next_wake_at)
            .limit(1)
        ).scalar()
        rung_due = conn.execute(
            select(sla_clock.c.next_rung_at)
            .where(sla_clock.c.state == "running", sla_clock.c.next_rung_at.is_not(None))
            .order_by(sla_clock.c.next_rung_at)
            .limit(1)
        ).scalar()
    found = [d for d in (timer_due, rung_due) if d is not None]
    return min(found) if found else None


def fire_case(case_id: int, *, rt: Runtime) -> bool:
    """Fire the due timers of one case; False when nothing was due any more (already fired)."""
    with step(rt, case_id) as current:
        due = current.case.next_wake_at
        if due is None or due > current.now:
            return False
        before = sorted(t.task_spec for t in current.instance.waiting_timers())
        current.instance.refresh_timers(rt.clock)
        change = refresh(current, actor="system")
        audit.record(
            current.conn,
            "timer.fired",
            at=current.now,
            actor_id="system",
            case_id=case_id,
            before={"waiting": before, "due_at": due.isoformat()},
            after={"created": change.created, "closed": change.closed},
        )
    return True


def fire_due(*, rt: Runtime, limit: int = BATCH) -> FireReport:
    """Fire everything that has come: BPMN timers case by case, then SLA rungs (engine.sla)."""
    report = fire_due_timers(rt=rt, limit=limit)
    from engine.escalation import fire_due_rungs

    rungs = fire_due_rungs(rt=rt, limit=limit)
    report.rungs = len(rungs.fired)
    report.failed.update(rungs.failed)
    return report


def fire_due_timers(*, rt: Runtime, limit: int = BATCH) -> FireReport:
    """Fire every case whose next BPMN timer has come; log and continue past a failing case."""
    report = FireReport()
    for case_id in due_cases(rt, rt.now(), limit=limit):
        try:
            if fire_case(case_id, rt=rt):
                report.fired.append(case_id)
        except EngineError as err:
            log.error("timer of case %s failed: %s", case_id, err)
            report.failed[case_id] = err.code
            mark_incident(rt, case_id, err)
        except Exception as err:  # a bug must not stop the other cases
            log.exception("timer of case %s failed unexpectedly", case_id)
            report.failed[case_id] = "internal_error"
            mark_incident(rt, case_id, err)
    return report


def mark_incident(rt: Runtime, case_id: int, err: Exception) -> None:
    """Mark a case whose due work failed an incident (supervisors see it; firing skips it from now on) —
    unless the database was only busy: then the next round simply tries again."""
    if isinstance(err, EngineError) and err.code == "store.busy":
        return
    code = err.code if isinstance(err, EngineError) else "internal_error"
    with rt.db.write() as conn:
        conn.execute(update(case).where(case.c.id == case_id).values(status="incident", updated_at=rt.now()))
        audit.record(
            conn,
            "case.incident",
            at=rt.now(),
            actor_id="system",
            case_id=case_id,
            after={"code": code, "message": str(err)[:500]},
        )
