"""Spec versions as the API offers them: list, read a file, validate an upload, deploy (流程管理员).

Owns no table (``spec_version`` belongs to ``engine.specs``, which does the real work); this module adds
who may do what: anybody signed in may read deployed versions (the case page draws the diagram), only a
``process_owner`` may validate uploads or deploy. Must not import flask, api or celery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from engine import access, specs
from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.runtime import Runtime
from engine.store.models import spec_version

__all__ = [
    "MAX_UPLOAD_FILES",
    "SpecVersionInfo",
    "deploy_upload",
    "list_versions",
    "validate_upload",
    "version_file",
]

MAX_UPLOAD_FILES = 20
SPEC_SUFFIXES = (".bpmn", ".dmn", ".bpmn20.xml")


@dataclass(frozen=True, slots=True)
class SpecVersionInfo:
    id: int
    process_id: str
    content_hash: str
    deployed_at: datetime
    deployed_by: str | None
    latest: bool
    files: list[str]
    forms: list[str]


def list_versions(
    who: access.Principal, *, rt: Runtime, process_id: str | None = None
) -> list[SpecVersionInfo]:
    """Every deployed version (newest first), optionally of one process."""
    with rt.db.read() as conn:
        latest = {
            r.process_id: r.top
            for r in conn.execute(
                select(spec_version.c.process_id, func.max(spec_version.c.id).label("top")).group_by(
                    spec_version.c.process_id
                )
            )
        }
        query = select(
            spec_version.c.id,
            spec_version.c.process_id,
            spec_version.c.content_hash,
            spec_version.c.deployed_at,
            spec_version.c.deployed_by,
            spec_version.c.files,
        ).order_by(spec_version.c.id.desc())
        if process_id is not None:
            query = query.where(spec_version.c.process_id == process_id)
        rows = conn.execute(query).all()
    return [
        SpecVersionInfo(
            r.id,
            r.process_id,
            r.content_hash,
            r.deployed_at,
            r.deployed_by,
            latest.get(r.process_id) == r.id,
            sorted((r.files or {}).get("bpmn", {})),
            sorted((r.files or {}).get("forms", {})),
        )
        for r in rows
    ]


def version_file(who: access.Principal, version_id: int, name: str, *, rt: Runtime) -> str:
    """The text of one BPMN/DMN file of a version (``name`` as listed in ``files``)."""
    with rt.db.read() as conn:
        files = conn.execute(select(spec_version.c.files).where(spec_version.c.id == version_id)).scalar()
    if files is None:
        raise NotFound("spec.not_found", f"spec version {version_id} does not exist", {"id": version_id})
    text = files.get("bpmn", {}).get(name)
    if text is None:
        raise NotFound("spec.file_not_found", f"version {version_id} has no file {name!r}", {"name": name})
    return str(text)


def _owner_only(who: access.Principal, action: str) -> None:
    if not who.has_role("process_owner"):
        raise PermissionDenied(
            f"spec.{action}_forbidden", f"only a process owner may {action} process specs", {}
        )


def _checked(files: Mapping[str, bytes]) -> dict[str, bytes]:
    if not files:
        raise InvalidInput("spec.no_files", "upload at least one .bpmn or .dmn file", {})
    if len(files) > MAX_UPLOAD_FILES:
        raise InvalidInput("spec.too_many_files", f"at most {MAX_UPLOAD_FILES} files", {})
    for name, raw in files.items():
        if not name.lower().endswith(SPEC_SUFFIXES) or "/" in name or "\\" in name or name.startswith("."):
            raise InvalidInput(
                "spec.bad_file_name", f"{name!r} is not a .bpmn or .dmn file name", {"name": name}
            )
        if len(raw) > specs.MAX_FILE_BYTES:
            raise InvalidInput(
                "spec.file_too_large", f"{name} is larger than {specs.MAX_FILE_BYTES} bytes", {}
            )
    return dict(files)


def validate_upload(
    who: access.Principal, files: Mapping[str, bytes], *, rt: Runtime, forms_dir: Path | None
) -> specs.Validation:
    """Validate uploaded BPMN/DMN files against the server's forms; every problem is reported."""
    _owner_only(who, "validate")
    return specs.validate(_checked(files), forms_dir=forms_dir, sandbox=rt.sandbox)


def deploy_upload(
    who: access.Principal, files: Mapping[str, bytes], *, rt: Runtime, forms_dir: Path | None
) -> list[specs.DeployedVersion]:
    """Validate and deploy (``spec.invalid`` with every problem when refused; nothing is stored then)."""
    _owner_only(who, "deploy")
    validation = specs.validate(_checked(files), forms_dir=forms_dir, sandbox=rt.sandbox)
    with rt.db.write() as conn:
        return specs.deploy(conn, validation, actor=who.person_id, now=rt.now())
