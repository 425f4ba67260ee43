"""The Celery tasks: thin, ids in, one unit of work each, idempotent.

- ``gridcase.fire_due`` (beat, every ``GRIDCASE_FIRE_DUE_EVERY_S``): ``fire_due_round`` — find what is
  due in the database and publish the due case ids, a few per ``gridcase.fire_cases`` message. It fans
  out rather than firing itself so that N worker processes fire N cases at once (concurrent firing loops
  would queue up behind each other's case locks); a case published and not yet fired is not published
  again while its lease stands (``PublishLeases``).
- ``gridcase.fire_cases(case_ids)`` / ``gridcase.fire_case(case_id)``: ``fire_cases_due`` — the SLA
  rungs no boundary catches set-based in one transaction, everything else each case in its own step.
  A duplicate is a cheap no-op: the rows say nothing is due any more.
- ``gridcase.drain_outbox`` (beat, every ``GRIDCASE_DRAIN_EVERY_S``): ``engine.notify.drain_outbox``.

Exactly once: firing is decided under the case lock (``engine.timers.fire_case`` re-reads
``next_wake_at`` in the step), so two beats, two workers or a redelivered message never fire twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select, union_all

from engine import escalation, timers
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
    conn: Connection,
    now: datetime,
    *,
    case_ids: Sequence[int] | None = None,
    limit: int = MAX_PER_ROUND,
) -> list[tuple[int, datetime]]:
    """(case id, due instant) of open cases with something due, most overdue first; only these cases'
    with ``case_ids``. The one place that knows every kind of due work: BPMN timers
    (``case.next_wake_at``) and SLA rungs (``sla_clock.next_rung_at`` of running clocks)."""
    timer_due = select(case.c.id.label("case_id"), case.c.next_wake_at.label("due")).where(
        case.c.status == "open", case.c.next_wake_at.is_not(None), case.c.next_wake_at <= now
    )
    rung_due = (
        select(sla_clock.c.case_id.label("case_id"), sla_clock.c.next_rung_at.label("due"))
        .join(case, case.c.id == sla_clock.c.case_id)
        .where(case.c.status == "open", sla_clock.c.state == "running", sla_clock.c.next_rung_at <= now)
    )
    if case_ids is not None:
        timer_due = timer_due.where(case.c.id.in_(list(case_ids)))
        rung_due = rung_due.where(sla_clock.c.case_id.in_(list(case_ids)))
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
    """Fire what is due on one case: ``fired``, ``idle`` (nothing due any more: a duplicate or late
    message, answered without loading the workflow) or ``failed:<code>``."""
    return fire_cases_due([case_id], rt=rt)[case_id]


def fire_cases_due(case_ids: Sequence[int], *, rt: Runtime) -> dict[int, str]:
    """Fire what is due on these cases (one ``gridcase.fire_cases`` message): their SLA rungs first, the
    ones no boundary catches set-based in one transaction, the others each in its case's own step
    (``engine.escalation.fire_due_rungs``); then each case's due BPMN timers in its own step
    (``engine.timers.fire_case``). An outcome for every case asked about.

    A failing case is logged and marked an incident (as ``engine.timers.fire_due`` does), so it is not
    tried again on every tick.
    """
    asked = sorted(set(case_ids))
    outcomes: dict[int, str] = {}
    rungs = escalation.fire_due_rungs(rt=rt, case_ids=asked)  # nothing due: one indexed read
    for case_id in rungs.cases:
        outcomes[case_id] = "fired"
    for case_id, code in rungs.failed.items():
        outcomes[case_id] = f"failed:{code}"
    with rt.db.read() as conn:
        timer_due = [cid for cid in timers.due_cases_among(conn, rt.now(), asked) if cid not in rungs.failed]
    for case_id in timer_due:
        try:
            if timers.fire_case(case_id, rt=rt):
                outcomes[case_id] = "fired"
        except Exception as err:
            code = err.code if isinstance(err, EngineError) else "internal_error"
            log.error("timer of case %s failed: %s", case_id, err, exc_info=not isinstance(err, EngineError))
            timers.mark_incident(rt, case_id, err)
            outcomes[case_id] = f"failed:{code}"
    return {cid: outcomes.get(cid, "idle") for cid in case_ids}


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
    outcomes: dict[str, int] = {}
    for outcome in fire_cases_due([int(c) for c in case_ids], rt=runtime()).values():
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@celery_app.task(name="gridcase.drain_outbox", ignore_result=True)
def drain_outbox_task(limit: int = 200) -> int:
    rt = runtime()
    report = drain_outbox(rt=rt, notifier=notifier(rt), limit=limit)
    return len(report.delivered)
