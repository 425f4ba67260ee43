"""Request plumbing shared by the blueprints: the accepted media types of a view, the request id,
``If-Match`` → expected case version, and ``ETag`` on responses. No business rules.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from flask import Flask, Response, current_app, g, request
from werkzeug.routing import IntegerConverter

from api.errors import ApiError
from engine.runtime import Runtime

F = TypeVar("F", bound=Callable[..., object])
JSON = "application/json"
MULTIPART = "multipart/form-data"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_IF_MATCH = re.compile(r'^(?:W/)?"?(\d{1,9})"?$')
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """``<id:name>``: a database id, 1 … 2³¹−1 (anything else is not a route: 404)."""

    def __init__(self, map: object, *args: object, **kwargs: object) -> None:
        super().__init__(map, min=1, max=MAX_ID)  # type: ignore[arg-type]


def id_schema(_converter: object) -> dict[str, object]:
    """The OpenAPI schema of an ``<id:…>`` path parameter."""
    return {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def accepts(*media_types: str) -> Callable[[F], F]:
    """Declare the request media types a view takes (default: JSON); put it nearest the function."""

    def mark(view: F) -> F:
        view._gridcase_accepts = media_types  # type: ignore[attr-defined]
        return view

    return mark


def max_body(limit: int) -> Callable[[F], F]:
    """Raise the request size limit for one view (uploads); put it nearest the function."""

    def mark(view: F) -> F:
        view._gridcase_max_body = limit  # type: ignore[attr-defined]
        return view

    return mark


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["gridcase.runtime"]
    return rt


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in (request.headers.get("Transfer-Encoding") or "")


def check_media_type() -> None:
    """415 for a body in a media type the view does not take (before any parsing); per-view size limit."""
    if request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    limit = getattr(view, "_gridcase_max_body", None)
    if limit is not None:
        request.max_content_length = limit
    if request.method not in _UNSAFE or not _has_body():
        return
    allowed = getattr(view, "_gridcase_accepts", (JSON,))
    if request.mimetype not in allowed:
        raise ApiError(
            415,
            "request.unsupported_media_type",
            f"send the body as {' or '.join(allowed)}",
            {"accepted": list(allowed), "received": request.mimetype or None},
        )


def unstorable(value: object) -> str | None:
    """What in a JSON value (a request's body or query, a command's arguments) no store can hold:
    ``"nul"`` (a NUL character in a text), ``"surrogate"`` (a lone ``\\ud800``–``\\udfff`` escape: half
    a character, which has no UTF-8), ``"non_finite"`` (``NaN``, ``Infinity`` or ``-Infinity``, which
    Python's reader takes but JSON has no such numbers, and PostgreSQL's ``json`` refuses them); None
    when there is none of these."""
    if isinstance(value, str):
        if "\x00" in value:
            return "nul"
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                return "surrogate"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "non_finite"
    if isinstance(value, dict):
        items: Iterable[object] = (x for pair in value.items() for x in pair)
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        found = unstorable(item)
        if found is not None:
            return found
    return None


def reject_unstorable_values() -> None:
    """NUL characters are never data here, and PostgreSQL text cannot hold them; half a surrogate pair
    cannot be written to either database; JSON has no ``NaN`` or infinite numbers. 422 up front, for
    every query value and JSON body, before any view or schema sees them (they failed the step's write
    with a 500, or a form's number field kept a NaN)."""
    found = unstorable([text for pair in request.args.items(multi=True) for text in pair])
    if found is None and request.method in _UNSAFE and request.mimetype == JSON and _has_body():
        found = unstorable(request.get_json(silent=True))
    if found is not None:
        code, message = REFUSED[found]
        raise ApiError(422, f"request.{code}", message, {})


REFUSED = {  # what ``unstorable`` found -> the last part of the error code, and the message (API, CLI)
    "nul": ("nul_character", "text may not contain NUL (\\u0000) characters"),
    "surrogate": (
        "invalid_unicode",
        "text must be Unicode characters: a \\ud800-\\udfff escape must be one of a pair",
    ),
    "non_finite": ("non_finite_number", "numbers must be finite: JSON has no NaN or Infinity"),
}


def assign_request_id() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.match(given) else os.urandom(8).hex()  # as random as uuid4().hex[:16]


def add_request_id(response: Response) -> Response:
    response.headers["X-Request-Id"] = getattr(g, "request_id", "-")
    return response


def expected_version() -> int | None:
    """The case version named by ``If-Match`` (``"7"``, ``W/"7"``, ``7``); ``*`` or none: no check."""
    raw = (request.headers.get("If-Match") or "").strip()
    if not raw or raw == "*":
        return None
    match = _IF_MATCH.match(raw)
    if match is None:
        raise ApiError(
            400,
            "request.bad_if_match",
            'If-Match takes the case version as an ETag, e.g. "3"',
            {"value": raw},
        )
    return int(match.group(1))


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    app.before_request(assign_request_id)
    app.before_request(check_media_type)
    app.before_request(reject_unstorable_values)
    app.after_request(add_request_id)
