"""Projections refreshed inside every step: ``human_task`` rows (with assignment), ``timer`` rows and
the case's ``next_wake_at``. Work lists and schedulers read these tables, never a workflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, insert, select

from engine import audit, sla
from engine.runtime import Step
from engine.specs import lane_role
from engine.store import fastsql
from engine.store.models import timer

# The task data variable that names the org unit of a task, by role (set by dispatch / multi-instance).
UNIT_VARIABLES = {"department": ("department", "lead_department")}
# Roles held in units off the grid's path (a 司法所 sits under the district, beside the streets).
DISTRICT_WIDE_ROLES = {"judicial_office"}


@dataclass(frozen=True, slots=True)
class TaskChange:
    created: list[str]
    closed: list[str]


# Routing variables the case row mirrors, so lists and figures never read a workflow.
CASE_FIELDS = ("category", "priority", "outcome")


def refresh(step: Step, *, completed_task: str | None = None, actor: str | None = None) -> TaskChange:
    """Bring human tasks, timers and the case row in line with the live workflow, in the step's
    transaction; hand messages the workflow threw outwards to ``engine.links``."""
    change = _refresh_tasks(step, completed_task=completed_task, actor=actor)
    _refresh_timers(step)
    _refresh_case_fields(step)
    outgoing = step.instance.outgoing_events()
    if outgoing:
        from engine.links import handle_outgoing  # links opens cases, which refresh through here

        handle_outgoing(step, outgoing, actor=actor)
    if step.instance.completed:
        step.case_values.update(status="completed", closed_at=step.now, next_wake_at=None)
    return change


def _refresh_case_fields(step: Step) -> None:
    data = step.instance.data()
    for name in CASE_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value and value != getattr(step.case, name):
            step.case_values[name] = value


_OPEN_TASKS = fastsql.Statement("SELECT id FROM human_task WHERE case_id = :case_id AND state = 'ready'")
_CLOSE_TASK = fastsql.Statement(
    "UPDATE human_task SET state = :c_state, completed_at = :c_at, completed_by = :c_by WHERE id = :c_id",
    instants=frozenset({"c_at"}),
)
_INSERT_TASK = fastsql.Statement(
    "INSERT INTO human_task (id, case_id, task_spec, name, lane, role, org_unit_id, assignee_id, form_key,"
    " state, created_at, completed_at, completed_by) VALUES (:id, :case_id, :task_spec, :name, :lane, :role,"
    " :org_unit_id, :assignee_id, :form_key, :state, :created_at, :completed_at, :completed_by)",
    instants=frozenset({"created_at", "completed_at"}),
)
_INSERT_OUTBOX = fastsql.Statement(
    "INSERT INTO outbox (created_at, topic, recipient_id, case_id, payload, delivered_at, attempts)"
    " VALUES (:created_at, :topic, :recipient_id, :case_id, :payload, :delivered_at, :attempts)",
    json=frozenset({"payload"}),
    instants=frozenset({"created_at", "delivered_at"}),
)
_CASE_TIMERS = select(timer.c.task_id, timer.c.task_spec, timer.c.due_at).where(
    timer.c.case_id == bindparam("t_case")
)
_DELETE_TIMERS = delete(timer).where(timer.c.case_id == bindparam("t_case"))


def _refresh_tasks(step: Step, *, completed_task: str | None, actor: str | None) -> TaskChange:
    conn, now = step.conn, step.now
    open_rows = {str(r[0]) for r in fastsql.fetch(conn, _OPEN_TASKS, {"case_id": step.case_id})}
    ready = {t.task_id: t for t in step.instance.ready_user_tasks()}
    closed = [tid for tid in open_rows if tid not in ready]
    for tid in closed:
        done = tid == completed_task
        fastsql.execute(
            conn,
            _CLOSE_TASK,
            {
                "c_id": tid,
                "c_state": "completed" if done else "cancelled",
                "c_at": now,
                "c_by": actor if done else None,
            },
        )
        if not done:
            audit.record(conn, "task.cancelled", at=now, actor_id=actor, case_id=step.case_id, task_id=tid)
    created = [tid for tid in ready if tid not in open_rows]
    opened: list[sla.OpenTask] = []
    for tid in created:
        task = ready[tid]
        meta = step.spec.user_tasks.get(task.task_spec)
        role = lane_role(meta.lane_id or "") if meta else None
        unit = _assign_unit(step, role, task.data) if role else None
        if meta is not None:
            opened.append(sla.OpenTask(tid, meta, unit, task.data))
        fastsql.execute(
            conn,
            _INSERT_TASK,
            {
                "id": tid,
                "case_id": step.case_id,
                "task_spec": meta.bpmn_id if meta else task.task_spec,
                "name": meta.name if meta else task.task_spec,
                "lane": meta.lane_name if meta else None,
                "role": role,
                "org_unit_id": unit,
                "assignee_id": None,
                "form_key": meta.form_key if meta else None,
                "state": "ready",
                "created_at": now,
                "completed_at": None,
                "completed_by": None,
            },
        )
        enqueue(
            step,
            "task.created",
            {
                "task_id": tid,
                "role": role,
                "org_unit_id": unit,
                "name": meta.name if meta else None,
                "case_number": step.case.number,
            },
        )
    sla.on_tasks_changed(step, closed=closed, created=opened)
    return TaskChange(created, closed)


def enqueue(step: Step, topic: str, payload: dict[str, object], *, recipient_id: str | None = None) -> None:
    """Queue a notification in the outbox, in the step's transaction (delivered after commit)."""
    fastsql.execute(
        step.conn,
        _INSERT_OUTBOX,
        {
            "created_at": step.now,
            "topic": topic,
            "recipient_id": recipient_id,
            "case_id": step.case_id,
            "payload": payload,
            "delivered_at": None,
            "attempts": 0,
        },
    )


def enqueue_many(conn: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    """Queue many outbox rows at once (columns as ``enqueue`` writes them), in the caller's transaction."""
    if rows:
        fastsql.execute(conn, _INSERT_OUTBOX, rows)


def unit_variable(role: str, data: Mapping[str, object], unit: str | None) -> str | None:
    """The task data variable that placed a ``role`` task in ``unit`` (the first of ``UNIT_VARIABLES``
    that assignment reads, when it names that unit), or None when the unit came from the grid."""
    for variable in UNIT_VARIABLES.get(role, ()):
        value = data.get(variable)
        if isinstance(value, str) and value:
            return variable if value == unit else None
    return None


def _assign_unit(step: Step, role: str, data: dict[str, object]) -> str | None:
    hint = None
    for variable in UNIT_VARIABLES.get(role, ()):
        value = data.get(variable)
        if isinstance(value, str) and value:
            hint = value
            break
    grid = step.case.grid_id or hint
    if grid is None:
        return None
    return step.rt.org_lookups.resolve_assignment(
        step.conn,
        step.org_revision,
        role=role,
        grid_id=str(grid),
        unit_hint=hint,
        within_district=role in DISTRICT_WIDE_ROLES,
    )


def _refresh_timers(step: Step) -> None:
    waiting = {(t.task_id, t.task_spec, t.due_at) for t in step.instance.waiting_timers()}
    if not waiting and step.case.next_wake_at is None:
        return  # no timer rows exist for this case (next_wake_at is their minimum)
    stored = {
        (r.task_id, r.task_spec, r.due_at) for r in step.conn.execute(_CASE_TIMERS, {"t_case": step.case_id})
    }
    if waiting != stored:
        step.conn.execute(_DELETE_TIMERS, {"t_case": step.case_id})
        if waiting:
            step.conn.execute(
                insert(timer),
                [
                    {"case_id": step.case_id, "task_id": tid, "task_spec": spec, "due_at": due}
                    for tid, spec, due in waiting
                ],
            )
    step.case_values["next_wake_at"] = min((due for _, _, due in waiting), default=None)
