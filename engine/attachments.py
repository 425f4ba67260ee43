"""Attachments of a case (photos, voice notes, PDFs): stored as files under a configured directory, one
``attachment`` row each; the content type is sniffed from the first bytes, never taken from the client.

Owns the ``attachment`` table and the files under the attachments directory
(``<dir>/<id[:2]>/<id>``, written to a temporary name first and renamed, so a half-written file is never
served). Only callers who may see the case (``engine.access``) may upload or download. Must not import
flask, api or celery.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import insert, select

from engine import access
from engine.errors import InvalidInput, NotFound, TooLarge, UnsupportedType
from engine.runtime import Runtime
from engine.store.models import attachment, case

__all__ = [
    "ACCEPTED_TYPES",
    "MAX_BYTES",
    "AttachmentView",
    "open_attachment",
    "sniff",
    "store_attachment",
]

MAX_BYTES = 10 * 1024 * 1024
ACCEPTED_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "application/pdf",
    "audio/mpeg",
    "audio/mp4",
    "audio/amr",
)
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class AttachmentView:
    id: str
    case_id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str | None
    created_at: object


def sniff(head: bytes) -> str | None:
    """The content type the magic bytes of ``head`` (the first 16+ bytes) announce, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head[4:8] == b"ftyp" and head[8:12] in (b"M4A ", b"M4B ", b"mp42", b"isom", b"mp41", b"3gp4"):
        return "audio/mp4"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    return None


def clean_filename(name: str | None) -> str:
    """A display name: no path, no control characters, at most 200 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip().strip(".")
    return base[:200] or "attachment"


def _view(row: object) -> AttachmentView:
    m = row._mapping  # type: ignore[attr-defined]
    return AttachmentView(
        m["id"],
        m["case_id"],
        m["filename"],
        m["content_type"],
        int(m["size"]),
        m["sha256"],
        m["uploaded_by"],
        m["created_at"],
    )


def store_attachment(
    who: access.Principal,
    case_id: int,
    stream: BinaryIO,
    *,
    filename: str | None,
    rt: Runtime,
    directory: Path,
    max_bytes: int = MAX_BYTES,
) -> AttachmentView:
    """Save ``stream`` as an attachment of a case the caller may see (size-limited, type-sniffed)."""
    with rt.db.read() as conn:
        access.get_visible_case(conn, who, case_id)
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    head = b""
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(
                        "attachment.too_large",
                        f"an attachment may be at most {max_bytes} bytes",
                        {"max_bytes": max_bytes},
                    )
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidInput("attachment.empty", "the file is empty", {})
        content_type = sniff(head)
        if content_type is None:
            raise UnsupportedType(
                "attachment.unsupported_type",
                "only JPEG, PNG, WebP, PDF, MP3, M4A and AMR files are accepted",
                {"accepted": list(ACCEPTED_TYPES)},
            )
        attachment_id = secrets.token_hex(16)
        key = f"{attachment_id[:2]}/{attachment_id}"
        (directory / attachment_id[:2]).mkdir(exist_ok=True)
        tmp.replace(directory / key)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        with rt.db.write() as conn:
            conn.execute(
                insert(attachment).values(
                    id=attachment_id,
                    case_id=case_id,
                    filename=clean_filename(filename),
                    content_type=content_type,
                    size=size,
                    sha256=digest.hexdigest(),
                    storage_key=key,
                    uploaded_by=who.person_id,
                    created_at=rt.now(),
                )
            )
            row = conn.execute(select(attachment).where(attachment.c.id == attachment_id)).one()
    except BaseException:
        (directory / key).unlink(missing_ok=True)
        raise
    return _view(row)


def open_attachment(
    who: access.Principal, attachment_id: str, *, rt: Runtime, directory: Path
) -> tuple[AttachmentView, Path]:
    """The attachment and the path of its bytes, when the caller may see its case."""
    with rt.db.read() as conn:
        row = conn.execute(
            select(attachment, attachment.c.storage_key)
            .join(case, case.c.id == attachment.c.case_id)
            .where(attachment.c.id == attachment_id, access.visible_filter(who))
        ).first()
    if row is None:
        raise NotFound("attachment.not_found", f"no attachment {attachment_id}", {"id": attachment_id})
    path = directory / row.storage_key
    if not path.is_file():
        raise NotFound("attachment.file_missing", "the attachment's file is missing", {"id": attachment_id})
    return _view(row), path
