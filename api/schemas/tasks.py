"""Schemas of the work list and task actions."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from api.schemas.common import RequestSchema
from engine.casework import MAX_WORK_PAGE


class TaskQuery(RequestSchema):
    cursor = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "next_cursor"})
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=MAX_WORK_PAGE))


class TaskOut(ma.Schema):
    id = fields.String(required=True)
    case_id = fields.Integer(required=True)
    case_number = fields.String(required=True)
    case_title = fields.String(required=True)
    case_version = fields.Integer(required=True)
    task_spec = fields.String(required=True)
    name = fields.String(required=True)
    lane = fields.String(allow_none=True, required=True)
    role = fields.String(allow_none=True, required=True)
    org_unit_id = fields.String(allow_none=True, required=True)
    assignee_id = fields.String(allow_none=True, required=True)
    form_key = fields.String(allow_none=True, required=True)
    state = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(allow_none=True, required=True)
    completed_by = fields.String(allow_none=True, required=True)


class TaskPageOut(ma.Schema):
    items = fields.List(fields.Nested(TaskOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True, metadata={"description": "null: last page"})


class TaskDetailOut(TaskOut):
    """Dumped from ``engine.casework.TaskDetail``: the task's fields plus its form and ``actionable``."""

    @ma.pre_dump
    def _flatten(self, found: object, **_kwargs: object) -> object:
        task = getattr(found, "task", None)
        if task is None:
            return found
        return {
            **{k: getattr(task, k) for k in TaskOut._declared_fields},
            "form": found.form,  # type: ignore[attr-defined]
            "actionable": found.actionable,  # type: ignore[attr-defined]
        }

    form = fields.Dict(allow_none=True, required=True, metadata={"description": "JSON Schema of the form"})
    actionable = fields.Boolean(required=True)


class CompleteIn(RequestSchema):
    data = fields.Dict(
        keys=fields.String(validate=validate.Length(max=100)),
        required=True,
        metadata={"description": "the task's form data, validated against its JSON Schema"},
    )
