"""Human tasks: work lists, claim / unclaim, reassign (改派), and completing a task with validated form
data — plainly, or through an action its diagram declares (退单, 延期申请, 延期审批: ``engine.actions``).

Every action is a named function with a permission check and one audit event; the work list is read
from the ``human_task`` projection, never from a workflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from engine import access, actions, audit, forms, reassignment, sla, spiff
from engine.clock import Clock
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.projection import enqueue, refresh, unit_variable
from engine.runtime import TASK_ROW, Guard, Runtime, Step, run_early, step
from engine.store import fastsql
from engine.store.models import case, human_task

SYSTEM_ACTOR = "system"
TaskRow = Mapping[str, object]  # one human_task row as read inside a step


@dataclass(frozen=True, slots=True)
class TaskView:
    id: str
    case_id: int
    case_number: str
    case_title: str
    case_version: int
    task_spec: str
    name: str
    lane: str | None
    role: str | None
    org_unit_id: str | None
    assignee_id: str | None
    form_key: str | None
    state: str
    created_at: datetime
    completed_at: datetime | None
    completed_by: str | None


_COLUMNS = (
    human_task,
    case.c.number.label("case_number"),
    case.c.title.label("case_title"),
    case.c.version.label("case_version"),
)


def _view(m: Mapping[Any, Any]) -> TaskView:
    """A task view from one row (``Row._mapping`` or a prepared query's dict) of ``_COLUMNS``' names."""
    return TaskView(**{name: m[name] for name in _VIEW_FIELDS})


_VIEW_FIELDS = tuple(TaskView.__dataclass_fields__)


def _row(conn: Connection, task_id: str) -> Row[tuple[object, ...]]:
    found = conn.execute(
        select(*_COLUMNS).join(case, case.c.id == human_task.c.case_id).where(human_task.c.id == task_id)
    ).first()
    if found is None:
        raise NotFound("task.not_found", f"no task {task_id}", {"task_id": task_id})
    return found


def get_task(task_id: str, *, rt: Runtime) -> TaskView:
    with rt.db.read() as conn:
        return _view(_row(conn, resolve_task_id(conn, task_id))._mapping)


def resolve_task_id(conn: Connection, reference: str) -> str:
    """A full task id, or a unique prefix of at least 8 characters (for people typing at the CLI)."""
    if len(reference) >= 36:
        return reference
    if len(reference) < 8:
        raise NotFound("task.not_found", f"no task {reference}", {"task_id": reference})
    ids = [
        r[0]
        for r in conn.execute(select(human_task.c.id).where(human_task.c.id.like(f"{reference}%")).limit(2))
    ]
    if len(ids) != 1:
        raise NotFound("task.not_found", f"no single task starting with {reference}", {"task_id": reference})
    return str(ids[0])


def list_tasks(*, rt: Runtime, person_id: str, limit: int = 200) -> list[TaskView]:
    """The person's work list: tasks assigned to them, and unassigned tasks of their (role, unit)."""
    with rt.db.read() as conn:
        return work_page(conn, person_id, limit=limit)


def work_page(
    conn: Connection, person_id: str, *, limit: int, after: tuple[datetime, str] | None = None
) -> list[TaskView]:
    """Up to ``limit`` ready tasks of ``person_id``'s work list, oldest first (by ``created_at``, then
    id), after the (instant, task id) ``after``: the tasks they claimed, and the unclaimed tasks of each
    (role, unit) they hold a membership in (read in the same transaction, so always current).

    Each source is its own index range, read in order and cut at ``limit`` (``_work_statement``): the
    cost is the page and the caller's memberships, not the size of a queue or of the database."""
    units = fastsql.fetch(conn, _MEMBERSHIPS, {"person_id": person_id})
    params: dict[str, object] = {"person_id": person_id, "limit": limit}
    for i, (role, unit) in enumerate(units):
        params[f"role_{i}"], params[f"unit_{i}"] = role, unit
    if after is not None:
        params["after_at"], params["after_id"] = after
    rows = fastsql.fetch_mappings(conn, _work_statement(len(units), after is not None), params)
    return [_view(r) for r in rows]


_MEMBERSHIPS = fastsql.Statement(
    "SELECT role, org_unit_id FROM membership WHERE person_id = :person_id ORDER BY role, org_unit_id"
)
_WORK: dict[tuple[int, bool], fastsql.Statement] = {}


def _work_statement(queues: int, after: bool) -> fastsql.Statement:
    """The work-list page over the caller's claims and ``queues`` (role, unit) queues.

    Every source is a subquery ordered by (created_at, id) with its own LIMIT, which an index serves in
    that order (``ix_human_task_claimed``: assignee, state, created_at, id; ``ix_human_task_queue``:
    role, unit, state, assignee, created_at, id), so each reads at most ``limit`` rows; the union is
    then ordered and cut again. The cursor is a row-value comparison, which the same indexes seek to.
    Written once per (number of queues, cursor or not)."""
    key = (queues, after)
    if key in _WORK:
        return _WORK[key]
    cursor = " AND (created_at, id) > (:after_at, :after_id)" if after else ""
    order = " ORDER BY created_at, id LIMIT :limit"
    sources = [f"SELECT * FROM human_task WHERE assignee_id = :person_id AND state = 'ready'{cursor}{order}"]
    sources += [
        f"SELECT * FROM human_task WHERE role = :role_{i} AND org_unit_id = :unit_{i} AND state = 'ready'"
        f" AND assignee_id IS NULL{cursor}{order}"
        for i in range(queues)
    ]
    union = " UNION ALL ".join(f"SELECT * FROM ({sql}) s{i}" for i, sql in enumerate(sources))
    statement = fastsql.Statement(
        "SELECT t.*, c.number AS case_number, c.title AS case_title, c.version AS case_version"
        f' FROM ({union}) t JOIN "case" c ON c.id = t.case_id ORDER BY t.created_at, t.id LIMIT :limit',
        instants=frozenset({"after_at"}) if after else frozenset(),
        result_instants=frozenset({"created_at", "completed_at"}),
    )
    _WORK[key] = statement
    return statement


def case_tasks(case_id: int, *, rt: Runtime) -> list[TaskView]:
    with rt.db.read() as conn:
        rows = conn.execute(
            select(*_COLUMNS)
            .join(case, case.c.id == human_task.c.case_id)
            .where(human_task.c.case_id == case_id)
            .order_by(human_task.c.created_at, human_task.c.id)
        ).all()
    return [_view(r._mapping) for r in rows]


def _check_ready(m: TaskRow) -> None:
    if m["state"] != "ready":
        code = "task.already_completed" if m["state"] == "completed" else "task.not_ready"
        raise Conflict(code, f"task '{m['name']}' is {m['state']}", {"task_id": m["id"], "state": m["state"]})


def _check_actor(current: Step, m: TaskRow, actor: str) -> None:
    _check_ready(m)
    if actor == SYSTEM_ACTOR:
        return
    if m["assignee_id"] is not None and m["assignee_id"] != actor:
        raise PermissionDenied(
            "task.assigned_to_other", f"task '{m['name']}' is claimed by someone else", {"task_id": m["id"]}
        )
    allowed = (
        m["role"] is not None
        and m["org_unit_id"] is not None
        and current.rt.org_lookups.may_act(
            current.conn,
            current.org_revision,
            person_id=actor,
            role=str(m["role"]),
            org_unit_id=str(m["org_unit_id"]),
        )
    )
    if not allowed:
        raise PermissionDenied(
            "task.not_candidate",
            f"{actor} may not act on task '{m['name']}'",
            {"task_id": m["id"], "role": m["role"], "org_unit_id": m["org_unit_id"]},
        )


def complete_task(
    task_id: str,
    *,
    rt: Runtime,
    actor: str,
    data: Mapping[str, object],
    expected_version: int | None = None,
    guard: Guard | None = None,
) -> TaskView:
    """Validate ``data`` against the task's form, run the task and the engine to the next wait, save.

    ``guard`` checks the locked case first (the caller's right to see it: ``engine.casework``)."""
    return _complete(task_id, rt=rt, actor=actor, given=data, expected_version=expected_version, guard=guard)


def return_task(
    task_id: str,
    *,
    rt: Runtime,
    actor: str,
    reason: str,
    reason_code: str | None = None,
    expected_version: int | None = None,
    guard: Guard | None = None,
) -> TaskView:
    """退单: complete the task down its return path, with the fields its diagram declares
    (``engine.actions``: ``return_field`` / ``return_value`` / ``return_reason_field``)."""
    given = actions.ReturnInput(reason=reason, reason_code=reason_code)
    return _complete(task_id, rt=rt, actor=actor, given=given, expected_version=expected_version, guard=guard)


def request_extension(
    task_id: str,
    *,
    rt: Runtime,
    actor: str,
    days: int,
    reason: str,
    expected_version: int | None = None,
    guard: Guard | None = None,
) -> TaskView:
    """延期申请: complete the task with its declared extension request (``extension_*`` properties);
    the diagram leads on to whoever decides it."""
    given = actions.ExtensionRequestInput(days=days, reason=reason)
    return _complete(task_id, rt=rt, actor=actor, given=given, expected_version=expected_version, guard=guard)


def decide_extension(
    task_id: str,
    *,
    rt: Runtime,
    actor: str,
    approve: bool,
    days: int | None = None,
    comment: str | None = None,
    expected_version: int | None = None,
    guard: Guard | None = None,
) -> TaskView:
    """延期审批: complete a task with ``sla_extends`` as approved (the clock grows by ``days`` working
    days) or rejected."""
    given = actions.ExtensionDecisionInput(approve=approve, days=days, comment=comment)
    return _complete(task_id, rt=rt, actor=actor, given=given, expected_version=expected_version, guard=guard)


_AUDIT_ACTION = {
    actions.RETURN: "task.returned",
    actions.EXTENSION_REQUEST: "task.extension_requested",
    actions.EXTENSION_DECISION: "task.extension_decided",
}


def _complete(
    task_id: str,
    *,
    rt: Runtime,
    actor: str,
    given: Mapping[str, object] | actions.ActionInput,
    expected_version: int | None,
    guard: Guard | None,
) -> TaskView:
    """One completion step: plain form data, or an action whose data the task's properties define."""
    task_id = _full_id(rt, task_id)
    checked: list[_FormCheck] = []
    early = None
    if isinstance(given, Mapping):

        def work(instance: spiff.Instance, clock: Clock) -> None:
            check = _check_form_early(rt, instance, task_id, given)
            if check is not None:
                checked.append(check)
                if check.fields:  # refused: not worth running (the step reports it, after its checks)
                    raise forms.invalid_form(check.form_key, check.fields)
            instance.complete_user_task(task_id, given, clock)

        early = run_early(rt, task_id, work)
    with step(rt, task_id=task_id, expected_version=expected_version, guard=guard) as current:
        task = _step_row(current, task_id)
        _check_actor(current, task, actor)
        form_key = task["form_key"]
        schema = current.spec.forms.get(str(form_key)) if form_key else None
        if form_key and schema is None:
            raise NotFound(
                "form.not_found",
                f"form '{form_key}' is not part of this case's spec version",
                {"form_key": form_key},
            )
        data, action = _form_data(current, task, schema, given)
        if form_key and schema is not None:
            check = checked[0] if checked and data is given else None
            if check is None or (check.form_key, check.schema) != (form_key, schema):
                forms.validate_form(str(form_key), schema, data)
            elif check.fields:
                raise forms.invalid_form(check.form_key, check.fields)
        if data is not given or not current.adopt(early):
            current.instance.complete_user_task(task_id, data, rt.clock)
        _approve_extension(current, task, data, actor)
        change = refresh(current, completed_task=task_id, actor=actor)
        after: dict[str, object] = {
            "data": dict(data),
            "created": change.created,
            "version": current.new_version,
            "case_status": current.case_values.get("status", "open"),
        }
        if action is not None:
            after["action"] = action
        audit.record(
            current.conn,
            _AUDIT_ACTION.get(action or "", "task.completed"),
            at=current.now,
            actor_id=actor,
            case_id=current.case_id,
            task_id=task_id,
            before={"task": task["task_spec"], "state": "ready", "version": current.case.version},
            after=after,
        )
        view = _step_view(current, task, state="completed", completed_at=current.now, completed_by=actor)
    return view


@dataclass(frozen=True, slots=True)
class _FormCheck:
    """Form data checked before the write lock against the form of the cached workflow's task: the step
    uses the outcome, at the point where it validates, when its task row names the same form."""

    form_key: str
    schema: str
    fields: dict[str, str]  # the refused fields; empty when the data is valid


def _check_form_early(
    rt: Runtime, instance: spiff.Instance, task_id: str, data: Mapping[str, object]
) -> _FormCheck | None:
    """Validate ``data`` against the form of ready task ``task_id`` of a cached workflow (schema
    validation is pure work, and the lock every SQLite writer waits for need not cover it); None when
    the task, its spec version or its form is not at hand."""
    entry = rt.specs.holding(instance.spec)
    name = instance.ready_task_spec(task_id)
    meta = entry.user_tasks.get(name) if entry is not None and name is not None else None
    schema = entry.forms.get(meta.form_key) if entry is not None and meta and meta.form_key else None
    if meta is None or meta.form_key is None or schema is None:
        return None
    return _FormCheck(meta.form_key, schema, forms.form_errors(schema, data))


def _form_data(
    current: Step, task: TaskRow, schema: str | None, given: Mapping[str, object] | actions.ActionInput
) -> tuple[Mapping[str, object], str | None]:
    """The form data to complete with, and the action it came from (None for plain form data)."""
    if isinstance(given, Mapping):
        return given, None
    meta = current.spec.user_tasks.get(str(task["task_spec"]))
    form = json.loads(schema) if schema else None
    data = actions.form_data(meta.properties if meta else {}, form, given, task_name=str(task["name"]))
    return data, actions.name_of(given)


def _approve_extension(current: Step, task: TaskRow, data: Mapping[str, object], actor: str) -> None:
    """A task with ``sla_extends="<clock>"`` decides 延期. It approves when its approval field
    (property ``sla_approval_field``, default ``decision``) is ``approve``; the extension field
    (``sla_extension_field``, default ``extension``) gives the added budget: "3WD", "4WH", or a whole
    number of working days. The budget grows only then."""
    meta = current.spec.user_tasks.get(str(task["task_spec"]))
    clock_key = meta.properties.get("sla_extends") if meta else None
    if meta is None or not clock_key:
        return
    if data.get(meta.properties.get("sla_approval_field", "decision")) != "approve":
        return
    added = data.get(meta.properties.get("sla_extension_field", "extension"))
    if isinstance(added, int) and not isinstance(added, bool) and added > 0:
        added = f"{added}WD"
    if not isinstance(added, str) or not added:
        raise InvalidInput(
            "sla.extension_missing",
            "an approved extension needs its length (e.g. 3WD)",
            {"fields": {"extension": "required when approving"}},
        )
    reason = next((str(v) for k, v in data.items() if k.endswith(("reason", "comment")) and v), "延期批准")
    sla.apply_extension(
        current, clock_key=clock_key, added=added, reason=reason, actor=actor, held_by=str(task["id"])
    )


def claim_task(
    task_id: str, *, rt: Runtime, actor: str, expected_version: int | None = None, guard: Guard | None = None
) -> TaskView:
    """Take a task of one's (role, unit) so that it leaves colleagues' lists (领单 / 签收)."""
    return _set_assignee(
        task_id,
        rt=rt,
        actor=actor,
        assignee=actor,
        action="task.claimed",
        expected_version=expected_version,
        guard=guard,
    )


def unclaim_task(
    task_id: str, *, rt: Runtime, actor: str, expected_version: int | None = None, guard: Guard | None = None
) -> TaskView:
    """Give a claimed task back to the unit's shared list."""
    return _set_assignee(
        task_id,
        rt=rt,
        actor=actor,
        assignee=None,
        action="task.unclaimed",
        expected_version=expected_version,
        guard=guard,
    )


def _set_assignee(
    task_id: str,
    *,
    rt: Runtime,
    actor: str,
    assignee: str | None,
    action: str,
    expected_version: int | None,
    guard: Guard | None,
) -> TaskView:
    task_id = _full_id(rt, task_id)
    with step(rt, task_id=task_id, expected_version=expected_version, guard=guard) as current:
        task = _step_row(current, task_id)
        _check_ready(task)  # a completed task says so, whoever held it
        before = task["assignee_id"]
        if assignee is not None and before is not None:
            raise Conflict(
                "task.already_claimed",
                f"task '{task['name']}' is already claimed",
                {"task_id": task_id, "assignee_id": before},
            )
        if assignee is None and before is None:
            raise Conflict("task.not_claimed", f"task '{task['name']}' is not claimed", {"task_id": task_id})
        _check_actor(current, task, actor)
        fastsql.execute(current.conn, _ASSIGN, {"a_id": task_id, "a_assignee": assignee})
        audit.record(
            current.conn,
            action,
            at=current.now,
            actor_id=actor,
            case_id=current.case_id,
            task_id=task_id,
            before={"assignee_id": before},
            after={"assignee_id": assignee},
        )
        view = _step_view(current, task, assignee_id=assignee)
    return view


def reassign_task(
    task_id: str,
    *,
    rt: Runtime,
    actor: str,
    reason: str,
    assignee_id: str | None = None,
    org_unit_id: str | None = None,
    expected_version: int | None = None,
    guard: Guard | None = None,
) -> TaskView:
    """改派: move an open task to another person (``assignee_id``) and/or unit (``org_unit_id``).

    Who may, and which targets are valid: ``engine.reassignment``. The task keeps its id, role and
    form; a task moved to a unit alone goes to that unit's shared list. When the moved task's unit came
    from a routing variable (a department task's ``department`` / ``lead_department``), the variable
    follows, so the diagram's later steps go to the new unit too. Open SLA clocks of the task are handed
    over (``sla.hand_over``). One ``task.reassigned`` audit event; the new assignee (or the new unit's
    holders of the role) and the previous assignee are notified."""
    text = (reason or "").strip()
    if not text or len(text) > actions.MAX_TEXT:
        raise InvalidInput(
            "task.reason_required",
            f"give a reason of 1 to {actions.MAX_TEXT} characters",
            {"fields": {"reason": "required"}},
        )
    task_id = _full_id(rt, task_id)
    with step(rt, task_id=task_id, expected_version=expected_version, guard=guard) as current:
        task = _step_row(current, task_id)
        _check_ready(task)
        role, unit = _opt_str(task["role"]), _opt_str(task["org_unit_id"])
        who = access.principal(current.conn, actor)
        case_path = str(current.case.unit_path or "")
        grants = reassignment.check_authority(
            current.conn, who, task_id=task_id, role=role, unit_id=unit, case_path=case_path
        )
        assert role is not None  # check_authority refuses a task without a role
        target = reassignment.check_target(
            current.conn, role=role, current_unit=unit, org_unit_id=org_unit_id, assignee_id=assignee_id
        )
        reassignment.check_reach(grants, target, task_id=task_id, case_path=case_path)
        before = {"org_unit_id": unit, "assignee_id": task["assignee_id"]}
        after: dict[str, object] = {"org_unit_id": target.unit.id, "assignee_id": target.assignee_id}
        if after == before:
            raise InvalidInput(
                "task.reassign_unchanged",
                f"task '{task['name']}' is already there",
                {"fields": {"org_unit_id": "unchanged", "assignee_id": "unchanged"}},
            )
        fastsql.execute(
            current.conn, _MOVE, {"m_id": task_id, "m_unit": target.unit.id, "m_assignee": target.assignee_id}
        )
        variables = _follow_routing(current, task_id, role, unit, target.unit.id)
        clocks = sla.hand_over(current, task_id=task_id, to_unit=target.unit.id, actor=actor, reason=text)
        audit.record(
            current.conn,
            "task.reassigned",
            at=current.now,
            actor_id=actor,
            case_id=current.case_id,
            task_id=task_id,
            before=before,
            after={**after, "reason": text, "variables": variables, "clocks": clocks},
        )
        _notify_reassigned(
            current, task, role, target, before_assignee=_opt_str(task["assignee_id"]), by=actor
        )
        view = _step_view(current, task, org_unit_id=target.unit.id, assignee_id=target.assignee_id)
    return view


def _follow_routing(current: Step, task_id: str, role: str, unit: str | None, to_unit: str) -> dict[str, str]:
    """Point the routing variable that placed the task (if any) at its new unit."""
    if unit == to_unit:
        return {}
    ready = next((t for t in current.instance.ready_user_tasks() if t.task_id == task_id), None)
    name = unit_variable(role, ready.data if ready else {}, unit)
    if name is None:
        return {}
    current.instance.update_task_data(task_id, {name: to_unit})
    return {name: to_unit}


def _notify_reassigned(
    current: Step,
    task: TaskRow,
    role: str,
    target: reassignment.Target,
    *,
    before_assignee: str | None,
    by: str,
) -> None:
    payload: dict[str, object] = {
        "task_id": task["id"],
        "task_name": task["name"],
        "role": role,
        "org_unit_id": target.unit.id,
        "case_number": current.case.number,
        "by": by,
    }
    enqueue(current, "task.reassigned", payload, recipient_id=target.assignee_id)
    if before_assignee is not None and before_assignee != target.assignee_id:
        enqueue(current, "task.withdrawn", payload, recipient_id=before_assignee)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _full_id(rt: Runtime, reference: str) -> str:
    if len(reference) >= 36:
        return reference
    with rt.db.read() as conn:
        return resolve_task_id(conn, reference)


_ASSIGN = fastsql.Statement("UPDATE human_task SET assignee_id = :a_assignee WHERE id = :a_id")
_MOVE = fastsql.Statement(
    "UPDATE human_task SET org_unit_id = :m_unit, assignee_id = :m_assignee WHERE id = :m_id"
)


def _step_row(current: Step, task_id: str) -> TaskRow:
    locked, current.task = current.task, None  # the row read with the lock serves the first ask only
    if locked is not None and locked["id"] == task_id:
        return locked
    rows = fastsql.fetch_mappings(current.conn, TASK_ROW, {"task_id": task_id})
    if not rows:
        raise NotFound("task.not_found", f"no task {task_id}", {"task_id": task_id})
    return rows[0]


def _step_view(current: Step, task: TaskRow, **changes: object) -> TaskView:
    """The task as the step leaves it, built from rows the step already read."""
    fields: dict[str, Any] = {name: task[name] for name in TaskView.__dataclass_fields__ if name in task}
    fields.update(
        case_number=current.case.number,
        case_title=current.case.title,
        case_version=current.new_version,
        **changes,
    )
    return TaskView(**fields)
