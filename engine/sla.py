"""SLA clocks (ARCHITECTURE §3): one clock per timed step, on the working-day calendar.

A user task with ``sla`` in its BPMN properties gets a clock when it becomes ready: the budget
(``sla="5WD"``, or the variable named by ``sla_from`` — e.g. ``sla_budget`` from the routing DMN),
``warn_at`` (a percentage), ``supervise_after`` / ``escalate_after`` (defaults 1WD / 5WD after the
deadline), each from a case variable, the task, the process or the default (``engine.sla_policy``
decides; the clock records where each value came from). The clock stops when the task closes — unless
a task created in the same step holds it (``sla_holds="<clock key>"``, e.g. the street's extension
decision holds the handler's clock), or carries the same ``sla_clock`` key. Stopping records the
working time consumed and whose unit spent it. A clock that changes units (handed to a task of another
unit, or its task reassigned — 改派, ``hand_over``) keeps its start, budget and deadline; an
``sla.handed_over`` audit event says what the previous unit spent.

Each clock carries the instants of its rungs (warning 黄 → overdue 红 → supervision 督办 → escalation)
and which have fired; firing them, and 催办 / 督办 by hand, is ``engine.escalation``'s. Suspending (挂起)
pauses every clock of a case; resuming moves every deadline by the paused working time; an approved
extension (延期) adds budget.

All instants come from one calendar (``rt.calendar``); a deadline in a year the holiday data does not
cover is computed on weekends only, marked provisional with the reason, and recomputed by
``recompute_provisional`` once an overlay for that year is loaded. Must not import flask, api or celery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update

from engine import audit, spiff
from engine.calendar import (
    DEFAULT_HOURS,
    Duration,
    DurationUnit,
    WorkCalendar,
    WorkingHours,
    parse_duration,
)
from engine.errors import Conflict, InvalidInput
from engine.runtime import Runtime, Step, step
from engine.sla_policy import (
    DEFAULT_ESCALATE_AFTER,
    DEFAULT_SUPERVISE_AFTER,
    ClockPolicy,
    policy_for,
)
from engine.store import fastsql
from engine.store.models import audit_event, sla_clock

log = logging.getLogger("gridcase.sla")

RUNGS = ("warning", "overdue", "supervise", "escalate")
FIRED_COLUMN = {
    "warning": "warning_fired_at",
    "overdue": "overdue_fired_at",
    "supervise": "supervise_fired_at",
    "escalate": "escalate_fired_at",
}


# --- deadline arithmetic --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    warn_due_at: datetime | None
    due_at: datetime
    supervise_at: datetime
    escalate_at: datetime
    calendar_version: str
    provisional: bool
    reason: str | None


def hours_of(text: object) -> WorkingHours:
    """A clock's working hours: the unit's own (recorded on the clock) or the default."""
    return WorkingHours.from_text(text) if isinstance(text, str) and text else DEFAULT_HOURS


def _seconds(
    duration: Duration, calendar: WorkCalendar, hours: WorkingHours = DEFAULT_HOURS
) -> tuple[str, int]:
    if duration.unit is DurationUnit.WORKING_DAYS:
        return "working", int(duration.working_days * hours.day_length.total_seconds())
    if duration.unit is DurationUnit.WORKING_HOURS:
        return "working", int(duration.working_time.total_seconds())
    if duration.months:
        raise InvalidInput("sla.months_unsupported", f"an SLA of {duration} is ambiguous; use days", {})
    return "calendar", int(timedelta(days=duration.days).total_seconds() + duration.clock.total_seconds())


def _after(
    calendar: WorkCalendar, start: datetime, kind: str, seconds: float, hours: WorkingHours = DEFAULT_HOURS
) -> tuple[datetime, bool, str | None]:
    if kind == "calendar":
        return start + timedelta(seconds=seconds), False, None
    minutes = int(seconds // 60)
    duration = Duration(DurationUnit.WORKING_HOURS, f"{minutes}min", working_time=timedelta(minutes=minutes))
    deadline = calendar.add(start, duration, hours=hours, provisional_ok=True)
    return deadline.due_at, deadline.provisional, deadline.reason


def paused_seconds(
    calendar: WorkCalendar,
    kind: str,
    pauses: Sequence[Mapping[str, object]],
    now: datetime,
    hours: WorkingHours = DEFAULT_HOURS,
) -> int:
    total = 0.0
    for pause in pauses:
        start = datetime.fromisoformat(str(pause["from"]))
        end = datetime.fromisoformat(str(pause["to"])) if pause.get("to") else now
        if kind == "calendar":
            total += max(0.0, (end - start).total_seconds())
        else:
            total += calendar.working_time_between(
                start, end, hours=hours, provisional_ok=True
            ).total_seconds()
    return int(total)


def schedule(
    calendar: WorkCalendar,
    *,
    started_at: datetime,
    kind: str,
    budget_seconds: int,
    warn_pct: int | None,
    paused: int,
    supervise_after: str,
    escalate_after: str,
    hours: WorkingHours = DEFAULT_HOURS,
) -> Schedule:
    """Every rung instant of a clock, from its start, budget and paused time, in the unit's hours."""
    due, provisional, reason = _after(calendar, started_at, kind, budget_seconds + paused, hours)
    warn = None
    if warn_pct:
        warn, p, r = _after(calendar, started_at, kind, budget_seconds * warn_pct / 100 + paused, hours)
        provisional, reason = provisional or p, reason or r
    supervise = calendar.add(due, supervise_after, hours=hours, provisional_ok=True)
    escalate = calendar.add(due, escalate_after, hours=hours, provisional_ok=True)
    provisional = provisional or supervise.provisional or escalate.provisional
    reason = reason or supervise.reason or escalate.reason
    return Schedule(warn, due, supervise.due_at, escalate.due_at, calendar.version, provisional, reason)


def next_rung(values: Mapping[str, object]) -> datetime | None:
    pending = [
        values[at]
        for at, fired in (
            ("warn_due_at", "warning_fired_at"),
            ("due_at", "overdue_fired_at"),
            ("supervise_at", "supervise_fired_at"),
            ("escalate_at", "escalate_fired_at"),
        )
        if values.get(at) is not None and values.get(fired) is None
    ]
    instants = [p for p in pending if isinstance(p, datetime)]
    return min(instants) if instants else None


ClockRow = dict[str, Any]  # one sla_clock row as read; only this module looks inside


def iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def as_clock(row: Row[tuple[object, ...]]) -> ClockRow:
    return {str(k): v for k, v in row._mapping.items()}


# --- clocks inside a step -------------------------------------------------------------------------


_OPEN_CLOCKS = fastsql.Statement(
    "SELECT id, task_id, clock_key, org_unit_id FROM sla_clock"
    " WHERE case_id = :case_id AND state <> 'stopped'"
)
_INSERT_CLOCK = fastsql.Statement(
    "INSERT INTO sla_clock (case_id, task_id, task_spec, clock_key, org_unit_id, budget, budget_kind,"
    " budget_seconds, warn_pct, supervise_after, escalate_after, started_at, pauses, extensions, warn_due_at,"
    " due_at, supervise_at, escalate_at, next_rung_at, state, status, calendar_version, provisional,"
    " provisional_reason, working_hours, policy_sources) VALUES (:case_id, :task_id, :task_spec,"
    " :clock_key, :org_unit_id, :budget, :budget_kind, :budget_seconds, :warn_pct, :supervise_after,"
    " :escalate_after, :started_at, :pauses, :extensions, :warn_due_at, :due_at, :supervise_at, :escalate_at,"
    " :next_rung_at, :state, :status, :calendar_version, :provisional, :provisional_reason, :working_hours,"
    " :policy_sources)",
    json=frozenset({"pauses", "extensions", "policy_sources"}),
    instants=frozenset(
        {"started_at", "warn_due_at", "due_at", "supervise_at", "escalate_at", "next_rung_at"}
    ),
)
# Stopping records when; the time consumed is derived on reading (start, stop and pauses are all
# stored), and "on time" is simply stopped_at <= due_at, since due_at already carries pauses and
# approved extensions.
_STOP_CLOCK = fastsql.Statement(
    "UPDATE sla_clock SET state = 'stopped', stopped_at = :at, next_rung_at = NULL,"
    " status = CASE WHEN due_at < :at THEN 'overdue' ELSE status END WHERE id = :id",
    instants=frozenset({"at"}),
)
_HAND_OVER = fastsql.Statement("UPDATE sla_clock SET task_id = :task_id, org_unit_id = :unit WHERE id = :id")


@dataclass(slots=True)
class OpenTask:
    task_id: str
    meta: spiff.TaskMeta
    unit: str | None
    data: Mapping[str, object] = field(default_factory=dict)


def on_tasks_changed(step: Step, *, closed: Sequence[str], created: Sequence[OpenTask]) -> None:
    """Start, hand over or stop clocks for the tasks a step closed and created (same transaction)."""
    if not closed and not created:
        return
    policies = {t.task_id: policy_for(t.meta, t.data) for t in created}
    needs_clock = any(policies.values()) or any(t.meta.properties.get("sla_holds") for t in created)
    if not needs_clock and not closed:
        return
    clocks: list[ClockRow] = (
        [
            {"id": r[0], "task_id": r[1], "clock_key": r[2], "org_unit_id": r[3]}
            for r in fastsql.fetch(step.conn, _OPEN_CLOCKS, {"case_id": step.case_id})
        ]
        if closed
        else []
    )
    inherited: dict[str, set[str]] = {}  # task id -> clock keys handed to it in this step
    for clock in clocks:
        if clock["task_id"] not in closed:
            continue
        key = str(clock["clock_key"])
        heir = next(
            (
                t
                for t in created
                if key not in inherited.get(t.task_id, set())
                and key in (t.meta.properties.get("sla_holds"), _key(policies.get(t.task_id)))
            ),
            None,
        )
        if heir is not None:
            inherited.setdefault(heir.task_id, set()).add(key)
            if heir.unit != clock["org_unit_id"]:
                _record_hand_over(step, int(clock["id"]), to_unit=heir.unit, actor=None, reason=None)
            fastsql.execute(
                step.conn, _HAND_OVER, {"id": clock["id"], "task_id": heir.task_id, "unit": heir.unit}
            )
            continue
        fastsql.execute(step.conn, _STOP_CLOCK, {"id": clock["id"], "at": step.now})
    for task in created:
        policy = policies.get(task.task_id)
        if policy is not None and policy.clock_key not in inherited.get(task.task_id, set()):
            _start_clock(step, task, policy)


def hand_over(
    current: Step, *, task_id: str, to_unit: str, actor: str, reason: str
) -> list[dict[str, object]]:
    """改派: the open clocks of task ``task_id`` measure ``to_unit``'s time from now on.

    The clock goes on — same start, budget, pauses, extensions and deadline (a reassignment does not
    restart the case's time limit, nor count in the new unit's hours): only ``org_unit_id``, whose time
    is being spent, changes. Each hand-over is an ``sla.handed_over`` audit event saying how much of
    the clock the previous unit spent. Returns one summary per clock handed over."""
    rows = current.conn.execute(
        select(sla_clock.c.id).where(
            sla_clock.c.case_id == current.case_id,
            sla_clock.c.task_id == task_id,
            sla_clock.c.state != "stopped",
            sla_clock.c.org_unit_id.is_distinct_from(to_unit),
        )
    ).all()
    moved = [_record_hand_over(current, int(r.id), to_unit=to_unit, actor=actor, reason=reason) for r in rows]
    for summary in moved:
        current.conn.execute(
            update(sla_clock).where(sla_clock.c.id == summary["clock_id"]).values(org_unit_id=to_unit)
        )
    return moved


def _record_hand_over(
    step: Step, clock_id: int, *, to_unit: str | None, actor: str | None, reason: str | None
) -> dict[str, object]:
    """Audit one clock changing hands: its time so far, and the part the previous unit spent (the time
    since the clock's last hand-over, or since it started)."""
    m = as_clock(step.conn.execute(select(sla_clock).where(sla_clock.c.id == clock_id)).one())
    consumed = consumed_seconds(step.rt.calendar, m, step.now)
    before = hand_overs(step.conn, step.case_id).get(clock_id)
    earlier = before[-1].consumed_seconds if before else 0
    summary: dict[str, object] = {
        "clock_id": clock_id,
        "clock_key": m["clock_key"],
        "from_unit": m["org_unit_id"],
        "to_unit": to_unit,
        "consumed_seconds": consumed,
        "spent_seconds": max(0, consumed - earlier),
    }
    audit.record(
        step.conn,
        "sla.handed_over",
        at=step.now,
        actor_id=actor or "system",
        case_id=step.case_id,
        task_id=m["task_id"],
        before={"org_unit_id": m["org_unit_id"], "spent_seconds": summary["spent_seconds"]},
        after={**summary, "org_unit_id": to_unit, **({"reason": reason} if reason else {})},
    )
    return summary


@dataclass(frozen=True, slots=True)
class HandOver:
    """The clock changed hands (改派, or an extension request going up and its answer coming back):
    ``from_unit`` had spent ``spent_seconds`` of working time on it since the last change, of
    ``consumed_seconds`` on the clock in all."""

    at: datetime
    from_unit: str | None
    to_unit: str | None
    spent_seconds: int
    consumed_seconds: int
    actor: str | None
    reason: str | None


def hand_overs(conn: Connection, case_id: int) -> dict[int, list[HandOver]]:
    """The case's ``sla.handed_over`` audit events, by clock id, oldest first."""
    found: dict[int, list[HandOver]] = {}
    for at, actor, after in conn.execute(
        select(audit_event.c.at, audit_event.c.actor_id, audit_event.c.after)
        .where(audit_event.c.case_id == case_id, audit_event.c.action == "sla.handed_over")
        .order_by(audit_event.c.id)
    ):
        if not isinstance(after, dict) or not isinstance(after.get("clock_id"), int):
            continue
        found.setdefault(after["clock_id"], []).append(
            HandOver(
                at=at,
                from_unit=_text(after.get("from_unit")),
                to_unit=_text(after.get("to_unit")),
                spent_seconds=int(after.get("spent_seconds") or 0),
                consumed_seconds=int(after.get("consumed_seconds") or 0),
                actor=actor,
                reason=_text(after.get("reason")),
            )
        )
    return found


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _key(policy: ClockPolicy | None) -> str | None:
    return policy.clock_key if policy else None


def _start_clock(step: Step, task: OpenTask, policy: ClockPolicy) -> None:
    calendar = step.rt.calendar
    hours_text = step.rt.org_lookups.working_hours_of(step.conn, step.org_revision, task.unit)
    hours = hours_of(hours_text)
    kind, seconds = _seconds(parse_duration(policy.budget), calendar, hours)
    plan = schedule(
        calendar,
        started_at=step.now,
        kind=kind,
        budget_seconds=seconds,
        warn_pct=policy.warn_pct,
        paused=0,
        supervise_after=policy.supervise_after,
        escalate_after=policy.escalate_after,
        hours=hours,
    )
    values: ClockRow = {
        "working_hours": hours_text,
        "case_id": step.case_id,
        "task_id": task.task_id,
        "task_spec": task.meta.bpmn_id,
        "clock_key": policy.clock_key,
        "org_unit_id": task.unit,
        "budget": policy.budget,
        "budget_kind": kind,
        "budget_seconds": seconds,
        "warn_pct": policy.warn_pct,
        "supervise_after": policy.supervise_after,
        "escalate_after": policy.escalate_after,
        "started_at": step.now,
        "pauses": [],
        "extensions": [],
        "warn_due_at": plan.warn_due_at,
        "due_at": plan.due_at,
        "supervise_at": plan.supervise_at,
        "escalate_at": plan.escalate_at,
        "state": "running",
        "status": "on_time",
        "calendar_version": plan.calendar_version,
        "provisional": plan.provisional,
        "provisional_reason": plan.reason,
        "policy_sources": dict(policy.sources),
    }
    values["next_rung_at"] = next_rung(values)
    fastsql.execute(step.conn, _INSERT_CLOCK, values)
    step.wake(values["next_rung_at"])


def consumed_seconds(calendar: WorkCalendar, clock: Mapping[str, object], now: datetime) -> int:
    """Budget time used so far: working (or calendar) time since the start, less the pauses."""
    start = clock["started_at"]
    assert isinstance(start, datetime)
    end = clock.get("stopped_at") or now
    assert isinstance(end, datetime)
    pauses = clock.get("pauses") or []
    assert isinstance(pauses, list)
    hours = hours_of(clock.get("working_hours"))
    if clock["budget_kind"] == "calendar":
        spent = (end - start).total_seconds()
    else:
        spent = calendar.working_time_between(start, end, hours=hours, provisional_ok=True).total_seconds()
    return max(0, int(spent) - paused_seconds(calendar, str(clock["budget_kind"]), pauses, end, hours))


# --- suspend, resume, extend ---------------------------------------------------


def clocks_of_case(conn: Connection, case_id: int, state: str) -> list[ClockRow]:
    return [
        as_clock(r)
        for r in conn.execute(
            select(sla_clock).where(sla_clock.c.case_id == case_id, sla_clock.c.state == state)
        )
    ]


def suspend_case(
    case_id: int, *, rt: Runtime, actor: str, reason: str, expected_version: int | None = None
) -> int:
    """挂起: stop every running clock of the case (ledger entry with reason and actor); returns how many."""
    reason = require_reason(reason)
    with step(rt, case_id, expected_version=expected_version) as current:
        clocks = clocks_of_case(current.conn, case_id, "running")
        for clock in clocks:
            pauses = [
                *clock["pauses"],
                {"from": current.now.isoformat(), "to": None, "reason": reason, "actor": actor},
            ]
            current.conn.execute(
                update(sla_clock)
                .where(sla_clock.c.id == clock["id"])
                .values(state="paused", pauses=pauses, next_rung_at=None)
            )
        current.case_values["status"] = "suspended"
        audit.record(
            current.conn,
            "case.suspended",
            at=current.now,
            actor_id=actor,
            case_id=case_id,
            after={"reason": reason, "clocks": len(clocks)},
        )
    return len(clocks)


def resume_case(case_id: int, *, rt: Runtime, actor: str, expected_version: int | None = None) -> int:
    """Restart the paused clocks; every deadline moves by the working time the case was suspended."""
    with step(rt, case_id, expected_version=expected_version, statuses=frozenset({"suspended"})) as current:
        clocks = clocks_of_case(current.conn, case_id, "paused")
        for clock in clocks:
            pauses = [
                {**p, "to": current.now.isoformat()} if p.get("to") is None else p for p in clock["pauses"]
            ]
            _reschedule(current, clock, pauses=pauses, extensions=clock["extensions"], state="running")
        current.case_values["status"] = "open"
        audit.record(
            current.conn,
            "case.resumed",
            at=current.now,
            actor_id=actor,
            case_id=case_id,
            after={"clocks": len(clocks)},
        )
    return len(clocks)


def extend_clock(
    case_id: int,
    *,
    rt: Runtime,
    actor: str,
    clock_key: str,
    added: str,
    reason: str,
    expected_version: int | None = None,
) -> datetime:
    """延期 approved: add ``added`` (e.g. "3WD") to the open clock ``clock_key``; returns the new deadline.

    The budget grows only on approval, and all extensions together may not exceed the original budget.
    """
    reason = require_reason(reason)
    with step(rt, case_id, expected_version=expected_version) as current:
        due = apply_extension(current, clock_key=clock_key, added=added, reason=reason, actor=actor)
    return due


def apply_extension(
    current: Step, *, clock_key: str, added: str, reason: str, actor: str, held_by: str | None = None
) -> datetime:
    """Extend the open clock ``clock_key`` (the one held by task ``held_by`` when several run at once)."""
    conn = current.conn
    query = select(sla_clock).where(
        sla_clock.c.case_id == current.case_id,
        sla_clock.c.clock_key == clock_key,
        sla_clock.c.state != "stopped",
    )
    if held_by is not None:
        query = query.where(sla_clock.c.task_id == held_by)
    clock = conn.execute(query.order_by(sla_clock.c.id)).first()
    if clock is None:
        raise Conflict(
            "sla.no_open_clock", f"no running clock '{clock_key}' to extend", {"clock_key": clock_key}
        )
    m = as_clock(clock)
    hours = hours_of(m.get("working_hours"))
    kind, seconds = _seconds(parse_duration(added), current.rt.calendar, hours)
    if kind != m["budget_kind"]:
        raise InvalidInput("sla.extension_unit", f"extend a {m['budget_kind']} budget with the same unit", {})
    original = _seconds(parse_duration(str(m["budget"])), current.rt.calendar, hours)[1]
    granted = sum(int(e["seconds"]) for e in m["extensions"])
    if granted + seconds > original:
        raise InvalidInput(
            "sla.extension_cap",
            f"extensions may add at most the original budget ({m['budget']}) in total",
            {"fields": {"extension": "exceeds the cap"}},
        )
    extensions = [
        *m["extensions"],
        {"added": added, "seconds": seconds, "by": actor, "at": current.now.isoformat(), "reason": reason},
    ]
    plan = _reschedule(current, m, pauses=m["pauses"], extensions=extensions, state=str(m["state"]))
    audit.record(
        conn,
        "sla.extended",
        at=current.now,
        actor_id=actor,
        case_id=current.case_id,
        task_id=m["task_id"],
        before={"due_at": iso(m["due_at"])},
        after={"due_at": iso(plan.due_at), "added": added, "reason": reason},
    )
    return plan.due_at


def _reschedule(
    current: Step,
    clock: Mapping[str, object],
    *,
    pauses: list[ClockRow],
    extensions: list[ClockRow],
    state: str,
) -> Schedule:
    calendar = current.rt.calendar
    hours = hours_of(clock.get("working_hours"))
    kind = str(clock["budget_kind"])
    original = _seconds(parse_duration(str(clock["budget"])), calendar, hours)[1]
    budget = original + sum(int(str(e["seconds"])) for e in extensions)
    started = clock["started_at"]
    assert isinstance(started, datetime)
    plan = schedule(
        calendar,
        started_at=started,
        kind=kind,
        budget_seconds=budget,
        warn_pct=clock["warn_pct"] if isinstance(clock["warn_pct"], int) else None,
        paused=paused_seconds(calendar, kind, pauses, current.now, hours),
        supervise_after=str(clock["supervise_after"] or DEFAULT_SUPERVISE_AFTER),
        escalate_after=str(clock["escalate_after"] or DEFAULT_ESCALATE_AFTER),
        hours=hours,
    )
    values: ClockRow = {
        "pauses": pauses,
        "extensions": extensions,
        "budget_seconds": budget,
        "warn_due_at": plan.warn_due_at,
        "due_at": plan.due_at,
        "supervise_at": plan.supervise_at,
        "escalate_at": plan.escalate_at,
        "calendar_version": plan.calendar_version,
        "provisional": plan.provisional,
        "provisional_reason": plan.reason,
        "state": state,
    }
    fired = {col: clock[col] for col in FIRED_COLUMN.values()}
    # A later deadline un-fires nothing that already fired; rungs not yet fired move with it.
    values["next_rung_at"] = next_rung({**values, **fired}) if state == "running" else None
    current.wake(values["next_rung_at"])
    if clock["overdue_fired_at"] is None:
        values["status"] = "warning" if clock["warning_fired_at"] is not None else "on_time"
    current.conn.execute(update(sla_clock).where(sla_clock.c.id == clock["id"]).values(**values))
    return plan


def require_reason(text: str) -> str:
    text = (text or "").strip()
    if not text or len(text) > 500:
        raise InvalidInput(
            "sla.reason_required", "give a reason of 1 to 500 characters", {"fields": {"reason": "required"}}
        )
    return text


def recompute_provisional(*, rt: Runtime) -> int:
    """Recompute provisional deadlines that the calendar now covers (after an overlay is loaded)."""
    rt.calendar.reload()
    with rt.db.read() as conn:
        case_ids = sorted(
            {
                int(r[0])
                for r in conn.execute(
                    select(sla_clock.c.case_id).where(
                        sla_clock.c.provisional.is_(True), sla_clock.c.state != "stopped"
                    )
                )
            }
        )
    changed = 0
    for case_id in case_ids:
        with step(rt, case_id, statuses=frozenset({"open", "suspended"})) as current:
            for clock in current.conn.execute(
                select(sla_clock).where(sla_clock.c.case_id == case_id, sla_clock.c.provisional.is_(True))
            ):
                m = as_clock(clock)
                plan = _reschedule(
                    current,
                    m,
                    pauses=list(m["pauses"]),
                    extensions=list(m["extensions"]),
                    state=str(m["state"]),
                )
                changed += not plan.provisional
                audit.record(
                    current.conn,
                    "sla.recomputed",
                    at=current.now,
                    actor_id="system",
                    case_id=case_id,
                    task_id=m["task_id"],
                    before={"due_at": iso(m["due_at"])},
                    after={"due_at": iso(plan.due_at), "provisional": plan.provisional},
                )
    return changed
