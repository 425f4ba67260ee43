"""/api/tasks: the caller's work list, a task with its form, and the task actions: claim / unclaim,
complete (form data), reassign (改派), and the actions a task's diagram declares — return (退单),
extension request (延期申请), extension decision (延期审批) — which complete it with the form fields the
diagram names (``engine.actions``). Who may do what is decided in the engine."""

from __future__ import annotations

from typing import Any

from api.auth import caller
from api.blueprints.base import Blueprint
from api.http import etag, expected_version, runtime
from api.schemas.common import IfMatchHeader
from api.schemas.tasks import (
    CompleteIn,
    ExtensionDecisionIn,
    ExtensionRequestIn,
    ReassignIn,
    ReturnIn,
    TaskDetailOut,
    TaskOut,
    TaskPageOut,
    TaskQuery,
)
from engine import casework, tasks

blp = Blueprint("tasks", __name__, url_prefix="/api/tasks", description="Work list and task actions")
_ETAG = {"ETag": {"$ref": "#/components/headers/ETAG"}}
Result = tuple[tasks.TaskView, int, dict[str, str]]


@blp.route("", methods=["GET"])
@blp.arguments(TaskQuery, location="query")
@blp.response(200, TaskPageOut)
def my_tasks(query: dict[str, Any]) -> casework.TaskPage:
    """My work list: tasks claimed by me and unclaimed tasks of my (role, unit)s, oldest first; follow
    ``next_cursor``."""
    return casework.work_list(caller(), rt=runtime(), cursor=query.get("cursor"), limit=query["limit"])


@blp.route("/<task_id>", methods=["GET"])
@blp.response(200, TaskDetailOut, headers=_ETAG)
def get_task(task_id: str) -> tuple[casework.TaskDetail, int, dict[str, str]]:
    """A task of a case the caller may see, with its form's JSON Schema; ETag is the case version."""
    found = casework.task_detail(caller(), task_id, rt=runtime())
    return found, 200, etag(found.task.case_version)


@blp.route("/<task_id>/claim", methods=["POST"])
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, TaskOut, headers=_ETAG)
def claim(_headers: dict[str, Any], task_id: str) -> Result:
    """Claim (领单/签收) a task of one's (role, unit); someone else got there first → 409."""
    done = casework.claim(caller(), task_id, rt=runtime(), expected_version=expected_version())
    return done, 200, etag(done.case_version)


@blp.route("/<task_id>/unclaim", methods=["POST"])
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, TaskOut, headers=_ETAG)
def unclaim(_headers: dict[str, Any], task_id: str) -> Result:
    """Give a claimed task back to the unit's shared list."""
    done = casework.unclaim(caller(), task_id, rt=runtime(), expected_version=expected_version())
    return done, 200, etag(done.case_version)


@blp.route("/<task_id>/complete", methods=["POST"])
@blp.arguments(CompleteIn)
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, TaskOut, headers=_ETAG)
def complete(body: dict[str, Any], _headers: dict[str, Any], task_id: str) -> Result:
    """Complete a task with its form data (validated field by field: 422 ``form.invalid``)."""
    done = casework.complete(
        caller(), task_id, body["data"], rt=runtime(), expected_version=expected_version()
    )
    return done, 200, etag(done.case_version)


@blp.route("/<task_id>/reassign", methods=["POST"])
@blp.arguments(ReassignIn)
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, TaskOut, headers=_ETAG)
def reassign(body: dict[str, Any], _headers: dict[str, Any], task_id: str) -> Result:
    """改派: move an open task to another person and/or unit — a grid leader, community, street,
    supervisor, leader or command centre above it, never its own handlers (403
    ``task.reassign_forbidden``). A bad target is 422 (``task.reassign_unknown_person``,
    ``task.reassign_not_candidate``, ``task.reassign_unknown_unit``, ``task.reassign_unit_kind``,
    ``task.reassign_no_candidate``); the SLA clock goes on, now counting the new unit's time."""
    done = casework.reassign(
        caller(),
        task_id,
        rt=runtime(),
        reason=body["reason"],
        assignee_id=body.get("assignee_id"),
        org_unit_id=body.get("org_unit_id"),
        expected_version=expected_version(),
    )
    return done, 200, etag(done.case_version)


@blp.route("/<task_id>/return", methods=["POST"])
@blp.arguments(ReturnIn)
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, TaskOut, headers=_ETAG)
def return_task(body: dict[str, Any], _headers: dict[str, Any], task_id: str) -> Result:
    """退单: complete the task down the return path its diagram declares, with the reason (and reason
    code); a task that declares none → 409 ``task.action_unsupported``."""
    done = casework.return_task(
        caller(),
        task_id,
        rt=runtime(),
        reason=body["reason"],
        reason_code=body.get("reason_code"),
        expected_version=expected_version(),
    )
    return done, 200, etag(done.case_version)


@blp.route("/<task_id>/extension-request", methods=["POST"])
@blp.arguments(ExtensionRequestIn)
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, TaskOut, headers=_ETAG)
def request_extension(body: dict[str, Any], _headers: dict[str, Any], task_id: str) -> Result:
    """延期申请: ask for more working days; the diagram leads on to whoever decides (the work order's
    street). A task that declares no extension request → 409 ``task.action_unsupported``."""
    done = casework.request_extension(
        caller(),
        task_id,
        rt=runtime(),
        days=body["days"],
        reason=body["reason"],
        expected_version=expected_version(),
    )
    return done, 200, etag(done.case_version)


@blp.route("/<task_id>/extension-decision", methods=["POST"])
@blp.arguments(ExtensionDecisionIn)
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, TaskOut, headers=_ETAG)
def decide_extension(body: dict[str, Any], _headers: dict[str, Any], task_id: str) -> Result:
    """延期审批: approve (the handler's clock grows by ``days`` working days, at most the original budget
    in total: 422 ``sla.extension_cap``) or reject an extension request."""
    done = casework.decide_extension(
        caller(),
        task_id,
        rt=runtime(),
        approve=body["decision"] == "approve",
        days=body.get("days"),
        comment=body.get("comment"),
        expected_version=expected_version(),
    )
    return done, 200, etag(done.case_version)
