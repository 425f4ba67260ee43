"""Ports: the engine's outward-facing interfaces, as ``Protocol`` classes, and the values they carry.

Owns ``Notifier`` (deliver one rendered notification to one person: in-app, webhook, an SMS/WeChat
gateway …), ``JobPublisher`` (hand a case to the job transport, e.g. Celery on Redis) and the
``Notification`` value. Adapters live elsewhere (``engine.notify``, ``engine.worker.publisher``); tests
use fakes. Must not import celery, flask, api or anything with I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one person, rendered in zh-CN from an outbox row.

    ``id`` is stable for an (outbox row, recipient) pair, so a retried delivery carries the same id and
    receivers can drop duplicates (the in-app store does).
    """

    id: str
    topic: str
    recipient_id: str
    case_id: int | None
    title_zh: str
    body_zh: str
    payload: dict[str, object] = field(default_factory=dict)


class Notifier(Protocol):
    """Delivers a notification; raises on failure (the outbox drain retries it later)."""

    def deliver(self, notification: Notification) -> None: ...


class JobPublisher(Protocol):
    """Queues work on the job transport: fire what is due on a case, or on each of many cases (an
    adapter may group them into fewer messages; each case is still fired in its own step)."""

    def publish_case(self, case_id: int) -> None: ...

    def publish_cases(self, case_ids: Sequence[int]) -> None: ...
