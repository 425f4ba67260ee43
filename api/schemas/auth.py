"""Schemas of login, tokens and the caller's profile."""

from __future__ import annotations

from marshmallow import fields, validate

from api.schemas.common import RequestSchema
from api.schemas.dumping import ResponseSchema


class LoginIn(RequestSchema):
    login = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256), load_only=True)
    label = fields.String(validate=validate.Length(max=100), metadata={"description": "names the token"})
    web = fields.Boolean(
        load_default=False,
        metadata={"description": "true: start a web session (HttpOnly cookie), no token in the body"},
    )


class LoginOut(ResponseSchema):
    token = fields.String(
        allow_none=True, required=True, metadata={"description": "bearer token, shown once (null for web)"}
    )
    token_id = fields.Integer(required=True)
    person_id = fields.String(required=True)
    expires_at = fields.DateTime(required=True)


class TokenOut(ResponseSchema):
    id = fields.Integer(required=True)
    label = fields.String(required=True)
    kind = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(allow_none=True, required=True)
    last_used_at = fields.DateTime(allow_none=True, required=True)
    revoked_at = fields.DateTime(allow_none=True, required=True)


class GrantOut(ResponseSchema):
    role = fields.String(required=True)
    role_label = fields.String(required=True)
    unit_id = fields.String(required=True)
    unit_name = fields.String(required=True)


class MeOut(ResponseSchema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    phone = fields.String(allow_none=True, required=True)
    memberships = fields.List(fields.Nested(GrantOut), required=True)
