"""Attachments: upload to a case (multipart, type sniffed, size-limited) and download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Response, current_app, send_file

from api.auth import caller
from api.blueprints.base import Blueprint
from api.config import Config
from api.http import MULTIPART, accepts, max_body, runtime
from api.schemas.attachments import UploadIn
from api.schemas.cases import AttachmentOut
from engine import attachments

blp = Blueprint("attachments", __name__, url_prefix="/api", description="Photos, voice notes, documents")


def _directory() -> Path:
    config: Config = current_app.extensions["gridcase.config"]
    return config.attachments_path()


@blp.route("/cases/<id:case_id>/attachments", methods=["POST"])
@blp.arguments(UploadIn, location="files")
@blp.response(201, AttachmentOut)
@max_body(attachments.MAX_BYTES + 64 * 1024)
@accepts(MULTIPART)
def upload(body: dict[str, Any], case_id: int) -> attachments.AttachmentView:
    """Attach a file to a case the caller may see; reference its id in form data (e.g. ``photos``)."""
    upload = body["file"]
    return attachments.store_attachment(
        caller(), case_id, upload.stream, filename=upload.filename, rt=runtime(), directory=_directory()
    )


@blp.route("/attachments/<attachment_id>", methods=["GET"])
@blp.response(200, content_type="application/octet-stream", description="the file, with its sniffed type")
def download(attachment_id: str) -> Response:
    """The file of an attachment of a case the caller may see."""
    found, path = attachments.open_attachment(caller(), attachment_id, rt=runtime(), directory=_directory())
    response = send_file(
        path, mimetype=found.content_type, as_attachment=True, download_name=found.filename, etag=found.sha256
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
