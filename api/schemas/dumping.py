"""``ResponseSchema``: the base of every response schema, whose ``dump`` runs a plan made once per schema.

marshmallow dumps a field through five or six calls (``serialize`` → ``get_value`` → the accessor →
``_serialize`` → …): on a case file of some 150 fields, a third of the request's CPU under cProfile. The plan
keeps marshmallow's rules and only removes the layers: for each field, in ``dump_fields`` order, the value
is read with marshmallow's own accessor (``utils._get_value_for_key``), a missing value takes the field's
``dump_default`` or leaves the key out, and the value is converted —

- ``String``: a ``str`` as it is, anything else as marshmallow does (``str()``; ``None`` stays ``None``);
- ``Integer`` (not ``as_string``): an ``int`` as it is, anything else as marshmallow does;
- ``Raw``: as it is;
- ``Nested`` / ``List`` of ``Nested``: the nested schema's own ``dump`` (a ``ResponseSchema`` runs its plan);
- every other field: the field's own ``_serialize``.

Fields that read no attribute (``Method``, ``Function``, ``Constant``), dotted attribute paths, ``only`` /
``exclude`` and a schema overriding ``get_attribute`` keep marshmallow's path entirely. ``pre_dump`` and
``post_dump`` hooks run as marshmallow runs them. ``tests/api/conftest.py`` checks, for every response
of the API tests, that the plan's output equals marshmallow's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import marshmallow as ma
from marshmallow import fields
from marshmallow.decorators import POST_DUMP, PRE_DUMP
from marshmallow.utils import _get_value_for_key, missing

Convert = Callable[[Any, str, Any], Any]  # value, attribute name, object → dumped value
Entry = tuple[str, str, str, fields.Field, Convert]  # output key, attr name, key read, field, converter


def _string(field: fields.Field) -> Convert:
    slow = field._serialize

    def convert(value: Any, attr: str, obj: Any) -> Any:
        return value if type(value) is str else slow(value, attr, obj)

    return convert


def _integer(field: fields.Field) -> Convert:
    slow = field._serialize

    def convert(value: Any, attr: str, obj: Any) -> Any:
        return value if type(value) is int else slow(value, attr, obj)

    return convert


def _raw(value: Any, _attr: str, _obj: Any) -> Any:
    return value


def _nested(field: fields.Nested) -> Convert:
    def convert(value: Any, _attr: str, _obj: Any) -> Any:
        if value is None:
            return None
        schema = field.schema
        return schema.dump(value, many=schema.many or field.many)

    return convert


def _list_of_nested(field: fields.List) -> Convert:
    inner = field.inner
    assert isinstance(inner, fields.Nested)

    def convert(value: Any, _attr: str, _obj: Any) -> Any:
        if value is None:
            return None
        schema = inner.schema
        many = schema.many or inner.many
        return [None if each is None else schema.dump(each, many=many) for each in value]

    return convert


def _converter(field: fields.Field) -> Convert:
    kind = type(field)
    if kind is fields.String:
        return _string(field)
    if kind is fields.Integer and not field.as_string:  # type: ignore[attr-defined]
        return _integer(field)
    if kind is fields.Raw:
        return _raw
    if kind is fields.Nested:
        return _nested(field)  # type: ignore[arg-type]
    if kind is fields.List and type(field.inner) is fields.Nested:  # type: ignore[attr-defined]
        return _list_of_nested(field)  # type: ignore[arg-type]
    return field._serialize


class ResponseSchema(ma.Schema):
    """See the module docstring."""

    _plan: list[Entry] | None

    def _make_plan(self) -> list[Entry] | None:
        if self.only is not None or self.exclude or type(self).get_attribute is not ma.Schema.get_attribute:
            return None
        plan: list[Entry] = []
        for attr, field in self.dump_fields.items():
            read = field.attribute or attr
            if not field._CHECK_ATTRIBUTE or "." in read:
                return None
            key = field.data_key if field.data_key is not None else attr
            plan.append((key, attr, read, field, _converter(field)))
        return plan

    def _dump_one(self, obj: Any, plan: list[Entry]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, attr, read, field, convert in plan:
            value = _get_value_for_key(obj, read, missing)
            if value is missing:
                default = field.dump_default
                value = default() if callable(default) else default
                if value is missing:
                    continue
            out[key] = convert(value, attr, obj)
        return out

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        try:
            plan = self._plan
        except AttributeError:
            plan = self._plan = self._make_plan()
        if plan is None:
            return super().dump(obj, many=many)
        many = self.many if many is None else bool(many)
        processed = (
            self._invoke_dump_processors(PRE_DUMP, obj, many=many, original_data=obj)
            if self._hooks[PRE_DUMP]
            else obj
        )
        if many and processed is not None:
            result: Any = [self._dump_one(each, plan) for each in processed]
        else:
            result = self._dump_one(processed, plan)
        if self._hooks[POST_DUMP]:
            result = self._invoke_dump_processors(POST_DUMP, result, many=many, original_data=obj)
        return result
