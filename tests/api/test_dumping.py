"""``api.schemas.dumping.ResponseSchema`` dumps exactly what marshmallow's ``Schema.dump`` would: the edge
cases of its plan here, and every response of the API tests through the autouse check in conftest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import marshmallow as ma
from flask.testing import FlaskClient
from marshmallow import fields

from api.schemas.dumping import ResponseSchema
from tests.api.conftest import REPORTER, Tokens


class ItemOut(ResponseSchema):
    name = fields.String(required=True)
    n = fields.Integer()


class ThingOut(ResponseSchema):
    text = fields.String(allow_none=True)
    count = fields.Integer()
    big = fields.Integer(as_string=True)
    flag = fields.Boolean()
    at = fields.DateTime()
    raw = fields.Raw()
    mapping = fields.Dict()
    renamed = fields.String(data_key="from", attribute="source")
    defaulted = fields.String(dump_default="默认")
    one = fields.Nested(ItemOut, allow_none=True)
    many = fields.List(fields.Nested(ItemOut))
    numbers = fields.List(fields.Integer())
    method = fields.Method("shout")

    def shout(self, obj: object) -> str:
        return "!"


class FlattenedOut(ResponseSchema):
    a = fields.String()

    @ma.pre_dump
    def _unwrap(self, obj: object, **_kwargs: object) -> object:
        return {"a": obj}

    @ma.post_dump
    def _stamp(self, data: dict[str, object], **_kwargs: object) -> dict[str, object]:
        return {**data, "stamped": True}


class PlainOut(ResponseSchema):
    text = fields.String()
    count = fields.Integer(allow_none=True)
    items = fields.List(fields.Nested(ItemOut), allow_none=True)


@dataclass
class Item:
    name: object
    n: object = None


def _same(schema: ma.Schema, obj: object, many: bool | None = None) -> object:
    # ``dumps_checked_against_marshmallow`` (autouse) compares the plan with marshmallow on every dump
    return schema.dump(obj, many=many)


def test_the_plan_dumps_what_marshmallow_dumps(dumps_checked_against_marshmallow: list[str]) -> None:
    at = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    objects: list[object] = [
        {
            "text": 5,
            "count": 3.0,
            "big": 7,
            "flag": 1,
            "at": at,
            "raw": {"x": [1]},
            "mapping": {"k": "v"},
            "source": "街道",
            "one": Item("a", 1),
            "many": [Item("b"), None, {"name": b"bytes", "n": True}],
            "numbers": [1, "2", 3.7],
        },
        {"text": None, "count": None, "one": None, "many": None, "defaulted": "given"},
        {},
        Item("only an object"),
    ]
    for obj in objects:
        _same(ThingOut(), obj)
    _same(ThingOut(), objects, many=True)
    _same(ThingOut(many=True), objects)
    assert _same(FlattenedOut(), "x") == {"a": "x", "stamped": True}
    assert _same(FlattenedOut(), ["x", "y"], many=True) == [
        {"a": "x", "stamped": True},
        {"a": "y", "stamped": True},
    ]
    assert _same(PlainOut(), {"text": "t", "count": 2, "items": [Item("i", 3)]}) == {
        "text": "t",
        "count": 2,
        "items": [{"name": "i", "n": 3}],
    }
    assert _same(PlainOut(), {"items": 0 or None}) == {"items": None}
    assert _same(ItemOut(only=("name",)), Item("n", 1)) == {"name": "n"}  # marshmallow's own path
    assert {"ThingOut", "ItemOut", "FlattenedOut", "PlainOut"} <= set(dumps_checked_against_marshmallow)


def test_the_case_file_and_work_list_go_through_the_check(
    client: FlaskClient, tokens: Tokens, dumps_checked_against_marshmallow: list[str]
) -> None:
    intake = {"process_id": "demo", "title": "楼道堆物", "grid_id": "g1", "channel": "hotline_12345"}
    made = client.post("/api/cases", json={**intake, "reporter": REPORTER}, headers=tokens["gw_g1"])
    assert made.status_code == 201, made.get_json()
    case_id = made.get_json()["id"]
    for person in ("community_c1", "street_s1"):  # personal data clear, and masked
        assert client.get(f"/api/cases/{case_id}", headers=tokens[person]).status_code == 200
    assert client.get("/api/tasks", headers=tokens["community_c1"]).status_code == 200
    seen = set(dumps_checked_against_marshmallow)
    assert {"CaseFileOut", "CaseTaskOut", "TimelineOut", "SlaOut", "TaskPageOut"} <= seen, seen
