"""The app's JSON provider: request and response bodies read and written by orjson, with Flask's
``DefaultJSONProvider`` as the fallback for anything orjson would give differently.

Responses are what Flask writes (keys sorted, compact, its ``default`` for dates, decimals and
dataclasses), but with non-ASCII characters as UTF-8 rather than escapes (``\\u8857`` for 街): the
same JSON value, shorter. What orjson refuses (an integer beyond 64 bits, keys that are not strings, a lone
surrogate) is written by Flask's provider, as before; so is any call with ``json.dumps`` options.
``NaN`` and infinities come out as ``null`` (the stdlib writes ``NaN``, which is not JSON). Request
bodies are read by ``engine.store.jsontext.loads``: exactly what ``json.loads`` returns.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

from engine.store import jsontext

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_COMPACT = {"separators": (",", ":")}


class JsonProvider(DefaultJSONProvider):
    def _fast(self, obj: Any) -> bytes | None:
        try:
            return orjson.dumps(obj, default=self.default, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError too
            return None

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs == _COMPACT and self.sort_keys:
            found = self._fast(obj)
            if found is not None:
                return found.decode()
        return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsontext.loads(s) if not kwargs else super().loads(s, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        compact = not ((self.compact is None and self._app.debug) or self.compact is False)
        if compact and self.sort_keys:
            found = self._fast(self._prepare_response_obj(args, kwargs))
            if found is not None:
                return Response(found + b"\n", mimetype=self.mimetype)
        return super().response(*args, **kwargs)  # type: ignore[return-value]
