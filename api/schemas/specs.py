"""Schemas of spec versions, validation reports and deployments."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import fields, validate

from api.schemas.common import RequestSchema, ident
from api.schemas.dumping import ResponseSchema


class SpecQuery(RequestSchema):
    process_id = ident(100)


class SpecVersionOut(ResponseSchema):
    id = fields.Integer(required=True)
    process_id = fields.String(required=True)
    content_hash = fields.String(required=True)
    deployed_at = fields.DateTime(required=True)
    deployed_by = fields.String(allow_none=True, required=True)
    latest = fields.Boolean(required=True)
    files = fields.List(fields.String(), required=True)
    forms = fields.List(fields.String(), required=True)


class SpecUploadIn(RequestSchema):
    files = fields.List(Upload(), required=True, validate=validate.Length(min=1, max=20))


class ProblemOut(ResponseSchema):
    file = fields.String(required=True)
    element_id = fields.String(allow_none=True, required=True)
    line = fields.Integer(allow_none=True, required=True)
    severity = fields.String(required=True)
    message = fields.String(required=True)


class ValidationOut(ResponseSchema):
    ok = fields.Boolean(required=True)
    processes = fields.List(fields.String(), required=True)
    problems = fields.List(fields.Nested(ProblemOut), required=True)


class DeployedOut(ResponseSchema):
    id = fields.Integer(required=True)
    process_id = fields.String(required=True)
    content_hash = fields.String(required=True)
    created = fields.Boolean(required=True, metadata={"description": "false: identical version existed"})
