"""Scale-out firing: a real Celery worker on the real Redis fires a BPMN timer exactly once and drains
the outbox; two schedulers at once (threads, no Redis) never fire a timer twice.

The worker tests need ``REDIS_URL`` (CI sets it) and skip with the reason otherwise. They start
``celery -A engine.worker worker --pool=solo`` on a queue of their own against the test's database (a
SQLite file, or PostgreSQL when DATABASE_URL is set) and poll that database with a bounded deadline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import cases, timers
from engine.clock import FixedClock
from engine.notify import list_notifications
from engine.runtime import Runtime
from engine.store.db import Database
from engine.store.models import audit_event, case
from tests.conftest import REPO, deploy_folder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEADLINE_S = 30.0


@pytest.fixture
def timed(rt: Runtime) -> Runtime:
    deploy_folder(rt, FIXTURES / "timed", FIXTURES / "forms")
    return rt


def start_timed(rt: Runtime) -> cases.CaseView:
    return cases.start_case("timed", rt=rt, actor="gw_g1", title="超时测试", kind="demo", grid_id="g1")


def fired_count(rt: Runtime, case_id: int | None = None) -> int:
    query = select(func.count()).select_from(audit_event).where(audit_event.c.action == "timer.fired")
    if case_id is not None:
        query = query.where(audit_event.c.case_id == case_id)
    with rt.db.read() as conn:
        return int(conn.execute(query).scalar_one())


# --- two schedulers at once (no Redis) -------------------------------------------------------------


def run_together(rt: Runtime, work: Callable[[Runtime], list[int]]) -> list[list[int]]:
    """Run ``work`` in two threads at once, each with its own Runtime on the same database."""
    barrier = threading.Barrier(2)
    results: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        own = Runtime(db=Database.for_tests(rt.db.url), clock=rt.clock)
        try:
            barrier.wait()
            results[slot] = work(own)
        except BaseException as err:
            errors.append(err)
        finally:
            own.db.dispose()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_two_schedulers_firing_at_once_never_fire_a_timer_twice(timed: Runtime, clock: FixedClock) -> None:
    started = [start_timed(timed).id for _ in range(12)]
    clock.advance(timedelta(hours=2, seconds=1))
    first, second = run_together(timed, lambda own: timers.fire_due(rt=own).fired)
    assert sorted(first + second) == sorted(started) and not set(first) & set(second)
    assert fired_count(timed) == len(started)


def test_two_workers_given_the_same_cases_fire_each_once(timed: Runtime, clock: FixedClock) -> None:
    from engine.worker.tasks import fire_case_due

    started = [start_timed(timed).id for _ in range(8)]
    clock.advance(timedelta(hours=3))

    def fire_all(own: Runtime) -> list[int]:
        return [cid for cid in started if fire_case_due(cid, rt=own) == "fired"]

    first, second = run_together(timed, fire_all)
    assert sorted(first + second) == sorted(started) and not set(first) & set(second)
    assert fired_count(timed) == len(started)
    assert all(fire_case_due(cid, rt=timed) == "idle" for cid in started)  # a late duplicate: no-op


# --- a real worker on the real Redis ---------------------------------------------------------------


def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is unset: the Celery worker tests need a real Redis (CI sets it)")
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as err:
        pytest.skip(f"Redis at {url} does not answer: {err}")
    return url


@dataclass
class Worker:
    queue: str
    log: Path
    process: subprocess.Popen[bytes]

    def send(self, task: str, *args: object) -> str:
        from engine.worker.app import celery_app

        return str(celery_app.send_task(task, args=list(args), queue=self.queue).id)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def results(self, task: str) -> dict[str, str]:
        """Task id -> logged return value of every finished ``task``."""
        pattern = re.compile(rf"Task {re.escape(task)}\[([0-9a-f-]+)\] succeeded in [0-9.e-]+s: (.*)")
        return {m.group(1): m.group(2).strip() for m in pattern.finditer(self.text())}


def wait_for(what: str, condition: Callable[[], bool], worker: Worker) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if worker.process.poll() is not None:
            pytest.fail(
                f"the worker exited ({worker.process.returncode}) waiting for {what}:\n{worker.text()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_S:.0f} s; worker log:\n{worker.text()[-4000:]}")
        time.sleep(0.1)


@pytest.fixture
def start_worker(rt: Runtime, tmp_path: Path) -> Iterator[Callable[[float], Worker]]:
    """Start ``celery -A engine.worker worker`` on a queue of its own, with the clock moved by an offset."""
    url = redis_url()
    import redis

    from engine.worker.publisher import PublishLeases

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{PublishLeases(rt.db.url, url=url).prefix}:*"):
        client.delete(key)  # leases left by an earlier test on the same (PostgreSQL) database
    started: list[Worker] = []

    def start(offset_s: float) -> Worker:
        queue = f"gridcase-test-{uuid.uuid4().hex[:10]}"
        log = tmp_path / f"{queue}.log"
        env = {
            **os.environ,
            "REDIS_URL": url,
            "DATABASE_URL": rt.db.url,
            "GRIDCASE_QUEUE": queue,
            "GRIDCASE_CLOCK_OFFSET_S": str(offset_s),
            "PYTHONPATH": str(REPO),
        }
        command = [sys.executable, "-m", "celery", "-A", "engine.worker", "worker", "--pool=solo"]
        command += ["-Q", queue, "-n", f"{queue}@%h", "-l", "INFO", f"--logfile={log}"]
        command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        worker = Worker(queue, log, process)
        started.append(worker)
        wait_for("worker start", lambda: " ready." in worker.text(), worker)
        return worker

    yield start
    for worker in started:
        worker.process.terminate()
        try:
            worker.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
        client.delete(worker.queue)


def test_a_real_worker_fires_a_timer_exactly_once_though_two_beat_ticks_and_duplicates_arrive(
    timed: Runtime, clock: FixedClock, start_worker: Callable[[float], Worker]
) -> None:
    clock.set(datetime.now(UTC))
    started = start_timed(timed)  # its boundary timer is due in 2 h; the worker lives 3 h ahead
    worker = start_worker(3 * 3600)
    ticks = [worker.send("gridcase.fire_due"), worker.send("gridcase.fire_due")]
    direct = [worker.send("gridcase.fire_case", started.id), worker.send("gridcase.fire_case", started.id)]

    def all_done() -> bool:
        done = worker.results("gridcase.fire_due")
        if not all(t in done for t in ticks):
            return False
        published = sum(int(done[t]) for t in ticks)  # one case a message here (the chunk holds 20)
        return (
            len(worker.results("gridcase.fire_case")) == len(direct)
            and len(worker.results("gridcase.fire_cases")) == published
        )

    wait_for("two ticks and every fire_case(s) they published", all_done, worker)
    assert sum(int(worker.results("gridcase.fire_due")[t]) for t in ticks) == 1  # the lease held
    outcomes = [
        *worker.results("gridcase.fire_case").values(),
        *worker.results("gridcase.fire_cases").values(),
    ]
    assert sorted(outcomes) == ["'idle'", "'idle'", "{'fired': 1}"] or sorted(outcomes) == [
        "'fired'",
        "'idle'",
        "{'idle': 1}",
    ]
    assert fired_count(timed, started.id) == 1
    after = cases.get_case(started.id, rt=timed)
    assert after.next_wake_at is None and after.version == started.version + 1


def test_a_real_worker_fires_a_timer_already_due_and_delivers_the_outbox_in_app(
    timed: Runtime, clock: FixedClock, start_worker: Callable[[float], Worker]
) -> None:
    clock.set(datetime.now(UTC) - timedelta(hours=3))
    started = start_timed(timed)  # created three hours ago: its 2 h timer is overdue now
    worker = start_worker(0)
    worker.send("gridcase.fire_due")
    wait_for("the timer to fire", lambda: fired_count(timed, started.id) == 1, worker)
    worker.send("gridcase.drain_outbox")

    def community_told() -> bool:
        with timed.db.read() as conn:
            return bool(list_notifications(conn, "community_c1"))

    wait_for("an in-app notification for the community", community_told, worker)
    with timed.db.read() as conn:
        [escalated] = list_notifications(conn, "community_c1")
        [handle] = list_notifications(conn, "gw_g1")
        status = conn.execute(select(case.c.status).where(case.c.id == started.id)).scalar_one()
    assert escalated.title == "新任务：升级处置" and escalated.case_id == started.id
    assert handle.title == "新任务：处置"
    assert status == "open"


def test_a_due_case_is_published_once_per_lease_and_again_when_redis_forgets(timed: Runtime) -> None:
    url = redis_url()
    from engine.worker.publisher import PublishLeases
    from engine.worker.tasks import fire_due_round

    class Publisher:
        def __init__(self) -> None:
            self.cases: list[int] = []

        def publish_case(self, case_id: int) -> None:
            self.cases.append(case_id)

        def publish_cases(self, case_ids: Sequence[int]) -> None:
            self.cases.extend(case_ids)

    leases = PublishLeases(f"{timed.db.url}#{uuid.uuid4().hex}", url=url, ttl_s=60)
    clock = timed.clock
    assert isinstance(clock, FixedClock)
    started = start_timed(timed)
    clock.advance(timedelta(hours=3))
    publisher = Publisher()
    assert fire_due_round(rt=timed, publisher=publisher, leases=leases).published == [started.id]
    assert fire_due_round(rt=timed, publisher=publisher, leases=leases).published == []  # lease stands
    for key in leases.client.scan_iter(f"{leases.prefix}:*"):
        leases.client.delete(key)  # Redis flushed: the deadline still lives in the database
    assert fire_due_round(rt=timed, publisher=publisher, leases=leases).published == [started.id]
    assert publisher.cases == [started.id, started.id]
