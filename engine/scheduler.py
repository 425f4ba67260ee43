"""The embedded scheduler: a thread inside ``gridcase serve`` that sleeps until the next due instant
(a BPMN timer's ``case.next_wake_at`` or an SLA rung's ``next_rung_at``), fires what is due, delivers
the outbox (in-app notifications), and sleeps again. ``poke()`` wakes it early when a step
has set an earlier wake-up. Stops cleanly on ``stop()``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from engine.notify import InAppNotifier, drain_outbox
from engine.ports import Notifier
from engine.runtime import Runtime
from engine.timers import fire_due, next_wake_at

log = logging.getLogger("gridcase.scheduler")
MAX_SLEEP_S = 300.0  # re-read the table at least this often (cases written by other processes)


class Scheduler:
    def __init__(
        self, rt: Runtime, *, max_sleep_s: float = MAX_SLEEP_S, notifier: Notifier | None = None
    ) -> None:
        self.rt = rt
        self.notifier: Notifier = notifier or InAppNotifier(rt.db, clock=rt.clock)
        self.max_sleep_s = max_sleep_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="gridcase-scheduler", daemon=True)
        self._thread.start()

    def poke(self, _instant: datetime | None = None) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def seconds_until_next(self) -> float:
        upcoming = next_wake_at(self.rt)
        if upcoming is None:
            return self.max_sleep_s
        return max(0.0, min(self.max_sleep_s, (upcoming - self.rt.now()).total_seconds()))

    def run_once(self) -> None:
        report = fire_due(rt=self.rt)
        if report.fired or report.rungs or report.failed:
            log.info(
                "fired %d case(s), %d rung(s), %d failed", len(report.fired), report.rungs, len(report.failed)
            )
        drained = drain_outbox(rt=self.rt, notifier=self.notifier)
        if drained.delivered:
            log.info("delivered %d outbox row(s)", len(drained.delivered))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                delay = self.seconds_until_next()
            except Exception:
                log.exception("scheduler round failed; retrying in 5 s")
                delay = 5.0
            self._wake.wait(delay)
            self._wake.clear()
