"""Notifications: the outbox drain, zh-CN rendering, and the in-app and webhook notifiers.

Owns the ``notification`` table (in-app messages) and the delivery bookkeeping of ``outbox`` rows
(``delivered_at``, ``attempts``); steps write the outbox rows, in their own transaction (projection,
SLA rungs). Must not import celery, flask or api: the Celery worker and the embedded scheduler both call
``drain_outbox`` with a ``Notifier`` (``engine.ports``).

Drain. ``drain_outbox`` takes up to ``limit`` undelivered rows, oldest first, resolves each row's
recipients (an explicit ``recipient_id``; else ``payload.recipient_ids``; else every active holder of
``payload.role`` in ``payload.org_unit_id``), renders one ``Notification`` per recipient and hands them
to the notifier. A row is done (``delivered_at``) when every recipient got it. A failure counts an
attempt, keeps the last error in ``payload._delivery``, and the row is tried again next round; after
``MAX_ATTEMPTS`` it is given up (left undelivered with ``_delivery.gave_up``, one error log line, no
audit event). A row with nobody to tell is closed with a warning.

Concurrency. PostgreSQL: rows are claimed with ``FOR UPDATE SKIP LOCKED`` and stay locked while they are
delivered, so concurrent drainers (several workers) never take the same row. SQLite has a single
writer: rows are read, delivered outside any write transaction (an in-app delivery writes too), then
marked; drains in one process are serialised by a lock. Delivery is at-least-once in both cases (a crash
after delivering, before marking, delivers again): a notification's ``id`` is stable per (outbox row,
recipient), the in-app store ignores an id it already has, and webhook receivers can do the same.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine import orgs
from engine.clock import SHANGHAI, Clock, SystemClock
from engine.ports import Notification, Notifier
from engine.runtime import Runtime
from engine.store.db import Database
from engine.store.models import case, notification, outbox

log = logging.getLogger("gridcase.notify")
MAX_ATTEMPTS = 5
DELIVERY_KEY = "_delivery"  # payload key of the delivery bookkeeping (last error, given up)


@dataclass(slots=True)
class DrainReport:
    delivered: list[int] = field(default_factory=list)  # outbox ids now delivered
    notifications: int = 0  # notifications handed to the notifier successfully
    failed: dict[int, str] = field(default_factory=dict)  # outbox id -> error, to be retried
    gave_up: list[int] = field(default_factory=list)  # outbox ids given up this round
    nobody: list[int] = field(default_factory=list)  # outbox ids closed with no recipient


# --- rendering -------------------------------------------------------------------------------------

_TEMPLATES: dict[str, tuple[str, str]] = {
    "task.created": ("新任务：{task_name}", "案件{case}有新任务「{task_name}」待您办理。"),
    "sla.warning": ("临期提醒：{task_name}", "案件{case}的「{task_name}」将于 {due_at} 到期，请抓紧办理。"),
    "sla.overdue": ("已超期：{task_name}", "案件{case}的「{task_name}」已于 {due_at} 超期，请尽快办理。"),
    "sla.supervise": (
        "督办：{task_name}",
        "案件{case}的「{task_name}」超期未办（期限 {due_at}），已列入督办，请立即处理并反馈。",
    ),
    "sla.escalate": (
        "超期升级：{task_name}",
        "案件{case}的「{task_name}」超期未办（期限 {due_at}），已升级至上级处理。",
    ),
    "task.reassigned": ("改派任务：{task_name}", "案件{case}的「{task_name}」已改派给您{by}，请及时办理。"),
    "task.withdrawn": (
        "任务已改派：{task_name}",
        "案件{case}的「{task_name}」已改派他人{by}，您无需再办理。",
    ),
    "case.reminder": ("催办：{case_number}", "案件{case}被催办{by}{note}，请尽快办理。"),
    "case.supervision": ("督办：{case_number}", "案件{case}已被督办{by}{note}，请立即处理并反馈。"),
}
_FALLBACK = ("案件通知：{case_number}", "案件{case}有新动态（{topic}）。")


@dataclass(frozen=True, slots=True)
class CaseLabel:
    number: str
    title: str


def render(topic: str, payload: Mapping[str, object], label: CaseLabel | None) -> tuple[str, str]:
    """The zh-CN title and body of a notification on ``topic``."""
    number = (label.number if label else "") or str(payload.get("case_number") or "")
    title = label.title if label else ""
    fields = {
        "topic": topic,
        "task_name": str(payload.get("task_name") or payload.get("name") or "（未命名任务）"),
        "due_at": _local(payload.get("due_at")),
        "case_number": number or "（无编号）",
        "case": f" {number}「{title}」" if number and title else (f" {number}" if number else ""),
        "by": f"（{payload['by']}）" if payload.get("by") else "",
        "note": f"：{payload['note']}" if payload.get("note") else "",
    }
    title_t, body_t = _TEMPLATES.get(topic, _FALLBACK)
    return title_t.format_map(fields)[:200], body_t.format_map(fields)


def _local(value: object) -> str:
    """An ISO instant as Beijing time to the minute; anything else as given."""
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, str) and value:
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        return "（未定）"
    if instant.tzinfo is None:
        return instant.strftime("%Y-%m-%d %H:%M")
    return instant.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


# --- the drain -------------------------------------------------------------------------------------

_PENDING = and_(outbox.c.delivered_at.is_(None), outbox.c.attempts < MAX_ATTEMPTS)
_SQLITE_DRAINS: dict[str, threading.Lock] = {}
_SQLITE_DRAINS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Planned:
    row: Row[Any]
    notifications: list[Notification]


@dataclass(frozen=True, slots=True)
class _Outcome:
    row: Row[Any]
    sent: int
    error: str | None


def drain_outbox(*, rt: Runtime, notifier: Notifier, limit: int = 200) -> DrainReport:
    """Deliver up to ``limit`` undelivered outbox rows through ``notifier``; safe to call again."""
    report = DrainReport()
    if rt.db.dialect == "postgresql":
        with rt.db.write() as conn:
            rows = conn.execute(_claim(limit).with_for_update(skip_locked=True)).all()
            plans = _plan(conn, rows)
            _record(conn, [_deliver(p, notifier) for p in plans], rt.now(), report)
        return report
    with _sqlite_drain(rt.db.url):
        with rt.db.read() as conn:
            plans = _plan(conn, conn.execute(_claim(limit)).all())
        if not plans:
            return report
        outcomes = [_deliver(p, notifier) for p in plans]
        with rt.db.write() as conn:
            _record(conn, outcomes, rt.now(), report)
    return report


def _claim(limit: int) -> Any:
    return select(outbox).where(_PENDING).order_by(outbox.c.id).limit(limit)


@contextmanager
def _sqlite_drain(url: str) -> Iterator[None]:
    with _SQLITE_DRAINS_LOCK:
        lock = _SQLITE_DRAINS.setdefault(url, threading.Lock())
    with lock:
        yield


def _plan(conn: Connection, rows: Sequence[Row[Any]]) -> list[_Planned]:
    case_ids = {int(r.case_id) for r in rows if r.case_id is not None}
    labels = {
        int(r.id): CaseLabel(r.number, r.title)
        for r in conn.execute(select(case.c.id, case.c.number, case.c.title).where(case.c.id.in_(case_ids)))
    }
    holders: dict[tuple[str, str], list[str]] = {}
    plans = []
    for row in rows:
        payload = {k: v for k, v in dict(row.payload or {}).items() if k != DELIVERY_KEY}
        label = labels.get(int(row.case_id)) if row.case_id is not None else None
        title, body = render(row.topic, payload, label)
        plans.append(
            _Planned(
                row,
                [
                    Notification(f"{row.id}:{person}", row.topic, person, row.case_id, title, body, payload)
                    for person in recipients(conn, row.recipient_id, payload, holders)
                ],
            )
        )
    return plans


def recipients(
    conn: Connection,
    recipient_id: str | None,
    payload: Mapping[str, object],
    cache: dict[tuple[str, str], list[str]] | None = None,
) -> list[str]:
    """Who an outbox row is for: its ``recipient_id``, else ``payload.recipient_ids``, else the active
    holders of ``payload.role`` in ``payload.org_unit_id`` (exactly that unit)."""
    if recipient_id:
        return [recipient_id]
    listed = payload.get("recipient_ids")
    if isinstance(listed, list):
        return sorted({str(p) for p in listed if p})
    role, unit = payload.get("role"), payload.get("org_unit_id")
    if not (isinstance(role, str) and role and isinstance(unit, str) and unit):
        return []
    key = (role, unit)
    if cache is None:
        return orgs.candidates(conn, role=role, org_unit_id=unit)
    if key not in cache:
        cache[key] = orgs.candidates(conn, role=role, org_unit_id=unit)
    return cache[key]


def _deliver(plan: _Planned, notifier: Notifier) -> _Outcome:
    sent = 0
    for item in plan.notifications:
        try:
            notifier.deliver(item)
        except Exception as err:  # any failure of an adapter is retried, never fatal to the round
            return _Outcome(plan.row, sent, f"{type(err).__name__}: {err}"[:500])
        sent += 1
    return _Outcome(plan.row, sent, None)


def _record(conn: Connection, outcomes: list[_Outcome], now: datetime, report: DrainReport) -> None:
    for outcome in outcomes:
        row = outcome.row
        report.notifications += outcome.sent
        attempts = int(row.attempts or 0) + 1
        guard = and_(outbox.c.id == row.id, outbox.c.delivered_at.is_(None))
        if outcome.error is None:
            conn.execute(update(outbox).where(guard).values(delivered_at=now, attempts=attempts))
            report.delivered.append(int(row.id))
            if outcome.sent == 0:
                report.nobody.append(int(row.id))
                log.warning("outbox %s (%s): nobody to notify; closed", row.id, row.topic)
            continue
        gave_up = attempts >= MAX_ATTEMPTS
        bookkeeping = {"error": outcome.error, "attempts": attempts, "at": now.isoformat()}
        bookkeeping["gave_up"] = gave_up
        payload = {**dict(row.payload or {}), DELIVERY_KEY: bookkeeping}
        conn.execute(update(outbox).where(guard).values(attempts=attempts, payload=payload))
        if gave_up:
            report.gave_up.append(int(row.id))
            log.error(
                "outbox %s (%s, case %s) given up after %d attempts: %s",
                row.id,
                row.topic,
                row.case_id,
                attempts,
                outcome.error,
            )
        else:
            report.failed[int(row.id)] = outcome.error
            log.warning("outbox %s (%s) attempt %d failed: %s", row.id, row.topic, attempts, outcome.error)


# --- notifiers -------------------------------------------------------------------------------------


class InAppNotifier:
    """Stores each notification in the ``notification`` table (the bell in the web UI). Delivering the
    same id twice keeps one row."""

    def __init__(self, db: Database, *, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or SystemClock()

    def deliver(self, notification: Notification) -> None:
        with self.db.write() as conn:
            store_in_app(conn, notification, now=self.clock.now())


def store_in_app(conn: Connection, item: Notification, *, now: datetime) -> bool:
    """Insert one in-app notification unless its id is there already; True when inserted."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(notification)
        .values(
            id=item.id,
            person_id=item.recipient_id,
            case_id=item.case_id,
            topic=item.topic,
            title=item.title_zh[:200],
            body=item.body_zh,
            created_at=now,
            read_at=None,
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    return bool(conn.execute(statement).rowcount)


@dataclass(frozen=True, slots=True)
class InAppMessage:
    id: str
    case_id: int | None
    topic: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None


def list_notifications(
    conn: Connection, person_id: str, *, unread_only: bool = False, limit: int = 100
) -> list[InAppMessage]:
    """A person's in-app notifications, newest first."""
    query = select(
        notification.c.id,
        notification.c.case_id,
        notification.c.topic,
        notification.c.title,
        notification.c.body,
        notification.c.created_at,
        notification.c.read_at,
    ).where(notification.c.person_id == person_id)
    if unread_only:
        query = query.where(notification.c.read_at.is_(None))
    newest_first = (notification.c.created_at.desc(), notification.c.id.desc())
    rows = conn.execute(query.order_by(*newest_first).limit(limit))
    return [InAppMessage(*r) for r in rows]


def mark_read(conn: Connection, person_id: str, ids: Sequence[str], *, now: datetime) -> int:
    """Mark the person's own notifications ``ids`` read (others' ids are ignored); the number marked."""
    if not ids:
        return 0
    result = conn.execute(
        update(notification)
        .where(
            notification.c.person_id == person_id,
            notification.c.id.in_(list(ids)),
            notification.c.read_at.is_(None),
        )
        .values(read_at=now)
    )
    return int(result.rowcount)


class DeliveryFailed(RuntimeError):
    """A notifier could not hand a notification over (HTTP error, refused connection, timeout)."""


class WebhookNotifier:
    """POSTs each notification as JSON to ``url`` (an SMS/WeChat gateway or any HTTP receiver); a
    non-2xx answer, a refused connection or a timeout raises ``DeliveryFailed``."""

    def __init__(self, url: str, *, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s): {url!r}")
        self.url = url
        self.timeout = timeout
        self.headers = dict(headers or {})

    def deliver(self, notification: Notification) -> None:
        body = json.dumps(
            {
                "id": notification.id,
                "topic": notification.topic,
                "recipient_id": notification.recipient_id,
                "case_id": notification.case_id,
                "title": notification.title_zh,
                "body": notification.body_zh,
                "payload": notification.payload,
            },
            ensure_ascii=False,
            default=str,
        ).encode("utf-8")
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                status = int(answer.status)
        except urllib.error.HTTPError as err:
            raise DeliveryFailed(f"webhook answered {err.code}") from err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise DeliveryFailed(f"webhook unreachable: {err}") from err
        if not 200 <= status < 300:
            raise DeliveryFailed(f"webhook answered {status}")


class CompositeNotifier:
    """Delivers to every notifier in turn; raises the first failure after trying them all (a retry
    delivers again to all of them — ids make that harmless)."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)

    def deliver(self, notification: Notification) -> None:
        first: Exception | None = None
        for notifier in self.notifiers:
            try:
                notifier.deliver(notification)
            except Exception as err:
                first = first or err
        if first is not None:
            raise first
