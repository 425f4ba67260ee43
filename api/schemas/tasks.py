"""Schemas of the work list and task actions (claim, complete, reassign, return, extension request and
decision)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from api.schemas.common import RequestSchema, ident
from api.schemas.dumping import ResponseSchema
from engine.actions import ACTIONS, MAX_TEXT
from engine.casework import MAX_WORK_PAGE

# A reason, note or comment typed by a person: 1 to MAX_TEXT characters, not only blanks.
_TEXT = [validate.Length(min=1, max=MAX_TEXT), validate.Regexp(r"\S", error="must not be blank")]
_DAYS = validate.Range(min=1, max=365)


class TaskQuery(RequestSchema):
    cursor = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "next_cursor"})
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=MAX_WORK_PAGE))


class TaskOut(ResponseSchema):
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


class TaskPageOut(ResponseSchema):
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
            "actions": found.actions,  # type: ignore[attr-defined]
        }

    form = fields.Dict(allow_none=True, required=True, metadata={"description": "JSON Schema of the form"})
    actionable = fields.Boolean(required=True)
    actions = fields.List(
        fields.String(validate=validate.OneOf(ACTIONS)),
        required=True,
        metadata={
            "description": "the actions its diagram declares: return, extension_request, extension_decision"
        },
    )


class CompleteIn(RequestSchema):
    data = fields.Dict(
        keys=fields.String(validate=validate.Length(max=100)),
        required=True,
        metadata={"description": "the task's form data, validated against its JSON Schema"},
    )


class ReassignIn(RequestSchema):
    assignee_id = ident(
        64, metadata={"description": "the person to give the task to (holds its role in the target unit)"}
    )
    org_unit_id = ident(
        64,
        metadata={
            "description": "the unit to move the task to (default: where it is); alone: its shared list"
        },
    )
    reason = fields.String(required=True, validate=_TEXT, metadata={"description": "why (改派原因)"})


class ReturnIn(RequestSchema):
    reason = fields.String(required=True, validate=_TEXT, metadata={"description": "why (退单说明)"})
    reason_code = ident(
        100,
        metadata={"description": "a reason code of the task's form (e.g. not_responsible), when it has them"},
    )


class ExtensionRequestIn(RequestSchema):
    days = fields.Integer(
        required=True, strict=True, validate=_DAYS, metadata={"description": "working days asked for"}
    )
    reason = fields.String(required=True, validate=_TEXT, metadata={"description": "why (延期理由)"})


class ExtensionDecisionIn(RequestSchema):
    decision = fields.String(required=True, validate=validate.OneOf(["approve", "reject"]))
    days = fields.Integer(
        strict=True, validate=_DAYS, metadata={"description": "working days granted (approve only)"}
    )
    comment = fields.String(validate=_TEXT, metadata={"description": "审批意见 (the form may require it)"})
