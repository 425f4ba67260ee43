"""The outbox drain on a real database: recipients from the org, zh-CN text, retries and giving up,
in-app notifications, a webhook on a local server, concurrent drainers."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import insert, select

from engine import cases
from engine.notify import (
    MAX_ATTEMPTS,
    InAppNotifier,
    WebhookNotifier,
    drain_outbox,
    list_notifications,
    mark_read,
)
from engine.ports import Notification
from engine.runtime import Runtime
from engine.store.db import Database
from engine.store.models import outbox


class Recorder:
    """A notifier that remembers what it was given and fails for the people in ``failing``."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.sent: list[Notification] = []
        self.failing = failing or set()
        self.lock = threading.Lock()

    def deliver(self, notification: Notification) -> None:
        if notification.recipient_id in self.failing:
            raise ConnectionError(f"gateway refused {notification.recipient_id}")
        with self.lock:
            self.sent.append(notification)


def start_demo(rt: Runtime) -> cases.CaseView:
    return cases.start_case("demo", rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1")


def add_row(
    rt: Runtime, topic: str, payload: dict[str, object], *, recipient: str | None, case_id: int
) -> int:
    with rt.db.write() as conn:
        result = conn.execute(
            insert(outbox).values(
                created_at=rt.now(),
                topic=topic,
                recipient_id=recipient,
                case_id=case_id,
                payload=payload,
                attempts=0,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def outbox_row(rt: Runtime, row_id: int) -> dict[str, object]:
    with rt.db.read() as conn:
        return dict(conn.execute(select(outbox).where(outbox.c.id == row_id)).one()._mapping)


def test_a_new_task_notifies_every_grid_worker_of_its_grid_once(rt: Runtime) -> None:
    started = start_demo(rt)
    notifier = Recorder()
    report = drain_outbox(rt=rt, notifier=notifier)
    assert sorted(n.recipient_id for n in notifier.sent) == ["gw_g1", "gw_g1_2"]
    first = notifier.sent[0]
    assert first.title_zh == "新任务：处置"
    assert f"案件 {started.number}「楼道堆物」有新任务「处置」待您办理" in first.body_zh
    assert first.case_id == started.id and first.topic == "task.created"
    assert len(report.delivered) == 1 and report.notifications == 2
    assert outbox_row(rt, report.delivered[0])["delivered_at"] == rt.now()
    again = drain_outbox(rt=rt, notifier=notifier)
    assert again.delivered == [] and len(notifier.sent) == 2  # idempotent: nothing left to deliver


def test_sla_and_case_topics_are_rendered_in_chinese_for_their_named_recipient(rt: Runtime) -> None:
    started = start_demo(rt)
    due = datetime(2025, 3, 5, 9, 30, tzinfo=UTC).isoformat()  # 17:30 in Beijing
    add_row(rt, "sla.overdue", {"task_name": "处置", "due_at": due}, recipient="gl_g1", case_id=started.id)
    add_row(
        rt, "case.reminder", {"by": "社区主任", "note": "居民再次来电"}, recipient="gw_g1", case_id=started.id
    )
    add_row(rt, "case.archived", {}, recipient="gw_g1", case_id=started.id)
    notifier = Recorder()
    drain_outbox(rt=rt, notifier=notifier)
    by_topic = {n.topic: n for n in notifier.sent if n.topic != "task.created"}
    overdue = by_topic["sla.overdue"]
    assert overdue.recipient_id == "gl_g1" and overdue.title_zh == "已超期：处置"
    assert (
        overdue.body_zh
        == f"案件 {started.number}「楼道堆物」的「处置」已于 2025-03-05 17:30 超期，请尽快办理。"
    )
    reminder = by_topic["case.reminder"]
    assert reminder.title_zh == f"催办：{started.number}"
    assert "被催办（社区主任）：居民再次来电" in reminder.body_zh
    assert by_topic["case.archived"].title_zh == f"案件通知：{started.number}"


def test_a_failing_delivery_is_retried_each_round_and_given_up_after_five_attempts(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    started = start_demo(rt)
    row_id = add_row(rt, "sla.warning", {"task_name": "处置"}, recipient="gl_g1", case_id=started.id)
    notifier = Recorder(failing={"gl_g1"})
    drain_outbox(rt=rt, notifier=notifier)  # also delivers the task.created row
    for attempt in range(2, MAX_ATTEMPTS):
        report = drain_outbox(rt=rt, notifier=notifier)
        assert row_id in report.failed and outbox_row(rt, row_id)["attempts"] == attempt
    with caplog.at_level(logging.ERROR, logger="gridcase.notify"):
        report = drain_outbox(rt=rt, notifier=notifier)
    assert report.gave_up == [row_id]
    given_up = outbox_row(rt, row_id)
    assert given_up["delivered_at"] is None and given_up["attempts"] == MAX_ATTEMPTS
    assert given_up["payload"]["_delivery"]["gave_up"] is True  # type: ignore[index]
    assert "ConnectionError: gateway refused gl_g1" in given_up["payload"]["_delivery"]["error"]  # type: ignore[index]
    assert [r.message for r in caplog.records if "given up" in r.message]  # one log line, no audit
    notifier.failing.clear()
    assert drain_outbox(rt=rt, notifier=notifier).delivered == []  # a given-up row stays given up


def test_a_delivery_that_fails_once_goes_out_on_the_next_round(rt: Runtime) -> None:
    start_demo(rt)
    notifier = Recorder(failing={"gw_g1_2"})
    first = drain_outbox(rt=rt, notifier=notifier)
    assert first.delivered == [] and len(first.failed) == 1
    notifier.failing.clear()
    second = drain_outbox(rt=rt, notifier=notifier)
    assert len(second.delivered) == 1
    # gw_g1 got it twice (before the failure and on the retry) under the same id: receivers drop it
    ids = [n.id for n in notifier.sent if n.recipient_id == "gw_g1"]
    assert len(ids) == 2 and len(set(ids)) == 1


def test_a_row_with_nobody_to_tell_is_closed_with_a_warning(rt: Runtime) -> None:
    started = start_demo(rt)
    payload: dict[str, object] = {"role": "grid_worker", "org_unit_id": "s1"}  # no grid worker there
    row_id = add_row(rt, "task.created", payload, recipient=None, case_id=started.id)
    report = drain_outbox(rt=rt, notifier=Recorder())
    assert row_id in report.nobody and outbox_row(rt, row_id)["delivered_at"] is not None


def test_in_app_notifications_are_listed_and_marked_read_by_their_owner_only(rt: Runtime) -> None:
    started = start_demo(rt)
    in_app = InAppNotifier(rt.db, clock=rt.clock)
    drain_outbox(rt=rt, notifier=in_app)
    with rt.db.read() as conn:
        [mine] = list_notifications(conn, "gw_g1", unread_only=True)
        assert [n.id for n in list_notifications(conn, "gw_g1_2")] != [mine.id]
    assert mine.title == "新任务：处置" and mine.case_id == started.id and mine.read_at is None
    in_app.deliver(Notification(mine.id, mine.topic, "gw_g1", mine.case_id, mine.title, mine.body))
    with rt.db.write() as conn:
        assert len(list_notifications(conn, "gw_g1")) == 1  # the same id delivered again: still one
        assert mark_read(conn, "gw_g1_2", [mine.id], now=rt.now()) == 0  # not theirs
        assert mark_read(conn, "gw_g1", [mine.id], now=rt.now()) == 1
        assert mark_read(conn, "gw_g1", [mine.id], now=rt.now()) == 0
    with rt.db.read() as conn:
        assert list_notifications(conn, "gw_g1", unread_only=True) == []
        [read] = list_notifications(conn, "gw_g1")
        assert read.read_at == rt.now()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]], list[int]]]:
    """A receiver on 127.0.0.1: records JSON bodies, answers with the next status in ``statuses``."""
    received: list[dict[str, object]] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = statuses.pop(0) if statuses else 204
            if status < 300:
                received.append(json.loads(body.decode("utf-8")))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/notify", received, statuses
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_webhook_receives_each_notification_as_json_and_a_500_is_retried(
    rt: Runtime, webhook: tuple[str, list[dict[str, object]], list[int]]
) -> None:
    url, received, statuses = webhook
    started = start_demo(rt)
    statuses.append(500)
    failed = drain_outbox(rt=rt, notifier=WebhookNotifier(url, timeout=5))
    assert failed.delivered == [] and "webhook answered 500" in next(iter(failed.failed.values()))
    done = drain_outbox(rt=rt, notifier=WebhookNotifier(url, timeout=5))
    assert len(done.delivered) == 1
    assert [m["recipient_id"] for m in received] == ["gw_g1", "gw_g1_2"]
    assert received[0]["title"] == "新任务：处置" and received[0]["case_id"] == started.id
    assert received[0]["id"] == f"{done.delivered[0]}:gw_g1"


def test_a_webhook_that_nobody_answers_fails_the_delivery() -> None:
    with pytest.raises(ValueError):
        WebhookNotifier("file:///etc/passwd")
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # the port is now closed: the connection is refused
    notifier = WebhookNotifier(f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(RuntimeError, match="webhook unreachable"):
        notifier.deliver(Notification("1:gw_g1", "task.created", "gw_g1", None, "t", "b"))


def test_two_drainers_at_once_deliver_each_notification_once(rt: Runtime) -> None:
    for _ in range(30):
        start_demo(rt)
    notifier = Recorder()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def drain() -> None:
        own = Runtime(db=Database.for_tests(rt.db.url), clock=rt.clock)
        try:
            barrier.wait()
            while drain_outbox(rt=own, notifier=notifier, limit=5).delivered:
                pass
        except BaseException as err:
            errors.append(err)
        finally:
            own.db.dispose()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = [n.id for n in notifier.sent]
    assert len(ids) == 60 and len(set(ids)) == 60
