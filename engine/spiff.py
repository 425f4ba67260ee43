"""The only door into SpiffWorkflow 3.2.0: parsing, the sandboxed script engine, serialization, stepping.

Owns everything that touches SpiffWorkflow's classes. The rest of the engine sees plain values:
``ParsedProcess`` (spec + per-user-task metadata), ``Instance`` (one running workflow with the
operations a step needs) and ``StateDelta`` (what a step changed, ready to write).

What this module fixes in stock 3.2.0 (ARCHITECTURE §8):
- XML is parsed without entity resolution or network, and always XSD-validated (traps 6, 7).
- Scripts and expressions run in ``engine.sandbox.Sandbox`` (RestrictedPython + guards), never eval.
- Timers read the engine's injected clock, not the wall clock, so tests travel in time (trap 1, 2).
- The task-tree walk has no depth cut-off, so a long rework loop keeps running; and a workflow that
  claims to be complete while tasks are unfinished is reported as stalled, never as completed (trap 5).
- Workflow state is stored without its spec and one row per task, so a step writes only what it
  changed (trap 8).
"""

from __future__ import annotations

import ast
import contextvars
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import cast
from uuid import UUID

from lxml import etree
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SERIALIZER_VERSION
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference
from SpiffWorkflow.bpmn.specs.event_definitions import timer as _timer_module
from SpiffWorkflow.bpmn.specs.event_definitions.message import (
    MessageEventDefinition as _BpmnMessageDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import ThrowingEvent
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask as _UserTaskMixin
from SpiffWorkflow.bpmn.util import task as _bpmn_task_util
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.camunda.specs.event_definitions import MessageEventDefinition
from SpiffWorkflow.camunda.specs.multiinstance_task import ParallelMultiInstanceTask as _CamundaParallelMI
from SpiffWorkflow.camunda.specs.multiinstance_task import SequentialMultiInstanceTask as _CamundaSequentialMI
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.specs.base import TaskSpec
from SpiffWorkflow.task import Task
from SpiffWorkflow.util import task as _task_util
from SpiffWorkflow.util.task import TaskState
from SpiffWorkflow.workflow import Workflow as _Workflow

from engine.clock import Clock, SystemClock
from engine.errors import Conflict, EngineError, InvalidInput, ScriptError
from engine.sandbox import Sandbox
from engine.store.jsontext import loads as json_loads

ProcessSpec = BpmnProcessSpec  # the spec type other modules may name (without importing SpiffWorkflow)

__all__ = [
    "SERIALIZER_VERSION",
    "SPIFF_VERSION",
    "Instance",
    "ParsedProcess",
    "ProcessSpec",
    "SpiffParseError",
    "StateDelta",
    "TaskMeta",
    "WaitingTimer",
    "parse_process",
    "restore_spec",
    "safe_xml_parser",
    "xsd_problems",
]

SPIFF_VERSION = "3.2.0"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"

# --- trap 5: no silent cut-off of the task-tree walk ---------------------------------------------------
# Stock 3.2.0 stops walking the task tree at depth 1000; beyond it READY tasks are invisible and the
# workflow reports itself completed. We lift the cut-off for every iterator the library creates.
for _iterator in (_task_util.TaskIterator, _bpmn_task_util.BpmnTaskIterator):
    _defaults = list(_iterator.__init__.__defaults__ or ())
    _names = _iterator.__init__.__code__.co_varnames[1 : _iterator.__init__.__code__.co_argcount]
    _offset = len(_names) - len(_defaults)
    _defaults[_names.index("max_depth") - _offset] = sys.maxsize
    _iterator.__init__.__defaults__ = tuple(_defaults)

# --- no tree walk for WAITING tasks when none is waiting -------------------------------------------------
# After every task it completes, the library walks the workflow's whole task tree (a Python generator
# step per task) for WAITING tasks to update. In a work order almost no step has one: 280 of 290 walks
# over 10 lifecycles found none. When the workflow's task dict holds no WAITING task, the walk (over a
# subset of that dict) would find none and update nothing: it is skipped. Otherwise the library walks.
_library_update_waiting_tasks = _Workflow.update_waiting_tasks


def _update_waiting_tasks(workflow: _Workflow) -> None:
    waiting = TaskState.WAITING
    if any(task._state == waiting for task in workflow.tasks.values()):
        _library_update_waiting_tasks(workflow)


_Workflow.update_waiting_tasks = _update_waiting_tasks

# --- traps 1, 2: timers read the engine's clock ---------------------------------------------------------
_SYSTEM_CLOCK = SystemClock()
_current_clock: contextvars.ContextVar[Clock | None] = contextvars.ContextVar("gridcase_clock", default=None)


class _ClockDatetime(datetime):
    """``datetime`` as seen by SpiffWorkflow's timer module: ``now()`` is the engine's clock."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _ClockDatetime:
        clock = _current_clock.get() or _SYSTEM_CLOCK
        value = cls.fromtimestamp(clock.now().timestamp(), tz=UTC)
        return cast(_ClockDatetime, value.astimezone(tz) if tz is not None else value)


_timer_module.datetime = _ClockDatetime


@contextmanager
def clock_context(clock: Clock) -> Iterator[None]:
    token = _current_clock.set(clock)
    try:
        yield
    finally:
        _current_clock.reset(token)


# --- XML ---------------------------------------------------------------------------------------------------


def safe_xml_parser() -> etree.XMLParser:
    """An lxml parser that resolves no entities, loads no DTD and never touches the network."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=False
    )


class SpiffParseError(Exception):
    """The library refused a file; carries what the validator needs to report it."""

    def __init__(self, message: str, *, file: str | None, line: int | None, element_id: str | None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.element_id = element_id


# --- the sandboxed script engine ------------------------------------------------------------------


class _SandboxEnvironment(BasePythonScriptEngineEnvironment):
    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__({})
        self.sandbox = sandbox

    def evaluate(
        self, expression: str, context: dict[str, object], external_context: object = None
    ) -> object:
        scope = dict(context)
        if isinstance(external_context, Mapping):
            scope.update(external_context)
        return self.sandbox.evaluate(expression, scope)

    def execute(self, script: str, context: dict[str, object], external_context: object = None) -> bool:
        if isinstance(external_context, Mapping) and external_context:
            scope = dict(context)
            scope.update(external_context)
            self.sandbox.execute(script, scope)
            for key in external_context:
                scope.pop(key, None)
            context.clear()
            context.update(scope)
        else:
            self.sandbox.execute(script, context)
        return True

    def call_service(self, context: dict[str, object], **kwargs: object) -> object:
        raise ScriptError("script.service_unsupported", "service tasks are not supported by gridcase")


class _ScriptEngine(PythonScriptEngine):
    """Lets the sandbox's ``ScriptError`` through with the BPMN element it came from."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(environment=_SandboxEnvironment(sandbox))
        self.sandbox = sandbox

    def validate(self, expression: str) -> None:
        problems = self.sandbox.check_expression(expression)
        if problems:
            raise SyntaxError("; ".join(problems))

    def evaluate(self, task: Task, expression: str, external_context: object = None) -> object:
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except ScriptError as err:
            raise _located(err, task, expression) from None

    def execute(self, task: Task, script: str, external_context: object = None) -> bool:
        try:
            return bool(self.environment.execute(script, task.data, external_context or {}))
        except ScriptError as err:
            raise _located(err, task, script) from None


def _located(err: ScriptError, task: Task, source: str) -> ScriptError | InvalidInput:
    element = task.task_spec.bpmn_id or task.task_spec.name
    label = task.task_spec.bpmn_name or element
    if err.code == "script.undefined_name":
        name = err.details.get("name")
        return InvalidInput(
            "gateway.missing_variable",
            f"'{label}' ({element}) needs the variable '{name}', which the case data does not have",
            {"element_id": element, "variable": name, "expression": source},
        )
    details = dict(err.details)
    details["element_id"] = element
    return ScriptError(err.code, f"'{label}' ({element}): {err.message}", details)


# --- parsing --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskMeta:
    """What the engine needs to know about one user task of a process, read from the BPMN.

    ``properties`` are the task's own Camunda extension properties; ``process_properties`` those of the
    ``<bpmn:process>`` that contains it (process-wide defaults, e.g. ``warn_at``). Specs stored before
    ``process_properties`` existed load with none.
    """

    bpmn_id: str
    name: str
    lane_id: str | None
    lane_name: str | None
    form_key: str | None
    properties: dict[str, str] = field(default_factory=dict)
    process_properties: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "bpmn_id": self.bpmn_id,
            "name": self.name,
            "lane_id": self.lane_id,
            "lane_name": self.lane_name,
            "form_key": self.form_key,
            "properties": self.properties,
            "process_properties": self.process_properties,
        }

    @staticmethod
    def from_dict(dct: Mapping[str, object]) -> TaskMeta:
        return TaskMeta(
            bpmn_id=str(dct["bpmn_id"]),
            name=str(dct["name"]),
            lane_id=cast("str | None", dct.get("lane_id")),
            lane_name=cast("str | None", dct.get("lane_name")),
            form_key=cast("str | None", dct.get("form_key")),
            properties=dict(cast("dict[str, str]", dct.get("properties") or {})),
            process_properties=dict(cast("dict[str, str]", dct.get("process_properties") or {})),
        )


@dataclass(frozen=True, slots=True)
class ParsedProcess:
    process_id: str
    spec: BpmnProcessSpec
    subprocess_specs: dict[str, BpmnProcessSpec]
    user_tasks: dict[str, TaskMeta]

    def serialize_spec(self) -> str:
        registry = _serializer().registry
        return json.dumps(
            {
                "spec": registry.convert(self.spec),
                "subprocess_specs": {k: registry.convert(v) for k, v in self.subprocess_specs.items()},
            },
            ensure_ascii=False,
        )


_SERIALIZER: BpmnWorkflowSerializer | None = None


def _serializer() -> BpmnWorkflowSerializer:
    global _SERIALIZER
    if _SERIALIZER is None:
        _SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG))
    return _SERIALIZER


_VALIDATOR: BpmnValidator | None = None


def _validator() -> BpmnValidator:
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = BpmnValidator()
    return _VALIDATOR


def xsd_problems(tree: etree._Element) -> list[tuple[int | None, str]]:
    """Every BPMN 2.0 XSD violation of a document, with its line (not just the first)."""
    validator = _validator()
    validator.preprocess(tree)
    schema = validator.validator
    if schema.validate(tree):
        return []
    return [(entry.line or None, entry.message) for entry in schema.error_log]


def new_parser() -> CamundaParser:
    """A Camunda-dialect parser with the BPMN XSD validator switched on."""
    return CamundaParser(validator=_validator())


def add_file(parser: CamundaParser, tree: etree._Element, filename: str) -> None:
    """Add one already safely parsed BPMN or DMN document; library refusals become SpiffParseError.

    The library raises far more than ValidationException on odd files (KeyError for a missing
    ``camunda:decisionRef``, AttributeError, TypeError …): every one is turned into a SpiffParseError.
    """
    try:
        qname = etree.QName(tree)
        if qname.localname == "definitions" and "dmn" in (qname.namespace or "").lower():
            parser.add_dmn_xml(tree, filename=filename)
        else:
            parser.add_bpmn_xml(tree, filename=filename)
    except Exception as err:  # any library failure is a problem of the file
        raise _parse_error(err, filename) from None


def _parse_error(err: BaseException, filename: str | None) -> SpiffParseError:
    """A located, plain-words SpiffParseError for whatever the library raised."""
    node = _failing_node(err)
    node_id = (node.get("id") or None) if node is not None else None
    node_line = node.sourceline if node is not None else None
    if isinstance(err, ValidationException):
        message = str(err.args[0]) if err.args else str(err)
        notes = [str(n) for n in getattr(err, "notes", []) if n]
        if notes:
            message = f"{message.rstrip('. ')}. {'. '.join(notes)}"
        element_id = getattr(err, "id", None) or node_id
        line = getattr(err, "line_number", None)
        if not (isinstance(line, int) and line > 0):
            line = node_line if element_id == node_id else None  # else the caller finds the element's line
        return SpiffParseError(
            _plain_library_message(message.splitlines()[0] if message else type(err).__name__),
            file=getattr(err, "file_name", None) or filename,
            line=line,
            element_id=element_id,
        )
    return SpiffParseError(
        _plain_library_message(_describe_exception(err)), file=filename, line=node_line, element_id=node_id
    )


def _failing_node(err: BaseException) -> etree._Element | None:
    """The innermost XML element the library was working on when ``err`` (or what caused it) was raised."""
    found: etree._Element | None = None
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            frame_locals = tb.tb_frame.f_locals
            candidate = frame_locals.get("node")
            owner = frame_locals.get("self")
            if not isinstance(candidate, etree._Element) and owner is not None:
                candidate = getattr(owner, "node", None)
            if isinstance(candidate, etree._Element) and candidate.get("id"):
                found = candidate
            tb = tb.tb_next
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return found


def _describe_exception(err: BaseException) -> str:
    if isinstance(err, KeyError) and err.args:
        key = str(err.args[0])
        if key.startswith("{"):
            namespace, _, local = key[1:].partition("}")
            prefix = "camunda:" if namespace == CAMUNDA_NS else ("bpmn:" if namespace == BPMN_NS else "")
            return f"required attribute {prefix}{local} is missing"
        return f"'{key}' is referenced but not defined"
    text = str(err).splitlines()[0] if str(err) else ""
    return f"the BPMN library could not read this element ({type(err).__name__}{': ' + text if text else ''})"


_LIBRARY_MESSAGES = (
    (
        "raise_validation_exception() got an unexpected keyword argument",
        "an event refers to a message, signal, error or escalation that is not defined",
    ),
    (
        "'NoneTask' object has no attribute 'event_definition'",
        "an event-based gateway must be followed only by catch events or receive tasks",
    ),
)


def _plain_library_message(message: str) -> str:
    """Replace messages that are artefacts of SpiffWorkflow 3.2.0 bugs with what they mean."""
    for marker, plain in _LIBRARY_MESSAGES:
        if marker in message:
            return plain
    message = re.sub(r"<Element \{[^}]*\}(\w+) at 0x[0-9a-fA-F]+>", r"\1", message)  # no memory addresses
    return message.strip().rstrip(".").strip() or "the BPMN library refused this file"


def parse_process(
    parser: CamundaParser,
    process_id: str,
    lanes: Mapping[str, tuple[str, str]],
    process_properties: Mapping[str, Mapping[str, str]] | None = None,
) -> ParsedProcess:
    """Build the spec of ``process_id`` (and what it calls) from the files added to ``parser``.

    ``lanes`` maps a flow-node id to (lane id, lane name), and ``process_properties`` a flow-node id to
    the Camunda properties of its ``<bpmn:process>`` (the library does not read those), both read from
    the XML by the caller.
    """
    process_properties = process_properties or {}
    try:
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except Exception as err:  # the library raises KeyError, AttributeError … on odd files
        raise _parse_error(err, None) from None
    user_tasks: dict[str, TaskMeta] = {}
    for each in [spec, *subprocess_specs.values()]:
        if each is None:
            continue
        for task_spec in each.task_specs.values():
            if not isinstance(task_spec, _UserTaskMixin):
                continue
            form = getattr(task_spec, "form", None)
            lane = lanes.get(task_spec.bpmn_id or "")
            user_tasks[task_spec.name] = TaskMeta(
                bpmn_id=task_spec.bpmn_id or task_spec.name,
                name=task_spec.bpmn_name or task_spec.bpmn_id or task_spec.name,
                lane_id=lane[0] if lane else None,
                lane_name=lane[1] if lane else task_spec.lane,
                form_key=getattr(form, "key", None) or None,
                properties={str(k): str(v) for k, v in (task_spec.extensions or {}).items()},
                process_properties=dict(process_properties.get(task_spec.bpmn_id or "", {})),
            )
    for each in [spec, *subprocess_specs.values()]:
        if each is not None:
            _settle_spec(each)
    return ParsedProcess(process_id, spec, {k: v for k, v in subprocess_specs.items() if v}, user_tasks)


def restore_spec(spec_json: str) -> tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]:
    registry = _serializer().registry
    dct = json.loads(spec_json)
    spec = registry.restore(dct["spec"])
    subs = {k: registry.restore(v) for k, v in dct["subprocess_specs"].items()}
    for each in (spec, *subs.values()):
        _settle_spec(each)
    return spec, subs


def boundary_messages(specs: Iterable[BpmnProcessSpec]) -> dict[str, frozenset[str]]:
    """BPMN id of each activity with boundary events -> the message names those events catch.

    Read from the spec alone, so the host knows without loading a workflow whether a message aimed at a
    task (``Instance.send_message(..., for_task=...)``) can be caught at all: an SLA rung no boundary
    catches changes nothing in the workflow.
    """
    found: dict[str, frozenset[str]] = {}
    for spec in specs:
        for name, task_spec in spec.task_specs.items():
            if not name.endswith(_BOUNDARY_SPLIT):
                continue
            names: set[str] = set()
            for child in task_spec.outputs:
                names.update(_message_names(getattr(child, "event_definition", None)))
            found[name[: -len(_BOUNDARY_SPLIT)]] = frozenset(names)
    return found


_BOUNDARY_SPLIT = ".BoundaryEventSplit"


def _message_names(definition: object) -> set[str]:
    if isinstance(definition, _BpmnMessageDefinition):
        return {str(definition.name)}
    nested = getattr(definition, "event_definitions", None) or ()
    return {name for each in nested for name in _message_names(each)}


_CamundaMultiInstance = (_CamundaParallelMI, _CamundaSequentialMI)


def _settle_spec(spec: BpmnProcessSpec) -> None:
    """Settle what stock 3.2.0 leaves to run time, so every load of a stored spec behaves alike.

    Camunda multi-instance over a collection: input = output collection, fixed at parse time.
    Stock 3.2.0 sets the input collection only when the task first runs and does not serialize it, so
    after a save and reload finished instances are appended to the collection instead of written
    back in place (the list doubles). Setting it on the spec itself makes every load behave alike.
    """
    for task_spec in spec.task_specs.values():
        definition = getattr(task_spec, "event_definition", None)
        if isinstance(task_spec, ThrowingEvent) and isinstance(definition, MessageEventDefinition):
            if definition.expression is None:
                definition.expression = "{}"  # a message thrown without a payload carries an empty one
        if not isinstance(task_spec, _CamundaMultiInstance):
            continue
        if task_spec.cardinality is None and task_spec.data_output is not None:
            task_spec.data_input = TaskDataReference(task_spec.data_output.bpmn_id)
            if task_spec.output_item is not None:
                task_spec.input_item = TaskDataReference(task_spec.output_item.bpmn_id)


# --- a running workflow ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadyUserTask:
    task_id: str
    task_spec: str
    data: dict[str, object]


@dataclass(frozen=True, slots=True)
class WaitingTimer:
    task_id: str
    task_spec: str
    due_at: datetime


@dataclass(slots=True)
class StateDelta:
    """What a step changed: the workflow row and the task rows to upsert or delete."""

    body: str
    upserts: dict[str, str]
    deletes: list[str]


_Fingerprint = tuple[int, float, int]


def _do_engine_steps(workflow: BpmnWorkflow) -> None:
    """``BpmnWorkflow.do_engine_steps`` without walking the whole task tree while no subprocess is live.

    Each of the library's passes steps every live (not completed) subprocess, then lists the READY
    tasks by walking the task tree depth first from the root (not below predicted tasks) and runs the
    non-manual ones in that order (each, even if an earlier one of the list changed it); it passes
    again until a pass runs nothing. While no subprocess is live, a pass steps none, and the READY
    tasks of the workflow's own task dict are those the walk can reach. They are taken from the dict,
    put in the walk's order (``_walk_order``) and run the same way. A READY engine task inside a
    (completed) subprocess or below a predicted task, or a live subprocess, hands over to the
    library's own passes from there.
    """
    ready = TaskState.READY
    while True:
        subprocesses = workflow.subprocesses.values()
        if any(not sub.completed for sub in subprocesses) or any(
            t.state == ready and not t.task_spec.manual for sub in subprocesses for t in sub.tasks.values()
        ):
            workflow.do_engine_steps()
            return
        ready_now = [t for t in workflow.tasks.values() if t.state == ready and not t.task_spec.manual]
        found = _walk_order(ready_now)
        if found is None:
            workflow.do_engine_steps()
            return
        if not found:
            break
        for task in found:
            task.run()
    workflow.refresh_timers()


_PREDICTED = TaskState.MAYBE | TaskState.LIKELY  # the walk for READY tasks does not look below these


def _walk_order(tasks: list[Task]) -> list[Task] | None:
    """``tasks`` in the order the library's depth-first walk lists them (sorted by the path of child
    positions from the root); None when one lies below a predicted task, where the walk does not go."""
    keyed = []
    for task in tasks:
        steps = []
        node = task
        while node.parent is not None:
            parent = node.parent
            if parent.state & _PREDICTED:
                return None
            steps.append(parent._children.index(node.id))
            node = parent
        keyed.append((tuple(reversed(steps)), task))
    keyed.sort(key=lambda pair: pair[0])
    return [task for _, task in keyed]


def _fingerprint(task: Task) -> _Fingerprint:
    return (task.state, task.last_state_change, len(task._children))


class Instance:
    """One running workflow plus what was last saved of it, so a save writes only the difference."""

    def __init__(self, workflow: BpmnWorkflow, saved: dict[UUID, _Fingerprint] | None = None) -> None:
        self.workflow = workflow
        self._saved: dict[UUID, _Fingerprint] = saved if saved is not None else {}
        self._ready: list[ReadyUserTask] | None = None  # from the last scan; None once something changed
        self._scan: tuple[dict[UUID, _Fingerprint], list[Task]] | None = None  # fingerprints, changed tasks
        self._prepared: _Prepared | None = None  # ``prepare_delta``'s work, good while ``_scan`` is unchanged
        # completed subprocesses as last converted, with the task fingerprints they were converted at
        self._finished_subs: dict[UUID, tuple[object, tuple[_Fingerprint, ...], object]] = {}

    # -- creation and loading
    @classmethod
    def start(
        cls,
        spec: BpmnProcessSpec,
        subprocess_specs: Mapping[str, BpmnProcessSpec],
        sandbox: Sandbox,
        data: Mapping[str, object],
        clock: Clock,
    ) -> Instance:
        workflow = BpmnWorkflow(spec, dict(subprocess_specs), script_engine=_ScriptEngine(sandbox))
        workflow.task_tree.data.update(data)
        for start_task in workflow.get_tasks(state=TaskState.READY):
            start_task.data.update(data)
        instance = cls(workflow)
        instance.run_engine(clock)
        return instance

    @classmethod
    def load(
        cls,
        spec: BpmnProcessSpec,
        subprocess_specs: Mapping[str, BpmnProcessSpec],
        sandbox: Sandbox,
        body: str,
        task_rows: Mapping[str, str],
    ) -> Instance:
        serializer = _serializer()
        dct = json_loads(body)
        tasks = {tid: json_loads(text) for tid, text in task_rows.items()}
        dct["tasks"] = _parents_first(tasks, dct["root"])
        # Restored specs are shared objects from the spec cache: the registry passes non-dicts through.
        dct["spec"] = spec
        dct["subprocess_specs"] = dict(subprocess_specs)
        workflow = serializer.from_dict(dct)
        workflow.script_engine = _ScriptEngine(sandbox)
        saved = {t.id: _fingerprint(t) for t in workflow.tasks.values()}
        return cls(workflow, saved)

    # -- stepping
    def run_engine(self, clock: Clock) -> None:
        with clock_context(clock):
            try:
                _do_engine_steps(self.workflow)
            except (InvalidInput, ScriptError):
                raise
            except WorkflowException as err:
                raise self._failure(err) from None
        self.check_not_stalled()

    def refresh_timers(self, clock: Clock) -> None:
        self._ready = None
        with clock_context(clock):
            self.workflow.refresh_timers()
        self.run_engine(clock)

    def _ready_user_task(self, task_id: str) -> Task:
        task = self._task(task_id)
        if task.state != TaskState.READY or not isinstance(task.task_spec, _UserTaskMixin):
            raise Conflict(
                "task.not_ready",
                f"task {task.task_spec.bpmn_name or task.task_spec.name} is {TaskState.get_name(task.state)}",
                {"task_id": task_id, "state": TaskState.get_name(task.state)},
            )
        return task

    def complete_user_task(self, task_id: str, data: Mapping[str, object], clock: Clock) -> None:
        task = self._ready_user_task(task_id)
        self._ready = None
        task.data.update(data)
        with clock_context(clock):
            try:
                task.run()
            except (InvalidInput, ScriptError):
                raise
            except WorkflowException as err:
                raise self._failure(err) from None
        self.run_engine(clock)

    def update_task_data(self, task_id: str, values: Mapping[str, object]) -> None:
        """Set variables of a ready user task without running it (e.g. the department a reassignment
        moved it to, so later steps follow); the task is saved with the step."""
        task = self._ready_user_task(task_id)
        task.data.update(values)
        self._saved.pop(task.id, None)  # its fingerprint did not change: make the next save write it
        self._ready = None
        self._scan = None

    def send_message(
        self, name: str, payload: Mapping[str, object], clock: Clock, *, for_task: str | None = None
    ) -> bool:
        """Deliver a BPMN message (e.g. ``sla_overdue``); False when nothing waits for it.

        With ``for_task`` only the boundary events attached to that user task catch it, so an SLA rung
        of one task never fires the boundary of a parallel one. The catching event puts ``payload``
        into the task data as ``event_payload``.
        """
        event = BpmnEvent(
            MessageEventDefinition(name), {"payload": dict(payload), "result_var": "event_payload"}
        )
        self._ready = None
        with clock_context(clock):
            if for_task is None:
                caught = self.workflow.event_manager.catch(event, internal=False)
            else:
                owner = self._task(for_task)
                catching = [
                    t
                    for t in self.workflow.event_manager.tasks.values()
                    if t.parent is not None
                    and t.parent is owner.parent
                    and t is not owner
                    and t.task_spec.catches(t, event)
                ]
                for t in catching:
                    t.task_spec.catch(t, event)
                    t.task_spec._update(t)
                caught = len(catching)
        if caught:
            self.run_engine(clock)
        else:
            self.check_not_stalled()
        return bool(caught)

    def waiting_messages(self) -> list[tuple[str, str]]:
        """(message name, BPMN id of the catching event) for every message the workflow waits for."""
        found = []
        for task in self.workflow.event_manager.tasks.values():
            definition = task.task_spec.event_definition
            if isinstance(definition, MessageEventDefinition):
                found.append((definition.name, task.task_spec.bpmn_id or task.task_spec.name))
        return found

    def outgoing_events(self) -> list[tuple[str, dict[str, object]]]:
        """Messages thrown that nothing inside the workflow caught: the host's to handle (and clear)."""
        events = []
        for event in self.workflow.get_events():
            payload = event.payload.get("payload") if isinstance(event.payload, dict) else event.payload
            events.append((event.event_definition.name, dict(payload) if isinstance(payload, dict) else {}))
        return events

    def _failure(self, err: WorkflowException) -> EngineError:
        """A library failure in plain words; a gateway with no path names the gateway and its variables."""
        text = str(err).splitlines()[0]
        task = getattr(err, "task", None)
        element = task.task_spec.bpmn_id if task is not None else None
        match = _NO_ROUTE.search(text)
        if match:
            gateway = self._spec_by_bpmn_id(match.group(1))
            if gateway is not None:
                names = sorted(
                    {n for cond, _ in getattr(gateway, "cond_task_specs", []) for n in _names_in(cond)}
                )
                data = self.data()
                values = {n: data.get(n) for n in names}
                label = gateway.bpmn_name or match.group(1)
                return InvalidInput(
                    "gateway.no_route",
                    f"'{label}' ({match.group(1)}) has no path for {values}: check the form's choices",
                    {"element_id": match.group(1), "variables": values},
                )
        return Conflict(
            "case.engine_error", f"the process could not continue: {text}", {"element_id": element}
        )

    def _spec_by_bpmn_id(self, bpmn_id: str) -> TaskSpec | None:
        for spec in (self.workflow.spec, *self.workflow.subprocess_specs.values()):
            for task_spec in spec.task_specs.values():
                if task_spec.bpmn_id == bpmn_id:
                    return task_spec
        return None

    def _task(self, task_id: str) -> Task:
        try:
            task = self.workflow.get_task_from_id(UUID(task_id))
        except Exception:
            task = None
        if task is None:
            from engine.errors import NotFound

            raise NotFound("task.not_found", f"no task {task_id} in this case", {"task_id": task_id})
        return task

    # -- reading
    @property
    def completed(self) -> bool:
        return bool(self.workflow.completed)

    @property
    def spec(self) -> BpmnProcessSpec:
        """The process spec the workflow runs (the object it was started or loaded with)."""
        return self.workflow.spec

    def ready_task_spec(self, task_id: str) -> str | None:
        """The spec name of ready user task ``task_id``; None when no such task is ready."""
        return next((t.task_spec for t in self.ready_user_tasks() if t.task_id == task_id), None)

    def data(self) -> dict[str, object]:
        last = self.workflow.last_task
        return dict(last.data) if last is not None else dict(self.workflow.data)

    def ready_user_tasks(self) -> list[ReadyUserTask]:
        if self._ready is None:
            self._ready = [
                ReadyUserTask(str(t.id), t.task_spec.name, t.data)
                for t in self._all_tasks()
                if t.state == TaskState.READY and isinstance(t.task_spec, _UserTaskMixin)
            ]
        return self._ready

    def waiting_timers(self) -> list[WaitingTimer]:
        timers = []
        for task in self.workflow.event_manager.tasks.values():
            definition = task.task_spec.event_definition
            if not isinstance(definition, TimerEventDefinition):
                continue
            value = definition.details(task).value
            due = _timer_due(value)
            if due is not None:
                timers.append(WaitingTimer(str(task.id), task.task_spec.bpmn_id or task.task_spec.name, due))
        return timers

    def check_not_stalled(self) -> None:
        """A workflow that cannot move on must say so loudly, never pass for completed (trap 5).

        One pass over the flat task table (no tree walk, so no depth limit), which also collects the
        ready user tasks for the projection and the fingerprints the next save compares.
        """
        ready: list[ReadyUserTask] = []
        unfinished: list[Task] = []
        engine_ready: list[Task] = []
        live = False
        saved = self._saved
        current: dict[UUID, _Fingerprint] = {}
        changed: list[Task] = []
        not_finished, ready_state = TaskState.NOT_FINISHED_MASK, TaskState.READY
        waiting = TaskState.WAITING | TaskState.STARTED
        top = self.workflow.tasks
        subtasks = [t for sub in self.workflow.subprocesses.values() for t in sub.tasks.values()]
        for t in (*top.values(), *subtasks):
            state = t.state
            if t.workflow is self.workflow:  # fingerprints are kept for the top workflow's rows
                fp = current[t.id] = (state, t.last_state_change, len(t._children))
                if saved.get(t.id) != fp:
                    changed.append(t)
            if not state & not_finished:
                continue
            unfinished.append(t)
            if state == ready_state:
                live = True
                if isinstance(t.task_spec, _UserTaskMixin):
                    ready.append(ReadyUserTask(str(t.id), t.task_spec.name, t.data))
                elif not t.task_spec.manual:
                    engine_ready.append(t)
            elif state & waiting:
                live = True
        if self.workflow.completed and unfinished:
            raise _stalled("the workflow reports completion while tasks are unfinished", unfinished)
        if engine_ready:
            raise _stalled("engine tasks are ready but the engine did not run them", engine_ready)
        if not self.workflow.completed and not live:
            raise _stalled("the workflow can make no progress: nothing is ready or waiting", unfinished)
        self._ready = ready
        self._scan = (current, changed)

    def _all_tasks(self) -> Iterator[Task]:
        yield from self.workflow.tasks.values()
        for sub in self.workflow.subprocesses.values():
            yield from sub.tasks.values()

    def release(self) -> None:
        """Take apart a workflow that will not be used again (a closed case's, one evicted from the
        cache). Each task and its workflow refer to each other, as do a subprocess and its top workflow
        and a workflow and its event manager: left whole, the workflow waits for a full pass of the
        garbage collector, which the process's every request waits for in turn (in the load bench those
        passes spent most of their time on such workflows). Taken apart, reference counting frees it at
        once."""
        workflows = [self.workflow, *self.workflow.subprocesses.values()]
        for wf in workflows:
            for task in wf.tasks.values():
                task.__dict__.clear()
            manager = wf.__dict__.get("event_manager")
            if manager is not None:
                manager.__dict__.clear()
        for wf in workflows:
            wf.__dict__.clear()
        self._saved, self._ready, self._scan, self._prepared, self._finished_subs = {}, None, None, None, {}

    # -- saving
    def prepare_delta(self) -> None:
        """Serialize the changed tasks and the workflow's own state now, ahead of ``delta`` (work done
        before the SQLite write lock). ``delta`` uses it only if nothing ran or changed in between: every
        method that changes the workflow replaces or clears the scan it is tied to."""
        if self._ready is None or self._scan is None:
            return
        self._prepared = _Prepared(self._scan, *self._serialize(self._scan[1]))

    def delta(self) -> StateDelta:
        """Serialize what changed since the last save (all of it the first time)."""
        registry = _serializer().registry
        wf = self.workflow
        prepared, self._prepared = self._prepared, None
        if self._ready is not None and self._scan is not None:  # nothing ran since the last scan
            current, changed = self._scan
        else:
            current = {tid: (t.state, t.last_state_change, len(t._children)) for tid, t in wf.tasks.items()}
            changed = [wf.tasks[tid] for tid, fp in current.items() if self._saved.get(tid) != fp]
        if prepared is not None and self._ready is not None and prepared.scan is self._scan:
            upserts, body = prepared.upserts, dict(prepared.body)
        else:
            upserts, body = self._serialize(changed)
        # thrown events are read off (and cleared) by the host after the run: taken as they are now
        body["bpmn_events"] = registry.convert(wf.bpmn_events)
        deletes = [str(tid) for tid in self._saved.keys() - current.keys()]
        self._saved = current
        self._scan = None
        return StateDelta(json.dumps(body, ensure_ascii=False, default=_json_default), upserts, deletes)

    def _serialize(self, changed: list[Task]) -> tuple[dict[str, str], dict[str, object]]:
        """The changed tasks as JSON rows, and the workflow's own state but its thrown events."""
        registry = _serializer().registry
        wf = self.workflow
        upserts = {
            str(task.id): json.dumps(registry.convert(task), ensure_ascii=False, default=_json_default)
            for task in changed
        }
        body = {
            "typename": registry.typenames[BpmnWorkflow],
            "data": registry.convert(registry.clean(wf.data)),
            "correlations": wf.correlations,
            "last_task": str(wf.last_task.id) if wf.last_task is not None else None,
            "success": wf.success,
            "completed": wf.completed,
            "root": str(wf.task_tree.id),
            "subprocesses": {str(k): self._convert_subprocess(k, v) for k, v in wf.subprocesses.items()},
        }
        return upserts, body

    def _convert_subprocess(self, key: UUID, sub: BpmnWorkflow) -> object:
        """A subprocess as the serializer's registry converts it. Nothing runs in a completed one any
        more, so its conversion is kept and used again while it is the same object with the same task
        fingerprints (every save rewrites the workflow's state, subprocesses included)."""
        if not sub.completed:
            return _serializer().registry.convert(sub)
        stamp = tuple(_fingerprint(t) for t in sub.tasks.values())
        kept = self._finished_subs.get(key)
        if kept is not None and kept[0] is sub and kept[1] == stamp:
            return kept[2]
        converted = _serializer().registry.convert(sub)
        self._finished_subs[key] = (sub, stamp, converted)
        return converted


@dataclass(frozen=True, slots=True)
class _Prepared:
    """``Instance.prepare_delta``'s serialization and the scan it was made from."""

    scan: tuple[dict[UUID, _Fingerprint], list[Task]]
    upserts: dict[str, str]
    body: dict[str, object]


def _stalled(message: str, tasks: list[Task]) -> Conflict:
    return Conflict("case.stalled", message, {"tasks": sorted({t.task_spec.name for t in tasks})[:10]})


_NO_ROUTE = re.compile(r"No conditions satisfied for ([A-Za-z_][\w-]*)")


def _names_in(condition: object) -> set[str]:
    args = getattr(condition, "args", None)  # SpiffWorkflow wraps the expression: _BpmnCondition(expr)
    expression = args[0] if isinstance(args, tuple) and args else condition
    try:
        tree = ast.parse(str(expression), mode="eval")
    except SyntaxError:
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set):
        return sorted(value, key=str)
    if callable(value):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _parents_first(tasks: dict[str, dict[str, object]], root: str) -> dict[str, dict[str, object]]:
    ordered: dict[str, dict[str, object]] = {}
    stack = [root]
    while stack:
        tid = stack.pop()
        dct = tasks.get(tid)
        if dct is None:
            continue
        ordered[tid] = dct
        stack.extend(reversed(cast("list[str]", dct["children"])))
    return ordered


def _timer_due(value: object) -> datetime | None:
    if isinstance(value, dict):
        value = value.get("next")
    if not isinstance(value, str):
        return None
    try:
        if value.upper().startswith("P"):
            return None
        due = datetime.fromisoformat(value)
    except ValueError:
        return None
    return due if due.tzinfo is not None else due.replace(tzinfo=UTC)
