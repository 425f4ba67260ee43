"""Schemas of the organisation tree and unit members."""

from __future__ import annotations

from marshmallow import fields

from api.schemas.dumping import ResponseSchema


class UnitNodeOut(ResponseSchema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    parent_id = fields.String(allow_none=True, required=True)
    children = fields.List(fields.Nested(lambda: UnitNodeOut()), required=True)


class MemberOut(ResponseSchema):
    person_id = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    role_label = fields.String(required=True)
    phone = fields.String(allow_none=True, required=True, metadata={"description": "masked but your own"})
