"""/api/tasks: the caller's work list, a task with its form, and the task actions claim / unclaim /
complete (return, extension request etc. are outcomes in a task's form, so they are ``complete``)."""

from __future__ import annotations

from typing import Any

from api.auth import caller
from api.blueprints.base import Blueprint
from api.http import etag, expected_version, runtime
from api.schemas.common import IfMatchHeader
from api.schemas.tasks import CompleteIn, TaskDetailOut, TaskOut, TaskPageOut, TaskQuery
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
