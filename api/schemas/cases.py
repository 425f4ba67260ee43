"""Schemas of intake, the case list and the case file."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from api.schemas.common import RequestSchema, ident
from api.schemas.dumping import ResponseSchema
from engine.cases import KINDS, MAX_TITLE
from engine.casework import CHANNELS
from engine.search import MAX_PAGE


def _fields_of(found: object) -> dict[str, object]:
    names = ("data", "reporter_id", "related_case_id", "personal_data_masked", "tasks", "timeline")
    return {name: getattr(found, name) for name in (*names, "attachments", "sla")}


STATUSES = ("open", "completed", "cancelled", "incident")


class LocationIn(RequestSchema):
    lat = fields.Float(required=True, validate=validate.Range(min=-90, max=90))
    lng = fields.Float(required=True, validate=validate.Range(min=-180, max=180))


class ReporterIn(RequestSchema):
    name = fields.String(validate=validate.Length(max=100))
    phone = fields.String(validate=validate.Regexp(r"^[0-9+\- ]{3,32}$"))
    id_number = fields.String(validate=validate.Regexp(r"^[0-9A-Za-z]{6,32}$"))
    address_detail = fields.String(validate=validate.Length(max=300))


class IntakeIn(RequestSchema):
    process_id = ident(100, load_default="work_order")
    title = fields.String(required=True, validate=validate.Length(min=1, max=MAX_TITLE))
    grid_id = ident(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    category = ident(load_default=None)
    kind = fields.String(validate=validate.OneOf(list(KINDS)), load_default=None)
    description = fields.String(validate=validate.Length(max=5000))
    address = fields.String(validate=validate.Length(max=300), metadata={"description": "public part"})
    location = fields.Nested(LocationIn)
    reporter = fields.Nested(ReporterIn, metadata={"description": "masked for roles that do not need it"})
    attachments = fields.List(
        fields.String(validate=validate.Length(max=64)), validate=validate.Length(max=20)
    )


class CaseQuery(RequestSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    kind = fields.String(validate=validate.OneOf(list(KINDS)))
    category = ident()
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    grid_id = ident()
    unit_id = ident(metadata={"description": "any unit: the cases of its subtree"})
    overdue = fields.Boolean()
    created_from = fields.AwareDateTime()
    created_to = fields.AwareDateTime()
    text = fields.String(validate=validate.Length(min=1, max=100))
    cursor = fields.String(validate=validate.Length(min=1, max=40))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))


class CaseSummaryOut(ResponseSchema):
    id = fields.Integer(required=True)
    number = fields.String(required=True)
    kind = fields.String(required=True)
    process_id = fields.String(required=True)
    title = fields.String(required=True)
    category = fields.String(allow_none=True, required=True)
    channel = fields.String(allow_none=True, required=True)
    grid_id = fields.String(allow_none=True, required=True)
    status = fields.String(required=True)
    priority = fields.String(required=True)
    outcome = fields.String(allow_none=True, required=True)
    version = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    closed_at = fields.DateTime(allow_none=True, required=True)


class CasePageOut(ResponseSchema):
    items = fields.List(fields.Nested(CaseSummaryOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class CaseTaskOut(ResponseSchema):
    id = fields.String(required=True)
    task_spec = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(allow_none=True, required=True)
    org_unit_id = fields.String(allow_none=True, required=True)
    assignee_id = fields.String(allow_none=True, required=True)
    form_key = fields.String(allow_none=True, required=True)
    state = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(allow_none=True, required=True)
    completed_by = fields.String(allow_none=True, required=True)


class TimelineOut(ResponseSchema):
    id = fields.Integer(required=True)
    at = fields.DateTime(required=True)
    actor_id = fields.String(allow_none=True, required=True)
    action = fields.String(required=True)
    task_id = fields.String(allow_none=True, required=True)
    before = fields.Raw(allow_none=True, required=True)
    after = fields.Raw(allow_none=True, required=True)


class AttachmentOut(ResponseSchema):
    id = fields.String(required=True)
    case_id = fields.Integer()
    filename = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)
    uploaded_by = fields.String(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)


class SlaClockOut(ResponseSchema):
    task_spec = fields.String(required=True)
    budget = fields.String(required=True)
    state = fields.String(required=True)
    status = fields.String(required=True)
    due_at = fields.DateTime(allow_none=True, required=True)
    warn_due_at = fields.DateTime(allow_none=True, required=True)


class SlaOut(ResponseSchema):
    status = fields.String(required=True, metadata={"description": "none, on_time, warning or overdue"})
    due_at = fields.DateTime(allow_none=True, required=True)
    clocks = fields.List(fields.Nested(SlaClockOut), required=True)


class CaseFileOut(CaseSummaryOut):
    """The case file; dumped from ``engine.search.CaseFile`` (its summary fields appear at the top level)."""

    @ma.pre_dump
    def _flatten(self, found: object, **_kwargs: object) -> object:
        summary = getattr(found, "summary", None)
        if summary is None:
            return found
        return {**{k: getattr(summary, k) for k in CaseSummaryOut._declared_fields}, **_fields_of(found)}

    data = fields.Dict(required=True)
    reporter_id = fields.String(allow_none=True, required=True)
    related_case_id = fields.Integer(allow_none=True, required=True)
    personal_data_masked = fields.Boolean(required=True)
    tasks = fields.List(fields.Nested(CaseTaskOut), required=True)
    timeline = fields.List(fields.Nested(TimelineOut), required=True)
    attachments = fields.List(fields.Nested(AttachmentOut), required=True)
    sla = fields.Nested(SlaOut, required=True)


class MessageIn(RequestSchema):
    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"))
    payload = fields.Dict(load_default=dict)


class MessageOut(ResponseSchema):
    caught = fields.Boolean(required=True, metadata={"description": "false: no part of the case waited"})
    version = fields.Integer(required=True)
