"""The workflow cache: entries by case and version, and found by the ready user tasks they hold."""

from __future__ import annotations

from typing import cast

from engine import spiff
from engine.runtime import WorkflowCache


class _Held:
    """Stands in for a workflow: the cache asks it only for its ready user tasks."""

    def __init__(self, *ready: str) -> None:
        self.ready = [spiff.ReadyUserTask(task_id, "spec", {}) for task_id in ready]
        self.released = False

    def ready_user_tasks(self) -> list[spiff.ReadyUserTask]:
        return self.ready

    def release(self) -> None:
        self.released = True


def held(*ready: str) -> spiff.Instance:
    return cast(spiff.Instance, _Held(*ready))


def test_an_entry_is_found_by_its_ready_tasks_once_and_then_is_gone() -> None:
    cache = WorkflowCache()
    first = held("t1", "t2")
    cache.put(1, 3, first)
    assert cache.take_by_task("nope") is None
    assert cache.take_by_task("t2") == (1, 3, first)
    assert cache.take_by_task("t1") is None  # taken out with its entry
    assert cache.take(1, 3) is None


def test_a_version_bump_keeps_the_entry_findable_and_a_new_put_replaces_its_tasks() -> None:
    cache = WorkflowCache()
    cache.put(1, 3, held("t1"))
    cache.bumped({1: 4})
    later = held("t9")
    found = cache.take_by_task("t1")
    assert found is not None and found[:2] == (1, 4)
    cache.put(1, 5, later)
    assert cache.take_by_task("t1") is None
    assert cache.take_by_task("t9") == (1, 5, later)


def released(instance: spiff.Instance) -> bool:
    return cast(_Held, instance).released


def test_evicted_and_cleared_entries_leave_no_task_behind() -> None:
    cache = WorkflowCache(capacity=2)
    entries = {case_id: held(f"t{case_id}") for case_id in (1, 2, 3)}
    for case_id, instance in entries.items():
        cache.put(case_id, 1, instance)
    assert cache.take_by_task("t1") is None  # the oldest was evicted with its task
    assert cache.take(2, 1) is not None
    assert cache.take_by_task("t2") is None
    assert cache._by_task == {"t3": 3}  # the index holds no task of an entry that is gone
    cache.clear()
    assert cache.take_by_task("t3") is None
    # evicted and cleared workflows are taken apart; one taken out for a step is left whole
    assert [released(entries[case_id]) for case_id in (1, 2, 3)] == [True, False, True]


def test_workflows_that_will_not_be_used_again_are_taken_apart() -> None:
    cache = WorkflowCache()
    stale, kept, stepped = held("t1"), held("t2"), held("t3")
    cache.put(1, 3, stale)
    assert cache.take(1, 4) is None and released(stale)  # at another version than the case's
    cache.put(2, 1, kept)
    cache.put(2, 2, kept)  # the same workflow put again after a step: left whole
    assert not released(kept)
    cache.discard(2)
    assert released(kept) and cache.take(2, 2) is None
    cache.put(3, 1, stepped)
    taken = cache.take(3, 1)
    assert taken is stepped and not released(stepped)
    cache.discard(3, taken)  # its case closed in the step that took it
    assert released(stepped)
