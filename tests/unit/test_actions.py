"""Task actions declared in a diagram (engine.actions): which a task offers, the form data each action
becomes, and the refusals — without a database."""

from __future__ import annotations

import pytest

from engine import actions, orgs
from engine.demo_org import PEOPLE, UNITS
from engine.errors import Conflict, InvalidInput

CLAIM = {
    "return_field": "claim_decision",
    "return_value": "return",
    "return_reason_field": "return_note",
    "return_code_field": "return_reason",
}
HANDLE = {
    "extension_field": "handle_result",
    "extension_value": "request_extension",
    "extension_days_field": "extension_days",
    "extension_reason_field": "extension_reason",
}
DECISION = {
    "sla_extends": "handle",
    "sla_approval_field": "extension_result",
    "sla_extension_field": "approved_days",
    "sla_comment_field": "extension_comment",
}
INTEGER_DAYS = {"properties": {"extension_days": {"type": "integer"}, "approved_days": {"type": "integer"}}}


def test_a_task_offers_exactly_the_actions_its_properties_declare_in_full() -> None:
    assert actions.declared(CLAIM) == ["return"]
    assert actions.declared(HANDLE) == ["extension_request"]
    assert actions.declared({**CLAIM, **HANDLE, "sla_extends": "x"}) == list(actions.ACTIONS)
    assert actions.declared({"return_field": "claim_decision", "return_value": "return"}) == []
    assert actions.declared({"sla": "5WD"}) == []


def test_a_return_fills_the_choice_the_reason_and_the_reason_code() -> None:
    data = actions.form_data(
        CLAIM, None, actions.ReturnInput("  非本部门职责 ", "not_responsible"), task_name="领单"
    )
    assert data == {
        "claim_decision": "return",
        "return_note": "非本部门职责",
        "return_reason": "not_responsible",
    }
    bare = {k: v for k, v in CLAIM.items() if k != "return_code_field"}
    assert actions.form_data(bare, None, actions.ReturnInput("错派"), task_name="领单") == {
        "claim_decision": "return",
        "return_note": "错派",
    }
    with pytest.raises(InvalidInput) as refused:
        actions.form_data(bare, None, actions.ReturnInput("错派", "other"), task_name="领单")
    assert refused.value.code == "task.reason_code_unsupported"


@pytest.mark.parametrize("reason", ["", "   ", "长" * 1001])
def test_a_return_without_a_reason_of_1_to_1000_characters_is_refused(reason: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        actions.form_data(CLAIM, None, actions.ReturnInput(reason), task_name="领单")
    assert refused.value.code == "task.reason_required"


def test_days_go_into_an_integer_field_as_they_are_and_into_a_string_field_as_working_days() -> None:
    request = actions.ExtensionRequestInput(3, "需协调")
    assert actions.form_data(HANDLE, INTEGER_DAYS, request, task_name="处置") == {
        "handle_result": "request_extension",
        "extension_days": 3,
        "extension_reason": "需协调",
    }
    as_text = {"properties": {"extension_days": {"type": "string"}}}
    assert actions.form_data(HANDLE, as_text, request, task_name="处置")["extension_days"] == "3WD"
    for days in (0, -1, True):
        with pytest.raises(InvalidInput) as refused:
            actions.form_data(
                HANDLE, INTEGER_DAYS, actions.ExtensionRequestInput(days, "x"), task_name="处置"
            )
        assert refused.value.code == "task.bad_days"


def test_an_extension_decision_approves_with_days_or_rejects_with_the_diagrams_values() -> None:
    approve = actions.ExtensionDecisionInput(True, 2, "同意")
    assert actions.form_data(DECISION, INTEGER_DAYS, approve, task_name="延期审批") == {
        "extension_result": "approve",
        "approved_days": 2,
        "extension_comment": "同意",
    }
    reject = actions.ExtensionDecisionInput(False, comment="理由不足")
    assert actions.form_data(
        {**DECISION, "sla_reject_value": "deny"}, None, reject, task_name="延期审批"
    ) == {
        "extension_result": "deny",
        "extension_comment": "理由不足",
    }
    defaults = {"sla_extends": "handle"}  # the property defaults: decision / extension
    assert actions.form_data(defaults, None, actions.ExtensionDecisionInput(True, 1), task_name="审批") == {
        "decision": "approve",
        "extension": 1,
    }
    for given, code in (
        (actions.ExtensionDecisionInput(True), "sla.extension_missing"),
        (actions.ExtensionDecisionInput(False, 3, "不同意"), "task.days_without_approval"),
    ):
        with pytest.raises(InvalidInput) as refused:
            actions.form_data(DECISION, None, given, task_name="延期审批")
        assert refused.value.code == code
    with pytest.raises(InvalidInput) as refused:
        actions.form_data(
            defaults, None, actions.ExtensionDecisionInput(False, comment="x"), task_name="审批"
        )
    assert refused.value.code == "task.comment_unsupported"


@pytest.mark.parametrize(
    "given",
    [
        actions.ReturnInput("错派"),
        actions.ExtensionRequestInput(2, "忙"),
        actions.ExtensionDecisionInput(True, 2),
    ],
)
def test_an_action_the_task_does_not_declare_is_a_conflict_naming_what_it_offers(
    given: actions.ActionInput,
) -> None:
    with pytest.raises(Conflict) as refused:
        actions.form_data(
            {"sla": "1WD", **({} if isinstance(given, actions.ReturnInput) else CLAIM)},
            None,
            given,
            task_name="受理",
        )
    assert refused.value.code == "task.action_unsupported"
    assert refused.value.details["action"] == actions.name_of(given)


def test_every_demo_membership_sits_in_a_unit_of_a_kind_its_role_may_hold() -> None:
    kinds = {uid: kind for uid, _name, kind, _parent in UNITS}
    for person, _name, role, unit in PEOPLE:
        assert kinds[unit] in orgs.ROLE_UNIT_KINDS[role], (person, role, unit)
    assert set(orgs.ROLE_UNIT_KINDS) == set(orgs.ROLES)
    assert all(k <= set(orgs.UNIT_KINDS) for k in orgs.ROLE_UNIT_KINDS.values())
