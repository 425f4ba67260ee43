"""The Celery application: Redis broker, queue, beat schedule, and the per-process runtime.

Owns the worker's configuration, all read from the environment:

- ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``): the broker. Redis is transport only: due work
  lives in the database (``case.next_wake_at``, the outbox), so flushing Redis loses no deadline and no
  notification; the next beat tick finds them again.
- ``DATABASE_URL``: the database (as for ``gridcase``); the SQLite file under the user data dir if unset.
- ``GRIDCASE_QUEUE`` (default ``gridcase``): the queue every task goes to.
- ``GRIDCASE_FIRE_DUE_EVERY_S`` (default 0.5; a tick with nothing due costs one indexed query) and
  ``GRIDCASE_DRAIN_EVERY_S`` (default 3): beat periods.
- ``GRIDCASE_FIRE_LEASE_S`` (default 60): how long a published "fire this case" stands before the same
  due case is published again (a lost message is recovered after at most this long).
- ``GRIDCASE_FIRE_CHUNK`` (default 500): due cases per ``gridcase.fire_cases`` message (their rungs
  fire set-based in one transaction, so bigger messages fire faster; smaller ones spread wider).
- ``GRIDCASE_WEBHOOK_URL``: when set, notifications also go to this webhook (besides in-app).
- ``GRIDCASE_CLOCK_OFFSET_S`` (default 0): shifts the worker's clock by that many seconds. It exists for
  tests and drills only ("what fires tomorrow morning?"); never set it in production.

The ``Runtime`` is built once per worker process, lazily (after a prefork fork), from these settings.
The worker does not migrate the schema: any ``gridcase`` command (or ``gridcase serve``) does.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

from celery import Celery

from engine.errors import EngineError
from engine.runtime import Runtime
from engine.store.db import Database, resolve_url

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("GRIDCASE_QUEUE", "gridcase")
FIRE_DUE_EVERY_S = float(os.environ.get("GRIDCASE_FIRE_DUE_EVERY_S", "0.5"))
DRAIN_EVERY_S = float(os.environ.get("GRIDCASE_DRAIN_EVERY_S", "3"))
FIRE_LEASE_S = int(float(os.environ.get("GRIDCASE_FIRE_LEASE_S", "60")))
FIRE_CHUNK = int(os.environ.get("GRIDCASE_FIRE_CHUNK", "500"))

celery_app = Celery("gridcase", broker=REDIS_URL, include=["engine.worker.tasks"])
celery_app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,  # no result backend: outcomes are in the database and the worker log
    timezone="UTC",
    enable_utc=True,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=8,
    beat_schedule={
        "gridcase-fire-due": {
            "task": "gridcase.fire_due",
            "schedule": FIRE_DUE_EVERY_S,
            # a tick nobody took in time is dropped: the next one finds the same due rows
            "options": {"expires": FIRE_DUE_EVERY_S},
        },
        "gridcase-drain-outbox": {
            "task": "gridcase.drain_outbox",
            "schedule": DRAIN_EVERY_S,
            "options": {"expires": DRAIN_EVERY_S},
        },
    },
)


class ShiftedClock:
    """Wall-clock time moved by a fixed offset (``GRIDCASE_CLOCK_OFFSET_S``): for tests and drills."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


_runtime: tuple[int, Runtime] | None = None
_runtime_lock = threading.Lock()


def build_runtime() -> Runtime:
    """A Runtime from the environment: ``DATABASE_URL`` and ``GRIDCASE_CLOCK_OFFSET_S``."""
    db = Database(resolve_url(None))
    if not db.has_schema():
        raise EngineError("worker.no_schema", f"no gridcase schema in {db.engine.url!r}: run gridcase first")
    offset = float(os.environ.get("GRIDCASE_CLOCK_OFFSET_S", "0") or 0)
    return Runtime(db=db, clock=ShiftedClock(timedelta(seconds=offset)))


def runtime() -> Runtime:
    """This process's Runtime, built on first use (and again in a forked child)."""
    global _runtime
    pid = os.getpid()
    with _runtime_lock:
        if _runtime is None or _runtime[0] != pid:
            _runtime = (pid, build_runtime())
        return _runtime[1]
