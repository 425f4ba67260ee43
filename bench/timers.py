"""SLA rungs and BPMN timers at scale: fired/s and lag from the due instant to *seen fired*, embedded
and via Celery (real worker, real beat); and the supervisors' overdue list over a million cases.

Run from the repo root::

    python bench/timers.py             # 100,000 open cases, 10,000 rungs due at once; list over 1,000,000
    python bench/timers.py --quick     # 5,000 open cases, 1,000 rungs due at once; list over 100,000
    python bench/timers.py --no-celery # skip the Celery part (no Redis here)
    DATABASE_URL=postgresql+psycopg://user@host/db python bench/timers.py   # + PostgreSQL (temp schemas)

Set-up. One real case of each of three processes is started through the engine; its per-case rows
(``case``, ``workflow_state``, ``workflow_task``, ``human_task``, ``sla_clock``, ``timer``,
``audit_event``, ``outbox``) are then cloned in bulk with new ids — the SpiffWorkflow task ids inside
the serialized workflow are rewritten per clone — so every clone is a workflow a real step can load.
``--cases`` open cases in all, in these groups (``--due`` = N):

- R, N per path: ``workflows/demo`` at its ``handle`` user task (2WD clock, no boundary event). The
  warning (黄) has fired; ``due_at`` = ``next_rung_at`` = T0 (``supervise_at``/``escalate_at`` a day and
  five days later). Nothing catches ``sla_overdue``, so the overdue rung (红) fires set-based, a batch
  of clocks per transaction: clock status ``overdue``, an audit event ``sla.overdue``, two outbox rows
  (the handler's role and the unit's leader), the case version. **RESULT is this group.**
- S, N/10 per path: ``tests/fixtures/slaed`` at ``handle``, whose ``sla_overdue`` boundary opens
  ``escalated``: each firing is a full workflow step (load, message, save). Printed for information.
- T, N/10 per path: ``tests/fixtures/timed`` at ``handle``, whose PT2H boundary timer opens
  ``escalated`` (``case.next_wake_at``, ``timer.due_at`` and the timer inside the workflow = T0): one
  workflow step per case. Printed for information.
- the rest parked: clocks and timers 30 to 58 days ahead; none may fire (checked).

Each group is made due at its own instant T0 (the next whole second at least 1 s ahead; its rows are
updated before T0), one group per round, so each group's figures are its own.

Lag, from outside the firing process. A poller thread in the bench process reads newly committed audit
rows every 20 ms (``SELECT id, case_id, action FROM audit_event WHERE id > :last``, plus ids skipped
by transactions still open, on PostgreSQL) and records the wall-clock instant each case's firing
(``sla.overdue`` for R and S, ``timer.fired`` for T) was first seen. Lag = first seen − T0, so it
includes the commit and up to one poll interval (20 ms). The audit row's ``at`` is not used (it is the
batch's clock at its start). fired/s = cases / (last seen − T0).

Embedded. Per round, a fresh child process (cold runtime, as after a restart; like the scheduler thread
of ``gridcase serve``) waits until T0, then calls ``engine.timers.fire_due`` until nothing is due (what
``engine/scheduler.py`` does, without the outbox delivery that follows each of its rounds).

Celery. A real worker with its beat (``celery -A engine.worker worker -B``, prefork,
``--celery-concurrency`` processes, default the CPU count) on the real Redis (``REDIS_URL``, default
127.0.0.1:6379), on a queue of its own, with the default periods (``gridcase.fire_due`` every
``GRIDCASE_FIRE_DUE_EVERY_S`` = 0.5 s, ``gridcase.drain_outbox`` every 3 s). The bench sends no message:
it waits until the worker has run beat ticks (in every pool process, or 20 s), then makes the group due
at T0; the lag includes the beat phase (up to one period; the first tick after T0 is printed), the
fan-out and the firing, as in production.

Checks after each round: each case fired exactly once (one ``sla.overdue`` / ``timer.fired`` audit row
per case); R clocks ``overdue`` with ``overdue_fired_at`` set, 2 outbox rows each, no other rung; S and T
cases have ``escalated`` ready; no incident; at the end no parked case fired. A failed check prints a
``WARNING`` line.

Overdue list. A separate database of ``--overdue-cases`` case rows over the demo organisation's 8 grids,
10 % open, each with an ``sla_clock`` (open: running, ``due_at`` within ±30 days of now, so about half
overdue, its rungs fired or not accordingly, and a ready ``human_task``; closed: stopped). Timed: the
median of 50 calls of ``engine.supervision.overdue`` (limit 50) for the command centre (``cc_1``, whose
area is the whole district), with the plan of the SQL it runs (captured from the call), and of
``engine.sla_views.overdue_cases`` (limit 50). SQLite as deployed (the engine never runs ANALYZE), then after
``ANALYZE`` for information; PostgreSQL after ``ANALYZE`` of the three tables (autovacuum would have
run it). No index is added.

Last lines (SQLite figures)::

    targets: …
    RESULT lag_p99_embedded_s=<R embedded p99> lag_p99_celery_s=<R celery p99> overdue_query_ms=<median>

Targets (issue 4): ≤ 1 s, ≤ 2 s, ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Integer, Table, event, func, insert, or_, select, text, update  # noqa: E402

from engine import access, cases, sla_views, specs, supervision, timers  # noqa: E402
from engine.clock import SystemClock  # noqa: E402
from engine.demo_org import load_demo_org  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.store.db import Database  # noqa: E402
from engine.store.models import (  # noqa: E402
    audit_event,
    case,
    human_task,
    metadata,
    notification,
    org_unit,
    outbox,
    sla_clock,
    spec_version,
    workflow_state,
    workflow_task,
)
from engine.store.models import timer as timer_table  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
_UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-)[0-9a-f]{12}")
CHUNK = 2_000  # cases per insert transaction
POLL_S = 0.02  # the audit poller's period
PARKED_FROM = timedelta(days=30)  # parked clocks and timers wake 30 to 58 days ahead
_SETVAL_CASE = """SELECT setval(pg_get_serial_sequence('"case"', 'id'), (SELECT max(id) FROM "case"))"""
FIRED_ACTIONS = ("sla.warning", "sla.overdue", "sla.supervise", "sla.escalate", "timer.fired")


# --- set-up ----------------------------------------------------------------------------------------


def open_runtime(url: str) -> Runtime:
    """Migrated schema, the demo organisation, and ``workflows/demo`` + the slaed and timed fixtures."""
    db = Database(url)
    db.migrate()
    rt = Runtime(db=db, clock=SystemClock())
    with db.write() as conn:
        load_demo_org(conn, now=rt.now(), password_for=lambda _p: "bench-pass-123")
    sources = (
        ([ROOT / "workflows" / "demo"], ROOT / "forms"),
        ([FIXTURES / "slaed", FIXTURES / "timed"], FIXTURES / "forms"),
    )
    for folders, forms in sources:
        validation = specs.validate(specs.read_sources(folders), forms_dir=forms, sandbox=rt.sandbox)
        assert validation.ok, [str(p) for p in validation.problems]
        with db.write() as conn:
            specs.deploy(conn, validation, actor="owner_1", now=rt.now())
    return rt


def per_case_tables() -> list[Table]:
    """Every table holding rows of one case, in insert order (``case`` excluded)."""
    skip = {"case", notification.name}
    return [t for t in metadata.sorted_tables if "case_id" in t.c and t.name not in skip]


@dataclass
class Template:
    """One real case's rows, as format strings with ``{k}`` where each task id's tail goes."""

    process_id: str
    case_row: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]]
    event_value: str | None  # the boundary timer's instant inside the serialized workflow, if any

    @classmethod
    def capture(cls, rt: Runtime, case_id: int) -> Template:
        with rt.db.read() as conn:
            case_row = dict(conn.execute(select(case).where(case.c.id == case_id)).one()._mapping)
            rows = {
                t.name: [dict(r._mapping) for r in conn.execute(select(t).where(t.c.case_id == case_id))]
                for t in per_case_tables()
            }
        bodies = " ".join(r["body"] for r in rows["workflow_task"])
        found = re.search(r'"event_value": "([^"]+)"', bodies)
        prepared = {name: [cls._prepare(name, r) for r in table_rows] for name, table_rows in rows.items()}
        return cls(str(case_row["process_id"]), case_row, prepared, found.group(1) if found else None)

    @staticmethod
    def _prepare(name: str, row: dict[str, Any]) -> dict[str, Any]:
        table = metadata.tables[name]
        out: dict[str, Any] = {}
        for key, value in row.items():
            column = table.c[key]
            if key == "id" and isinstance(column.type, Integer) and column.autoincrement is not False:
                continue  # a fresh serial id
            if isinstance(value, (dict, list)):
                value = ("json", _template(json.dumps(value, ensure_ascii=False)))
            elif isinstance(value, str) and _UUID.search(value):
                value = ("text", _template(value))
            out[key] = value
        if name == "outbox":
            out["delivered_at"] = out["created_at"]  # the template's notifications went out long ago
        return out

    def clone(
        self, k: int, case_id: int, *, wake: datetime | None, clock: dict[str, Any] | None
    ) -> dict[str, list[dict[str, Any]]]:
        """Rows of clone ``k``: a BPMN timer (if any) due at ``wake``, the clock's columns from ``clock``."""
        tail = f"{k:012x}"
        event_value = wake.isoformat() if wake is not None and self.event_value else None
        rows: dict[str, list[dict[str, Any]]] = {}
        for name, table_rows in self.rows.items():
            rows[name] = []
            for row in table_rows:
                new: dict[str, Any] = {}
                for key, value in row.items():
                    if isinstance(value, tuple):
                        filled = value[1].format(k=tail)
                        if name == "workflow_task" and event_value is not None:
                            assert self.event_value is not None
                            filled = filled.replace(self.event_value, event_value)
                        value = json.loads(filled) if value[0] == "json" else filled
                    new[key] = value
                new["case_id"] = case_id
                if name == "timer" and wake is not None:
                    new["due_at"] = wake
                if name == "sla_clock" and clock is not None:
                    new.update(clock)
                rows[name].append(new)
        return rows


def _template(value: str) -> str:
    return _UUID.sub(r"\1{k}", value.replace("{", "{{").replace("}", "}}"))


def armed_clock(now: datetime, far: datetime) -> dict[str, Any]:
    """A clock whose warning fired an hour ago and whose deadline waits at ``far`` until ``make_due``."""
    return {
        "started_at": now - timedelta(days=3),
        "warn_due_at": now - timedelta(hours=1),
        "warning_fired_at": now - timedelta(hours=1),
        "due_at": far,
        "supervise_at": far + timedelta(days=1),
        "escalate_at": far + timedelta(days=5),
        "overdue_fired_at": None,
        "supervise_fired_at": None,
        "escalate_fired_at": None,
        "next_rung_at": far,
        "state": "running",
        "status": "warning",
    }


def parked_clock(wake: datetime) -> dict[str, Any]:
    """A clock with no rung fired, the first (warning) at ``wake``."""
    return {
        "warn_due_at": wake,
        "due_at": wake + timedelta(days=1),
        "supervise_at": wake + timedelta(days=2),
        "escalate_at": wake + timedelta(days=6),
        "warning_fired_at": None,
        "overdue_fired_at": None,
        "supervise_fired_at": None,
        "escalate_fired_at": None,
        "next_rung_at": wake,
        "state": "running",
        "status": "on_time",
    }


class Cloner:
    """Inserts clones; ``k`` (the task ids' tail, the case number) is unique over all templates."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.next_k = 1

    def clone(
        self,
        template: Template,
        count: int,
        *,
        wake: Callable[[int], datetime | None],
        clock: Callable[[int], dict[str, Any] | None],
    ) -> range:
        """Insert ``count`` clones of ``template``; returns their case ids (consecutive)."""
        rt = self.rt
        with rt.db.read() as conn:
            start = int(conn.execute(select(func.max(case.c.id))).scalar_one()) + 1
        tables = per_case_tables()
        for offset in range(0, count, CHUNK):
            case_rows: list[dict[str, Any]] = []
            child: dict[str, list[dict[str, Any]]] = {t.name: [] for t in tables}
            for i in range(offset, min(count, offset + CHUNK)):
                k, case_id, due = self.next_k + i, start + i, wake(i)
                case_rows.append(
                    {**template.case_row, "id": case_id, "number": f"BM{k:012d}", "next_wake_at": due}
                )
                for name, rows in template.clone(k, case_id, wake=due, clock=clock(i)).items():
                    child[name].extend(rows)
            with rt.db.write() as conn:
                conn.execute(insert(case), case_rows)
                for table in tables:
                    if child[table.name]:
                        conn.execute(insert(table), child[table.name])
        self.next_k += count
        if rt.db.dialect == "postgresql":
            with rt.db.write() as conn:
                conn.execute(text(_SETVAL_CASE))
        return range(start, start + count)


@dataclass(frozen=True)
class Group:
    key: str  # R, S, T
    path: str  # embedded | celery
    kind: str  # rung | timer
    action: str  # the audit action that says the case fired
    ids: range

    @property
    def size(self) -> int:
        return len(self.ids)


GROUP_TITLES = {
    "R": "R rungs nothing catches (红)",
    "S": "S rungs a boundary catches",
    "T": "T BPMN timers",
}


def _between(column: Any, ids: range) -> Any:
    return column.between(ids.start, ids.stop - 1)


def make_due(rt: Runtime, group: Group, t0: datetime, far_event: str) -> None:
    """Everything ``group`` waits for comes at ``t0``: the clocks' deadline (and the rungs after it, a
    day and five days later), or the BPMN timer in the case row, the timer row and the workflow."""
    with rt.db.write() as conn:
        if group.kind == "rung":
            conn.execute(
                update(sla_clock)
                .where(_between(sla_clock.c.case_id, group.ids), sla_clock.c.state == "running")
                .values(
                    due_at=t0,
                    next_rung_at=t0,
                    supervise_at=t0 + timedelta(days=1),
                    escalate_at=t0 + timedelta(days=5),
                )
            )
            return
        conn.execute(update(case).where(_between(case.c.id, group.ids)).values(next_wake_at=t0))
        conn.execute(update(timer_table).where(_between(timer_table.c.case_id, group.ids)).values(due_at=t0))
        for table in (workflow_task, workflow_state):
            conn.execute(
                update(table)
                .where(_between(table.c.case_id, group.ids))
                .values(body=func.replace(table.c.body, far_event, t0.isoformat()))
            )


def park_templates(rt: Runtime, templates: dict[int, Template], far: datetime) -> None:
    """The three template cases themselves never fire."""
    with rt.db.write() as conn:
        for case_id, template in templates.items():
            conn.execute(update(sla_clock).where(sla_clock.c.case_id == case_id).values(**parked_clock(far)))
            conn.execute(
                update(case)
                .where(case.c.id == case_id, case.c.next_wake_at.is_not(None))
                .values(next_wake_at=far)
            )
            conn.execute(update(timer_table).where(timer_table.c.case_id == case_id).values(due_at=far))
            if template.event_value:
                conn.execute(
                    update(workflow_task)
                    .where(workflow_task.c.case_id == case_id)
                    .values(body=func.replace(workflow_task.c.body, template.event_value, far.isoformat()))
                )


def next_t0() -> datetime:
    """The next whole second at least 1 s away."""
    now = datetime.now(UTC)
    return now.replace(microsecond=0) + timedelta(seconds=2)


def wait_until(instant: datetime) -> None:
    delay = (instant - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


# --- the poller: what has been committed, seen from outside ----------------------------------------


class AuditPoller:
    """Reads newly committed audit rows every ``POLL_S`` in a thread of the bench process and keeps the
    wall-clock instant each (case, action) was first seen, and how many rows each had.

    On PostgreSQL serial ids can commit out of order (two transactions at once): ids skipped below the
    highest one seen are polled again (``id IN (...)``) for 30 s. SQLite has one writer at a time."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        with self.db.read() as conn:
            self.last = int(conn.execute(select(func.coalesce(func.max(audit_event.c.id), 0))).scalar_one())
        self.gaps: dict[int, float] = {}
        self.first_seen: dict[tuple[int, str], float] = {}
        self.counts: Counter[tuple[int, str]] = Counter()
        self.polls = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-poller", daemon=True)

    def __enter__(self) -> AuditPoller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.db.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception as err:  # keep polling; report at the end
                self.errors.append(f"{type(err).__name__}: {str(err).splitlines()[0]}")
            self._stop.wait(max(0.0, POLL_S - (time.monotonic() - started)))

    def poll_once(self) -> None:
        cols = select(audit_event.c.id, audit_event.c.case_id, audit_event.c.action)
        condition = audit_event.c.id > self.last
        if self.gaps:
            condition = or_(condition, audit_event.c.id.in_(sorted(self.gaps)))
        with self.db.read() as conn:
            rows = conn.execute(cols.where(condition).order_by(audit_event.c.id)).all()
        seen_at = time.time()  # visible now: committed at the latest this instant
        self.polls += 1
        with self._lock:
            ids = {int(r[0]) for r in rows}
            for row in rows:
                self.gaps.pop(int(row[0]), None)
                if row[1] is None:
                    continue
                key = (int(row[1]), str(row[2]))
                self.first_seen.setdefault(key, seen_at)
                self.counts[key] += 1
            if ids:
                top = max(ids)
                for missing in range(self.last + 1, top):
                    if missing not in ids:
                        self.gaps[missing] = seen_at
                self.last = max(self.last, top)
            for gap, since in list(self.gaps.items()):
                if seen_at - since > 30:
                    del self.gaps[gap]

    def seen(self, group: Group) -> dict[int, float]:
        with self._lock:
            return {
                case_id: self.first_seen[(case_id, group.action)]
                for case_id in group.ids
                if (case_id, group.action) in self.first_seen
            }

    def wait_for(self, group: Group, timeout: float, *, quiet_s: float = 0.0) -> None:
        """Until every case of ``group`` was seen (then ``quiet_s`` more, to catch duplicates)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.seen(group)) >= group.size:
                time.sleep(quiet_s)
                return
            time.sleep(POLL_S)

    def fired_in(self, ids: range) -> Counter[str]:
        """Firing audit rows seen for cases in ``ids``, per action."""
        with self._lock:
            out: Counter[str] = Counter()
            for (case_id, action), n in self.counts.items():
                if action in FIRED_ACTIONS and ids.start <= case_id < ids.stop:
                    out[action] += n
            return out


@dataclass
class Firing:
    count: int  # cases seen fired
    expected: int
    lags: list[float]  # seconds, sorted

    @property
    def per_s(self) -> float:
        return self.count / max(self.lags[-1], 1e-9) if self.lags else 0.0

    def pct(self, q: float) -> float:
        if not self.lags:
            return float("nan")
        return self.lags[max(0, min(len(self.lags) - 1, math.ceil(q * len(self.lags)) - 1))]


def firing_of(poller: AuditPoller, group: Group, t0: datetime) -> Firing:
    base = t0.timestamp()
    lags = sorted(at - base for at in poller.seen(group).values())
    return Firing(len(lags), group.size, lags)


# --- checks ----------------------------------------------------------------------------------------


def _count(conn: Any, table: Table, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def check_group(rt: Runtime, poller: AuditPoller, group: Group) -> list[str]:
    """What the round must have done, from the database; a line per failed check."""
    n, ids, problems = group.size, group.ids, []
    label = f"{group.key} {group.path}"
    with rt.db.read() as conn:
        in_group = _between(audit_event.c.case_id, ids)
        fired = _count(conn, audit_event, in_group, audit_event.c.action == group.action)
        distinct = int(
            conn.execute(
                select(func.count(func.distinct(audit_event.c.case_id))).where(
                    in_group, audit_event.c.action == group.action
                )
            ).scalar_one()
        )
        if (fired, distinct) != (n, n):
            problems.append(f"{label}: {fired} {group.action} audit rows over {distinct} cases, expected {n}")
        incidents = _count(conn, case, _between(case.c.id, ids), case.c.status == "incident")
        if incidents:
            problems.append(f"{label}: {incidents} cases became incidents")
        others = _count(
            conn,
            audit_event,
            in_group,
            audit_event.c.action.in_([a for a in FIRED_ACTIONS if a != group.action]),
        )
        if others:
            problems.append(f"{label}: {others} audit rows of other rungs/timers")
        if group.key == "R":
            clocks = _between(sla_clock.c.case_id, ids)
            overdue = _count(
                conn,
                sla_clock,
                clocks,
                sla_clock.c.status == "overdue",
                sla_clock.c.overdue_fired_at.is_not(None),
                sla_clock.c.state == "running",
            )
            if overdue != n:
                problems.append(f"{label}: {overdue} of {n} clocks overdue with overdue_fired_at set")
            rows = _count(conn, outbox, _between(outbox.c.case_id, ids), outbox.c.topic == "sla.overdue")
            if rows != 2 * n:
                problems.append(f"{label}: {rows} sla.overdue outbox rows, expected {2 * n}")
        else:
            escalated = _count(
                conn,
                human_task,
                _between(human_task.c.case_id, ids),
                human_task.c.task_spec == "escalated",
                human_task.c.state == "ready",
            )
            if escalated != n:
                problems.append(f"{label}: {escalated} of {n} cases opened 'escalated'")
    seen = poller.fired_in(ids)
    if seen[group.action] != n:
        problems.append(f"{label}: the poller saw {seen[group.action]} {group.action} rows, expected {n}")
    return problems


def check_parked(rt: Runtime, parked: Sequence[range]) -> list[str]:
    with rt.db.read() as conn:
        fired = sum(
            _count(
                conn,
                audit_event,
                _between(audit_event.c.case_id, ids),
                audit_event.c.action.in_(FIRED_ACTIONS),
            )
            for ids in parked
        )
    return [f"{fired} rungs/timers of parked cases fired"] if fired else []


# --- embedded --------------------------------------------------------------------------------------


def _embedded_child(url: str, pipe: Pipe) -> None:
    """The firing process: a cold runtime; at T0, ``fire_due`` until nothing is due."""
    rt = Runtime(db=Database(url), clock=SystemClock())
    pipe.send("ready")
    t0 = datetime.fromtimestamp(pipe.recv(), UTC)
    wait_until(t0)
    started = time.time()
    rounds = fired = rungs = 0
    failed: dict[int, str] = {}
    while True:
        report = timers.fire_due(rt=rt)
        rounds += 1
        fired += len(report.fired)
        rungs += report.rungs
        failed.update(report.failed)
        if not report.fired and not report.rungs and not report.failed:
            break
    rt.db.dispose()
    pipe.send(
        {
            "start_late_s": started - t0.timestamp(),
            "busy_s": time.time() - started,
            "rounds": rounds,
            "timer_cases": fired,
            "rungs": rungs,
            "failed": {str(k): v for k, v in list(failed.items())[:5]},
            "n_failed": len(failed),
        }
    )


def fire_embedded(rt: Runtime, url: str, group: Group, poller: AuditPoller, far_event: str) -> Firing:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_embedded_child, args=(url, theirs), name="bench-embedded", daemon=True)
    process.start()
    try:
        if not ours.poll(120):
            raise RuntimeError("the embedded firing process did not start")
        ours.recv()
        t0 = next_t0()
        make_due(rt, group, t0, far_event)
        if datetime.now(UTC) >= t0:
            print(f"  WARNING: {group.key} made due only after T0")
        ours.send(t0.timestamp())
        timeout = 120.0 + group.size * 0.05
        report = ours.recv() if ours.poll(timeout) else None
        process.join(30)
    finally:
        if process.is_alive():
            process.terminate()
            process.join(10)
    poller.wait_for(group, timeout=5.0, quiet_s=0.2)
    firing = firing_of(poller, group, t0)
    if report is None:
        print(f"  WARNING: the embedded process of {group.key} did not finish")
    else:
        if report["n_failed"]:
            print(f"  WARNING: {report['n_failed']} cases failed, e.g. {report['failed']}")
        print(
            f"  embedded {group.key}: {firing.count:,}/{group.size:,} seen fired, last {firing.pct(1):.2f} s"
            f" after T0 (fire_due from +{report['start_late_s']:.3f} s, {report['rounds']} calls,"
            f" {report['busy_s']:.2f} s)",
            flush=True,
        )
    return firing


# --- Celery ----------------------------------------------------------------------------------------


class Worker:
    """``celery -A engine.worker worker -B`` on a queue of its own; stopped (with its pool and beat) on
    exit, also on Ctrl-C or an exception."""

    def __init__(self, url: str, redis_url: str, concurrency: int, workdir: Path) -> None:
        self.url = url
        self.redis_url = redis_url
        self.concurrency = concurrency
        self.queue = f"gridcase-bench-{uuid.uuid4().hex[:8]}"
        self.log = workdir / f"{self.queue}.log"
        self.schedule = workdir / f"{self.queue}.beat"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "REDIS_URL": self.redis_url,
            "GRIDCASE_QUEUE": self.queue,
        }
        env["PYTHONPATH"] = str(ROOT)
        pool = (
            ["--pool=solo"]
            if self.concurrency <= 1
            else ["--pool=prefork", f"--concurrency={self.concurrency}"]
        )
        command = [sys.executable, "-m", "celery", "-A", "engine.worker", "worker", "-B"]
        command += [f"--schedule={self.schedule}", *pool, "-Q", self.queue, "-n", f"{self.queue}@%h"]
        command += ["-l", "INFO", f"--logfile={self.log}"]
        command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the pool and beat go with it
        )
        return self

    def __exit__(self, *_exc: object) -> None:
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # any pool process left behind
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            from engine.worker.publisher import PublishLeases

            prefix = PublishLeases(self.url, url=self.redis_url).prefix
            keys = [self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}"]
            keys += client.scan_iter(f"{prefix}:*", count=1000)
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        except redis.RedisError as err:
            print(f"  (Redis clean-up failed: {err})")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_warm(self, timeout: float = 20.0) -> str:
        """Until beat ticks (``gridcase.fire_due``) ran, in every pool process if they do so in time."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        ticks: list[str] = []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Celery worker exited ({self.process.returncode}):\n{self.log_text()[-2000:]}"
                )
            ticks = re.findall(r"/([\w-]+)\] Task gridcase\.fire_due\[[^\]]+\] succeeded", self.log_text())
            if len(ticks) >= 2 and len(set(ticks)) >= self.concurrency:
                break
            time.sleep(0.1)
        if not ticks:
            raise RuntimeError(f"no beat tick processed in {timeout:.0f} s:\n{self.log_text()[-2000:]}")
        return f"{len(ticks)} beat ticks processed by {len(set(ticks))} of {self.concurrency} pool processes"

    def beat_ticks(self) -> list[float]:
        """When beat sent ``gridcase.fire_due`` (epoch seconds; the log's clock is local time)."""
        found = re.findall(
            r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[\w-]+\] Scheduler: Sending due task"
            r" gridcase-fire-due",
            self.log_text(),
            flags=re.MULTILINE,
        )
        return [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp() for t in found]

    def problems(self) -> list[str]:
        lines = self.log_text().splitlines()
        return [line for line in lines if "ERROR" in line or "Traceback" in line][:5]


def fire_celery(rt: Runtime, worker: Worker, group: Group, poller: AuditPoller, far_event: str) -> Firing:
    t0 = next_t0()
    make_due(rt, group, t0, far_event)
    if datetime.now(UTC) >= t0:
        print(f"  WARNING: {group.key} made due only after T0")
    wait_until(t0)
    poller.wait_for(group, timeout=120.0 + group.size * 0.05, quiet_s=1.5)
    firing = firing_of(poller, group, t0)
    if worker.process is not None and worker.process.poll() is not None:
        print(f"  WARNING: the Celery worker exited ({worker.process.returncode})")
    tick = next((t - t0.timestamp() for t in worker.beat_ticks() if t >= t0.timestamp()), float("nan"))
    print(
        f"  celery {group.key}: {firing.count:,}/{group.size:,} seen fired, last {firing.pct(1):.2f} s"
        f" after T0 (first beat tick sent at +{tick:.2f} s)",
        flush=True,
    )
    return firing


# --- the overdue list ------------------------------------------------------------------------------


def _rung_columns(due: datetime, now: datetime) -> dict[str, Any]:
    """A running 2WD clock due at ``due``, with the rungs up to ``now`` fired."""
    instants = {
        "warning": due - timedelta(hours=3),
        "overdue": due,
        "supervise": due + timedelta(days=1),
        "escalate": due + timedelta(days=7),
    }
    fired = {rung: at if at <= now else None for rung, at in instants.items()}
    status = "overdue" if fired["overdue"] else "warning" if fired["warning"] else "on_time"
    return {
        "warn_due_at": instants["warning"],
        "due_at": due,
        "supervise_at": instants["supervise"],
        "escalate_at": instants["escalate"],
        "warning_fired_at": fired["warning"],
        "overdue_fired_at": fired["overdue"],
        "supervise_fired_at": fired["supervise"],
        "escalate_fired_at": fired["escalate"],
        "next_rung_at": min((at for rung, at in instants.items() if fired[rung] is None), default=None),
        "status": status,
    }


def bulk_overdue_db(rt: Runtime, total: int) -> int:
    """``total`` demo cases over the 8 grids, 10 % open, each with its clock; returns how many are overdue."""
    now = rt.now()
    with rt.db.read() as conn:
        version = int(conn.execute(select(func.max(spec_version.c.id))).scalar_one())
        grids = [
            (str(r[0]), str(r[1]))
            for r in conn.execute(select(org_unit.c.id, org_unit.c.path).where(org_unit.c.kind == "grid"))
        ]
    clock_base = {
        "task_spec": "handle",
        "clock_key": "handle",
        "budget": "2WD",
        "budget_kind": "working",
        "budget_seconds": 54_000,
        "warn_pct": 80,
        "supervise_after": "1WD",
        "escalate_after": "5WD",
        "pauses": [],
        "extensions": [],
        "calendar_version": "bench",
        "provisional": False,
    }
    overdue = 0
    step = 20_000
    for offset in range(0, total, step):
        cases_rows, clocks, tasks = [], [], []
        for i in range(offset, min(total, offset + step)):
            case_id = i + 1
            grid, path = grids[i % len(grids)]
            is_open = i % 10 == 0
            created = now - timedelta(days=40 + i % 300)
            cases_rows.append(
                {
                    "id": case_id,
                    "number": f"OV{i:012d}",
                    "kind": "demo",
                    "process_id": "demo",
                    "spec_version_id": version,
                    "title": "楼道堆物",
                    "priority": "normal",
                    "status": "open" if is_open else "completed",
                    "version": 3,
                    "data": {},
                    "grid_id": grid,
                    "unit_path": path,
                    "created_at": created,
                    "updated_at": created + timedelta(days=1),
                    "closed_at": None if is_open else created + timedelta(days=2),
                }
            )
            task_id = f"00000000-0000-4000-8000-{i:012x}"
            if is_open:
                due = now + timedelta(seconds=((i * 7919) % 5_184_000) - 2_592_000)  # ±30 days
                overdue += due < now
                clocks.append(
                    {
                        **clock_base,
                        **_rung_columns(due, now),
                        "case_id": case_id,
                        "task_id": task_id,
                        "org_unit_id": grid,
                        "started_at": due - timedelta(days=3),
                        "state": "running",
                    }
                )
                tasks.append(
                    {
                        "id": task_id,
                        "case_id": case_id,
                        "task_spec": "handle",
                        "name": "处置",
                        "lane": "网格员",
                        "role": "grid_worker",
                        "org_unit_id": grid,
                        "form_key": "demo/handle",
                        "state": "ready",
                        "created_at": due - timedelta(days=3),
                    }
                )
            else:
                due = created + timedelta(days=3)
                clocks.append(
                    {
                        **clock_base,
                        "case_id": case_id,
                        "task_id": task_id,
                        "org_unit_id": grid,
                        "started_at": created,
                        "warn_due_at": due - timedelta(hours=3),
                        "due_at": due,
                        "supervise_at": due + timedelta(days=1),
                        "escalate_at": due + timedelta(days=7),
                        "warning_fired_at": due - timedelta(hours=3),
                        "overdue_fired_at": None,
                        "supervise_fired_at": None,
                        "escalate_fired_at": None,
                        "next_rung_at": None,
                        "state": "stopped",
                        "status": "warning",
                        "stopped_at": created + timedelta(days=2),
                        "consumed_seconds": 30_000,
                    }
                )
        with rt.db.write() as conn:
            conn.execute(insert(case), cases_rows)
            conn.execute(insert(sla_clock), clocks)
            if tasks:
                conn.execute(insert(human_task), tasks)
    return overdue


@contextmanager
def captured_sql(db: Database, needle: str) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and DBAPI parameters) run on ``db`` inside the block that contain ``needle``."""
    found: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if needle in statement:
            found.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield found
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


def median_ms(call: Callable[[], object], runs: int = 50) -> float:
    call()  # warm: connection pool, statement cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@dataclass
class Overdue:
    rows: int  # rows on the page
    overdue_total: int
    supervision_ms: float  # engine.supervision.overdue, as deployed
    sla_ms: float  # engine.sla_views.overdue_cases
    plan: list[str]
    sql: str
    analyzed_ms: float | None = None  # SQLite, after ANALYZE
    analyzed_plan: list[str] = field(default_factory=list)


def time_overdue(url: str, total: int) -> Overdue:
    db = Database(url)
    db.migrate()
    rt = Runtime(db=db, clock=SystemClock())
    with db.write() as conn:
        load_demo_org(conn, now=rt.now(), password_for=lambda _p: "bench-pass-123")
    validation = specs.validate(
        specs.read_sources([ROOT / "workflows" / "demo"]), forms_dir=ROOT / "forms", sandbox=rt.sandbox
    )
    with db.write() as conn:
        specs.deploy(conn, validation, actor="owner_1", now=rt.now())
    started = time.perf_counter()
    overdue_total = bulk_overdue_db(rt, total)
    print(f"  overdue database: {total:,} cases in {time.perf_counter() - started:.1f} s", flush=True)
    if db.dialect == "postgresql":  # these tables only (a bare ANALYZE would visit the whole database)
        with db.write() as conn:
            conn.execute(text('ANALYZE "case", sla_clock, human_task'))
    with db.read() as conn:
        cc = access.principal(conn, "cc_1")  # the command centre: the whole district
    with captured_sql(db, "sla_clock") as statements:
        page = supervision.overdue(cc, rt=rt, limit=50)
    sql, params = statements[-1]

    def plan() -> list[str]:
        with db.read() as conn:
            if db.dialect == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
                return [str(r[-1]) for r in rows]
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).all()
            return [str(r[0]) for r in rows]

    result = Overdue(
        rows=len(page),
        overdue_total=overdue_total,
        supervision_ms=median_ms(lambda: supervision.overdue(cc, rt=rt, limit=50)),
        sla_ms=median_ms(lambda: sla_views.overdue_cases(rt=rt, limit=50)),
        plan=plan(),
        sql=sql,
    )
    if db.dialect == "sqlite":  # for information: ANALYZE is not run by the engine
        with db.write() as conn:
            conn.execute(text("ANALYZE"))
        db.dispose()
        result.analyzed_ms = median_ms(lambda: supervision.overdue(cc, rt=rt, limit=50))
        result.analyzed_plan = plan()
    db.dispose()
    return result


# --- one backend -----------------------------------------------------------------------------------


@dataclass
class Figures:
    backend: str
    firings: dict[tuple[str, str], Firing | None]  # (group, path) -> figures; None when skipped
    overdue: Overdue | None
    problems: list[str]
    sizes: dict[str, int]


def group_sizes(args: argparse.Namespace) -> dict[str, int]:
    small = max(1, args.due // 10)
    return {"R": args.due, "S": small, "T": small}


def run_backend(name: str, url: str, overdue_url: str, args: argparse.Namespace, workdir: Path) -> Figures:
    started = time.perf_counter()
    rt = open_runtime(url)
    firsts = {
        p: cases.start_case(p, rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1")
        for p in ("demo", "slaed", "timed")
    }
    templates = {p: Template.capture(rt, c.id) for p, c in firsts.items()}
    now = rt.now()
    far = (now + timedelta(days=365)).replace(microsecond=123457)  # armed groups wait here until T0
    far_event = far.isoformat()
    park_templates(rt, {c.id: templates[p] for p, c in firsts.items()}, far - timedelta(days=1))
    cloner = Cloner(rt)
    sizes = group_sizes(args)
    kinds = {"R": ("demo", "rung", "sla.overdue"), "S": ("slaed", "rung", "sla.overdue")}
    kinds["T"] = ("timed", "timer", "timer.fired")
    groups: dict[tuple[str, str], Group] = {}
    for path in ("embedded", "celery"):
        for key, (process, kind, action) in kinds.items():
            template = templates[process]
            if kind == "rung":
                ids = cloner.clone(
                    template, sizes[key], wake=lambda _i: None, clock=lambda _i: armed_clock(now, far)
                )
            else:
                ids = cloner.clone(template, sizes[key], wake=lambda _i: far, clock=lambda _i: None)
            groups[(key, path)] = Group(key, path, kind, action, ids)
    armed = sum(g.size for g in groups.values())
    rest = max(0, args.cases - armed)

    def wake_at(i: int) -> datetime:
        return now + PARKED_FROM + timedelta(minutes=i % 40_000)

    parked = []
    shares = (("demo", rest - 2 * (rest // 10)), ("slaed", rest // 10), ("timed", rest // 10))
    for process, count in shares:
        if process == "timed":
            parked.append(cloner.clone(templates[process], count, wake=wake_at, clock=lambda _i: None))
        else:
            parked.append(
                cloner.clone(
                    templates[process], count, wake=lambda _i: None, clock=lambda i: parked_clock(wake_at(i))
                )
            )
    total = armed + rest + len(firsts)
    print(
        f"  {name}: {total:,} open cases cloned in {time.perf_counter() - started:.1f} s"
        f" (R/S/T per path {sizes['R']:,}/{sizes['S']:,}/{sizes['T']:,}; {rest:,} parked)",
        flush=True,
    )

    problems: list[str] = []
    firings: dict[tuple[str, str], Firing | None] = {}
    with AuditPoller(url) as poller:
        for key in ("R", "S", "T"):
            group = groups[(key, "embedded")]
            firings[(key, "embedded")] = fire_embedded(rt, url, group, poller, far_event)
            problems += check_group(rt, poller, group)
        if args.no_celery:
            firings.update({(key, "celery"): None for key in ("R", "S", "T")})
        else:
            with Worker(url, args.redis_url, args.celery_concurrency, workdir) as worker:
                print(f"  celery: worker up, {worker.wait_warm()}", flush=True)
                for key in ("R", "S", "T"):
                    group = groups[(key, "celery")]
                    firings[(key, "celery")] = fire_celery(rt, worker, group, poller, far_event)
                    problems += check_group(rt, poller, group)
                problems += [f"worker log: {line}" for line in worker.problems()]
        problems += check_parked(rt, parked)
        problems += [f"poller: {e}" for e in poller.errors[:3]]
    for line in problems:
        print(f"  WARNING: {line}", flush=True)
    rt.db.dispose()
    overdue = time_overdue(overdue_url, args.overdue_cases)
    print(
        f"  {name}: overdue list over {args.overdue_cases:,} cases: {overdue.supervision_ms:.2f} ms",
        flush=True,
    )
    return Figures(name, firings, overdue, problems, sizes)


def print_figures(figures: Figures, args: argparse.Namespace) -> None:
    sizes = figures.sizes
    print(
        f"\n== {figures.backend}: {args.cases:,} open cases; due at one instant per round:"
        f" R {sizes['R']:,}, S {sizes['S']:,}, T {sizes['T']:,} =="
    )
    header = f"{'group':<30} {'path':<9} {'count':>7} {'fired/s':>9} {'lag p50 s':>10} {'lag p99 s':>10}"
    print(header + f" {'lag max s':>10}")
    for key in ("R", "S", "T"):
        for path in ("embedded", "celery"):
            firing = figures.firings.get((key, path))
            title = GROUP_TITLES[key]
            if firing is None:
                print(f"{title:<30} {path:<9} skipped")
                continue
            count = f"{firing.count:,}" + ("" if firing.count == firing.expected else "!")
            print(
                f"{title:<30} {path:<9} {count:>7} {firing.per_s:>9.0f} {firing.pct(0.5):>10.2f}"
                f" {firing.pct(0.99):>10.2f} {firing.pct(1.0):>10.2f}"
            )
    print("(R gives RESULT; S and T are one workflow step per case, for information)")
    if figures.problems:
        print(f"WARNING: {len(figures.problems)} failed checks (see above)")
    overdue = figures.overdue
    if overdue is None:
        return
    print(
        f"overdue list, engine.supervision.overdue (cc_1, whole district; first 50 of"
        f" {overdue.overdue_total:,} overdue; {args.overdue_cases:,} cases, 10% open):"
        f" {overdue.supervision_ms:.2f} ms median of 50"
    )
    print("  plan:")
    for line in overdue.plan:
        print(f"    {line}")
    if overdue.analyzed_ms is not None:
        print(f"  after ANALYZE (not run by the engine): {overdue.analyzed_ms:.2f} ms; plan:")
        for line in overdue.analyzed_plan:
            print(f"    {line}")
    print(f"engine.sla_views.overdue_cases (limit 50, unscoped): {overdue.sla_ms:.2f} ms median of 50")


def pg_url_for(url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    sa = make_url(url)
    if sa.drivername in ("postgresql", "postgres"):
        sa = sa.set(drivername="postgresql+psycopg")
    return sa.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@contextmanager
def pg_schemas(url: str, names: Sequence[str]) -> Iterator[list[str]]:
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        for name in names:
            admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield [pg_url_for(url, name) for name in names]
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            for name in names:
                admin.execute(f"DROP SCHEMA {name} CASCADE")


def _met(value: float, target: float) -> str:
    return "n/a" if math.isnan(value) else "met" if value <= target else "NOT met"


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds: the worker, the firing process and the schemas are cleaned up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5,000 cases, 1,000 due, 100,000 for the list")
    parser.add_argument("--cases", type=int, default=None, help="open cases (100,000)")
    parser.add_argument("--due", type=int, default=None, help="R rungs due at the same instant (10,000)")
    parser.add_argument(
        "--overdue-cases", type=int, default=None, help="cases for the overdue list (1,000,000)"
    )
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery worker part")
    parser.add_argument("--celery-concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args(argv)
    args.cases = args.cases or (5_000 if args.quick else 100_000)
    args.due = args.due or (1_000 if args.quick else 10_000)
    args.overdue_cases = args.overdue_cases or (100_000 if args.quick else 1_000_000)
    if not args.no_celery:
        import redis

        try:
            redis.Redis.from_url(args.redis_url, socket_timeout=2).ping()
        except redis.RedisError as err:
            print(f"no Redis at {args.redis_url} ({err}): Celery part skipped")
            args.no_celery = True
    os.environ["REDIS_URL"] = args.redis_url  # before engine.worker.app is imported
    signal.signal(signal.SIGTERM, _terminate)

    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="gridcase-bench-") as tmp:
        workdir = Path(tmp)
        print("sqlite:", flush=True)
        results.append(
            run_backend("sqlite", f"sqlite:///{workdir / 'timers.db'}", f"sqlite:///{workdir / 'overdue.db'}",
                        args, workdir)
        )  # fmt: skip
        pg = os.environ.get("DATABASE_URL", "")
        if pg.startswith("postgres"):
            print("postgresql (DATABASE_URL, temporary schemas):", flush=True)
            names = [f"gridcase_bench_timers_{os.getpid()}", f"gridcase_bench_overdue_{os.getpid()}"]
            try:
                with pg_schemas(pg, names) as (url, overdue_url):
                    results.append(run_backend("postgresql", url, overdue_url, args, workdir))
            except Exception as err:  # the SQLite figures and RESULT still print
                print(f"  postgresql FAILED: {type(err).__name__}: {str(err).splitlines()[0]}")
    for figures in results:
        print_figures(figures, args)
    sq = results[0]
    embedded = sq.firings[("R", "embedded")]
    celery = sq.firings[("R", "celery")]
    overdue_ms = sq.overdue.supervision_ms if sq.overdue else float("nan")
    p99_embedded = embedded.pct(0.99) if embedded else float("nan")
    p99_celery = celery.pct(0.99) if celery else float("nan")
    print(
        f"\ntargets: R lag p99 embedded {p99_embedded:.2f} s ≤ 1 s {_met(p99_embedded, 1.0)},"
        f" via Celery {p99_celery:.2f} s ≤ 2 s {_met(p99_celery, 2.0)};"
        f" overdue list {overdue_ms:.2f} ms ≤ 10 ms {_met(overdue_ms, 10.0)}"
        f" (SQLite, {args.due:,} rungs due at once{'; quick run' if args.quick else ''})"
    )
    print(
        f"RESULT lag_p99_embedded_s={p99_embedded:.2f} lag_p99_celery_s={p99_celery:.2f}"
        f" overdue_query_ms={overdue_ms:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
