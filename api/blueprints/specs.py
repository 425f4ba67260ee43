"""/api/specs: deployed spec versions and their BPMN/DMN files; validate and deploy uploads (流程管理员)."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app

from api.auth import caller
from api.blueprints.base import Blueprint
from api.config import Config
from api.http import MULTIPART, accepts, max_body, runtime
from api.schemas.specs import DeployedOut, SpecQuery, SpecUploadIn, SpecVersionOut, ValidationOut
from engine import publishing, specs

blp = Blueprint("specs", __name__, url_prefix="/api/specs", description="Process specs (BPMN/DMN)")
UPLOAD_LIMIT = 20 * 1024 * 1024


def _forms_dir() -> Any:
    config: Config = current_app.extensions["gridcase.config"]
    return config.forms_dir


def _read(body: dict[str, Any]) -> dict[str, bytes]:
    return {str(f.filename or ""): f.read() for f in body["files"]}


@blp.route("", methods=["GET"])
@blp.arguments(SpecQuery, location="query")
@blp.response(200, SpecVersionOut(many=True))
def list_versions(query: dict[str, Any]) -> list[publishing.SpecVersionInfo]:
    """Deployed versions, newest first (``latest``: the version new cases start on)."""
    return publishing.list_versions(caller(), rt=runtime(), process_id=query.get("process_id"))


@blp.route("/<id:version_id>/files/<path:name>", methods=["GET"])
@blp.response(200, content_type="application/xml", description="the BPMN or DMN XML")
def version_file(version_id: int, name: str) -> Response:
    """One BPMN/DMN file of a version, as deployed (name as listed in ``files``)."""
    text = publishing.version_file(caller(), version_id, name, rt=runtime())
    return Response(text, mimetype="application/xml")


@blp.route("/validate", methods=["POST"])
@blp.arguments(SpecUploadIn, location="files")
@blp.response(200, ValidationOut)
@max_body(UPLOAD_LIMIT)
@accepts(MULTIPART)
def validate(body: dict[str, Any]) -> dict[str, object]:
    """Validate uploaded .bpmn/.dmn files (against the server's forms); every problem is listed."""
    result: specs.Validation = publishing.validate_upload(
        caller(), _read(body), rt=runtime(), forms_dir=_forms_dir()
    )
    return {
        "ok": result.ok,
        "processes": sorted(result.processes),
        "problems": [p.to_dict() for p in result.problems],
    }


@blp.route("/deploy", methods=["POST"])
@blp.arguments(SpecUploadIn, location="files")
@blp.response(201, DeployedOut(many=True))
@max_body(UPLOAD_LIMIT)
@accepts(MULTIPART)
def deploy(body: dict[str, Any]) -> list[specs.DeployedVersion]:
    """Validate and deploy; new cases start on the new version (refused: 422 ``spec.invalid``)."""
    return publishing.deploy_upload(caller(), _read(body), rt=runtime(), forms_dir=_forms_dir())
