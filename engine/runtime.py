"""The runtime: the engine's dependencies in one object, the spec and workflow caches, and the step.

A *step* is one change to one case (ARCHITECTURE §2 "One step"): lock the case row (PostgreSQL
``SELECT … FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``), check ``expected_version``, load the workflow,
act, then in the same transaction save what changed, re-project human tasks and timers, append
audit events and outbox rows, and bump the version. Any error rolls all of it back.

The workflow cache keeps recently stepped workflows in memory, keyed by case and version. A step takes
the cached workflow only when its version equals the row it has just locked, so a stale copy is never
used; an exception discards the copy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine import spiff
from engine.clock import Clock, SystemClock
from engine.errors import Conflict, NotFound
from engine.sandbox import Sandbox
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


class SpecCache:
    """Deserialized specs by version id: each version is restored once per process."""

    def __init__(self) -> None:
        self._entries: dict[int, SpecEntry] = {}
        self._lock = threading.Lock()

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
        )
        with self._lock:
            self._entries.setdefault(version_id, entry)
        return self._entries[version_id]


class WorkflowCache:
    """A bounded LRU of (case id) -> (version, Instance). Entries are taken out while a step runs."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._items: OrderedDict[int, tuple[int, spiff.Instance]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, case_id: int, version: int) -> spiff.Instance | None:
        with self._lock:
            item = self._items.pop(case_id, None)
        if item is None or item[0] != version:
            return None
        return item[1]

    def put(self, case_id: int, version: int, instance: spiff.Instance) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[case_id] = (version, instance)
            self._items.move_to_end(case_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class Runtime:
    """Everything the engine functions need, injected once."""

    db: Database
    clock: Clock = field(default_factory=SystemClock)
    sandbox: Sandbox = field(default_factory=Sandbox)
    specs: SpecCache = field(default_factory=SpecCache)
    workflows: WorkflowCache = field(default_factory=WorkflowCache)
    wake_listeners: list[Callable[[datetime], None]] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock.now()

    def woke(self, instant: datetime) -> None:
        """Tell listeners (the embedded scheduler) that a case now wants to wake at ``instant``."""
        for listener in self.wake_listeners:
            listener(instant)


@dataclass
class Step:
    """One locked case inside its transaction; ``instance`` is the live workflow."""

    rt: Runtime
    conn: Connection
    case: Row[tuple[object, ...]]
    spec: SpecEntry
    instance: spiff.Instance
    now: datetime
    new_version: int
    case_values: dict[str, object] = field(default_factory=dict)

    @property
    def case_id(self) -> int:
        return int(self.case.id)


def lock_case(conn: Connection, case_id: int) -> Row[tuple[object, ...]]:
    query = select(case).where(case.c.id == case_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("case.not_found", f"case {case_id} does not exist", {"case_id": case_id})
    return row


@contextmanager
def step(rt: Runtime, case_id: int, *, expected_version: int | None = None) -> Iterator[Step]:
    """Lock, load, yield the step to act on, then save everything in the same transaction."""
    instance: spiff.Instance | None = None
    try:
        with rt.db.write() as conn:
            row = lock_case(conn, case_id)
            if expected_version is not None and row.version != expected_version:
                raise Conflict(
                    "case.stale_version",
                    f"case {row.number} is at version {row.version}, not {expected_version}: reload",
                    {"case_id": case_id, "version": row.version, "expected_version": expected_version},
                )
            if row.status != "open":
                raise Conflict("case.closed", f"case {row.number} is {row.status}", {"status": row.status})
            entry = rt.specs.get(conn, row.spec_version_id)
            instance = rt.workflows.take(case_id, row.version) or load_instance(rt, conn, entry, case_id)
            current = Step(rt, conn, row, entry, instance, rt.now(), row.version + 1)
            yield current
            save_instance(conn, case_id, instance, current.now)
            values = {"version": current.new_version, "updated_at": current.now, **current.case_values}
            conn.execute(update(case).where(case.c.id == case_id).values(**values))
    except BaseException:
        instance = None
        raise
    finally:
        if instance is not None:
            rt.workflows.put(case_id, row.version + 1, instance)
            wake = current.case_values.get("next_wake_at")
            if isinstance(wake, datetime) and wake != row.next_wake_at:
                rt.woke(wake)


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


def save_instance(conn: Connection, case_id: int, instance: spiff.Instance, now: datetime) -> None:
    """Write what the step changed: the workflow row and only the task rows that differ."""
    delta = instance.delta()
    state_values = {"body": delta.body, "updated_at": now, "serializer_version": spiff.SERIALIZER_VERSION}
    updated = conn.execute(
        update(workflow_state).where(workflow_state.c.case_id == case_id).values(**state_values)
    ).rowcount
    if not updated:
        conn.execute(insert(workflow_state).values(case_id=case_id, **state_values))
    if delta.deletes:
        conn.execute(
            delete(workflow_task).where(
                workflow_task.c.case_id == case_id, workflow_task.c.task_id.in_(delta.deletes)
            )
        )
    if delta.upserts:
        rows = [{"case_id": case_id, "task_id": k, "body": v} for k, v in delta.upserts.items()]
        upsert = (
            pg_insert(workflow_task) if conn.dialect.name == "postgresql" else sqlite_insert(workflow_task)
        )
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[workflow_task.c.case_id, workflow_task.c.task_id],
                set_={"body": upsert.excluded.body},
            ),
            rows,
        )
