"""engine.spiff without a database: stepping, the stall guard, and the per-task save/load round trip."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from SpiffWorkflow.bpmn.util import task as bpmn_task_util
from SpiffWorkflow.util import task as task_util

from engine import specs, spiff
from engine.clock import FixedClock
from engine.errors import Conflict, InvalidInput
from engine.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
CLOCK = FixedClock(datetime(2025, 3, 3, 1, 0, tzinfo=UTC))


@pytest.fixture(scope="module")
def demo() -> spiff.ParsedProcess:
    validation = specs.validate(
        specs.read_sources([REPO / "workflows" / "demo"]), forms_dir=REPO / "forms", sandbox=Sandbox()
    )
    assert validation.ok
    return validation.processes["demo"]


def complete(instance: spiff.Instance, spec_name: str, data: Mapping[str, object]) -> None:
    [task] = [t for t in instance.ready_user_tasks() if t.task_spec == spec_name]
    instance.complete_user_task(task.task_id, data, CLOCK)


def rework(instance: spiff.Instance) -> None:
    complete(instance, "handle", {"result": "r"})
    complete(instance, "verify", {"verify_result": "fail"})


def test_with_stock_depth_limit_the_stall_is_reported_not_passed_off_as_completion(
    demo: spiff.ParsedProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Put back stock 3.2.0's cut-off (max_depth=1000) to show the guard catches the silent stall. The
    # engine's own pass finds READY tasks without the library's walk, so the library's pass is used.
    monkeypatch.setattr(spiff, "_do_engine_steps", lambda workflow: workflow.do_engine_steps())
    for iterator in (task_util.TaskIterator, bpmn_task_util.BpmnTaskIterator):
        defaults = list(iterator.__init__.__defaults__ or ())
        names = iterator.__init__.__code__.co_varnames[1 : iterator.__init__.__code__.co_argcount]
        defaults[names.index("max_depth") - (len(names) - len(defaults))] = 1000
        monkeypatch.setattr(iterator.__init__, "__defaults__", tuple(defaults))
    instance = spiff.Instance.start(demo.spec, demo.subprocess_specs, Sandbox(), {}, CLOCK)
    with pytest.raises(Conflict) as caught:
        for _ in range(400):
            rework(instance)
    assert caught.value.code == "case.stalled"


def test_with_the_lifted_limit_four_hundred_rework_loops_still_run_and_close(
    demo: spiff.ParsedProcess,
) -> None:
    instance = spiff.Instance.start(demo.spec, demo.subprocess_specs, Sandbox(), {}, CLOCK)
    for _ in range(400):
        rework(instance)
    assert not instance.completed
    complete(instance, "handle", {"result": "r"})
    complete(instance, "verify", {"verify_result": "pass"})
    assert instance.completed


def test_saving_writes_only_changed_tasks_and_loading_the_rows_restores_the_same_workflow(
    demo: spiff.ParsedProcess,
) -> None:
    sandbox = Sandbox()
    instance = spiff.Instance.start(demo.spec, demo.subprocess_specs, sandbox, {"grid_id": "g1"}, CLOCK)
    rows: dict[str, str] = {}
    body = ""
    sizes = []
    for step in range(40):
        delta = instance.delta()
        rows.update(delta.upserts)
        for gone in delta.deletes:
            rows.pop(gone)
        body = delta.body
        sizes.append(len(delta.upserts))
        instance = spiff.Instance.load(demo.spec, demo.subprocess_specs, sandbox, body, rows)
        assert instance.delta().upserts == {}  # a fresh load has nothing to write
        if step % 2 == 0:
            complete(instance, "handle", {"result": f"第{step}次"})
        else:
            complete(instance, "verify", {"verify_result": "fail"})
    assert sizes[-4:] == sizes[2:6]  # a step writes as many rows late in the case as early on …
    assert len(rows) > 5 * max(sizes[2:])  # … a few rows, not the whole tree
    [ready] = instance.ready_user_tasks()
    assert ready.task_spec == "handle"
    assert ready.data["result"] == "第38次" and ready.data["grid_id"] == "g1"


def test_a_save_prepared_ahead_is_used_only_while_nothing_changed_since(demo: spiff.ParsedProcess) -> None:
    """``prepare_delta`` (run before the SQLite write lock) gives the save exactly what ``delta`` would
    have; once the workflow changes after it, the save serializes afresh."""
    instance = spiff.Instance.start(demo.spec, demo.subprocess_specs, Sandbox(), {"grid_id": "g1"}, CLOCK)
    instance.delta()
    complete(instance, "handle", {"result": "已处置"})
    twin = copy.deepcopy(instance)
    instance.prepare_delta()
    assert instance.delta() == twin.delta()

    # prepared, then a task's data set: the save carries the new value
    complete(instance, "verify", {"verify_result": "fail"})
    instance.prepare_delta()
    [ready] = instance.ready_user_tasks()
    instance.update_task_data(ready.task_id, {"org_unit_id": "dept_urban"})
    assert "dept_urban" in instance.delta().upserts[ready.task_id]

    # prepared, then the engine ran: the save holds that run too
    instance.prepare_delta()
    complete(instance, "handle", {"result": "再次处置"})
    twin = copy.deepcopy(instance)
    saved = instance.delta()
    assert saved == twin.delta()
    assert any("再次处置" in row for row in saved.upserts.values())


def test_a_message_thrown_without_a_payload_expression_carries_an_empty_payload() -> None:
    xml = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:message id="m" name="start_work_order" />
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="s"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateThrowEvent id="throw"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:messageEventDefinition id="throw_def" messageRef="m" />
    </bpmn:intermediateThrowEvent>
    <bpmn:endEvent id="e"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="throw" />
    <bpmn:sequenceFlow id="f2" sourceRef="throw" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"""
    validation = specs.validate({"p.bpmn": xml}, forms_dir=None, sandbox=Sandbox())
    assert validation.ok, [str(p) for p in validation.problems]
    parsed = validation.processes["p"]
    spec, subs = spiff.restore_spec(parsed.serialize_spec())
    instance = spiff.Instance.start(spec, subs, Sandbox(), {}, CLOCK)
    assert instance.outgoing_events() == [("start_work_order", {})]
    assert instance.completed


def test_a_gateway_with_no_path_for_the_values_names_the_gateway_and_its_variables(
    demo: spiff.ParsedProcess,
) -> None:
    instance = spiff.Instance.start(demo.spec, demo.subprocess_specs, Sandbox(), {}, CLOCK)
    complete(instance, "handle", {"result": "r"})
    with pytest.raises(InvalidInput) as caught:
        complete(instance, "verify", {"verify_result": "maybe"})
    assert caught.value.code == "gateway.no_route"
    assert caught.value.details == {"element_id": "verify_gateway", "variables": {"verify_result": "maybe"}}


def test_a_released_workflow_is_freed_by_reference_counting_alone() -> None:
    """``Instance.release`` (a closed case's workflow, one evicted from the cache) leaves nothing of the
    workflow, its tasks, its subprocess or its event manager for the cyclic garbage collector."""
    import gc

    validation = specs.validate(
        specs.read_sources([REPO / "workflows" / "work_order"]), forms_dir=REPO / "forms", sandbox=Sandbox()
    )
    process = validation.processes["work_order"]

    def running() -> spiff.Instance:
        data = {"grid_id": "g1", "category": "noise", "title": "噪音扰民"}
        instance = spiff.Instance.start(process.spec, process.subprocess_specs, Sandbox(), data, CLOCK)
        for name, form in (
            ("accept", {"decision": "accept", "opinion": "属实"}),
            ("dispatch", {"dispatch_decision": "confirm"}),
            ("claim", {"claim_decision": "claim"}),
        ):
            complete(instance, name, form)
        assert instance.workflow.subprocesses  # 处置 runs in the joint-handling subprocess
        instance.delta()
        return instance

    def left_to_the_collector(release: bool) -> list[str]:
        instance = running()
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            if release:
                instance.release()
            del instance
            gc.collect()
            return [
                type(o).__module__
                for o in gc.garbage
                if type(o).__module__.startswith(("SpiffWorkflow", "engine"))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    assert left_to_the_collector(release=False)  # whole, the workflow is a tangle of cycles
    assert left_to_the_collector(release=True) == []
