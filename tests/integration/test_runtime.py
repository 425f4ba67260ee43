"""The case runtime end to end on a real database: steps, restart, single writer, bad input, timers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from engine import access, cases, casework, forms, runtime, spiff, tasks, timers
from engine.audit import timeline
from engine.clock import Clock, FixedClock
from engine.errors import Conflict, InvalidInput, PermissionDenied, ScriptError
from engine.runtime import Runtime, SpecCache
from engine.store.db import Database
from engine.store.models import audit_event, case, human_task, timer, workflow_state, workflow_task
from tests.conftest import deploy_folder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def start_demo(rt: Runtime) -> cases.CaseView:
    return cases.start_case("demo", rt=rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1")


def ready(rt: Runtime, case_id: int) -> list[tasks.TaskView]:
    return [t for t in tasks.case_tasks(case_id, rt=rt) if t.state == "ready"]


def snapshot(db: Database, case_id: int) -> tuple[object, ...]:
    """Everything a step writes for a case, to prove a refused step changed nothing."""
    with db.read() as conn:
        return (
            conn.execute(select(case.c.version, case.c.status).where(case.c.id == case_id)).one(),
            conn.execute(select(workflow_state.c.body).where(workflow_state.c.case_id == case_id)).scalar(),
            sorted(
                conn.execute(
                    select(workflow_task.c.task_id, workflow_task.c.body).where(
                        workflow_task.c.case_id == case_id
                    )
                ).all()
            ),
            sorted(
                conn.execute(
                    select(human_task.c.id, human_task.c.state, human_task.c.assignee_id).where(
                        human_task.c.case_id == case_id
                    )
                ).all()
            ),
            conn.execute(
                select(func.count()).select_from(audit_event).where(audit_event.c.case_id == case_id)
            ).scalar(),
        )


def test_a_case_runs_from_report_to_closed_and_the_work_lists_follow(rt: Runtime) -> None:
    started = start_demo(rt)
    assert started.status == "open" and started.version == 1
    [handle] = tasks.list_tasks(rt=rt, person_id="gw_g1")
    assert (handle.name, handle.role, handle.org_unit_id, handle.form_key) == (
        "处置",
        "grid_worker",
        "g1",
        "demo/handle",
    )
    assert tasks.list_tasks(rt=rt, person_id="gw_g2") == []  # another grid's worker sees nothing

    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "已清理"}, expected_version=1)
    [verify] = tasks.list_tasks(rt=rt, person_id="community_c1")
    assert (verify.role, verify.org_unit_id, verify.case_version) == ("community", "c1", 2)
    tasks.complete_task(
        verify.id, rt=rt, actor="community_c1", data={"verify_result": "pass"}, expected_version=2
    )

    closed = cases.get_case(started.id, rt=rt)
    assert (closed.status, closed.version) == ("completed", 3)
    assert closed.closed_at == rt.now()
    with rt.db.read() as conn:
        actions = [(e.action, e.actor_id) for e in timeline(conn, started.id)]
    assert actions == [
        ("case.started", "gw_g1"),
        ("task.completed", "gw_g1"),
        ("task.completed", "community_c1"),
    ]


def test_the_workflow_cache_keeps_open_cases_and_lets_closed_ones_go(rt: Runtime) -> None:
    """A closed case takes no more steps: its workflow leaves the cache with its last step, so the
    cache (and each full run of the garbage collector) holds only workflows that may be stepped."""
    started, other = start_demo(rt), start_demo(rt)
    [handle] = ready(rt, started.id)
    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "已清理"})
    assert set(rt.workflows._items) == {started.id, other.id}
    [verify] = ready(rt, started.id)
    tasks.complete_task(verify.id, rt=rt, actor="community_c1", data={"verify_result": "pass"})
    assert cases.get_case(started.id, rt=rt).status == "completed"
    assert set(rt.workflows._items) == {other.id}


def test_every_step_survives_a_restart_with_nothing_kept_in_memory(
    db: Database, clock: FixedClock, rt: Runtime
) -> None:
    started = start_demo(rt)
    for loop in range(3):
        restarted = Runtime(db=Database.for_tests(db.url), clock=clock)  # new caches, new engine
        [handle] = ready(restarted, started.id)
        tasks.complete_task(handle.id, rt=restarted, actor="gw_g1", data={"result": f"第{loop}次"})
        restarted = Runtime(db=Database.for_tests(db.url), clock=clock)
        [verify] = ready(restarted, started.id)
        tasks.complete_task(verify.id, rt=restarted, actor="community_c1", data={"verify_result": "fail"})
    restarted = Runtime(db=Database.for_tests(db.url), clock=clock)
    [handle] = ready(restarted, started.id)
    assert handle.task_spec == "handle"
    assert cases.get_case(started.id, rt=restarted).version == 7


def test_invalid_form_data_gives_field_errors_and_leaves_the_case_unchanged(rt: Runtime) -> None:
    started = start_demo(rt)
    [handle] = ready(rt, started.id)
    before = snapshot(rt.db, started.id)
    with pytest.raises(InvalidInput) as caught:
        tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": 5, "colour": "red"})
    assert caught.value.code == "form.invalid"
    fields = caught.value.details["fields"]
    assert isinstance(fields, dict) and set(fields) == {"result", "colour"}
    with pytest.raises(InvalidInput) as missing:
        tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={})
    assert missing.value.details["fields"] == {"result": "此项必填 (required)"}
    assert snapshot(rt.db, started.id) == before


def test_work_done_before_the_write_lock_is_used_only_while_the_case_stands_still(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a completion runs the workflow on the cached copy before it queues for the write lock
    (``runtime.run_early``); the step adopts that work only if the case is still at the same version."""
    if not rt.db.is_sqlite:
        pytest.skip("PostgreSQL locks only the case row: a step does no workflow work before its lock")
    runs: list[str] = []
    real_complete = spiff.Instance.complete_user_task

    def counted(self: spiff.Instance, task_id: str, data: Mapping[str, object], clock: Clock) -> None:
        runs.append(task_id)
        real_complete(self, task_id, data, clock)

    monkeypatch.setattr(spiff.Instance, "complete_user_task", counted)
    started = start_demo(rt)
    [handle] = ready(rt, started.id)
    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "ok"}, expected_version=1)
    assert runs == [handle.id]  # done once, before the lock, and adopted

    # Someone else moves the case between the early work and the lock: the work is done again.
    [verify] = ready(rt, started.id)
    real_early = runtime.run_early

    def overtaken(own: Runtime, task_id: str, work: Callable[..., None]) -> runtime.Early | None:
        early = real_early(own, task_id, work)
        assert early is not None and early.version == 2
        tasks.claim_task(verify.id, rt=own, actor="community_c1")  # version 3
        return early

    monkeypatch.setattr(tasks, "run_early", overtaken)
    runs.clear()
    tasks.complete_task(verify.id, rt=rt, actor="community_c1", data={"verify_result": "fail"})
    assert runs == [verify.id, verify.id]
    [again] = ready(rt, started.id)
    assert again.task_spec == "handle" and cases.get_case(started.id, rt=rt).version == 4


def test_an_invalid_completion_leaves_no_half_run_workflow_behind(rt: Runtime) -> None:
    """Bad form data is reported by the step; a cached workflow it reached before the lock is dropped,
    so the corrected completion runs on the saved state."""
    started = start_demo(rt)
    [handle] = ready(rt, started.id)
    with pytest.raises(InvalidInput):
        tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": 5})
    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "已清理"}, expected_version=1)
    [verify] = ready(rt, started.id)
    assert verify.task_spec == "verify"
    fresh = Runtime(db=rt.db, clock=rt.clock)  # nothing cached: the saved state itself
    tasks.complete_task(verify.id, rt=fresh, actor="community_c1", data={"verify_result": "pass"})
    assert cases.get_case(started.id, rt=fresh).status == "completed"
    with rt.db.read() as conn:
        completed = [e.after for e in timeline(conn, started.id) if e.action == "task.completed"]
    assert completed[0]["data"] == {"result": "已清理"}  # type: ignore[index]


def test_form_data_is_checked_before_the_write_lock_and_refused_where_the_step_validates(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite, with the case's workflow cached, the form is validated before the write lock (schema
    validation needs no database), once. The step reports the outcome at the point where it validates:
    after the caller's right to act, so an outsider still learns nothing of the form, and with the same
    fields as a validation inside the lock."""
    if not rt.db.is_sqlite:
        pytest.skip("PostgreSQL locks only the case row: a step does no work before its lock")
    checks: list[bool] = []  # whether this process held the write lock at each validation
    real_errors = forms.form_errors

    def watched(schema_text: str, data: Mapping[str, object]) -> dict[str, str]:
        checks.append(rt.db._depth > 0)
        return real_errors(schema_text, data)

    monkeypatch.setattr(forms, "form_errors", watched)
    bad = {"result": 5, "colour": "red"}

    started = start_demo(rt)
    [handle] = ready(rt, started.id)
    with pytest.raises(PermissionDenied) as outsider:
        tasks.complete_task(handle.id, rt=rt, actor="gw_g2", data=bad)
    assert outsider.value.code == "task.not_candidate"
    assert checks == [False]

    other = start_demo(rt)
    [other_handle] = ready(rt, other.id)
    checks.clear()
    with pytest.raises(InvalidInput) as early:
        tasks.complete_task(other_handle.id, rt=rt, actor="gw_g1", data=bad)
    assert checks == [False]  # checked once, before the lock
    checks.clear()
    with pytest.raises(InvalidInput) as locked:  # its cached workflow went with the refusal
        tasks.complete_task(other_handle.id, rt=rt, actor="gw_g1", data=bad)
    assert checks == [True]  # so checked in the step
    assert early.value.code == locked.value.code == "form.invalid"
    assert early.value.details == locked.value.details

    checks.clear()
    tasks.complete_task(other_handle.id, rt=rt, actor="gw_g1", data={"result": "已清理"})
    [verify] = ready(rt, other.id)
    tasks.complete_task(verify.id, rt=rt, actor="community_c1", data={"verify_result": "pass"})
    assert checks == [True, False]  # the first ran on the saved state; the second on the cached copy
    assert cases.get_case(other.id, rt=rt).status == "completed"


def test_completing_a_task_twice_or_with_a_stale_version_is_a_conflict(rt: Runtime) -> None:
    started = start_demo(rt)
    [handle] = ready(rt, started.id)
    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "ok"})
    before = snapshot(rt.db, started.id)
    with pytest.raises(Conflict) as twice:
        tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "ok"})
    assert twice.value.code == "task.already_completed"
    [verify] = ready(rt, started.id)
    with pytest.raises(Conflict) as stale:
        tasks.complete_task(
            verify.id, rt=rt, actor="community_c1", data={"verify_result": "pass"}, expected_version=1
        )
    assert stale.value.code == "case.stale_version"
    assert snapshot(rt.db, started.id) == before


def test_only_candidates_may_act_and_a_claim_keeps_colleagues_out(rt: Runtime) -> None:
    started = start_demo(rt)
    [handle] = ready(rt, started.id)
    with pytest.raises(PermissionDenied) as outsider:
        tasks.complete_task(handle.id, rt=rt, actor="gw_g2", data={"result": "x"})
    assert outsider.value.code == "task.not_candidate"
    tasks.claim_task(handle.id, rt=rt, actor="gw_g1_2")  # the grid's second worker takes it
    assert tasks.list_tasks(rt=rt, person_id="gw_g1") == []
    with pytest.raises(PermissionDenied):
        tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "x"})
    with pytest.raises(Conflict):
        tasks.claim_task(handle.id, rt=rt, actor="gw_g1")
    tasks.unclaim_task(handle.id, rt=rt, actor="gw_g1_2")
    assert [t.id for t in tasks.list_tasks(rt=rt, person_id="gw_g1")] == [handle.id]
    with rt.db.read() as conn:
        assert [e.action for e in timeline(conn, started.id)][-2:] == ["task.claimed", "task.unclaimed"]


def test_two_threads_completing_the_same_task_have_exactly_one_winner(
    rt: Runtime, db: Database, clock: FixedClock
) -> None:
    started = start_demo(rt)
    [handle] = ready(rt, started.id)
    runtimes = [Runtime(db=Database.for_tests(db.url), clock=clock) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(own: Runtime) -> None:
        barrier.wait()
        try:
            tasks.complete_task(handle.id, rt=own, actor="gw_g1", data={"result": "抢"}, expected_version=1)
            outcomes.append("won")
        except Conflict as err:
            outcomes.append(err.code)

    threads = [threading.Thread(target=attempt, args=(own,)) for own in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) in (["case.stale_version", "won"], ["task.already_completed", "won"])
    assert cases.get_case(started.id, rt=rt).version == 2
    assert len(ready(rt, started.id)) == 1


def test_a_long_rework_loop_keeps_running_past_stock_spiffs_depth_limit(rt: Runtime) -> None:
    started = start_demo(rt)
    for _ in range(400):  # stock 3.2.0 stalls after ~333 rounds and claims to be complete
        [handle] = ready(rt, started.id)
        tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "r"})
        [verify] = ready(rt, started.id)
        tasks.complete_task(verify.id, rt=rt, actor="community_c1", data={"verify_result": "fail"})
    assert cases.get_case(started.id, rt=rt).status == "open"
    rt.workflows.clear()  # and it reloads from the database at that depth
    [handle] = ready(rt, started.id)
    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "r"})
    [verify] = ready(rt, started.id)
    tasks.complete_task(verify.id, rt=rt, actor="community_c1", data={"verify_result": "pass"})
    assert cases.get_case(started.id, rt=rt).status == "completed"


@pytest.fixture
def timed(rt: Runtime) -> Runtime:
    deploy_folder(rt, FIXTURES / "timed", FIXTURES / "forms")
    return rt


def start_timed(rt: Runtime) -> cases.CaseView:
    return cases.start_case("timed", rt=rt, actor="gw_g1", title="超时测试", kind="demo", grid_id="g1")


def test_a_boundary_timer_fires_once_when_its_time_comes(timed: Runtime, clock: FixedClock) -> None:
    started = start_timed(timed)
    assert started.next_wake_at == clock.now() + timedelta(hours=2)
    with timed.db.read() as conn:
        assert conn.execute(
            select(timer.c.task_spec).where(timer.c.case_id == started.id)
        ).scalars().all() == ["too_late"]
    assert timers.fire_due(rt=timed).fired == []  # not yet
    clock.advance(timedelta(hours=2, seconds=1))
    assert timers.fire_due(rt=timed).fired == [started.id]
    assert timers.fire_due(rt=timed).fired == []  # idempotent: nothing left to fire
    states = {t.task_spec: t.state for t in tasks.case_tasks(started.id, rt=timed)}
    assert states == {"handle": "cancelled", "escalated": "ready"}
    [escalated] = ready(timed, started.id)
    assert (escalated.role, escalated.org_unit_id) == ("community", "c1")
    assert cases.get_case(started.id, rt=timed).next_wake_at is None


def test_a_missing_gateway_variable_is_named_not_a_python_name_error(timed: Runtime) -> None:
    started = start_timed(timed)
    [handle] = ready(timed, started.id)
    before = snapshot(timed.db, started.id)
    with pytest.raises(InvalidInput) as caught:
        tasks.complete_task(handle.id, rt=timed, actor="gw_g1", data={"note": "没有选择方式"})
    assert caught.value.code == "gateway.missing_variable"
    assert caught.value.details["variable"] == "mode"
    assert caught.value.details["element_id"] == "route"
    assert snapshot(timed.db, started.id) == before


def test_a_runaway_script_is_stopped_and_the_case_is_unchanged(timed: Runtime) -> None:
    started = start_timed(timed)
    [handle] = ready(timed, started.id)
    before = snapshot(timed.db, started.id)
    with pytest.raises(ScriptError) as caught:
        tasks.complete_task(handle.id, rt=timed, actor="gw_g1", data={"mode": "loop"})
    assert caught.value.code == "script.budget_exceeded"
    assert caught.value.details["element_id"] == "loop_forever"
    assert snapshot(timed.db, started.id) == before
    tasks.complete_task(handle.id, rt=timed, actor="gw_g1", data={"mode": "done"})  # still usable
    assert cases.get_case(started.id, rt=timed).status == "completed"


def test_a_failing_case_is_marked_an_incident_and_the_others_still_fire(
    timed: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = start_timed(timed), start_timed(timed)
    clock.advance(timedelta(hours=3))
    real = timers.fire_case

    def flaky(case_id: int, *, rt: Runtime) -> bool:
        if case_id == first.id:
            raise Conflict("case.engine_error", "boom")
        return real(case_id, rt=rt)

    monkeypatch.setattr(timers, "fire_case", flaky)
    report = timers.fire_due(rt=timed)
    assert report.fired == [second.id] and report.failed == {first.id: "case.engine_error"}
    assert cases.get_case(first.id, rt=timed).status == "incident"


def test_new_cases_start_on_the_latest_version_and_running_cases_stay_pinned(
    timed: Runtime, tmp_path: Path
) -> None:
    running = start_timed(timed)
    changed = tmp_path / "timed"
    changed.mkdir()
    text = (FIXTURES / "timed" / "timed.bpmn").read_text().replace("PT2H", "PT4H")
    (changed / "timed.bpmn").write_text(text)
    deploy_folder(timed, changed, FIXTURES / "forms")
    newer = start_timed(timed)
    assert newer.spec_version_id > running.spec_version_id
    assert (newer.next_wake_at - newer.created_at) == timedelta(hours=4)  # type: ignore[operator]
    assert (running.next_wake_at - running.created_at) == timedelta(hours=2)  # type: ignore[operator]
    [handle] = ready(timed, running.id)
    tasks.complete_task(handle.id, rt=timed, actor="gw_g1", data={"mode": "done"})
    assert cases.get_case(running.id, rt=timed).spec_version_id == running.spec_version_id


def test_joint_handling_assigns_each_department_and_a_reload_never_doubles_the_collection(
    rt: Runtime,
) -> None:
    deploy_folder(rt, FIXTURES / "joint", FIXTURES / "forms")
    departments = ["dept_urban", "dept_fire", "dept_police"]
    started = cases.start_case(
        "joint",
        rt=rt,
        actor="cc_1",
        title="联合执法",
        kind="demo",
        grid_id="g1",
        variables={"departments": departments},
    )
    handles = ready(rt, started.id)
    assert sorted(t.org_unit_id or "" for t in handles) == sorted(departments)
    for task in handles:
        rt.workflows.clear()  # every instance completes on a freshly loaded workflow and spec (a restart)
        rt.specs = SpecCache()
        person = {"dept_urban": "dept_urban_1", "dept_fire": "dept_fire_1", "dept_police": "dept_police_1"}
        tasks.complete_task(task.id, rt=rt, actor=person[str(task.org_unit_id)], data={"note": "到场"})
    assert cases.get_case(started.id, rt=rt).status == "completed"
    with rt.db.read() as conn:
        from engine.runtime import load_instance

        entry = rt.specs.get(conn, started.spec_version_id)
        rt.workflows.clear()
        assert load_instance(rt, conn, entry, started.id).data()["departments"] == departments


def test_claiming_or_unclaiming_a_completed_task_says_it_is_completed(rt: Runtime) -> None:
    started = start_demo(rt)
    [handle] = ready(rt, started.id)
    tasks.claim_task(handle.id, rt=rt, actor="gw_g1")
    tasks.complete_task(handle.id, rt=rt, actor="gw_g1", data={"result": "已清理"})
    before = snapshot(rt.db, started.id)
    for act in (tasks.claim_task, tasks.unclaim_task):
        with pytest.raises(Conflict) as done:
            act(handle.id, rt=rt, actor="gw_g1")
        assert done.value.code == "task.already_completed"
    assert snapshot(rt.db, started.id) == before


def test_two_intakes_racing_with_one_idempotency_key_open_one_case(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL nothing keeps two retries of one submission apart until the second inserts the same
    key: both have looked for it and found nothing (here held at that point until both are there). The
    second's insert then fails on the key, and it answers with the first one's case. On SQLite the
    single writer runs them one after the other."""
    with rt.db.read() as conn:
        who = access.principal(conn, "gw_g1")
    intake = casework.Intake(
        process_id="demo", title="楼道堆物", grid_id="g1", channel="grid_patrol", kind="demo"
    )
    if not rt.db.is_sqlite:
        both_looked = threading.Barrier(2, timeout=10)
        checks = casework._check_intake

        def check_then_wait(conn: Connection, who: access.Principal, intake: casework.Intake) -> None:
            checks(conn, who, intake)
            both_looked.wait()

        monkeypatch.setattr(casework, "_check_intake", check_then_wait)
    answers: list[tuple[cases.CaseView, bool]] = []
    failures: list[BaseException] = []

    def submit() -> None:
        try:
            answers.append(casework.report_case(who, intake, rt=rt, idempotency_key="app-7f3a-0001"))
        except BaseException as err:  # reported below, in the test's thread
            failures.append(err)

    submitters = [threading.Thread(target=submit) for _ in range(2)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join(30)
    assert not failures
    assert len({view.id for view, _ in answers}) == 1
    assert sorted(replayed for _, replayed in answers) == [False, True]
    with rt.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(case)).scalar() == 1
