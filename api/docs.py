"""Serves the Swagger UI assets for ``/api/docs`` from the ``swagger-ui-bundle`` package, so the
interactive docs load nothing from a CDN."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

ASSETS_URL = "/api/docs/assets/"
_ALLOWED = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}

bp = Blueprint("docs_assets", __name__)


def assets_dir() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


@bp.get(f"{ASSETS_URL}<name>")
def asset(name: str) -> Response:
    folder = assets_dir()
    if folder is None or name not in _ALLOWED:
        abort(404)
    return send_from_directory(folder, name, max_age=86400)
