"""The runtime: the engine's dependencies in one object, the spec and workflow caches, and the step.

A *step* is one change to one case (ARCHITECTURE §2 "One step"): lock the case row (PostgreSQL
``SELECT … FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``), check ``expected_version``, load the workflow,
act, then in the same transaction save what changed, re-project human tasks and timers, append
audit events and outbox rows, and bump the version. Any error rolls all of it back.

The workflow cache keeps recently stepped workflows in memory, keyed by case and version. A step takes
the cached workflow only when its version equals the row it has just locked, so a stale copy is never
used; an exception discards the copy.

On SQLite every writer queues for one lock, so workflow work that reads nothing from the database can
be done before the queue (``run_early``) on the cached copy; the step adopts it (``Step.adopt``) only
if the locked row is still at the version the copy was taken at — otherwise it does the work again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import Connection, select, update

from engine import orgs, spiff
from engine.calendar import WorkCalendar
from engine.clock import Clock, FixedClock, SystemClock
from engine.errors import Conflict, NotFound
from engine.sandbox import Sandbox
from engine.store import fastsql
from engine.store.db import Database
from engine.store.models import case, spec_version, workflow_state, workflow_task


@dataclass(frozen=True, slots=True)
class SpecEntry:
    id: int
    process_id: str
    spec: spiff.ProcessSpec
    subprocess_specs: dict[str, spiff.ProcessSpec]
    user_tasks: dict[str, spiff.TaskMeta]
    forms: dict[str, str]
    caught: dict[str, frozenset[str]]  # activity BPMN id -> messages its boundary events catch


class SpecCache:
    """Deserialized specs by version id: each version is restored once per process."""

    def __init__(self) -> None:
        self._entries: dict[int, SpecEntry] = {}
        self._by_spec: dict[int, SpecEntry] = {}  # id() of an entry's process spec -> the entry
        self._newest: dict[str, int] = {}  # process id -> newest version this process has started cases on
        self._lock = threading.Lock()

    def saw_newest(self, process_id: str, version_id: int) -> None:
        """``version_id`` was the newest deployed version of ``process_id`` when a case was opened."""
        self._newest[process_id] = version_id

    def newest_seen(self, process_id: str) -> SpecEntry | None:
        """The cached entry of the version this process last opened a case of ``process_id`` on: a guess
        at the newest version, to be checked against the database by whoever relies on it."""
        version_id = self._newest.get(process_id)
        return None if version_id is None else self._entries.get(version_id)

    def get(self, conn: Connection, version_id: int) -> SpecEntry:
        entry = self._entries.get(version_id)
        if entry is not None:
            return entry
        row = conn.execute(select(spec_version).where(spec_version.c.id == version_id)).first()
        if row is None:
            raise NotFound("spec.not_found", f"spec version {version_id} does not exist", {"id": version_id})
        spec, subs = spiff.restore_spec(row.spec_json)
        entry = SpecEntry(
            id=row.id,
            process_id=row.process_id,
            spec=spec,
            subprocess_specs=subs,
            user_tasks={k: spiff.TaskMeta.from_dict(v) for k, v in row.task_meta.items()},
            forms=dict(row.files.get("forms", {})),
            caught=spiff.boundary_messages([spec, *subs.values()]),
        )
        with self._lock:
            kept = self._entries.setdefault(version_id, entry)
            self._by_spec[id(kept.spec)] = kept
        return kept

    def holding(self, spec: spiff.ProcessSpec) -> SpecEntry | None:
        """The cached entry whose process spec is ``spec`` itself (a cached workflow's), if any: entries
        are never dropped, so an id is never reused for another spec."""
        entry = self._by_spec.get(id(spec))
        return entry if entry is not None and entry.spec is spec else None


class WorkflowCache:
    """A bounded LRU of (case id) -> (version, Instance), also found by the ids of the ready user tasks
    it held when put. Entries are taken out while a step runs."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._items: OrderedDict[int, tuple[int, spiff.Instance, tuple[str, ...]]] = OrderedDict()
        self._by_task: dict[str, int] = {}  # ready user task id -> case id, for the entries held
        self._lock = threading.Lock()

    def _drop(self, case_id: int) -> tuple[int, spiff.Instance, tuple[str, ...]] | None:
        item = self._items.pop(case_id, None)
        if item is not None:
            for task_id in item[2]:
                if self._by_task.get(task_id) == case_id:
                    del self._by_task[task_id]
        return item

    def take(self, case_id: int, version: int) -> spiff.Instance | None:
        with self._lock:
            item = self._drop(case_id)
        if item is None:
            return None
        if item[0] != version:
            item[1].release()
            return None
        return item[1]

    def take_by_task(self, task_id: str) -> tuple[int, int, spiff.Instance] | None:
        """The entry holding ready user task ``task_id``, taken out: (case id, version, workflow), at
        whatever version it was put — the caller checks that against the database."""
        with self._lock:
            case_id = self._by_task.get(task_id)
            item = None if case_id is None else self._drop(case_id)
        if case_id is None or item is None:
            return None
        return case_id, item[0], item[1]

    def put(self, case_id: int, version: int, instance: spiff.Instance) -> None:
        if self.capacity <= 0:
            return
        ready = tuple(t.task_id for t in instance.ready_user_tasks())
        gone: list[tuple[int, spiff.Instance, tuple[str, ...]] | None] = []
        with self._lock:
            gone.append(self._drop(case_id))
            self._items[case_id] = (version, instance, ready)
            for task_id in ready:
                self._by_task[task_id] = case_id
            while len(self._items) > self.capacity:
                gone.append(self._drop(next(iter(self._items))))
        self._release(gone, keep=instance)

    def discard(self, case_id: int, instance: spiff.Instance | None = None) -> None:
        """Forget the case's workflow (and take apart ``instance``, taken out of the cache earlier):
        it will not be used again."""
        with self._lock:
            gone = [self._drop(case_id)]
        self._release(gone, keep=None)
        if instance is not None:
            instance.release()

    def clear(self) -> None:
        with self._lock:
            gone = list(self._items.values())
            self._items.clear()
            self._by_task.clear()
        self._release(gone, keep=None)

    @staticmethod
    def _release(
        items: Iterable[tuple[int, spiff.Instance, tuple[str, ...]] | None], keep: spiff.Instance | None
    ) -> None:
        """Take apart the workflows of entries that left the cache (``Instance.release``)."""
        for item in items:
            if item is not None and item[1] is not keep:
                item[1].release()

    def bumped(self, versions: Mapping[int, int]) -> None:
        """Cases whose version moved (case id -> new version) without their workflow changing, e.g. an
        SLA rung fired set-based: a cached workflow at the version before stays good."""
        with self._lock:
            for case_id, new in versions.items():
                item = self._items.get(case_id)
                if item is not None and item[0] == new - 1:
                    self._items[case_id] = (new, item[1], item[2])


def default_calendar() -> WorkCalendar:
    """The working calendar, with the yearly overlay files of ``GRIDCASE_CALENDAR_DIR`` if set."""
    overlay = os.environ.get("GRIDCASE_CALENDAR_DIR")
    return WorkCalendar(Path(overlay) if overlay else None)


@dataclass
class Runtime:
    """Everything the engine functions need, injected once."""

    db: Database
    clock: Clock = field(default_factory=SystemClock)
    sandbox: Sandbox = field(default_factory=Sandbox)
    specs: SpecCache = field(default_factory=SpecCache)
    workflows: WorkflowCache = field(default_factory=WorkflowCache)
    org_lookups: orgs.Lookups = field(default_factory=orgs.Lookups)
    calendar: WorkCalendar = field(default_factory=default_calendar)
    wake_listeners: list[Callable[[datetime], None]] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock.now()

    def woke(self, instant: datetime) -> None:
        """Tell listeners (the embedded scheduler) that a case now wants to wake at ``instant``."""
        for listener in self.wake_listeners:
            listener(instant)


@dataclass
class Step:
    """One locked case inside its transaction; ``instance`` is the live workflow, loaded on first use
    (a claim, say, never needs it: its cached copy then stays good for the next step)."""

    rt: Runtime
    conn: Connection
    case: CaseRow
    spec: SpecEntry
    now: datetime
    new_version: int
    case_values: dict[str, object] = field(default_factory=dict)
    wake_at: datetime | None = None  # earliest new timer or rung instant this step created
    loaded: spiff.Instance | None = None  # the workflow, once ``instance`` was asked for
    task: Mapping[str, object] | None = None  # the row of the task ``step`` was named by, read with the lock

    @property
    def instance(self) -> spiff.Instance:
        if self.loaded is None:
            self.loaded = self.rt.workflows.take(self.case_id, self.case.version) or load_instance(
                self.rt, self.conn, self.spec, self.case_id
            )
        return self.loaded

    def adopt(self, early: Early | None) -> bool:
        """Use workflow work done before the lock (``run_early``) if the case is still at the version it
        was done on, together with the instant it was done at; False when it must be done again."""
        if (
            early is None
            or self.loaded is not None
            or early.case_id != self.case_id
            or early.version != self.case.version
        ):
            return False
        self.loaded, self.now = early.instance, early.now
        return True

    def wake(self, instant: datetime | None) -> None:
        """Note an instant the scheduler must wake for (told after the step commits)."""
        if instant is not None and (self.wake_at is None or instant < self.wake_at):
            self.wake_at = instant

    @property
    def case_id(self) -> int:
        return int(self.case.id)

    @property
    def org_revision(self) -> int | None:
        """Where the organisation's revision stood when the case was locked (None: the row is gone): what
        ``rt.org_lookups`` keeps its answers under."""
        value = getattr(self.case, "org_revision", None)
        return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class Early:
    """Workflow work done before the write lock on the cached workflow of a case at ``version``."""

    case_id: int
    version: int
    now: datetime  # the instant the work was done at: the step that adopts it acts at this instant
    instance: spiff.Instance


def run_early(rt: Runtime, task_id: str, work: Callable[[spiff.Instance, Clock], None]) -> Early | None:
    """Do ``work`` on the cached workflow holding the task before taking the write lock, on SQLite
    (where every writer waits in one queue; PostgreSQL locks only the case row). Nothing is read from
    the database: the step checks the version when it adopts the work. The copy is taken out of the
    cache, so nobody else uses it meanwhile. None when there is no cached copy or the work failed — the
    step then does the work itself and reports any error as it always did."""
    if not rt.db.is_sqlite:
        return None
    found = rt.workflows.take_by_task(task_id)
    if found is None:
        return None
    case_id, version, instance = found
    now = rt.now()
    try:
        work(instance, FixedClock(now))
        instance.prepare_delta()  # the save's serialization too, used if nothing changes it in the lock
    except Exception:  # the copy is dropped: the step repeats the work and reports
        return None
    return Early(case_id, version, now, instance)


# Statements on the step path are built once; each call only binds values (ARCHITECTURE §2: a step's
# own cost must stay small next to the engine's).
_CASE_INSTANTS = frozenset({"next_wake_at", "created_at", "updated_at", "closed_at"})
CASE_ROW = fastsql.Statement(  # one case row by id, read as Core reads it (also outside steps)
    'SELECT * FROM "case" WHERE id = :case_id',
    result_json=frozenset({"data"}),
    result_instants=_CASE_INSTANTS,
)
# The lock's read of the case row also reads where the organisation's revision stands (``orgs.Lookups``).
_ORG_REVISION = "(SELECT n FROM org_revision WHERE id = 1) AS org_revision"
_LOCK = replace(CASE_ROW, sql=f'SELECT c.*, {_ORG_REVISION} FROM "case" c WHERE c.id = :case_id')
_LOCK_FOR_UPDATE = replace(_LOCK, sql=_LOCK.sql + " FOR UPDATE")
_LOCK_BY_TASK = replace(
    CASE_ROW,
    sql=f'SELECT c.*, {_ORG_REVISION} FROM "case" c'
    " WHERE c.id = (SELECT case_id FROM human_task WHERE id = :task_id)",
)
_LOCK_BY_TASK_FOR_UPDATE = replace(_LOCK_BY_TASK, sql=_LOCK_BY_TASK.sql + " FOR UPDATE")
TASK_ROW = fastsql.Statement(  # one human task's row by id
    "SELECT * FROM human_task WHERE id = :task_id", result_instants=frozenset({"created_at", "completed_at"})
)
_BUMP = fastsql.Statement(
    'UPDATE "case" SET version = :b_version, updated_at = :b_now, next_wake_at = :b_wake'
    " WHERE id = :b_case_id",
    instants=frozenset({"b_now", "b_wake"}),
)


class CaseRow(SimpleNamespace):
    """The locked case row, read with attribute access (``row.version``, ``row.next_wake_at`` …)."""


Guard = Callable[[Connection, CaseRow], None]  # a check on the locked case row that may refuse the step


def lock_case(conn: Connection, case_id: int) -> CaseRow:
    """Lock the case row for this transaction: ``FOR UPDATE`` on PostgreSQL; on SQLite the write
    transaction's ``BEGIN IMMEDIATE`` already excludes every other writer."""
    query = _LOCK_FOR_UPDATE if conn.dialect.name == "postgresql" else _LOCK
    rows = fastsql.fetch_mappings(conn, query, {"case_id": case_id})
    if not rows:
        raise NotFound("case.not_found", f"case {case_id} does not exist", {"case_id": case_id})
    return CaseRow(**rows[0])


def lock_case_of_task(conn: Connection, task_id: str) -> tuple[CaseRow, dict[str, object]]:
    """Lock the case a human task belongs to and read the task's row after the lock; on PostgreSQL the
    two queries go in one round trip."""
    query = _LOCK_BY_TASK_FOR_UPDATE if conn.dialect.name == "postgresql" else _LOCK_BY_TASK
    key = {"task_id": task_id}
    rows, tasks = fastsql.fetch_mappings_of(conn, [(query, key), (TASK_ROW, key)])
    if not rows or not tasks:
        raise NotFound("task.not_found", f"no task {task_id}", {"task_id": task_id})
    return CaseRow(**rows[0]), tasks[0]


@contextmanager
def step(
    rt: Runtime,
    case_id: int | None = None,
    *,
    task_id: str | None = None,
    expected_version: int | None = None,
    statuses: frozenset[str] = frozenset({"open"}),
    guard: Guard | None = None,
) -> Iterator[Step]:
    """Lock, yield the step to act on, then save everything in the same transaction.

    The case is named directly or through one of its human tasks (``task_id``). ``guard`` runs first on
    the locked row — the caller's right to see the case, say — so a refusal reveals nothing else (not
    even a stale version), and costs no transaction of its own.
    """
    current: Step | None = None
    task: dict[str, object] | None = None
    with rt.db.write() as conn:
        if case_id is not None:
            row = lock_case(conn, case_id)
        elif task_id is not None:
            row, task = lock_case_of_task(conn, task_id)
            case_id = int(row.id)
        else:
            raise ValueError("step() needs a case_id or a task_id")
        if guard is not None:
            guard(conn, row)
        if expected_version is not None and row.version != expected_version:
            raise Conflict(
                "case.stale_version",
                f"case {row.number} is at version {row.version}, not {expected_version}: reload",
                {"case_id": case_id, "version": row.version, "expected_version": expected_version},
            )
        if row.status not in statuses:
            code = {"suspended": "case.suspended", "open": "case.not_suspended"}.get(
                row.status, "case.closed"
            )
            raise Conflict(code, f"case {row.number} is {row.status}", {"status": row.status})
        entry = rt.specs.get(conn, row.spec_version_id)
        current = Step(rt, conn, row, entry, rt.now(), row.version + 1, task=task)
        yield current
        if current.loaded is not None:
            save_instance(conn, case_id, current.loaded, current.now)
        _save_case(conn, current)
    # committed: keep the workflow for the next step, tell the scheduler of new instants. A closed
    # case takes no more steps: its workflow would only fill the cache, and every object the cache holds
    # is one more for each full collection of the garbage collector to visit (about 230 a workflow;
    # a full cache of 512 made pauses of 110 ms in the load bench).
    if current.case_values.get("status") == "completed":
        rt.workflows.discard(case_id, current.loaded)
    elif current.loaded is not None:
        rt.workflows.put(case_id, current.new_version, current.loaded)
    else:
        rt.workflows.bumped({case_id: current.new_version})
    wake = current.case_values.get("next_wake_at")
    if isinstance(wake, datetime) and wake != row.next_wake_at:
        current.wake(wake)
    if current.wake_at is not None:
        rt.woke(current.wake_at)


def _save_case(conn: Connection, current: Step) -> None:
    values = current.case_values
    if set(values) <= {"next_wake_at"}:
        fastsql.execute(
            conn,
            _BUMP,
            {
                "b_case_id": current.case_id,
                "b_version": current.new_version,
                "b_now": current.now,
                "b_wake": values.get("next_wake_at", current.case.next_wake_at),
            },
        )
    else:
        conn.execute(
            update(case)
            .where(case.c.id == current.case_id)
            .values(version=current.new_version, updated_at=current.now, **values)
        )


def load_instance(rt: Runtime, conn: Connection, entry: SpecEntry, case_id: int) -> spiff.Instance:
    body = conn.execute(select(workflow_state.c.body).where(workflow_state.c.case_id == case_id)).scalar()
    if body is None:
        raise NotFound("case.no_state", f"case {case_id} has no workflow state", {"case_id": case_id})
    rows = conn.execute(
        select(workflow_task.c.task_id, workflow_task.c.body).where(workflow_task.c.case_id == case_id)
    ).all()
    return spiff.Instance.load(
        entry.spec, entry.subprocess_specs, rt.sandbox, body, {r[0]: r[1] for r in rows}
    )


_STATE_SAVE = fastsql.Statement(
    "INSERT INTO workflow_state (case_id, body, updated_at, serializer_version)"
    " VALUES (:s_case_id, :s_body, :s_now, :s_version)"
    " ON CONFLICT (case_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at,"
    " serializer_version = excluded.serializer_version",
    instants=frozenset({"s_now"}),
)
_TASK_DELETE = fastsql.Statement("DELETE FROM workflow_task WHERE case_id = :case_id AND task_id = :task_id")
_TASK_UPSERT = fastsql.Statement(
    "INSERT INTO workflow_task (case_id, task_id, body) VALUES (:case_id, :task_id, :body)"
    " ON CONFLICT (case_id, task_id) DO UPDATE SET body = excluded.body"
)


def save_instance(conn: Connection, case_id: int, instance: spiff.Instance, now: datetime) -> None:
    """Write what the step changed: the workflow row and only the task rows that differ."""
    delta = instance.delta()
    fastsql.execute(
        conn,
        _STATE_SAVE,
        {"s_case_id": case_id, "s_body": delta.body, "s_now": now, "s_version": spiff.SERIALIZER_VERSION},
    )
    if delta.deletes:
        fastsql.execute(conn, _TASK_DELETE, [{"case_id": case_id, "task_id": k} for k in delta.deletes])
    if delta.upserts:
        fastsql.execute(
            conn,
            _TASK_UPSERT,
            [{"case_id": case_id, "task_id": k, "body": v} for k, v in delta.upserts.items()],
        )
