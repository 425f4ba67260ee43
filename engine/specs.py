"""Process specs: validate BPMN/DMN/form sets, deploy them as spec versions, pick the version to run.

Owns the rules a process owner's files must meet before anything runs (ARCHITECTURE §2 "Specs"):
well-formed, entity-free XML; the BPMN 2.0 XSD; only elements the engine supports; every script,
condition and timer compiled in the sandbox; every lane a known role; every user task with a form;
SLA properties that parse (on user tasks and on the process, and the literals of DMN output columns
that a task reads through ``sla_from`` / ``warn_at_from`` …; see ``engine.sla_policy``); task actions
(``engine.actions``) wired to fields of the task's form; no
event-based gateway with two timers. Validation collects *all* problems, each with file, element id
and line. Deploying stores each set once by content hash.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from lxml import etree
from sqlalchemy import Connection, insert, select

from engine import actions, sla_policy, spiff
from engine.errors import NotFound, Problem, SpecError
from engine.orgs import ROLES
from engine.sandbox import Sandbox
from engine.store import fastsql
from engine.store.models import spec_version

MAX_FILE_BYTES = 5 * 1024 * 1024
BPMN = spiff.BPMN_NS
CAMUNDA = spiff.CAMUNDA_NS
DMN_NAMESPACES = (
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd",
    "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "http://www.omg.org/spec/DMN/20180521/MODEL/",
)

# Flow elements the engine runs. Anything else in the BPMN model namespace that is a flow element is
# refused by name instead of being dropped silently.
SUPPORTED_FLOW = {
    "startEvent",
    "endEvent",
    "intermediateCatchEvent",
    "intermediateThrowEvent",
    "boundaryEvent",
    "userTask",
    "manualTask",
    "scriptTask",
    "businessRuleTask",
    "task",
    "subProcess",
    "callActivity",
    "exclusiveGateway",
    "parallelGateway",
    "inclusiveGateway",
    "eventBasedGateway",
    "sequenceFlow",
    "receiveTask",
    "sendTask",
}
UNSUPPORTED = {
    "serviceTask": "service tasks call external systems; gridcase has no service connector — model it as a "
    "user task or a script task",
    "complexGateway": "complex gateways are not supported; use an inclusive or exclusive gateway",
    "transaction": "transaction subprocesses are not supported",
    "adHocSubProcess": "ad-hoc subprocesses are not supported",
    "dataStoreReference": "data stores are not supported; keep data in the case",
    "compensateEventDefinition": "compensation events are not supported",
    "choreography": "choreographies are not supported",
    "choreographyTask": "choreographies are not supported",
    "conversation": "conversations are not supported",
    "globalTask": "global tasks are not supported",
    "callChoreography": "choreographies are not supported",
    "subChoreography": "choreographies are not supported",
    "implicitThrowEvent": "implicit throw events are not supported",
    "linkEventDefinition": "link events are not supported; draw the sequence flow instead",
    "cancelEventDefinition": "cancel events belong to transactions, which are not supported",
}
TIMER_TAGS = ("timeDuration", "timeDate", "timeCycle")
_ISO_LITERAL = re.compile(
    r"^(R\d*/)?(P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
    r"|\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?)"
    r"(/(P[\dYMWDTHS.]+|\d{4}-\d{2}-\d{2}\S*))?$"
)
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(slots=True)
class Validation:
    """Everything validation found, and the parsed processes when there were no errors."""

    problems: list[Problem] = field(default_factory=list)
    processes: dict[str, spiff.ParsedProcess] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # name -> normalised text of each BPMN/DMN
    forms: dict[str, str] = field(default_factory=dict)  # form key -> schema text

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def add(
        self,
        file: str,
        message: str,
        *,
        element_id: str | None = None,
        line: int | None = None,
        severity: str = "error",
    ) -> None:
        self.problems.append(Problem(file, message, element_id, line, severity))


@dataclass(frozen=True, slots=True)
class DeployedVersion:
    id: int
    process_id: str
    content_hash: str
    created: bool  # False when an identical version already existed


def lane_role(lane_id: str) -> str | None:
    """The role a lane stands for: its id is the role code, optionally prefixed ``lane_``."""
    code = lane_id.removeprefix("lane_")
    return code if code in ROLES else None


# --- reading files ---------------------------------------------------------------------------------------


def read_sources(paths: list[Path]) -> dict[str, bytes]:
    """BPMN/DMN files named or found under the given paths, keyed by a readable relative name."""
    found: dict[str, bytes] = {}
    for path in paths:
        if path.is_dir():
            for file in sorted([*path.rglob("*.bpmn"), *path.rglob("*.bpmn20.xml"), *path.rglob("*.dmn")]):
                found[str(file.relative_to(path.parent))] = file.read_bytes()
        elif path.exists():
            found[path.name] = path.read_bytes()
        else:
            raise NotFound("spec.file_not_found", f"no such file or directory: {path}", {"path": str(path)})
    return found


def default_forms_dir(paths: list[Path]) -> Path | None:
    """``forms/`` beside the ``workflows/`` folder the files come from."""
    for path in paths:
        for parent in [path, *path.resolve().parents]:
            candidate = parent / "forms"
            if candidate.is_dir():
                return candidate
    return None


# --- validation ------------------------------------------------------------------------------------------


def validate(sources: Mapping[str, bytes], *, forms_dir: Path | None, sandbox: Sandbox) -> Validation:
    """Check every file and every process in ``sources``; collect all problems.

    Our own checks run on every file. SpiffWorkflow then reads the files our checks let through (it stops
    at its first complaint per file or process, so its problems come last), and builds each executable
    process when every file could be read. Nothing the library raises escapes: it becomes a Problem.
    """
    result = Validation()
    trees: dict[str, etree._Element] = {}
    for name, raw in sources.items():
        tree = _load_xml(name, raw, result)
        if tree is not None:
            trees[name] = tree
    parser = spiff.new_parser()
    lanes: dict[str, tuple[str, str]] = {}
    defaults: dict[str, dict[str, str]] = {}  # flow-node id -> the properties of its process
    executable: list[tuple[str, str]] = []  # (file, process id)
    readable = len(trees) == len(sources)  # a process may call one in a file that could not be read
    for name, tree in trees.items():
        if _is_dmn(tree):
            _check_dmn(name, tree, sandbox, result)
        elif not _is_bpmn(name, tree, result):
            readable = False
            continue
        else:
            schema_valid = _check_schema(name, tree, result)
            executable.extend(_check_bpmn(name, tree, sandbox, forms_dir, result, lanes, defaults))
            if not schema_valid:
                readable = False  # the library would only repeat the first schema error
                continue
        result.files[name] = etree.tostring(tree, encoding="unicode")
        try:
            spiff.add_file(parser, tree, name)
        except spiff.SpiffParseError as err:
            readable = False
            _add_library_problem(result, trees, err, file=name, element_id=None)
    _check_dmn_feeds(trees, result)
    if readable:
        for name, process_id in executable:
            try:
                result.processes[process_id] = spiff.parse_process(parser, process_id, lanes, defaults)
            except spiff.SpiffParseError as err:
                _add_library_problem(result, trees, err, file=name, element_id=process_id)
    if not result.ok:
        result.processes.clear()
    return result


def _add_library_problem(
    result: Validation,
    trees: Mapping[str, etree._Element],
    err: spiff.SpiffParseError,
    *,
    file: str,
    element_id: str | None,
) -> None:
    """Report what SpiffWorkflow refused, located, unless our own checks already flagged that element."""
    where = err.file if err.file is not None and err.file in trees else file
    element = err.element_id or element_id
    line = err.line
    if line is None and element:
        found = _element_by_id(trees.get(where), element)
        line = found.sourceline if found is not None else None
    ours = [p for p in result.problems if p.file == where and p.severity == "error"]
    if element is None and ours:
        return  # a document-level complaint (e.g. an unimplemented data store) about what we already refused
    if element and any(p.element_id == element for p in ours):
        return
    if line is None and element is None:
        line = 1  # the library gave no location: point at the document
    result.add(where, err.message, element_id=element, line=line)


def _element_by_id(tree: etree._Element | None, element_id: str) -> etree._Element | None:
    if tree is None:
        return None
    for el in tree.iter():
        if isinstance(el.tag, str) and el.get("id") == element_id:
            return el
    return None


def _load_xml(name: str, raw: bytes, result: Validation) -> etree._Element | None:
    if len(raw) > MAX_FILE_BYTES:
        result.add(name, f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES}", line=1)
        return None
    text = raw.decode("utf-8", "replace")
    declaration = _DECLARATION.search(text)
    if declaration is not None:
        result.add(
            name,
            "DOCTYPE and entity declarations are not allowed in process files (XXE / entity expansion)",
            line=text[: declaration.start()].count("\n") + 1,
        )
        return None
    try:
        tree = etree.fromstring(raw, parser=spiff.safe_xml_parser())
    except etree.XMLSyntaxError as err:
        result.add(name, f"not well-formed XML: {err.msg}", line=err.lineno or 1)
        return None
    except (etree.LxmlError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        result.add(name, f"not readable as XML: {reason}", line=1)
        return None
    if tree is None:
        result.add(name, "the file is empty", line=1)
    elif tree.getroottree().docinfo.doctype:
        result.add(
            name,
            "DOCTYPE and entity declarations are not allowed in process files (XXE / entity expansion)",
            line=1,
        )
        return None
    return tree


def _is_dmn(tree: etree._Element) -> bool:
    namespace = etree.QName(tree).namespace or ""
    return namespace in DMN_NAMESPACES or "DMN" in namespace


def _is_bpmn(name: str, tree: etree._Element, result: Validation) -> bool:
    qname = etree.QName(tree)
    if qname.namespace == BPMN and qname.localname == "definitions":
        return True
    result.add(
        name,
        f"not a BPMN 2.0 document: the root element is {qname.localname} in namespace "
        f"{qname.namespace or '(none)'}, expected definitions in {BPMN}",
        line=tree.sourceline or 1,
    )
    return False


def _check_schema(name: str, tree: etree._Element, result: Validation) -> bool:
    """The BPMN 2.0 XSD, every violation with its line (bare ISO timer values made literals first)."""
    _literalise_timers(tree)
    problems = spiff.xsd_problems(tree)
    for line, message in problems:
        result.add(name, f"BPMN schema: {message}", line=line or 1)
    return not problems


def _check_bpmn(
    name: str,
    tree: etree._Element,
    sandbox: Sandbox,
    forms_dir: Path | None,
    result: Validation,
    lanes: dict[str, tuple[str, str]],
    defaults: dict[str, dict[str, str]],
) -> list[tuple[str, str]]:
    processes = _executable_processes(name, tree, result)
    for el in tree.iter(f"{{{BPMN}}}*"):
        tag = etree.QName(el).localname
        if tag in UNSUPPORTED:
            result.add(
                name,
                f"unsupported element {tag}: {UNSUPPORTED[tag]}",
                element_id=_owner_id(el),
                line=el.sourceline,
            )
    for lane in tree.iter(f"{{{BPMN}}}lane"):
        lane_id, lane_name = lane.get("id") or "", lane.get("name") or ""
        if lane_role(lane_id) is None:
            result.add(
                name,
                f"lane '{lane_name or lane_id}' maps to no role: name the lane id after a role "
                "(e.g. community, street, department)",
                element_id=lane_id,
                line=lane.sourceline,
            )
        for ref in lane.iter(f"{{{BPMN}}}flowNodeRef"):
            lanes[(ref.text or "").strip()] = (lane_id, lane_name)
    _check_references(name, tree, result)
    _check_timers(name, tree, result)
    _check_expressions(name, tree, sandbox, result)
    _check_event_gateways(name, tree, result)
    _check_user_tasks(name, tree, forms_dir, result)
    _check_process_properties(name, tree, result, defaults)
    _check_business_rules(name, tree, result)
    return [(name, pid) for pid in processes]


def _owner_id(el: etree._Element) -> str | None:
    """The id of ``el`` or of the nearest enclosing element that has one; an event definition's event."""
    current: etree._Element | None = el
    if etree.QName(el).localname.endswith("EventDefinition") and el.getparent() is not None:
        current = el.getparent()
    while current is not None:
        if current.get("id"):
            return current.get("id")
        current = current.getparent()
    return None


# Event definitions name a root element (message, signal, …) of the same document by id.
_EVENT_REFS = {
    "messageEventDefinition": ("messageRef", "message"),
    "signalEventDefinition": ("signalRef", "signal"),
    "errorEventDefinition": ("errorRef", "error"),
    "escalationEventDefinition": ("escalationRef", "escalation"),
}


def _check_references(name: str, tree: etree._Element, result: Validation) -> None:
    for definition, (attribute, target) in _EVENT_REFS.items():
        defined = {el.get("id") for el in tree.iter(f"{{{BPMN}}}{target}")}
        for el in tree.iter(f"{{{BPMN}}}{definition}"):
            ref = (el.get(attribute) or "").strip()
            if ref and ref.split(":")[-1] not in defined:
                result.add(
                    name,
                    f"{attribute} '{ref}' names no {target} defined in this file",
                    element_id=_owner_id(el),
                    line=el.sourceline,
                )
    for el in tree.iter(f"{{{BPMN}}}callActivity"):
        if not (el.get("calledElement") or "").strip():
            result.add(
                name,
                "call activity has no calledElement: name the process it calls",
                element_id=el.get("id"),
                line=el.sourceline,
            )


def _check_timers(name: str, tree: etree._Element, result: Validation) -> None:
    for el in tree.iter(f"{{{BPMN}}}timerEventDefinition"):
        values = [c for tag in TIMER_TAGS for c in el.iter(f"{{{BPMN}}}{tag}") if (c.text or "").strip()]
        if not values:
            result.add(
                name,
                "timer has no value: give a timeDuration, timeDate or timeCycle (e.g. P7D)",
                element_id=_owner_id(el),
                line=el.sourceline,
            )


def _check_business_rules(name: str, tree: etree._Element, result: Validation) -> None:
    for el in tree.iter(f"{{{BPMN}}}businessRuleTask"):
        if not el.get(f"{{{CAMUNDA}}}decisionRef"):
            result.add(
                name,
                "business rule task has no decision: set camunda:decisionRef to a decision of a .dmn file",
                element_id=el.get("id"),
                line=el.sourceline,
            )


def _executable_processes(name: str, tree: etree._Element, result: Validation) -> list[str]:
    processes = list(tree.iter(f"{{{BPMN}}}process"))
    runnable = [p for p in processes if p.get("isExecutable") == "true"]
    if not runnable and len(processes) == 1:
        only = processes[0]
        only.set("isExecutable", "true")
        result.add(
            name,
            'the only process is marked isExecutable="false" (a modeler default); it is run as executable',
            element_id=only.get("id"),
            line=only.sourceline,
            severity="warning",
        )
        runnable = [only]
    if not runnable:
        result.add(
            name,
            'no executable process: mark the process to run with isExecutable="true"',
            element_id=processes[0].get("id") if processes else None,
            line=processes[0].sourceline if processes else tree.sourceline,
        )
    return [p.get("id") or "" for p in runnable]


def _literalise_timers(tree: etree._Element) -> None:
    """Modeler dialect: a bare ISO-8601 value (``P7D``) is a literal, not a Python name."""
    for tag in TIMER_TAGS:
        for el in tree.iter(f"{{{BPMN}}}{tag}"):
            text = (el.text or "").strip()
            if text and _ISO_LITERAL.match(text):
                el.text = json.dumps(text)


def _check_expressions(name: str, tree: etree._Element, sandbox: Sandbox, result: Validation) -> None:
    def check(
        el: etree._Element, source: str, kind: str, owner: etree._Element, script: bool = False
    ) -> None:
        problems = sandbox.check_script(source) if script else sandbox.check_expression(source)
        for message in problems:
            result.add(
                name,
                f"{kind} refused by the sandbox: {message}",
                element_id=owner.get("id"),
                line=el.sourceline,
            )

    for el in tree.iter(
        f"{{{BPMN}}}conditionExpression",
        f"{{{BPMN}}}condition",
        f"{{{BPMN}}}completionCondition",
        f"{{{BPMN}}}loopCardinality",
    ):
        if (el.text or "").strip():
            check(el, el.text.strip(), "expression", el.getparent())
    for tag in TIMER_TAGS:
        for el in tree.iter(f"{{{BPMN}}}{tag}"):
            if (el.text or "").strip():
                check(el, el.text.strip(), "timer expression", el.getparent().getparent())
    for el in tree.iter(f"{{{BPMN}}}script"):
        if (el.text or "").strip():
            check(el, el.text, "script", el.getparent(), script=True)
    for el in tree.iter(f"{{{BPMN}}}messageEventDefinition"):
        payload = (el.get(f"{{{CAMUNDA}}}expression") or "").strip()
        if payload:
            check(el, payload, "message payload expression", el.getparent())
    for el in tree.iter(f"{{{BPMN}}}multiInstanceLoopCharacteristics"):
        collection = (el.get(f"{{{CAMUNDA}}}collection") or "").strip()
        if collection:
            check(el, collection, "multi-instance collection", el.getparent())


def _check_event_gateways(name: str, tree: etree._Element, result: Validation) -> None:
    by_id = {el.get("id"): el for el in tree.iter(f"{{{BPMN}}}*") if el.get("id")}
    for gateway in tree.iter(f"{{{BPMN}}}eventBasedGateway"):
        timers = 0
        for flow in tree.iter(f"{{{BPMN}}}sequenceFlow"):
            if flow.get("sourceRef") != gateway.get("id"):
                continue
            target = by_id.get(flow.get("targetRef"))
            if target is not None and target.find(f"{{{BPMN}}}timerEventDefinition") is not None:
                timers += 1
        if timers > 1:
            result.add(
                name,
                f"event-based gateway has {timers} timer events; SpiffWorkflow gives them one "
                "shared due time — use one timer",
                element_id=gateway.get("id"),
                line=gateway.sourceline,
            )


def _check_user_tasks(name: str, tree: etree._Element, forms_dir: Path | None, result: Validation) -> None:
    for task in tree.iter(f"{{{BPMN}}}userTask"):
        tid, line = task.get("id"), task.sourceline
        key = task.get(f"{{{CAMUNDA}}}formKey")
        if not key:
            result.add(
                name,
                "user task has no form: set camunda:formKey to a form under forms/ (e.g. work_order/claim)",
                element_id=tid,
                line=line,
            )
        else:
            _check_form(name, key, tid, line, forms_dir, result)
        properties: dict[str, str] = {}
        for prop in task.iter(f"{{{CAMUNDA}}}property"):
            pname, value = prop.get("name") or "", prop.get("value") or ""
            properties[pname] = value
            _check_property(name, pname, value, tid, prop.sourceline, result)
        form_text = result.forms.get(key or "")
        for problem in actions.problems(properties, json.loads(form_text) if form_text else None):
            result.add(name, problem, element_id=tid, line=line)


def _check_form(
    name: str, key: str, tid: str | None, line: int | None, forms_dir: Path | None, result: Validation
) -> None:
    if forms_dir is None:
        result.add(
            name,
            f"form '{key}' cannot be found: no forms/ folder next to the workflows",
            element_id=tid,
            line=line,
        )
        return
    path = form_path(forms_dir, key)
    if path is None or not path.is_file():
        result.add(
            name, f"form '{key}' is missing: expected forms/{key}.schema.json", element_id=tid, line=line
        )
        return
    text = path.read_text(encoding="utf-8")
    try:
        Draft202012Validator.check_schema(json.loads(text))
    except (ValueError, SchemaError) as err:
        result.add(
            str(path), f"form '{key}' is not a valid JSON Schema: {str(err).splitlines()[0]}", element_id=tid
        )
        return
    result.forms[key] = text


def form_path(forms_dir: Path, key: str) -> Path | None:
    """``forms/<key>.schema.json``, refusing keys that climb out of the forms folder."""
    if not re.fullmatch(r"[a-z0-9_]+(/[a-z0-9_]+)*", key):
        return None
    return forms_dir / f"{key}.schema.json"


def _check_property(
    name: str, key: str, value: str, tid: str | None, line: int | None, result: Validation
) -> None:
    if key == "sla" or key in sla_policy.THRESHOLDS:
        problem = sla_policy.value_problem(key, value)
    elif key in sla_policy.FROM_PROPERTIES:
        problem = sla_policy.variable_problem(value)
    else:
        return
    if problem is not None:
        result.add(name, f"{key} '{value}': {problem}", element_id=tid, line=line)


def _properties(el: etree._Element) -> list[etree._Element]:
    """The Camunda properties of ``el`` itself (not of the elements inside it)."""
    return el.findall(f"{{{BPMN}}}extensionElements/{{{CAMUNDA}}}properties/{{{CAMUNDA}}}property")


def _check_process_properties(
    name: str, tree: etree._Element, result: Validation, defaults: dict[str, dict[str, str]]
) -> None:
    """Process-wide SLA defaults (``warn_at``, ``supervise_after``, ``escalate_after`` on the
    ``<bpmn:process>``): check them, and note them for every element of the process."""
    allowed = ", ".join(sorted(sla_policy.PROCESS_PROPERTIES))
    for process in tree.iter(f"{{{BPMN}}}process"):
        pid = process.get("id")
        found: dict[str, str] = {}
        for prop in _properties(process):
            key, value = prop.get("name") or "", prop.get("value") or ""
            if key in sla_policy.TASK_ONLY_PROPERTIES:
                result.add(
                    name,
                    f"{key} belongs on a user task, not on the process: set it on each task that needs "
                    f"it (a process may set {allowed} for all its tasks)",
                    element_id=pid,
                    line=prop.sourceline,
                )
                continue
            _check_property(name, key, value, pid, prop.sourceline, result)
            if key in sla_policy.PROCESS_PROPERTIES:
                found[key] = value
        if not found:
            continue
        for el in process.iter(f"{{{BPMN}}}*"):
            if el.get("id"):
                defaults[el.get("id") or ""] = found


def _check_dmn_feeds(trees: Mapping[str, etree._Element], result: Validation) -> None:
    """DMN output cells that feed a clock: a column named like the variable of a task's ``sla_from`` /
    ``warn_at_from`` … must hold valid values. Literal cells are checked; an expression cannot be known
    before it runs (the step is refused then, ``sla.invalid_*``); an empty cell means "not set"."""
    feeds: dict[str, tuple[str, str]] = {}  # variable -> (what it holds, "task 'x' (prop)")
    for tree in trees.values():
        if _is_dmn(tree) or etree.QName(tree).namespace != BPMN:
            continue
        for task in tree.iter(f"{{{BPMN}}}userTask"):
            for prop in _properties(task):
                key, variable = prop.get("name") or "", (prop.get("value") or "").strip()
                if key in sla_policy.FROM_PROPERTIES and variable:
                    reader = f"{key} of task '{task.get('id')}'"
                    feeds.setdefault(variable, (sla_policy.FROM_PROPERTIES[key], reader))
    if not feeds:
        return
    for file, tree in trees.items():
        if not _is_dmn(tree):
            continue
        ns = etree.QName(tree).namespace
        for table in tree.iter(f"{{{ns}}}decisionTable"):
            outputs = [o.get("name") or o.get("label") or "" for o in table.findall(f"{{{ns}}}output")]
            for rule in table.findall(f"{{{ns}}}rule"):
                for column, entry in zip(outputs, rule.findall(f"{{{ns}}}outputEntry"), strict=False):
                    if column in feeds:
                        _check_feed(file, column, feeds[column], entry, ns, result)


def _check_feed(
    file: str, column: str, feed: tuple[str, str], entry: etree._Element, ns: str | None, result: Validation
) -> None:
    text = entry.findtext(f"{{{ns}}}text")
    source = (text or "").strip()
    if not source:
        return  # an empty cell: not set, the task's own value applies
    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return  # an expression: known only when it runs
    holds, reader = feed
    problem = None if sla_policy.is_unset(value) else sla_policy.value_problem(holds, value)
    if problem is not None:
        result.add(
            file,
            f"output {column} = {source} (read as {holds} by {reader}): {problem}",
            element_id=entry.get("id") or _owner_id(entry),
            line=entry.sourceline,
        )


def _check_dmn(name: str, tree: etree._Element, sandbox: Sandbox, result: Validation) -> None:
    ns = etree.QName(tree).namespace
    for el in tree.iter(f"{{{ns}}}text"):
        source = (el.text or "").strip()
        if not source or source == "-":
            continue
        parent = etree.QName(el.getparent()).localname
        # Input entries are fragments ("== 'noise'", "> 3", "'noise'"); try as is, then as a comparison.
        problems = sandbox.check_expression(source)
        if problems and parent == "inputEntry":
            problems = sandbox.check_expression(f"value {source}")
        owner = el.getparent()
        while owner is not None and owner.get("id") is None:
            owner = owner.getparent()
        for message in problems:
            result.add(
                name,
                f"decision expression refused by the sandbox: {message}",
                element_id=owner.get("id") if owner is not None else None,
                line=el.sourceline,
            )


# --- deploying -------------------------------------------------------------------------------------------


def content_hash(process_id: str, validation: Validation) -> str:
    digest = hashlib.sha256(process_id.encode())
    for key in sorted(validation.files):
        digest.update(key.encode() + b"\0" + validation.files[key].encode() + b"\0")
    for key in sorted(validation.forms):
        digest.update(key.encode() + b"\0" + validation.forms[key].encode() + b"\0")
    return digest.hexdigest()


def deploy(
    conn: Connection, validation: Validation, *, actor: str | None, now: datetime
) -> list[DeployedVersion]:
    """Store each validated process once by content hash; new cases start on the newest version."""
    if not validation.ok:
        raise SpecError(validation.problems)
    deployed = []
    for process_id, parsed in validation.processes.items():
        digest = content_hash(process_id, validation)
        existing = conn.execute(
            select(spec_version.c.id).where(
                spec_version.c.process_id == process_id, spec_version.c.content_hash == digest
            )
        ).scalar()
        if existing is not None:
            deployed.append(DeployedVersion(existing, process_id, digest, created=False))
            continue
        inserted = conn.execute(
            insert(spec_version).values(
                process_id=process_id,
                content_hash=digest,
                files={"bpmn": validation.files, "forms": validation.forms},
                spec_json=parsed.serialize_spec(),
                task_meta={k: v.to_dict() for k, v in parsed.user_tasks.items()},
                serializer_version=spiff.SERIALIZER_VERSION,
                deployed_at=now,
                deployed_by=actor,
            )
        )
        key = inserted.inserted_primary_key
        if key is None:
            raise RuntimeError("the database returned no id for the new spec version")
        new_id = int(key[0])
        deployed.append(DeployedVersion(new_id, process_id, digest, created=True))
    return deployed


_LATEST = fastsql.Statement("SELECT max(id) FROM spec_version WHERE process_id = :process_id")


def latest_version_id(conn: Connection, process_id: str) -> int:
    """The newest deployed version of ``process_id`` (``spec.not_found`` when there is none)."""
    found = fastsql.fetch(conn, _LATEST, {"process_id": process_id})[0][0]
    if found is None:
        raise NotFound(
            "spec.not_found", f"process '{process_id}' has not been deployed", {"process_id": process_id}
        )
    return int(str(found))
