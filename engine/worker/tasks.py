"""The Celery tasks: thin, ids in, one unit of work each, idempotent.

- ``gridcase.fire_due`` (beat, every ``GRIDCASE_FIRE_DUE_EVERY_S``): ``fire_due_round`` — find what is
  due in the database and publish the due case ids, a few per ``gridcase.fire_cases`` message. It fans
  out rather than firing itself so that N worker processes fire N cases at once (concurrent firing loops
  would queue up behind each other's case locks); a case published and not yet fired is not published
  again while its lease stands (``PublishLeases``).
- ``gridcase.fire_cases(case_ids)`` / ``gridcase.fire_case(case_id)``: ``fire_case_due`` per case —
  each case in its own step. A duplicate is a cheap no-op: the case row says nothing is due any more.
- ``gridcase.drain_outbox`` (beat, every ``GRIDCASE_DRAIN_EVERY_S``): ``engine.notify.drain_outbox``.

Exactly once: firing is decided under the case lock (``engine.timers.fire_case`` re-reads
``next_wake_at`` in the step), so two beats, two workers or a redelivered message never fire twice.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select, union_all

from engine import sla, timers
from engine.errors import EngineError
from engine.notify import CompositeNotifier, InAppNotifier, WebhookNotifier, drain_outbox
from engine.ports import JobPublisher, Notifier
from engine.runtime import Runtime
from engine.store.models import case, sla_clock
from engine.worker.app import celery_app, runtime
from engine.worker.publisher import CeleryPublisher, PublishLeases

log = logging.getLogger("gridcase.worker")
MAX_PER_ROUND = 20_000  # due cases published per beat tick; the rest go out on the next tick


@dataclass(slots=True)
class RoundReport:
    due: int = 0  # due cases found
    published: list[int] = field(default_factory=list)  # case ids published this round


def due_work(
    conn: Connection, now: datetime, *, case_id: int | None = None, limit: int = MAX_PER_ROUND
) -> list[tuple[int, datetime]]:
    """(case id, due instant) of open cases with something due, most overdue first; one case's own
    with ``case_id``. The one place that knows every kind of due work: BPMN timers
    (``case.next_wake_at``) and SLA rungs (``sla_clock.next_rung_at`` of running clocks)."""
    timer_due = select(case.c.id.label("case_id"), case.c.next_wake_at.label("due")).where(
        case.c.status == "open", case.c.next_wake_at.is_not(None), case.c.next_wake_at <= now
    )
    rung_due = (
        select(sla_clock.c.case_id.label("case_id"), sla_clock.c.next_rung_at.label("due"))
        .join(case, case.c.id == sla_clock.c.case_id)
        .where(case.c.status == "open", sla_clock.c.state == "running", sla_clock.c.next_rung_at <= now)
    )
    if case_id is not None:
        timer_due = timer_due.where(case.c.id == case_id)
        rung_due = rung_due.where(sla_clock.c.case_id == case_id)
    both = union_all(timer_due, rung_due).subquery()
    earliest = func.min(both.c.due)
    rows = conn.execute(
        select(both.c.case_id, earliest)
        .group_by(both.c.case_id)
        .order_by(earliest, both.c.case_id)
        .limit(limit)
    ).all()
    return [(int(r[0]), _aware(r[1])) for r in rows]


def _aware(value: datetime) -> datetime:
    """Instants out of a UNION lose the column type on SQLite: make them aware UTC again."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def fire_due_round(
    *, rt: Runtime, publisher: JobPublisher, leases: PublishLeases | None = None
) -> RoundReport:
    """What a beat tick does: publish one ``fire_case`` per case with due work (``due_work``), except
    cases published recently and still leased."""
    report = RoundReport()
    with rt.db.read() as conn:
        due = due_work(conn, rt.now())
    report.due = len(due)
    fresh = leases.take(due) if leases is not None else [case_id for case_id, _ in due]
    publisher.publish_cases(fresh)
    report.published = fresh
    return report


def fire_case_due(case_id: int, *, rt: Runtime) -> str:
    """Fire what is due on one case, each kind in its own step: ``fired``, ``idle`` (nothing due any
    more: a duplicate or late message, answered without a lock or a workflow load) or ``failed:<code>``.
    BPMN timers (``engine.timers.fire_case``), then SLA rungs (``engine.sla.fire_rungs_of_case``).

    A failing case is logged and marked an incident (as ``engine.timers.fire_due`` does), so it is not
    tried again on every tick.
    """
    with rt.db.read() as conn:
        if not due_work(conn, rt.now(), case_id=case_id):
            return "idle"
    try:
        fired = timers.fire_case(case_id, rt=rt)
        fired = bool(sla.fire_rungs_of_case(case_id, rt=rt)) or fired
        return "fired" if fired else "idle"
    except Exception as err:
        code = err.code if isinstance(err, EngineError) else "internal_error"
        log.error("timer of case %s failed: %s", case_id, err, exc_info=not isinstance(err, EngineError))
        timers.mark_incident(rt, case_id, err)
        return f"failed:{code}"


_notifier: Notifier | None = None


def notifier(rt: Runtime) -> Notifier:
    """In-app always; the webhook too when ``GRIDCASE_WEBHOOK_URL`` is set."""
    global _notifier
    if _notifier is None:
        in_app = InAppNotifier(rt.db, clock=rt.clock)
        url = os.environ.get("GRIDCASE_WEBHOOK_URL")
        _notifier = CompositeNotifier([in_app, WebhookNotifier(url)]) if url else in_app
    return _notifier


@celery_app.task(name="gridcase.fire_due", ignore_result=True)
def fire_due_task() -> int:
    rt = runtime()
    report = fire_due_round(rt=rt, publisher=CeleryPublisher(), leases=PublishLeases(rt.db.url))
    if report.due:
        log.info("%d case(s) due, %d published", report.due, len(report.published))
    return len(report.published)


@celery_app.task(name="gridcase.fire_case", ignore_result=True)
def fire_case_task(case_id: int) -> str:
    return fire_case_due(int(case_id), rt=runtime())


@celery_app.task(name="gridcase.fire_cases", ignore_result=True)
def fire_cases_task(case_ids: list[int]) -> dict[str, int]:
    rt = runtime()
    outcomes: dict[str, int] = {}
    for case_id in case_ids:
        outcome = fire_case_due(int(case_id), rt=rt)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@celery_app.task(name="gridcase.drain_outbox", ignore_result=True)
def drain_outbox_task(limit: int = 200) -> int:
    rt = runtime()
    report = drain_outbox(rt=rt, notifier=notifier(rt), limit=limit)
    return len(report.delivered)
