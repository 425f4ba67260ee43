"""The ``JobPublisher`` port on Celery: "fire what is due on this case" as a ``gridcase.fire_case``
message, many cases as ``gridcase.fire_cases`` messages of a few ids each, on the gridcase queue. Also
the publish leases that keep a due case from being queued again on every beat tick while it waits.

Leases are a hint kept in Redis (``SET NX EX``), never the truth: if Redis is flushed or unreachable the
case is simply published again, and firing twice is a no-op (the step re-reads ``next_wake_at`` under
the case lock).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime

import redis
from celery import Celery

from engine.worker.app import FIRE_CHUNK, FIRE_LEASE_S, QUEUE, REDIS_URL, celery_app

log = logging.getLogger("gridcase.worker")
FIRE_CASE = "gridcase.fire_case"
FIRE_CASES = "gridcase.fire_cases"


class CeleryPublisher:
    """``engine.ports.JobPublisher`` on the Celery app. Many cases go out in messages of ``chunk`` ids
    (one message costs ~0.5 ms to publish: 10,000 single-case messages would take 5 s)."""

    def __init__(self, app: Celery = celery_app, *, queue: str = QUEUE, chunk: int = FIRE_CHUNK) -> None:
        self.app = app
        self.queue = queue
        self.chunk = max(1, chunk)

    def publish_case(self, case_id: int) -> None:
        self.app.send_task(FIRE_CASE, args=[case_id], queue=self.queue)

    def publish_cases(self, case_ids: Sequence[int]) -> None:
        if not case_ids:
            return
        with self.app.producer_or_acquire() as producer:
            for start in range(0, len(case_ids), self.chunk):
                ids = list(case_ids[start : start + self.chunk])
                self.app.send_task(FIRE_CASES, args=[ids], queue=self.queue, producer=producer)


class PublishLeases:
    """Which due cases were published recently: ``take`` returns the ones not yet leased, and leases
    them for ``ttl_s``. Keyed by database and due instant, so a new wake-up is published at once."""

    def __init__(self, database_url: str, *, url: str = REDIS_URL, ttl_s: int = FIRE_LEASE_S) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.prefix = "gridcase:fire:" + hashlib.sha256(database_url.encode()).hexdigest()[:16]
        self.ttl_s = max(1, ttl_s)

    def take(self, due: Sequence[tuple[int, datetime]]) -> list[int]:
        if not due:
            return []
        try:
            pipe = self.client.pipeline(transaction=False)
            for case_id, wake in due:
                pipe.set(f"{self.prefix}:{case_id}:{int(wake.timestamp() * 1000)}", 1, nx=True, ex=self.ttl_s)
            taken = pipe.execute()
        except redis.RedisError as err:  # a hint only: publish everything, firing twice is harmless
            log.warning("publish leases unavailable (%s); publishing every due case", err)
            return [case_id for case_id, _ in due]
        return [case_id for (case_id, _), ok in zip(due, taken, strict=True) if ok]
