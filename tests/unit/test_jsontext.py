"""``engine.store.jsontext.loads`` returns exactly what ``json.loads`` returns (values and types), for
the texts orjson reads differently or refuses as well as for ordinary JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import jsontext

TRICKY = [
    "12345678901234567890123",  # beyond 64 bits: orjson would give a float
    "-9223372036854775809",  # just below int64
    "9223372036854775807",
    "18446744073709551616",
    '{"amount": 123456789012345678901234567890, "n": 1}',
    "[1234567890123456789, -1234567890123456789]",
    '{"card": "6222021234567890123"}',  # 19 digits inside a string
    "NaN",
    "[Infinity, -Infinity]",
    '["\\ud800"]',  # a lone surrogate escape
    "1e400",
    "-0",
    "-0.0",
    "0.1",
    "1E-7",
    '{"a": 1, "a": 2}',
    '{"名称": "网格员", "emoji": "\\ud83d\\ude00"}',
    "[]",
    "{}",
    '"x"',
    "null",
]


def _typed(value: Any) -> Any:
    """The value with every number tagged by its type (1 == 1.0 == True in Python), NaN comparable."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return (type(value).__name__, value)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts_read_as_the_standard_library_reads_them(text: str) -> None:
    expected = _typed(json.loads(text))
    assert _typed(jsontext.loads(text)) == expected
    assert _typed(jsontext.loads(text.encode())) == expected


def test_invalid_json_is_refused_as_the_standard_library_refuses_it() -> None:
    for text in ("{", "[1,]", "{'a': 1}", ""):
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        with pytest.raises(json.JSONDecodeError):
            jsontext.loads(text)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_any_value_written_by_the_standard_library_reads_back_the_same(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert _typed(jsontext.loads(text)) == _typed(json.loads(text))
