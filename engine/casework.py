"""Case work as an authenticated caller does it: intake (点单) with idempotency, task reads and actions
(claim, complete, 改派 reassign, and the 退单 / 延期申请 / 延期审批 actions a task's diagram declares), and
BPMN messages sent by supervisors — each checked against the caller's scope before the step runs.

Owns no table. The steps themselves are ``engine.cases`` / ``engine.tasks`` / ``engine.events`` (which
check ``orgs.may_act`` inside the locked step); this module adds what an outside caller needs first: the
case or task must be *visible* to them (``engine.access``), otherwise it does not exist for them
(``task.not_found`` / ``case.not_found``, never a 403 that would confirm the id). Must not import flask,
api or celery.

Intake. A caller may report a case into a grid covered by one of their ``INTAKE_ROLES`` grants (a
resident into their own grid, a grid worker into theirs, the command centre's hotline anywhere in the
district). An idempotency key is scoped to the caller: it is stored as ``sha256(person, key)``, so two
people cannot collide, nor learn each other's cases by guessing keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from engine import access, actions, cases, events, orgs, tasks
from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.runtime import CaseRow, Guard, Runtime
from engine.store import fastsql
from engine.store.models import case, human_task

__all__ = [
    "CHANNELS",
    "INTAKE_ROLES",
    "MAX_WORK_PAGE",
    "MESSAGE_ROLES",
    "Intake",
    "TaskDetail",
    "TaskPage",
    "claim",
    "complete",
    "decide_extension",
    "my_tasks",
    "reassign",
    "report_case",
    "request_extension",
    "return_task",
    "send_message",
    "task_detail",
    "unclaim",
    "work_list",
]

INTAKE_ROLES = frozenset(
    {"resident", "grid_worker", "grid_leader", "community", "street", "command_centre", "supervisor"}
)
MESSAGE_ROLES = frozenset({"supervisor", "command_centre"})
CHANNELS = ("hotline_12345", "wechat", "web", "grid_patrol", "talk_point", "walk_in")
GRID_KINDS = ("grid", "micro_grid", "special_grid")
KIND_BY_PROCESS = {"mediation": "dispute", "grid_event": "grid_event", "demo": "demo"}
MAX_WORK_PAGE = 500
_MESSAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Intake:
    """A reported case as it arrives from any channel."""

    process_id: str
    title: str
    grid_id: str
    channel: str
    category: str | None = None
    kind: str | None = None
    data: Mapping[str, object] = field(default_factory=dict)


def _key_hash(person_id: str, key: str) -> str:
    return hashlib.sha256(f"{person_id}\0{key}".encode()).hexdigest()


def _check_intake(conn: Connection, who: access.Principal, intake: Intake) -> None:
    if intake.channel not in CHANNELS:
        raise InvalidInput(
            "case.unknown_channel", f"unknown channel {intake.channel!r}", {"known": list(CHANNELS)}
        )
    grid = fastsql.fetch(conn, _GRID, {"grid_id": intake.grid_id})
    if not grid or grid[0][1] not in GRID_KINDS:
        raise InvalidInput(
            "case.unknown_grid", f"no grid {intake.grid_id!r}", {"fields": {"grid_id": "unknown grid"}}
        )
    if not who.covers(str(grid[0][0]), INTAKE_ROLES):
        raise PermissionDenied(
            "case.report_forbidden",
            "you may report cases only into grids of your own units",
            {"grid_id": intake.grid_id},
        )
    if not fastsql.fetch(conn, _DEPLOYED, {"process_id": intake.process_id}):
        raise InvalidInput(
            "case.unknown_process",
            f"process {intake.process_id!r} is not deployed",
            {"fields": {"process_id": "not deployed"}},
        )


_GRID = fastsql.Statement("SELECT path, kind FROM org_unit WHERE id = :grid_id")
_DEPLOYED = fastsql.Statement("SELECT 1 FROM spec_version WHERE process_id = :process_id LIMIT 1")


def _replayed(rt: Runtime, key_hash: str) -> cases.CaseView | None:
    with rt.db.read() as conn:
        found = conn.execute(select(case.c.id).where(case.c.idempotency_key == key_hash)).scalar()
    return None if found is None else cases.get_case(int(found), rt=rt)


def report_case(
    who: access.Principal, intake: Intake, *, rt: Runtime, idempotency_key: str | None = None
) -> tuple[cases.CaseView, bool]:
    """Open a case for ``who``; returns (case, replayed). A repeated idempotency key returns the first
    case and ``replayed=True`` — whatever the repeated request's body."""
    key_hash = _key_hash(who.person_id, idempotency_key) if idempotency_key is not None else None
    if key_hash is not None:
        earlier = _replayed(rt, key_hash)
        if earlier is not None:
            return earlier, True
    request = cases.CaseRequest(
        intake.process_id,
        intake.title,
        kind=intake.kind or KIND_BY_PROCESS.get(intake.process_id, "work_order"),
        grid_id=intake.grid_id,
        category=intake.category,
        channel=intake.channel,
        data=dict(intake.data),
        idempotency_key=key_hash,
    )
    try:
        return cases.start_request(
            request, rt=rt, actor=who.person_id, check=lambda conn: _check_intake(conn, who, intake)
        )
    except IntegrityError:
        # the same key raced in from another request (PostgreSQL): the other one opened the case
        earlier = _replayed(rt, key_hash) if key_hash is not None else None
        if earlier is None:
            raise
        return earlier, True


# --- tasks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskDetail:
    task: tasks.TaskView
    form: dict[str, object] | None  # the JSON Schema of the task's form
    actionable: bool  # the caller may claim / complete it (candidate, or supervisor of the subtree)
    actions: list[str] = field(default_factory=list)  # what its diagram declares (``engine.actions``)


def _visible_task(conn: Connection, who: access.Principal, task_id: str) -> tuple[int, int]:
    """(case id, spec version id) of a task the caller may see; ``task.not_found`` otherwise."""
    row = conn.execute(
        select(case.c.id, case.c.spec_version_id)
        .join(human_task, human_task.c.case_id == case.c.id)
        .where(human_task.c.id == task_id, access.visible_filter(who))
    ).first()
    if row is None:
        raise NotFound("task.not_found", f"no task {task_id}", {"task_id": task_id})
    return int(row.id), int(row.spec_version_id)


def my_tasks(who: access.Principal, *, rt: Runtime, limit: int = 200) -> list[tasks.TaskView]:
    """The caller's work list: their claimed tasks and the unclaimed tasks of their (role, unit)s."""
    return tasks.list_tasks(rt=rt, person_id=who.person_id, limit=limit)


@dataclass(frozen=True, slots=True)
class TaskPage:
    items: list[tasks.TaskView]
    next_cursor: str | None


def work_list(who: access.Principal, *, rt: Runtime, cursor: str | None = None, limit: int = 200) -> TaskPage:
    """The caller's work list one page at a time, oldest first (the rule of ``tasks.list_tasks``: ready
    tasks claimed by the caller, and unclaimed ready tasks of one of their (role, unit)s).

    The cursor stands for "after (created_at, task id)", so a page never repeats or skips a task that
    stays on the list while later pages are read; tasks completed meanwhile simply drop out."""
    if not 1 <= limit <= MAX_WORK_PAGE:
        raise InvalidInput("search.bad_limit", f"limit must be 1 to {MAX_WORK_PAGE}", {"limit": limit})
    after = decode_task_cursor(cursor) if cursor is not None else None
    with rt.db.read() as conn:
        items = tasks.work_page(conn, who.person_id, limit=limit + 1, after=after)
    if len(items) <= limit:
        return TaskPage(items, None)
    items = items[:limit]
    return TaskPage(items, encode_task_cursor(items[-1].created_at, items[-1].id))


def encode_task_cursor(at: datetime, task_id: str) -> str:
    """An opaque cursor for "after (``at``, ``task_id``)" in the work list."""
    return base64.urlsafe_b64encode(f"t{at.isoformat()}|{task_id}".encode()).decode().rstrip("=")


def decode_task_cursor(cursor: str) -> tuple[datetime, str]:
    """The (instant, task id) a cursor stands for; ``search.bad_cursor`` for anything we did not hand out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        stamp, sep, task_id = text[1:].partition("|")
        at = datetime.fromisoformat(stamp)
        if not text.startswith("t") or not sep or not task_id or len(task_id) > 36 or at.tzinfo is None:
            raise ValueError(cursor)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(
            "search.bad_cursor", "the cursor is not one this API returned", {"cursor": cursor}
        ) from None
    return at, task_id


def task_detail(who: access.Principal, task_id: str, *, rt: Runtime) -> TaskDetail:
    """A visible task with its form schema, and whether the caller may act on it now."""
    with rt.db.read() as conn:
        _case_id, version_id = _visible_task(conn, who, task_id)
        entry = rt.specs.get(conn, version_id)
        forms = entry.forms
    view = tasks.get_task(task_id, rt=rt)
    meta = entry.user_tasks.get(view.task_spec)
    form_text = forms.get(view.form_key or "")
    actionable = False
    if view.state == "ready" and view.assignee_id in (None, who.person_id) and view.role and view.org_unit_id:
        with rt.db.read() as conn:
            actionable = orgs.may_act(
                conn, person_id=who.person_id, role=view.role, org_unit_id=view.org_unit_id
            )
    offered = actions.declared(meta.properties) if meta else []
    return TaskDetail(view, json.loads(form_text) if form_text else None, actionable, offered)


def _sees_task(who: access.Principal, task_id: str) -> Guard:
    """The guard of a task action: ``task.not_found`` unless ``who`` may see the task's case — checked
    on the locked row (the case of ``task_id``) inside the action's own transaction. Reporter and area
    grants are read off the row; only a grant through one of the case's tasks needs a query."""

    def guard(conn: Connection, row: CaseRow) -> None:
        if not access.sees_case_row(
            conn, who, int(row.id), unit_path=row.unit_path, reporter_id=row.reporter_id
        ):
            raise NotFound("task.not_found", f"no task {task_id}", {"task_id": task_id})

    return guard


def claim(
    who: access.Principal, task_id: str, *, rt: Runtime, expected_version: int | None = None
) -> tasks.TaskView:
    return tasks.claim_task(
        task_id, rt=rt, actor=who.person_id, expected_version=expected_version, guard=_sees_task(who, task_id)
    )


def unclaim(
    who: access.Principal, task_id: str, *, rt: Runtime, expected_version: int | None = None
) -> tasks.TaskView:
    return tasks.unclaim_task(
        task_id, rt=rt, actor=who.person_id, expected_version=expected_version, guard=_sees_task(who, task_id)
    )


def complete(
    who: access.Principal,
    task_id: str,
    data: Mapping[str, object],
    *,
    rt: Runtime,
    expected_version: int | None = None,
) -> tasks.TaskView:
    """Complete a task with form data (退单 or 延期申请 are values of the task's form; ``return_task`` and
    ``request_extension`` fill them in from the diagram's properties)."""
    return tasks.complete_task(
        task_id,
        rt=rt,
        actor=who.person_id,
        data=data,
        expected_version=expected_version,
        guard=_sees_task(who, task_id),
    )


def reassign(
    who: access.Principal,
    task_id: str,
    *,
    rt: Runtime,
    reason: str,
    assignee_id: str | None = None,
    org_unit_id: str | None = None,
    expected_version: int | None = None,
) -> tasks.TaskView:
    """改派 a visible task to another person and/or unit (the rules: ``engine.reassignment``)."""
    return tasks.reassign_task(
        task_id,
        rt=rt,
        actor=who.person_id,
        reason=reason,
        assignee_id=assignee_id,
        org_unit_id=org_unit_id,
        expected_version=expected_version,
        guard=_sees_task(who, task_id),
    )


def return_task(
    who: access.Principal,
    task_id: str,
    *,
    rt: Runtime,
    reason: str,
    reason_code: str | None = None,
    expected_version: int | None = None,
) -> tasks.TaskView:
    """退单: complete a visible task down the return path its diagram declares (``engine.actions``)."""
    return tasks.return_task(
        task_id,
        rt=rt,
        actor=who.person_id,
        reason=reason,
        reason_code=reason_code,
        expected_version=expected_version,
        guard=_sees_task(who, task_id),
    )


def request_extension(
    who: access.Principal,
    task_id: str,
    *,
    rt: Runtime,
    days: int,
    reason: str,
    expected_version: int | None = None,
) -> tasks.TaskView:
    """延期申请 on a visible task that declares it."""
    return tasks.request_extension(
        task_id,
        rt=rt,
        actor=who.person_id,
        days=days,
        reason=reason,
        expected_version=expected_version,
        guard=_sees_task(who, task_id),
    )


def decide_extension(
    who: access.Principal,
    task_id: str,
    *,
    rt: Runtime,
    approve: bool,
    days: int | None = None,
    comment: str | None = None,
    expected_version: int | None = None,
) -> tasks.TaskView:
    """延期审批 on a visible task with ``sla_extends`` (approving grows the clock by ``days``)."""
    return tasks.decide_extension(
        task_id,
        rt=rt,
        actor=who.person_id,
        approve=approve,
        days=days,
        comment=comment,
        expected_version=expected_version,
        guard=_sees_task(who, task_id),
    )


# --- messages -----------------------------------------------------------------------------------------------


def send_message(
    who: access.Principal,
    case_id: int,
    name: str,
    payload: Mapping[str, object] | None = None,
    *,
    rt: Runtime,
    expected_version: int | None = None,
) -> tuple[bool, int]:
    """Deliver BPMN message ``name`` to a case of the caller's subtree (supervisor / command centre).

    Returns (caught by the workflow, the case's new version)."""
    if not _MESSAGE_NAME.match(name):
        raise InvalidInput("message.bad_name", "a message name is a BPMN identifier", {"name": name})
    with rt.db.read() as conn:
        row = access.get_visible_case(conn, who, case_id)
    if not who.covers(row.unit_path, MESSAGE_ROLES):
        raise PermissionDenied(
            "case.message_forbidden",
            "only a supervisor or the command centre of the case's area may send it messages",
            {"case_id": case_id},
        )
    caught = events.deliver_message(
        case_id, name, rt=rt, actor=who.person_id, payload=payload, expected_version=expected_version
    )
    return caught, cases.get_case(case_id, rt=rt).version
