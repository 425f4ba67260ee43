"""The one table from engine error families to HTTP statuses, and the one error shape:
``{"code": …, "message": …, "details": …}`` for every failure — engine errors, HTTP errors raised by
Flask/werkzeug/webargs (404, 405, 413, 415, 422 …) and ``ApiError`` raised by the API's own request
parsing. Unknown errors are logged with the request id and answered 500 ``internal_error`` without
internals.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from engine.errors import (
    Conflict,
    EngineError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    TooLarge,
    Unauthenticated,
    UnsupportedType,
)

log = logging.getLogger("gridcase.api")

STATUS_BY_FAMILY: dict[type[EngineError], int] = {
    NotFound: 404,
    Conflict: 409,
    PermissionDenied: 403,
    InvalidInput: 422,  # includes SpecError and ScriptError
    Unauthenticated: 401,
    RateLimited: 429,
    TooLarge: 413,
    UnsupportedType: 415,
}

# Stable codes for failures that werkzeug or webargs raise before a view runs.
HTTP_CODES: dict[int, str] = {
    400: "request.malformed",
    401: "auth.required",
    403: "forbidden",
    404: "route.not_found",
    405: "request.method_not_allowed",
    406: "request.not_acceptable",
    409: "conflict",
    412: "request.precondition_failed",
    413: "request.too_large",
    415: "request.unsupported_media_type",
    422: "request.invalid",
    428: "request.precondition_required",
    429: "request.rate_limited",
}


class ApiError(Exception):
    """A request the API itself refuses before reaching the engine (bad header, wrong media type)."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def status_for(err: EngineError) -> int:
    for family, status in STATUS_BY_FAMILY.items():
        if isinstance(err, family):
            return status
    return 400


def error_response(status: int, code: str, message: str, details: dict[str, object]) -> Response:
    response = jsonify({"code": code, "message": message, "details": details})
    response.status_code = status
    return response


def _http_error(err: HTTPException) -> Response:
    status = err.code or 500
    data = getattr(err, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    code = HTTP_CODES.get(status, f"http.{status}")
    message = err.description or err.name
    details: dict[str, object] = {}
    if isinstance(messages, dict):
        if status == 400 and "json" in messages and "Invalid JSON body." in str(messages["json"]):
            code, message = "request.malformed_json", "the body is not valid JSON"
        else:
            message = "the request does not match its schema"
            flat: dict[str, object] = {}
            for location, fields in messages.items():
                if isinstance(fields, dict):
                    flat.update({str(k): v for k, v in fields.items()})
                else:
                    flat[str(location)] = fields
            details["fields"] = flat
    if status == 405 and err.valid_methods:  # type: ignore[attr-defined]
        details["allowed"] = sorted(err.valid_methods)  # type: ignore[attr-defined]
    response = error_response(status, code, message, details)
    if status == 405 and details.get("allowed"):
        response.headers["Allow"] = ", ".join(details["allowed"])  # type: ignore[arg-type]
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the handlers (after flask-smorest's, which they replace)."""

    @app.errorhandler(EngineError)
    def _engine_error(err: EngineError) -> Response:
        response = error_response(status_for(err), err.code, err.message, err.details)
        if isinstance(err, RateLimited):
            response.headers["Retry-After"] = str(err.details.get("retry_after", 60))
        if isinstance(err, Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="gridcase"'
        return response

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        return error_response(err.status, err.code, err.message, err.details)

    app.register_error_handler(HTTPException, _http_error)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        request_id = getattr(g, "request_id", "-")
        log.exception("unhandled error (request %s)", request_id)
        return error_response(500, "internal_error", "internal error", {"request_id": request_id})
