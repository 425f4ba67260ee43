"""``engine.spiff._do_engine_steps`` (READY tasks from the task dict, in the walk's order) against
SpiffWorkflow's own ``do_engine_steps`` (a walk of the whole tree each pass): every scenario runs with
each engine pass done both ways, on the workflow and on a twin restored from its serialization, and
the two must come out the same, task by task. The twin's passes also update WAITING tasks the
library's way (a walk after every completed task), which the engine skips when none is waiting."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskIterator, TaskState
from SpiffWorkflow.workflow import Workflow

from engine import specs, spiff
from engine.clock import FixedClock
from engine.sandbox import Sandbox
from engine.scenarios import run_file
from tests.conftest import REPO
from tests.workflows.test_scenarios import SCENARIOS

FIXTURES = REPO / "tests" / "fixtures"


def _twin(workflow: BpmnWorkflow) -> BpmnWorkflow:
    serializer = spiff._serializer()
    dct = serializer.to_dict(workflow)
    dct["spec"] = workflow.spec
    dct["subprocess_specs"] = workflow.subprocess_specs
    twin: BpmnWorkflow = serializer.from_dict(dct)
    twin.script_engine = workflow.script_engine
    return twin


def _shape(workflow: BpmnWorkflow) -> list[tuple[Any, ...]]:
    """Every task in the library's walk order, by spec, state and data (ids differ between the two:
    tasks created during the pass get fresh ones), and the order the tasks last changed state in."""
    walked = workflow.get_tasks()
    tasks = [(t.task_spec.name, t.state, t.data, len(t.children)) for t in walked]
    changed = tuple(t.task_spec.name for t in sorted(walked, key=lambda t: t.last_state_change))
    return [*tasks, ("workflow", workflow.completed, workflow.success, workflow.data), changed]


@pytest.fixture
def checked_engine_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Each engine pass done both ways; the list holds whether each came out the same. Not asserted
    in place: an error in the work done before the write lock only makes the step do it again."""
    fast = spiff._do_engine_steps
    passes: list[bool] = []

    def both(workflow: BpmnWorkflow) -> None:
        twin = _twin(workflow)
        same_before = _shape(twin) == _shape(workflow)
        with monkeypatch.context() as library:
            library.setattr(Workflow, "update_waiting_tasks", spiff._library_update_waiting_tasks)
            twin.do_engine_steps()
        fast(workflow)
        passes.append(same_before and _shape(workflow) == _shape(twin))

    monkeypatch.setattr(spiff, "_do_engine_steps", both)
    yield passes


@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in SCENARIOS])
def test_engine_passes_come_out_as_the_librarys(path: Path, checked_engine_steps: list[bool]) -> None:
    outcome = run_file(path, workflows_dir=REPO / "workflows", forms_dir=REPO / "forms")
    assert outcome.passed, f"{outcome.message}\n" + "\n".join(outcome.log)
    assert checked_engine_steps, "no engine pass was checked"
    assert all(checked_engine_steps), f"passes that differ: {checked_engine_steps}"


@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in SCENARIOS])
def test_the_walk_for_waiting_tasks_is_skipped_only_where_it_finds_none(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before each update of WAITING tasks the library's walk is done aside (it only reads): where it
    finds one, the library's update must run."""
    calls: list[tuple[int, bool]] = []  # (WAITING tasks the walk finds, whether the library updated)
    engine_update = Workflow.update_waiting_tasks
    library_update = spiff._library_update_waiting_tasks

    def checked(workflow: Workflow) -> None:
        found = len(list(TaskIterator(workflow.task_tree, state=TaskState.WAITING)))
        ran: list[bool] = []

        def library(wf: Workflow) -> None:
            ran.append(True)
            library_update(wf)

        with monkeypatch.context() as inner:
            inner.setattr(spiff, "_library_update_waiting_tasks", library)
            engine_update(workflow)
        calls.append((found, bool(ran)))

    monkeypatch.setattr(Workflow, "update_waiting_tasks", checked)
    outcome = run_file(path, workflows_dir=REPO / "workflows", forms_dir=REPO / "forms")
    assert outcome.passed, f"{outcome.message}\n" + "\n".join(outcome.log)
    assert calls, "no update of waiting tasks was checked"
    assert [c for c in calls if c[0] and not c[1]] == [], "WAITING tasks left without their update"
    if path.parent.parent.name == "work_order" and path.stem == "happy_path":
        assert any(c == (0, False) for c in calls), "the work order's walks are never skipped"
        assert any(c[0] and c[1] for c in calls), "the work order never has a WAITING task"


def test_parallel_script_tasks_run_in_the_librarys_order(checked_engine_steps: list[bool]) -> None:
    """Passes find a1 and b1, the gateway and b2, the second a1 and b3 READY together. The second a1
    was created after b3, so the task dict lists b3 first; the library's walk, and so the engine, runs
    the second a1 first."""
    validation = specs.validate(
        specs.read_sources([FIXTURES / "parallel"]), forms_dir=FIXTURES / "forms", sandbox=Sandbox()
    )
    assert validation.ok, validation.problems
    parsed = validation.processes["parallel"]
    clock = FixedClock(datetime(2025, 3, 3, 1, 0, tzinfo=UTC))
    instance = spiff.Instance.start(parsed.spec, parsed.subprocess_specs, Sandbox(), {}, clock)
    [handle] = instance.ready_user_tasks()
    assert (handle.task_spec, handle.data["a"], handle.data["b"]) == ("handle", 2, 4)
    instance.complete_user_task(handle.task_id, {"mode": "done"}, clock)
    assert instance.completed
    assert checked_engine_steps == [True, True]


def test_walk_order_is_the_librarys_whatever_order_the_tasks_come_in() -> None:
    workflow = _started("parallel")
    walked = [t for t in workflow.get_tasks() if not _below_predicted(t)]
    assert len(walked) > 10
    for given in (list(reversed(walked)), walked[1::2] + walked[::2]):
        order = spiff._walk_order(given)
        assert order is not None
        assert [t.id for t in order] == [t.id for t in walked if t in given]


def test_a_task_below_a_predicted_one_is_left_to_the_library() -> None:
    workflow = _started("timed")  # the branches after its gateway are predicted, with children
    below = [t for t in workflow.tasks.values() if _below_predicted(t)]
    reachable = [t for t in workflow.tasks.values() if not _below_predicted(t)]
    assert below and reachable
    assert spiff._walk_order(reachable) is not None
    assert spiff._walk_order([*reachable, below[0]]) is None


def _started(process_id: str) -> BpmnWorkflow:
    validation = specs.validate(
        specs.read_sources([FIXTURES / process_id]), forms_dir=FIXTURES / "forms", sandbox=Sandbox()
    )
    parsed = validation.processes[process_id]
    clock = FixedClock(datetime(2025, 3, 3, 1, 0, tzinfo=UTC))
    return spiff.Instance.start(parsed.spec, parsed.subprocess_specs, Sandbox(), {}, clock).workflow


def _below_predicted(task: Any) -> bool:
    while task.parent is not None:
        task = task.parent
        if task.state & spiff._PREDICTED:
            return True
    return False
