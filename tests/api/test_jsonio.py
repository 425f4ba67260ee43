"""``api.jsonio.JsonProvider``: responses carry the JSON value Flask's own provider would write (keys
sorted, compact, its ``default`` for dates and the like), falling back to it for what orjson cannot
write the same; request bodies read as ``json.loads`` reads them."""

from __future__ import annotations

import dataclasses
import decimal
import json
import uuid
from datetime import UTC, date, datetime
from typing import cast

import pytest
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from flask.testing import FlaskClient

from api.jsonio import JsonProvider


@dataclasses.dataclass
class _Point:
    x: int
    label: str


VALUES: list[object] = [
    {"b": 1, "a": {"d": [1, 2.5, None, True], "c": "网格员"}},
    {"when": datetime(2026, 11, 22, 8, 30, tzinfo=UTC), "day": date(2026, 11, 22)},
    {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "amount": decimal.Decimal("12.50")},
    {"point": _Point(1, "东门")},
    {"big": 123456789012345678901234567890},  # beyond 64 bits: Flask's provider writes it
    {1: "int key", 2: "sorted as ints"},  # keys that are not strings: Flask's provider too
    {"lone": "\ud800"},  # a lone surrogate: Flask's provider escapes it
    ["\u2028", 'quote " and \\ backslash', "\x00"],
]


@pytest.fixture
def flask_app() -> Flask:
    app = Flask(__name__)
    app.json = JsonProvider(app)
    return app


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_a_response_holds_the_json_flasks_provider_would_write(flask_app: Flask, value: object) -> None:
    stock = DefaultJSONProvider(flask_app)
    with flask_app.app_context():
        ours = cast(Response, flask_app.json.response(value)).get_data()
        theirs = cast(Response, stock.response(value)).get_data()
    assert json.loads(ours) == json.loads(theirs)
    assert ours.endswith(b"\n")
    assert flask_app.json.dumps(value, separators=(",", ":")).encode() == ours.rstrip(b"\n")


def test_keys_are_sorted_and_non_ascii_is_written_as_utf8(flask_app: Flask) -> None:
    with flask_app.app_context():
        body = cast(Response, flask_app.json.response({"b": "街道", "a": 1})).get_data()
    assert body == '{"a":1,"b":"街道"}\n'.encode()


def test_dumps_with_other_options_is_flasks_own(flask_app: Flask) -> None:
    assert flask_app.json.dumps({"b": 1, "a": "网"}, indent=2) == DefaultJSONProvider(flask_app).dumps(
        {"b": 1, "a": "网"}, indent=2
    )


def test_a_request_body_reads_as_json_loads_reads_it(flask_app: Flask) -> None:
    @flask_app.post("/echo")
    def echo() -> dict[str, str]:
        from flask import request

        return {"repr": repr(request.get_json())}

    client: FlaskClient = flask_app.test_client()
    for text in ('{"n": 12345678901234567890123}', '{"x": NaN}', '{"s": "\\ud800"}', '{"a": [1, 2.0]}'):
        found = client.post("/echo", data=text, content_type="application/json").get_json()
        assert found["repr"] == repr(json.loads(text))
