"""Schemas shared by every resource: the error shape, the base request schema (unknown fields are
refused), and the headers the API reads (``If-Match``, ``Idempotency-Key``)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from api.schemas.dumping import ResponseSchema


class RequestSchema(ma.Schema):
    """Base of request bodies and queries: an unknown field is a 422, never silently dropped."""

    class Meta:
        unknown = ma.RAISE


class ErrorSchema(ResponseSchema):
    code = fields.String(required=True, metadata={"description": "stable dotted code, e.g. task.not_ready"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class IfMatchHeader(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    if_match = fields.String(
        data_key="If-Match",
        metadata={"description": 'the case version you last saw, as its ETag ("3"); stale → 409'},
    )


class IdempotencyHeader(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=validate.Length(min=1, max=200),
        metadata={"description": "a retried submission with the same key returns the first case"},
    )


def ident(max_length: int = 64, **kwargs: object) -> fields.String:
    """An id-like string field (unit, grid, process, role ids)."""
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)  # type: ignore[arg-type]
