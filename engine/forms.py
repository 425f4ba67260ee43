"""Task forms: resolve a user task's JSON Schema and validate submitted data with field-level errors.

Forms are stored with each spec version, so a running case keeps the forms it started with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache

from jsonschema import Draft202012Validator, FormatChecker

from engine.errors import InvalidInput

MAX_FIELDS_REPORTED = 50


@lru_cache(maxsize=512)
def _validator(schema_text: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_text), format_checker=FormatChecker())


def validate_form(form_key: str, schema_text: str, data: Mapping[str, object]) -> None:
    """Raise ``InvalidInput('form.invalid')`` with ``details.fields`` = {field path: message} on bad data."""
    if not isinstance(data, Mapping):
        raise InvalidInput(
            "form.invalid", "form data must be a JSON object", {"form_key": form_key, "fields": {}}
        )
    fields = form_errors(schema_text, data)
    if fields:
        raise invalid_form(form_key, fields)


def form_errors(schema_text: str, data: Mapping[str, object]) -> dict[str, str]:
    """{field path: message} for each field of ``data`` the form's schema refuses; empty when valid."""
    fields: dict[str, str] = {}
    for error in _validator(schema_text).iter_errors(dict(data)):
        path = "/".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [k for k in error.validator_value if k not in error.instance]
            for name in missing:
                fields[f"{path}/{name}" if path else name] = "此项必填 (required)"
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for name in error.instance:
                if name not in allowed:
                    fields[f"{path}/{name}" if path else name] = "未知字段 (unknown field)"
            continue
        fields.setdefault(path or "(form)", error.message)
        if len(fields) >= MAX_FIELDS_REPORTED:
            break
    return fields


def invalid_form(form_key: str, fields: Mapping[str, str]) -> InvalidInput:
    """The ``form.invalid`` error for the fields ``form_errors`` found."""
    return InvalidInput(
        "form.invalid",
        f"{len(fields)} field(s) of form '{form_key}' are invalid",
        {"form_key": form_key, "fields": dict(fields)},
    )


def schema_fingerprint(schema_text: str) -> str:
    return hashlib.sha256(schema_text.encode()).hexdigest()[:16]
