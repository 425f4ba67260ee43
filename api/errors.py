"""The one table from engine error families to HTTP statuses, and the one error shape:
``{"code": …, "message": …, "details": …}``. Unknown errors are logged with a request id and
answered 500 ``internal_error`` without internals.
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from engine.errors import Conflict, EngineError, InvalidInput, NotFound, PermissionDenied

log = logging.getLogger("gridcase.api")

STATUS_BY_FAMILY: dict[type[EngineError], int] = {
    NotFound: 404,
    Conflict: 409,
    PermissionDenied: 403,
    InvalidInput: 422,  # includes SpecError and ScriptError
}


def status_for(err: EngineError) -> int:
    for family, status in STATUS_BY_FAMILY.items():
        if isinstance(err, family):
            return status
    return 400


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(EngineError)
    def _engine_error(err: EngineError) -> ResponseReturnValue:
        return jsonify(err.to_dict()), status_for(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> ResponseReturnValue:
        code = (err.name or "http_error").lower().replace(" ", "_")
        return jsonify({"code": f"http.{code}", "message": err.description, "details": {}}), err.code or 500

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> ResponseReturnValue:
        request_id = uuid.uuid4().hex[:12]
        log.exception("unhandled error (request %s)", request_id)
        body = {"code": "internal_error", "message": "internal error", "details": {"request_id": request_id}}
        return jsonify(body), 500
