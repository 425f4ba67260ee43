"""Reading JSON text fast: orjson where it gives exactly what the standard library's ``json.loads``
gives, ``json.loads`` everywhere else.

orjson is strict RFC 8259 and refuses what ``json.loads`` takes (``NaN``, ``Infinity``, lone surrogate
escapes, numbers past a double's range): those texts are read again by ``json.loads``. One difference
is silent: an integer beyond 64 bits comes back from orjson as a float. Any run of 19 digits sends the
text to ``json.loads`` first (18 digits always fit in 64 bits), so a big integer keeps every digit; a
19-digit run inside a string (a bank card number, say) only costs the slower reader.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_DIGITS_STR = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")


def loads(text: str | bytes | bytearray) -> Any:
    """``json.loads(text)``, the same value, found faster."""
    if isinstance(text, str):
        long_digits = _LONG_DIGITS_STR.search(text) is not None
    else:
        long_digits = _LONG_DIGITS_BYTES.search(text) is not None
    if not long_digits:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
