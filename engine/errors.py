"""The engine's error tree: every domain failure is an ``EngineError`` with a stable dotted code.

Owns the exception classes only; imports nothing from the rest of the engine.

    EngineError                      base; ``code``, ``message``, ``details``
    ├── NotFound          (404)      case.not_found, task.not_found, spec.not_found, person.not_found …
    ├── Conflict          (409)      task.not_ready, case.stale_version, case.locked, case.stalled,
    │                                task.action_unsupported …
    ├── PermissionDenied  (403)      task.not_candidate, task.reassign_forbidden, spec.deploy_forbidden …
    ├── InvalidInput      (422)      form.invalid, gateway.missing_variable, calendar.year_not_covered,
    │                                sla.invalid_threshold / sla.invalid_budget (a bad value read from data),
    │                                task.reassign_not_candidate, task.reason_required …
    │   └── SpecError     (422)      spec.invalid — ``details["problems"]`` lists every problem
    ├── ScriptError       (422)      script.forbidden, script.budget_exceeded, script.failed
    ├── Unauthenticated   (401)      auth.invalid_credentials, auth.required, auth.token_invalid
    ├── RateLimited       (429)      auth.rate_limited — ``details["retry_after"]`` in seconds
    ├── TooLarge          (413)      attachment.too_large
    └── UnsupportedType   (415)      attachment.unsupported_type

The API maps each family to an HTTP status in one table (api/errors.py); codes never change meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

JSONValue = object


class EngineError(Exception):
    """Base of every domain error. ``code`` is stable and dotted (``task.already_completed``)."""

    family = "engine"

    def __init__(self, code: str, message: str, details: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, object] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "details": self.details}


class NotFound(EngineError):
    family = "not_found"


class Conflict(EngineError):
    family = "conflict"


class PermissionDenied(EngineError):
    family = "permission_denied"


class InvalidInput(EngineError):
    family = "invalid_input"


class ScriptError(EngineError):
    """A script or expression was refused by the sandbox or failed while running."""

    family = "invalid_input"


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem in a spec file: where it is and what is wrong, in plain words."""

    file: str
    message: str
    element_id: str | None = None
    line: int | None = None
    severity: str = "error"  # "error" refuses the deploy; "warning" is reported only
    extra: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.element_id:
            where += f" [{self.element_id}]"
        return f"{where}: {self.severity}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "element_id": self.element_id,
            "line": self.line,
            "severity": self.severity,
            "message": self.message,
        }


class SpecError(InvalidInput):
    """A BPMN/DMN/form set was refused. ``problems`` holds every problem found, not just the first."""

    def __init__(self, problems: list[Problem], message: str | None = None) -> None:
        errors = [p for p in problems if p.severity == "error"]
        super().__init__(
            "spec.invalid",
            message or f"{len(errors)} problem(s) found; nothing was deployed",
            {"problems": [p.to_dict() for p in problems]},
        )
        self.problems = problems


class Unauthenticated(EngineError):
    """The caller could not be identified (no, unknown, expired or revoked credentials)."""

    family = "unauthenticated"


class RateLimited(EngineError):
    """Too many attempts in the window; ``details["retry_after"]`` says how many seconds to wait."""

    family = "rate_limited"


class TooLarge(EngineError):
    """An upload exceeds its size limit."""

    family = "too_large"


class UnsupportedType(EngineError):
    """An upload's content (sniffed from its first bytes) is not an accepted type."""

    family = "unsupported_type"
