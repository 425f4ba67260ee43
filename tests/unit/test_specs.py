"""Spec validation and deployment: every problem is found, located and worded plainly; nothing bad deploys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import specs
from engine.errors import Problem, SpecError
from engine.sandbox import Sandbox
from engine.store.db import Database
from engine.store.models import spec_version

REPO = Path(__file__).resolve().parents[2]
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


# --- building small BPMN documents ------------------------------------------------------------------------


def bpmn(body: str, *, process_id: str = "p", executable: str = "true", extra: str = "") -> bytes:
    """A minimal, DI-free BPMN document with one process holding ``body``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<bpmn:definitions xmlns:bpmn="{BPMN}" xmlns:camunda="{CAMUNDA}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs" '
        'targetNamespace="https://gridcase.example/test">\n'
        f"{extra}\n"
        f'  <bpmn:process id="{process_id}" isExecutable="{executable}">\n'
        f"{body}\n"
        "  </bpmn:process>\n"
        "</bpmn:definitions>\n"
    ).encode()


def flows(*pairs: tuple[str, str]) -> str:
    return "\n".join(f'<bpmn:sequenceFlow id="f_{a}_{b}" sourceRef="{a}" targetRef="{b}"/>' for a, b in pairs)


def around(*nodes: str, path: tuple[str, ...]) -> str:
    """Start event, ``nodes``, end event, and a straight line of flows start → path… → end."""
    ids = ("start", *path, "end")
    parts = ['<bpmn:startEvent id="start"/>', *nodes, '<bpmn:endEvent id="end"/>', flows(*pairwise(ids))]
    return "\n".join(parts)


def script_task(task_id: str, script: str) -> str:
    return (
        f'<bpmn:scriptTask id="{task_id}" scriptFormat="python">'
        f"<bpmn:script>{script}</bpmn:script></bpmn:scriptTask>"
    )


def user_task(task_id: str, form: str | None = "t/handle", properties: dict[str, str] | None = None) -> str:
    key = f' camunda:formKey="{form}"' if form else ""
    props = "".join(f'<camunda:property name="{k}" value="{v}"/>' for k, v in (properties or {}).items())
    ext = f"<bpmn:extensionElements><camunda:properties>{props}</camunda:properties></bpmn:extensionElements>"
    return f'<bpmn:userTask id="{task_id}"{key}>{ext if props else ""}</bpmn:userTask>'


def timer_catch(event_id: str, kind: str, value: str) -> str:
    return (
        f'<bpmn:intermediateCatchEvent id="{event_id}"><bpmn:timerEventDefinition>'
        f"<bpmn:{kind}>{value}</bpmn:{kind}></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>"
    )


def line_of(source: bytes, needle: str) -> int:
    text = source.decode()
    return text[: text.index(needle)].count("\n") + 1


@pytest.fixture
def forms(tmp_path: Path) -> Path:
    folder = tmp_path / "forms"
    (folder / "t").mkdir(parents=True)
    schema = {"type": "object", "properties": {"result": {"type": "string"}}}
    (folder / "t" / "handle.schema.json").write_text(json.dumps(schema), encoding="utf-8")
    return folder


def check(sources: dict[str, bytes], forms_dir: Path | None = None) -> specs.Validation:
    return specs.validate(sources, forms_dir=forms_dir, sandbox=Sandbox())


def errors(result: specs.Validation) -> list[Problem]:
    return [p for p in result.problems if p.severity == "error"]


def only_error(result: specs.Validation) -> Problem:
    found = errors(result)
    assert len(found) == 1, [str(p) for p in result.problems]
    return found[0]


# --- the shipped demo -------------------------------------------------------------------------------------


def test_demo_process_validates_with_no_errors() -> None:
    result = check(specs.read_sources([REPO / "workflows" / "demo"]), REPO / "forms")
    assert errors(result) == []
    assert "demo" in result.processes
    assert set(result.forms) == {"demo/handle", "demo/verify"}


def test_a_minimal_process_with_a_form_validates(forms: Path) -> None:
    result = check({"p.bpmn": bpmn(around(user_task("handle"), path=("handle",)))}, forms)
    assert result.ok, [str(p) for p in result.problems]
    assert result.problems == []
    assert list(result.processes) == ["p"]


# --- hostile and broken XML -------------------------------------------------------------------------------


def test_malformed_xml_gives_the_line() -> None:
    source = b'<?xml version="1.0"?>\n<bpmn:definitions xmlns:bpmn="x">\n  <a>\n  </b>\n</bpmn:definitions>\n'
    problem = only_error(check({"broken.bpmn": source}))
    assert problem.file == "broken.bpmn"
    assert problem.line == 4
    assert "not well-formed XML" in problem.message


def test_xxe_entity_is_refused_and_the_file_content_never_appears(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4711", encoding="utf-8")
    for target in ("file:///etc/passwd", secret.as_uri()):
        doctype = f'<!DOCTYPE x [<!ENTITY e SYSTEM "{target}">]>\n<bpmn:definitions'.encode()
        source = bpmn(around(path=())).replace(b"<bpmn:definitions", doctype, 1)
        source = source.replace(b'id="start"/>', b'id="start" name="&e;"/>')
        result = check({"xxe.bpmn": source})
        problem = only_error(result)
        assert "DOCTYPE" in problem.message
        assert problem.line == 2
        text = " ".join(str(p) for p in result.problems)
        assert "TOP-SECRET" not in text and "root:" not in text
        assert result.processes == {}


def test_billion_laughs_is_refused() -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    source = f'<?xml version="1.0"?>\n<!DOCTYPE lolz [{entities}]>\n<lolz>&lol9;</lolz>\n'.encode()
    problem = only_error(check({"lol.bpmn": source}))
    assert "entity" in problem.message
    assert "lollol" not in problem.message


def test_entity_declaration_in_a_utf16_file_is_refused_too() -> None:
    source = (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<x>&e;</x>'
    ).encode("utf-16")
    problem = only_error(check({"u16.bpmn": source}))
    assert "DOCTYPE" in problem.message


def test_a_document_that_is_not_bpmn_is_refused_with_its_line() -> None:
    problem = only_error(check({"x.bpmn": b'<?xml version="1.0"?>\n<definitions id="d"/>\n'}))
    assert "not a BPMN 2.0 document" in problem.message
    assert problem.line == 2


def test_xsd_violation_is_reported_with_its_line() -> None:
    source = bpmn(around('<bpmn:madeUpTask id="odd"/>', path=()))
    result = check({"p.bpmn": source})
    problem = only_error(result)
    assert problem.message.startswith("BPMN schema:")
    assert "madeUpTask" in problem.message
    assert problem.line == line_of(source, "<bpmn:madeUpTask")


# --- elements the engine does not run ---------------------------------------------------------------------


def test_unsupported_service_task_is_refused_with_its_id_and_line() -> None:
    source = bpmn(around('<bpmn:serviceTask id="call_crm" name="CRM"/>', path=("call_crm",)))
    problem = only_error(check({"p.bpmn": source}))
    assert problem.element_id == "call_crm"
    assert problem.line == line_of(source, '<bpmn:serviceTask id="call_crm"')
    assert "serviceTask" in problem.message


def test_link_event_is_refused_not_read_as_a_plain_event() -> None:
    body = around(
        '<bpmn:intermediateThrowEvent id="jump"><bpmn:linkEventDefinition name="a"/>'
        "</bpmn:intermediateThrowEvent>",
        path=("jump",),
    )
    problem = only_error(check({"p.bpmn": bpmn(body)}))
    assert problem.element_id == "jump"
    assert "link events are not supported" in problem.message


def test_business_rule_task_without_a_decision_is_refused() -> None:
    source = bpmn(around('<bpmn:businessRuleTask id="rule"/>', path=("rule",)))
    problem = only_error(check({"p.bpmn": source}))
    assert problem.element_id == "rule"
    assert "camunda:decisionRef" in problem.message


def test_event_naming_an_undefined_message_is_refused_once_with_the_event_id() -> None:
    body = around(
        '<bpmn:intermediateCatchEvent id="wait"><bpmn:messageEventDefinition messageRef="nothing"/>'
        "</bpmn:intermediateCatchEvent>",
        path=("wait",),
    )
    problem = only_error(check({"p.bpmn": bpmn(body)}))
    assert problem.element_id == "wait"
    assert "messageRef 'nothing'" in problem.message


def test_library_refusal_is_reported_with_the_element_and_its_line() -> None:
    body = "\n".join(
        [
            '<bpmn:startEvent id="start"/>',
            '<bpmn:exclusiveGateway id="gw"/>',
            '<bpmn:endEvent id="e1"/>',
            '<bpmn:endEvent id="e2"/>',
            flows(("start", "gw"), ("gw", "e1"), ("gw", "e2")),
        ]
    )
    source = bpmn(body)
    problem = only_error(check({"p.bpmn": source}))
    assert problem.element_id in {"f_gw_e1", "f_gw_e2"}
    assert problem.line == line_of(source, f'id="{problem.element_id}"')
    assert "without condition" in problem.message


def test_call_activity_to_a_missing_process_is_refused_with_its_process() -> None:
    body = around('<bpmn:callActivity id="call" calledElement="elsewhere"/>', path=("call",))
    problem = only_error(check({"p.bpmn": bpmn(body)}))
    assert problem.file == "p.bpmn"
    assert problem.element_id is not None and problem.line is not None
    assert "elsewhere" in problem.message


def test_call_activity_resolves_a_process_of_another_file() -> None:
    main = bpmn(around('<bpmn:callActivity id="call" calledElement="sub"/>', path=("call",)))
    sub = bpmn(around(path=()), process_id="sub")
    result = check({"main.bpmn": main, "sub.bpmn": sub})
    assert result.ok, [str(p) for p in result.problems]
    assert {"p", "sub"} <= set(result.processes)


# --- the sandbox ------------------------------------------------------------------------------------------

ESCAPE = "__import__('os').system('x')"


def test_sandbox_escape_in_a_condition_is_refused_with_the_flow_id() -> None:
    body = "\n".join(
        [
            '<bpmn:startEvent id="start"/>',
            '<bpmn:exclusiveGateway id="gw" default="f_gw_e2"/>',
            '<bpmn:endEvent id="e1"/>',
            '<bpmn:endEvent id="e2"/>',
            flows(("start", "gw"), ("gw", "e2")),
            f'<bpmn:sequenceFlow id="evil" sourceRef="gw" targetRef="e1"><bpmn:conditionExpression '
            f'xsi:type="bpmn:tFormalExpression">{ESCAPE}</bpmn:conditionExpression></bpmn:sequenceFlow>',
        ]
    )
    problem = only_error(check({"p.bpmn": bpmn(body)}))
    assert problem.element_id == "evil"
    assert "refused by the sandbox" in problem.message


def test_sandbox_escape_in_a_script_task_is_refused_with_the_task_id() -> None:
    problem = only_error(check({"p.bpmn": bpmn(around(script_task("evil", ESCAPE), path=("evil",)))}))
    assert problem.element_id == "evil"
    assert problem.message.startswith("script refused by the sandbox")


def test_sandbox_escape_in_a_timer_expression_is_refused_with_the_event_id() -> None:
    body = around(timer_catch("evil", "timeDuration", ESCAPE), path=("evil",))
    problem = only_error(check({"p.bpmn": bpmn(body)}))
    assert problem.element_id == "evil"
    assert problem.message.startswith("timer expression refused by the sandbox")


def test_sandbox_escape_in_a_decision_table_is_refused_with_the_entry_id() -> None:
    dmn = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d" namespace="x">\n'
        b'<decision id="route" name="Route"><decisionTable id="t">\n'
        b'<input id="i1"><inputExpression id="ie1" typeRef="string"><text>category</text></inputExpression>'
        b"</input>\n"
        b'<output id="o1" name="department" typeRef="string"/>\n'
        b'<rule id="r1"><inputEntry id="e1"><text>"noise"</text></inputEntry>'
        b"<outputEntry id=\"oe1\"><text>__import__('os')</text></outputEntry></rule>\n"
        b"</decisionTable></decision></definitions>\n"
    )
    body = around('<bpmn:businessRuleTask id="rule" camunda:decisionRef="route"/>', path=("rule",))
    problem = only_error(check({"p.bpmn": bpmn(body), "route.dmn": dmn}))
    assert (problem.file, problem.element_id, problem.line) == ("route.dmn", "oe1", 6)
    fixed = check({"p.bpmn": bpmn(body), "route.dmn": dmn.replace(b"__import__('os')", b'"police"')})
    assert fixed.ok, [str(p) for p in fixed.problems]


# --- lanes, forms, SLA properties -------------------------------------------------------------------------


def lanes(*lane_ids: str) -> str:
    refs = "<bpmn:flowNodeRef>start</bpmn:flowNodeRef>"
    return (
        '<bpmn:laneSet id="ls">'
        + "".join(f'<bpmn:lane id="{lane}" name="{lane} name">{refs}</bpmn:lane>' for lane in lane_ids)
        + "</bpmn:laneSet>"
    )


def test_lane_without_a_role_is_refused() -> None:
    source = bpmn(lanes("warehouse") + around(path=()))
    problem = only_error(check({"p.bpmn": source}))
    assert problem.element_id == "warehouse"
    assert "maps to no role" in problem.message


def test_lane_named_after_a_role_with_or_without_prefix_is_accepted() -> None:
    result = check({"p.bpmn": bpmn(lanes("grid_worker", "lane_street") + around(path=()))})
    assert result.ok, [str(p) for p in result.problems]


def test_user_task_without_form_key_is_refused(forms: Path) -> None:
    source = bpmn(around(user_task("handle", form=None), path=("handle",)))
    problem = only_error(check({"p.bpmn": source}, forms))
    assert problem.element_id == "handle"
    assert "no form" in problem.message


def test_user_task_whose_form_schema_file_is_missing_is_refused(forms: Path) -> None:
    source = bpmn(around(user_task("handle", form="t/nowhere"), path=("handle",)))
    problem = only_error(check({"p.bpmn": source}, forms))
    assert problem.element_id == "handle"
    assert "t/nowhere" in problem.message and "missing" in problem.message


def test_form_key_that_climbs_out_of_the_forms_folder_is_refused(forms: Path) -> None:
    source = bpmn(around(user_task("handle", form="../../etc/passwd"), path=("handle",)))
    assert only_error(check({"p.bpmn": source}, forms)).element_id == "handle"


@pytest.mark.parametrize("text", ['{"type": 5}', "{not json"])
def test_form_schema_that_is_invalid_json_schema_is_refused(forms: Path, text: str) -> None:
    (forms / "t" / "handle.schema.json").write_text(text, encoding="utf-8")
    problem = only_error(check({"p.bpmn": bpmn(around(user_task("handle"), path=("handle",)))}, forms))
    assert problem.element_id == "handle"
    assert "not a valid JSON Schema" in problem.message


def test_bad_sla_property_is_refused(forms: Path) -> None:
    source = bpmn(around(user_task("handle", properties={"sla": "5XD"}), path=("handle",)))
    problem = only_error(check({"p.bpmn": source}, forms))
    assert problem.element_id == "handle"
    assert "5XD" in problem.message


@pytest.mark.parametrize("value", ["120%", "80", "0%", "abc"])
def test_bad_warn_at_is_refused(forms: Path, value: str) -> None:
    source = bpmn(around(user_task("handle", properties={"sla": "5WD", "warn_at": value}), path=("handle",)))
    problem = only_error(check({"p.bpmn": source}, forms))
    assert problem.element_id == "handle"
    assert "warn_at" in problem.message


def test_good_sla_and_warn_at_are_accepted(forms: Path) -> None:
    source = bpmn(around(user_task("handle", properties={"sla": "2WH", "warn_at": "80%"}), path=("handle",)))
    assert check({"p.bpmn": source}, forms).ok


@pytest.fixture
def claim_form(forms: Path) -> Path:
    schema = {
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": ["claim", "return"]},
            "note": {"type": "string"},
            "code": {"type": "string", "enum": ["not_ours", "other"]},
        },
    }
    (forms / "t" / "claim.schema.json").write_text(json.dumps(schema), encoding="utf-8")
    return forms


RETURN = {"return_field": "decision", "return_value": "return", "return_reason_field": "note"}


def test_a_return_action_wired_to_fields_of_the_form_is_accepted(claim_form: Path) -> None:
    properties = {**RETURN, "return_code_field": "code"}
    source = bpmn(around(user_task("claim", "t/claim", properties), path=("claim",)))
    assert check({"p.bpmn": source}, claim_form).ok


@pytest.mark.parametrize(
    ("properties", "words"),
    [
        ({"return_field": "decision", "return_value": "return"}, "missing: return_reason_field"),
        (
            {**RETURN, "return_reason_field": "why"},
            "return_reason_field 'why' is not a field of the task's form",
        ),
        ({**RETURN, "return_value": "send_back"}, "'send_back' is not one of them"),
        ({**RETURN, "return_code_field": "reason_code"}, "return_code_field 'reason_code' is not a field"),
        ({"sla_comment_field": "note"}, "belong to a task with sla_extends"),
        (
            {
                "sla_extends": "h",
                "sla_approval_field": "decision",
                "sla_extension_field": "note",
                "sla_reject_value": "return",
            },
            "'approve' is not one of them",
        ),
        (
            {"extension_field": "decision", "extension_value": "return", "extension_days_field": "days"},
            "missing: extension_reason_field",
        ),
    ],
)
def test_a_task_action_that_names_no_field_of_its_form_is_refused_at_deploy(
    claim_form: Path, properties: dict[str, str], words: str
) -> None:
    source = bpmn(around(user_task("claim", "t/claim", properties), path=("claim",)))
    problem = only_error(check({"p.bpmn": source}, claim_form))
    assert problem.element_id == "claim" and words in problem.message, problem.message
    assert problem.line == line_of(source, '<bpmn:userTask id="claim"')


def test_the_shipped_work_order_declares_its_task_actions_against_its_forms() -> None:
    result = check(specs.read_sources([REPO / "workflows" / "work_order"]), REPO / "forms")
    assert errors(result) == []


# --- timers and gateways ----------------------------------------------------------------------------------


def test_event_based_gateway_with_two_timers_is_refused() -> None:
    body = "\n".join(
        [
            '<bpmn:startEvent id="start"/>',
            '<bpmn:eventBasedGateway id="race"/>',
            timer_catch("t1", "timeDuration", '"PT1H"'),
            timer_catch("t2", "timeDuration", '"PT2H"'),
            '<bpmn:endEvent id="e1"/>',
            '<bpmn:endEvent id="e2"/>',
            flows(("start", "race"), ("race", "t1"), ("race", "t2"), ("t1", "e1"), ("t2", "e2")),
        ]
    )
    problem = only_error(check({"p.bpmn": bpmn(body)}))
    assert problem.element_id == "race"
    assert "2 timer events" in problem.message


def test_timer_without_a_value_is_refused_once() -> None:
    body = around(
        '<bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition/></bpmn:intermediateCatchEvent>',
        path=("wait",),
    )
    problem = only_error(check({"p.bpmn": bpmn(body)}))
    assert problem.element_id == "wait"
    assert "timer has no value" in problem.message


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("timeDuration", "P7D"),
        ("timeDuration", "PT2H"),
        ("timeCycle", "R3/PT1H"),
        ("timeDate", "2026-12-01T09:00:00+08:00"),
        ("timeDuration", '"PT2H"'),
        ("timeDate", "'2026-12-01T09:00:00+08:00'"),
    ],
)
def test_bare_and_quoted_iso_timer_values_are_accepted(kind: str, value: str) -> None:
    result = check({"p.bpmn": bpmn(around(timer_catch("wait", kind, value), path=("wait",)))})
    assert result.ok, [str(p) for p in result.problems]
    assert "p" in result.processes
    bare = value.strip("'\"")
    assert f'"{bare}"' in result.files["p.bpmn"] or f"'{bare}'" in result.files["p.bpmn"]


def test_timer_written_in_another_expression_language_is_refused() -> None:
    body = around(timer_catch("wait", "timeCycle", "0 0/5 * * * ?"), path=("wait",))
    problem = only_error(check({"p.bpmn": bpmn(body)}))
    assert problem.element_id == "wait"


# --- executable processes ---------------------------------------------------------------------------------


def test_only_process_marked_not_executable_is_a_warning_and_it_parses() -> None:
    result = check({"p.bpmn": bpmn(around(path=()), executable="false")})
    assert result.ok
    assert [p.severity for p in result.problems] == ["warning"]
    assert result.problems[0].element_id == "p"
    assert "isExecutable" in result.problems[0].message
    assert "p" in result.processes


def test_two_processes_marked_not_executable_are_refused() -> None:
    other = '<bpmn:process id="q" isExecutable="false"><bpmn:startEvent id="s2"/></bpmn:process>'
    problem = only_error(check({"p.bpmn": bpmn(around(path=()), executable="false", extra=other)}))
    assert "no executable process" in problem.message


# --- collecting everything --------------------------------------------------------------------------------


def test_several_problems_in_one_file_are_all_reported(forms: Path) -> None:
    nodes = [
        '<bpmn:serviceTask id="svc"/>',
        user_task("no_form", form=None),
        user_task("bad_sla", properties={"sla": "5XD", "warn_at": "150%"}),
        script_task("evil", "import os"),
        timer_catch("wait", "timeDuration", "open('/etc/passwd')"),
    ]
    source = bpmn(lanes("warehouse") + around(*nodes, path=("svc", "no_form", "bad_sla", "evil", "wait")))
    result = check({"p.bpmn": source}, forms)
    found = errors(result)
    assert len(found) == 7, [str(p) for p in found]
    assert {p.element_id for p in found} == {"warehouse", "svc", "no_form", "bad_sla", "evil", "wait"}
    assert all(p.file == "p.bpmn" and p.line is not None for p in found)
    assert result.processes == {}


def test_problems_of_several_files_are_all_reported(forms: Path) -> None:
    result = check(
        {
            "a.bpmn": bpmn(around('<bpmn:serviceTask id="svc"/>', path=("svc",)), process_id="a"),
            "b.bpmn": b"<not xml",
            "c.bpmn": bpmn(around(user_task("t", form=None), path=("t",)), process_id="c"),
        },
        forms,
    )
    assert sorted(p.file for p in errors(result)) == ["a.bpmn", "b.bpmn", "c.bpmn"]


# --- deploying --------------------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    database.migrate()
    return database


def count_versions(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(spec_version)).scalar_one())


def test_deploy_of_an_invalid_validation_raises_spec_error_and_inserts_nothing(db: Database) -> None:
    result = check({"p.bpmn": bpmn(around('<bpmn:serviceTask id="svc"/>', path=("svc",)))})
    with pytest.raises(SpecError) as raised, db.write() as conn:
        specs.deploy(conn, result, actor="owner", now=NOW)
    assert raised.value.code == "spec.invalid"
    assert [p.element_id for p in raised.value.problems] == ["svc"]
    assert "problems" in raised.value.details
    assert count_versions(db) == 0


def test_deploying_the_same_files_twice_creates_one_version(db: Database, forms: Path) -> None:
    sources = {"p.bpmn": bpmn(around(user_task("handle"), path=("handle",)))}
    with db.write() as conn:
        first = specs.deploy(conn, check(sources, forms), actor="owner", now=NOW)
    with db.write() as conn:
        second = specs.deploy(conn, check(sources, forms), actor="owner", now=NOW)
    assert [v.created for v in first] == [True]
    assert [v.created for v in second] == [False]
    assert first[0].id == second[0].id
    assert count_versions(db) == 1


def test_changing_a_file_creates_a_new_version(db: Database, forms: Path) -> None:
    before = {"p.bpmn": bpmn(around(user_task("handle"), path=("handle",)))}
    after = {"p.bpmn": bpmn(around(user_task("handle", properties={"sla": "3WD"}), path=("handle",)))}
    with db.write() as conn:
        first = specs.deploy(conn, check(before, forms), actor="owner", now=NOW)
    with db.write() as conn:
        second = specs.deploy(conn, check(after, forms), actor="owner", now=NOW)
        assert specs.latest_version_id(conn, "p") == second[0].id
    assert second[0].created and second[0].id != first[0].id
    assert count_versions(db) == 2


def test_changing_a_form_creates_a_new_version(db: Database, forms: Path) -> None:
    sources = {"p.bpmn": bpmn(around(user_task("handle"), path=("handle",)))}
    with db.write() as conn:
        first = specs.deploy(conn, check(sources, forms), actor="owner", now=NOW)
    schema = forms / "t" / "handle.schema.json"
    schema.write_text('{"type": "object", "required": ["result"]}', encoding="utf-8")
    with db.write() as conn:
        second = specs.deploy(conn, check(sources, forms), actor="owner", now=NOW)
    assert second[0].created and second[0].id != first[0].id


def test_a_message_payload_expression_that_escapes_the_sandbox_is_refused_at_validation(
    tmp_path: Path,
) -> None:
    body = """
    <bpmn:message id="msg" name="start_work_order" />
    <bpmn:process id="p" isExecutable="true">
      <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:intermediateThrowEvent id="throw">
        <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
        <bpmn:messageEventDefinition id="throw_def" messageRef="msg"
          camunda:expression="__import__('os').system('id')" />
      </bpmn:intermediateThrowEvent>
      <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="throw" />
      <bpmn:sequenceFlow id="f2" sourceRef="throw" targetRef="end" />
    </bpmn:process>"""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">'
        f"{body}</bpmn:definitions>"
    )
    result = specs.validate({"m.bpmn": xml.encode()}, forms_dir=tmp_path, sandbox=Sandbox())
    assert not result.ok
    assert any(p.element_id == "throw" and "sandbox" in p.message for p in result.problems)
