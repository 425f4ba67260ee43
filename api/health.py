"""Health endpoint: the database answers and the schema is there."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from engine.runtime import Runtime

bp = Blueprint("health", __name__)


@bp.get("/api/health")
def health() -> ResponseReturnValue:
    rt: Runtime = current_app.extensions["gridcase.runtime"]
    with rt.db.read() as conn:
        conn.execute(text("SELECT 1"))
    scheduler = current_app.extensions.get("gridcase.scheduler")
    return jsonify({"status": "ok", "database": rt.db.dialect, "scheduler": scheduler is not None})
