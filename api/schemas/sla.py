"""Schemas of the SLA actions on a case (挂起/恢复, 催办, 督办, 延期), a case's clocks with their
explanations, and the supervision lists (overdue, provisional)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from api.schemas.common import RequestSchema, ident
from api.schemas.dumping import ResponseSchema
from engine.supervision import MAX_LIST

# What a hand-given reason or note must be: 1–500 characters, not only blanks.
_TEXT = [validate.Length(min=1, max=500), validate.Regexp(r"\S", error="must not be blank")]
# An extension: whole working days or hours ("3WD", "4WH"), or calendar days/hours ("P3D", "PT12H").
_ADDED = r"^(?:[1-9][0-9]{0,2}(?:WD|WH)|P[1-9][0-9]{0,2}D|PT[1-9][0-9]{0,3}H)$"


class SuspendIn(RequestSchema):
    reason = fields.String(required=True, validate=_TEXT, metadata={"description": "why (挂起原因)"})


class NoteIn(RequestSchema):
    note = fields.String(required=True, validate=_TEXT, metadata={"description": "shown to the handlers"})


class ExtensionIn(RequestSchema):
    clock = ident(100, required=True, metadata={"description": "the clock's key (``clock_key`` of a clock)"})
    added = fields.String(
        required=True,
        validate=validate.Regexp(_ADDED, error="a duration such as 3WD, 4WH, P3D or PT12H"),
        metadata={"description": "time added, in the unit family of the budget (3WD, 4WH, P3D, PT12H)"},
    )
    reason = fields.String(required=True, validate=_TEXT)


class PauseOut(ResponseSchema):
    from_ = fields.String(required=True, data_key="from", attribute="from", metadata={"format": "date-time"})
    to = fields.String(allow_none=True, required=True, metadata={"description": "null: still suspended"})
    reason = fields.String(allow_none=True, required=True)
    actor = fields.String(allow_none=True, required=True)


class ExtensionOut(ResponseSchema):
    added = fields.String(required=True)
    seconds = fields.Integer(required=True)
    by = fields.String(allow_none=True, required=True)
    at = fields.String(required=True, metadata={"format": "date-time"})
    reason = fields.String(allow_none=True, required=True)


_CLOCK_FIELDS = (
    "id",
    "task_id",
    "task_spec",
    "org_unit_id",
    "budget",
    "state",
    "status",
    "started_at",
    "due_at",
    "warn_due_at",
    "consumed_seconds",
    "budget_seconds",
    "provisional",
    "provisional_reason",
    "calendar_version",
    "pauses",
    "extensions",
    "handovers",
    "warn_pct",
    "supervise_after",
    "escalate_after",
    "supervise_at",
    "escalate_at",
    "policy_sources",
)


class HandOverOut(ResponseSchema):
    at = fields.DateTime(required=True)
    from_unit = fields.String(allow_none=True, required=True, metadata={"description": "whose time it was"})
    to_unit = fields.String(allow_none=True, required=True, metadata={"description": "whose time it is now"})
    spent_seconds = fields.Integer(
        required=True, metadata={"description": "working time from_unit spent since the last hand-over"}
    )
    actor = fields.String(allow_none=True, required=True)
    reason = fields.String(allow_none=True, required=True)


class ClockOut(ResponseSchema):
    """Dumped from ``engine.supervision.ClockExplained``: the clock, its key and its explanation."""

    @ma.pre_dump
    def _flatten(self, found: object, **_kwargs: object) -> object:
        clock = getattr(found, "clock", None)
        if clock is None:
            return found
        return {
            **{name: getattr(clock, name) for name in _CLOCK_FIELDS},
            "clock_key": found.clock_key,  # type: ignore[attr-defined]
            "explain": found.explain,  # type: ignore[attr-defined]
        }

    id = fields.Integer(required=True)
    clock_key = fields.String(required=True, metadata={"description": "name it to extend this clock"})
    task_id = fields.String(allow_none=True, required=True)
    task_spec = fields.String(required=True)
    org_unit_id = fields.String(allow_none=True, required=True, metadata={"description": "whose time"})
    budget = fields.String(required=True, metadata={"description": "as written in the BPMN: 5WD, 2WH …"})
    state = fields.String(required=True, metadata={"description": "running, paused or stopped"})
    status = fields.String(required=True, metadata={"description": "on_time, warning or overdue"})
    started_at = fields.DateTime(required=True)
    due_at = fields.DateTime(allow_none=True, required=True)
    warn_due_at = fields.DateTime(allow_none=True, required=True)
    consumed_seconds = fields.Integer(required=True)
    budget_seconds = fields.Integer(required=True, metadata={"description": "with approved extensions"})
    provisional = fields.Boolean(required=True)
    provisional_reason = fields.String(allow_none=True, required=True)
    calendar_version = fields.String(required=True)
    pauses = fields.List(fields.Nested(PauseOut), required=True)
    extensions = fields.List(fields.Nested(ExtensionOut), required=True)
    warn_pct = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "warning (黄灯) at this % of the budget; null: none"},
    )
    supervise_after = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "督办 this long after the deadline (null: 1WD)"},
    )
    escalate_after = fields.String(
        allow_none=True, required=True, metadata={"description": "escalation this long after it (null: 5WD)"}
    )
    supervise_at = fields.DateTime(allow_none=True, required=True)
    escalate_at = fields.DateTime(allow_none=True, required=True)
    policy_sources = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        allow_none=True,
        required=True,
        metadata={
            "description": "where each of sla, warn_at, supervise_after, escalate_after came from: task, "
            "process, default or variable:<name>; null on clocks started before sources were recorded"
        },
    )
    handovers = fields.List(
        fields.Nested(HandOverOut),
        required=True,
        metadata={"description": "改派: each time the clock changed hands, oldest first"},
    )
    explain = fields.List(
        fields.String(), required=True, metadata={"description": "why the deadline is what it is (zh-CN)"}
    )


class CaseSlaOut(ResponseSchema):
    case_id = fields.Integer(required=True)
    number = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "the case's status (open, suspended …)"})
    version = fields.Integer(required=True)
    sla_status = fields.String(required=True, metadata={"description": "none, on_time, warning or overdue"})
    due_at = fields.DateTime(allow_none=True, required=True, metadata={"description": "nearest deadline"})
    clocks = fields.List(fields.Nested(ClockOut), required=True)


class WatchQuery(RequestSchema):
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=MAX_LIST))


class WatchRowOut(ResponseSchema):
    case_id = fields.Integer(required=True)
    case_number = fields.String(required=True)
    case_title = fields.String(required=True)
    case_status = fields.String(required=True)
    task_id = fields.String(allow_none=True, required=True)
    task_spec = fields.String(required=True)
    task_name = fields.String(allow_none=True, required=True)
    org_unit_id = fields.String(allow_none=True, required=True)
    due_at = fields.DateTime(allow_none=True, required=True)
    status = fields.String(
        required=True, metadata={"description": "the clock's rung: on_time, warning, overdue"}
    )
    state = fields.String(required=True, metadata={"description": "running or paused"})
    provisional = fields.Boolean(required=True)
    provisional_reason = fields.String(allow_none=True, required=True)
