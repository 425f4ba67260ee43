"""Schemas of attachment uploads."""

from __future__ import annotations

from flask_smorest.fields import Upload

from api.schemas.common import RequestSchema


class UploadIn(RequestSchema):
    file = Upload(required=True, metadata={"description": "JPEG, PNG, WebP, PDF, MP3, M4A or AMR"})
