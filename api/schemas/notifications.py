"""Schemas of the caller's in-app notifications."""

from __future__ import annotations

from marshmallow import fields, validate

from api.schemas.common import RequestSchema
from api.schemas.dumping import ResponseSchema
from engine.supervision import MAX_MARK, MAX_NOTIFICATIONS


class NotificationQuery(RequestSchema):
    unread = fields.Boolean(load_default=False, metadata={"description": "true: only unread ones"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_NOTIFICATIONS))


class NotificationOut(ResponseSchema):
    id = fields.String(required=True)
    case_id = fields.Integer(allow_none=True, required=True)
    topic = fields.String(required=True, metadata={"description": "e.g. sla.overdue, case.reminder"})
    title = fields.String(required=True)
    body = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    read_at = fields.DateTime(allow_none=True, required=True)


class MarkReadIn(RequestSchema):
    ids = fields.List(
        fields.String(validate=[validate.Length(min=1, max=100), validate.Regexp(r"^\d+:[A-Za-z0-9_.-]+$")]),
        required=True,
        validate=validate.Length(min=1, max=MAX_MARK),
        metadata={"description": "ids of the caller's notifications; others' ids are ignored"},
    )


class MarkReadOut(ResponseSchema):
    marked = fields.Integer(required=True, metadata={"description": "how many were unread and are now read"})
