"""Task actions a diagram declares: 退单 (return with a reason), 延期申请 (extension request) and
延期审批 (extension decision) as named actions on a user task, wired to the task's own form fields by
BPMN properties, so the diagram stays in charge of what each action means and where it leads.

Owns the property names and the rule that turns an action's inputs into form data. Completing the task
with that data is ``engine.tasks`` (the form is validated as for any completion, and the diagram's
gateways route on the values); ``engine.specs`` checks the declarations at deploy. Imports only the
error tree; must not import flask, api or celery.

    action              properties on the user task                        inputs
    return              return_field, return_value, return_reason_field,   reason, reason_code
                        return_code_field (optional)
    extension_request   extension_field, extension_value,                  days, reason
                        extension_days_field, extension_reason_field
    extension_decision  sla_extends (declares it), sla_approval_field      approve, days, comment
                        (default decision), sla_extension_field (default
                        extension), sla_comment_field (optional),
                        sla_reject_value (default reject)

For example the work order's 部门领单 declares ``return_field="claim_decision"``,
``return_value="return"``, ``return_reason_field="return_note"`` and ``return_code_field="return_reason"``:
returning it with reason "不属本部门职责" and code ``not_responsible`` completes it with
``{"claim_decision": "return", "return_note": "不属本部门职责", "return_reason": "not_responsible"}``.

A whole number of days goes into a field of type ``integer`` as it is, and into a ``string`` field as
working days (``"3WD"``). A task that declares no such action refuses it: 409 ``task.action_unsupported``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import Conflict, InvalidInput

__all__ = [
    "ACTIONS",
    "EXTENSION_DECISION",
    "EXTENSION_REQUEST",
    "PROPERTIES",
    "RETURN",
    "ActionInput",
    "ExtensionDecisionInput",
    "ExtensionRequestInput",
    "ReturnInput",
    "declared",
    "form_data",
    "name_of",
    "problems",
]

RETURN = "return"
EXTENSION_REQUEST = "extension_request"
EXTENSION_DECISION = "extension_decision"
ACTIONS = (RETURN, EXTENSION_REQUEST, EXTENSION_DECISION)

# The properties that declare an action: all of them are needed (return_code_field is optional).
_REQUIRED: dict[str, tuple[str, ...]] = {
    RETURN: ("return_field", "return_value", "return_reason_field"),
    EXTENSION_REQUEST: (
        "extension_field",
        "extension_value",
        "extension_days_field",
        "extension_reason_field",
    ),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {RETURN: ("return_code_field",), EXTENSION_REQUEST: ()}
PROPERTIES = frozenset(
    {
        *(p for names in _REQUIRED.values() for p in names),
        *(p for names in _OPTIONAL.values() for p in names),
        "sla_comment_field",
        "sla_reject_value",
    }
)
DEFAULT_APPROVAL_FIELD = "decision"
DEFAULT_EXTENSION_FIELD = "extension"
APPROVE_VALUE = "approve"  # what ``tasks`` reads as an approval (``sla_approval_field``)
DEFAULT_REJECT_VALUE = "reject"
MAX_TEXT = 1000


@dataclass(frozen=True, slots=True)
class ReturnInput:
    """退单: why (free text), and optionally a reason code of the form's list."""

    reason: str
    reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class ExtensionRequestInput:
    """延期申请: how many more working days, and why."""

    days: int
    reason: str


@dataclass(frozen=True, slots=True)
class ExtensionDecisionInput:
    """延期审批: approve (with the working days granted) or reject, with an optional comment."""

    approve: bool
    days: int | None = None
    comment: str | None = None


ActionInput = ReturnInput | ExtensionRequestInput | ExtensionDecisionInput
_NAME_OF: dict[type[object], str] = {
    ReturnInput: RETURN,
    ExtensionRequestInput: EXTENSION_REQUEST,
    ExtensionDecisionInput: EXTENSION_DECISION,
}


def name_of(given: ActionInput) -> str:
    """The action an input stands for (``return``, ``extension_request``, ``extension_decision``)."""
    return _NAME_OF[type(given)]


def declared(properties: Mapping[str, str]) -> list[str]:
    """The actions a user task's properties declare, in the order of ``ACTIONS``."""
    found = [a for a, names in _REQUIRED.items() if all(properties.get(n) for n in names)]
    if properties.get("sla_extends"):
        found.append(EXTENSION_DECISION)
    return [a for a in ACTIONS if a in found]


def form_data(
    properties: Mapping[str, str], form: Mapping[str, object] | None, given: ActionInput, *, task_name: str
) -> dict[str, object]:
    """The form data that performs ``given`` on a task with these properties and this form schema."""
    action = name_of(given)
    if action not in declared(properties):
        raise Conflict(
            "task.action_unsupported",
            f"task '{task_name}' offers no {action.replace('_', ' ')}",
            {"action": action, "offered": declared(properties)},
        )
    fields = _form_fields(form)
    if isinstance(given, ReturnInput):
        data: dict[str, object] = {
            properties["return_field"]: properties["return_value"],
            properties["return_reason_field"]: _text(given.reason, "reason"),
        }
        code_field = properties.get("return_code_field")
        if given.reason_code is not None:
            if not code_field:
                raise InvalidInput(
                    "task.reason_code_unsupported",
                    f"task '{task_name}' takes no reason code; give the reason as text",
                    {"fields": {"reason_code": "not offered by this task"}},
                )
            data[code_field] = given.reason_code
        return data
    if isinstance(given, ExtensionRequestInput):
        days_field = properties["extension_days_field"]
        return {
            properties["extension_field"]: properties["extension_value"],
            days_field: _days(given.days, fields.get(days_field)),
            properties["extension_reason_field"]: _text(given.reason, "reason"),
        }
    approval = properties.get("sla_approval_field") or DEFAULT_APPROVAL_FIELD
    data = {
        approval: APPROVE_VALUE if given.approve else properties.get("sla_reject_value", DEFAULT_REJECT_VALUE)
    }
    if given.approve:
        if given.days is None:
            raise InvalidInput(
                "sla.extension_missing",
                "an approved extension needs its length in working days",
                {"fields": {"days": "required when approving"}},
            )
        extension = properties.get("sla_extension_field") or DEFAULT_EXTENSION_FIELD
        data[extension] = _days(given.days, fields.get(extension))
    elif given.days is not None:
        raise InvalidInput(
            "task.days_without_approval",
            "days are granted only when approving",
            {"fields": {"days": "approve"}},
        )
    if given.comment is not None:
        comment_field = properties.get("sla_comment_field")
        if not comment_field:
            raise InvalidInput(
                "task.comment_unsupported",
                f"task '{task_name}' takes no comment",
                {"fields": {"comment": "not offered by this task"}},
            )
        data[comment_field] = _text(given.comment, "comment")
    return data


def problems(properties: Mapping[str, str], form: Mapping[str, object] | None) -> list[str]:
    """What is wrong with a user task's action properties against its form (checked at deploy)."""
    found: list[str] = []
    fields = _form_fields(form)
    for action, names in _REQUIRED.items():
        present = [n for n in (*names, *_OPTIONAL[action]) if n in properties]
        missing = [n for n in names if not properties.get(n)]
        if present and missing:
            found.append(f"the {action} action needs {', '.join(names)}; missing: {', '.join(missing)}")
            continue
        if not present:
            continue
        for name in (*names, *_OPTIONAL[action]):
            if name.endswith("_field") and name in properties:
                found.extend(_field_problem(name, properties[name], fields))
        choice = names[0]
        found.extend(_value_problem(choice, properties[choice], properties[names[1]], fields))
    if properties.get("sla_extends"):
        approval = properties.get("sla_approval_field") or DEFAULT_APPROVAL_FIELD
        extension = properties.get("sla_extension_field") or DEFAULT_EXTENSION_FIELD
        for name, value in (
            ("sla_approval_field", approval),
            ("sla_extension_field", extension),
            ("sla_comment_field", properties.get("sla_comment_field")),
        ):
            if value:
                found.extend(_field_problem(name, value, fields))
        for value in (APPROVE_VALUE, properties.get("sla_reject_value", DEFAULT_REJECT_VALUE)):
            found.extend(_value_problem("sla_approval_field", approval, value, fields))
    elif "sla_comment_field" in properties or "sla_reject_value" in properties:
        found.append("sla_comment_field and sla_reject_value belong to a task with sla_extends (延期审批)")
    return found


def _form_fields(form: Mapping[str, object] | None) -> dict[str, Mapping[str, object]]:
    props = form.get("properties") if isinstance(form, Mapping) else None
    if not isinstance(props, Mapping):
        return {}
    return {str(k): v for k, v in props.items() if isinstance(v, Mapping)}


def _field_problem(name: str, field: str, fields: Mapping[str, Mapping[str, object]]) -> list[str]:
    if field in fields:
        return []
    return [f"{name} '{field}' is not a field of the task's form (fields: {', '.join(sorted(fields))})"]


def _value_problem(
    name: str, field: str, value: str, fields: Mapping[str, Mapping[str, object]]
) -> list[str]:
    choices = fields.get(field, {}).get("enum")
    if isinstance(choices, list) and value not in choices:
        return [f"{name} '{field}' takes {choices}; '{value}' is not one of them"]
    return []


def _days(days: int, field: Mapping[str, object] | None) -> object:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidInput(
            "task.bad_days",
            "give a whole number of working days (1 or more)",
            {"fields": {"days": "1 or more"}},
        )
    return f"{days}WD" if field is not None and field.get("type") == "string" else days


def _text(text: str, name: str) -> str:
    text = (text or "").strip()
    if not text or len(text) > MAX_TEXT:
        raise InvalidInput(
            "task.reason_required",
            f"give a {name} of 1 to {MAX_TEXT} characters",
            {"fields": {name: "required"}},
        )
    return text
