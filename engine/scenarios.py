"""Scenarios: a process path written down as data (``workflows/<process>/scenarios/*.json``) and run
against a fresh database with the demo organisation, saving and reloading the case after every step.

A scenario file::

    {
      "name": "退单后重新派单",
      "process": "work_order",
      "at": "2025-03-03T09:00:00+08:00",                 # optional start instant
      "cases": [{…like start…}],                          # optional cases opened first (e.g. 并单)
      "start": {"as": "gw_g1", "title": "…", "grid": "g1", "category": "noise",
                "channel": "hotline_12345", "data": {…}, "variables": {…}},
      "steps": [
        {"complete": "accept", "as": "community_c1", "data": {…}},
        {"complete": "handle", "as": "dept_urban_1", "data": {…}, "error": "form.invalid"},
        {"claim": "claim", "as": "dept_urban_1"},
        {"return": "claim", "as": "dept_urban_1", "reason": "…", "reason_code": "not_responsible"},
        {"request_extension": "handle", "as": "dept_urban_1", "days": 3, "reason": "…"},
        {"decide_extension": "extension_decision", "as": "street_s1", "approve": true, "days": 3,
         "comment": "…"},
        {"reassign": "claim", "as": "street_s1", "unit": "dept_market", "to": "dept_market_1",
         "reason": "…"},
        {"advance": "PT3H"},  {"fire_due": true},
        {"message": "sla_overdue", "as": "system"},
        {"expect": {"ready": ["handle"], "status": "open", "outcome": "resolved",
                    "tasks": {"claim": "completed"}, "assigned": {"handle": "dept_urban"},
                    "assignee": {"handle": "dept_urban_1"},
                    "audit": ["task.completed"], "data": {"returns": 1},
                    "linked": {"process": "work_order", "ready": ["accept"]},
                    "clocks": {"handle": {"warn_pct": 50, "supervise_after": "4WH", "status": "warning",
                                          "sources": {"warn_at": "variable:sla_warn_at"}}}}}
      ]
    }

``complete``/``claim`` and the task actions (``return``, ``request_extension``, ``decide_extension``,
``reassign``: ``engine.actions``, ``engine.reassignment``) name a task by its BPMN id; with several ready
(multi-instance) the first the actor may act on is taken. ``reassign`` moves it to the unit ``unit``
and/or the person ``to``; ``assignee`` expects the ready tasks' claimed person (``null``: unclaimed).
``error`` expects the step to be refused with that code and the case to be unchanged. ``clocks`` checks
the latest SLA clock of each named task (``sources``: where its budget and thresholds came from,
compared key by key). Everything here is engine-level; the CLI and the tests only call ``run_file``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from engine import cases, events, orgs, sla_views, specs, tasks, timers
from engine.calendar import Duration, DurationUnit, parse_duration
from engine.clock import FixedClock
from engine.demo_org import load_demo_org
from engine.errors import EngineError, InvalidInput
from engine.runtime import Runtime
from engine.store.db import Database
from engine.store.models import audit_event, case

DEFAULT_START = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
PROCESSES_NEEDED = {"grid_event": ("work_order",)}  # a process whose messages open cases of another


class ScenarioFailed(Exception):
    """A scenario's expectation did not hold (or a step failed unexpectedly); says which step."""


@dataclass
class Outcome:
    name: str
    file: str
    passed: bool
    steps: int
    message: str = ""
    case_number: str | None = None
    log: list[str] = field(default_factory=list)


def discover(workflows_dir: Path) -> list[Path]:
    return sorted(workflows_dir.glob("*/scenarios/*.json"))


def run_file(
    path: Path,
    *,
    workflows_dir: Path,
    forms_dir: Path,
    database_url: str | None = None,
) -> Outcome:
    """Run one scenario on a fresh database (a temporary SQLite file unless a URL is given)."""
    try:
        scenario = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        return Outcome(path.stem, str(path), False, 0, f"not valid JSON: {err}")
    name = str(scenario.get("name") or path.stem)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(database_url or f"sqlite:///{Path(tmp) / 'scenario.db'}")
        try:
            db.migrate()
            runner = _Runner(db, scenario, workflows_dir, forms_dir)
            try:
                runner.run()
            except (ScenarioFailed, EngineError) as err:
                return Outcome(
                    name,
                    str(path),
                    False,
                    runner.position,
                    f"step {runner.position}: {err}",
                    runner.case_number,
                    runner.log,
                )
            return Outcome(name, str(path), True, runner.position, "", runner.case_number, runner.log)
        finally:
            db.dispose()


class _Runner:
    def __init__(self, db: Database, scenario: Mapping[str, object], workflows_dir: Path, forms_dir: Path):
        self.scenario = scenario
        start = scenario.get("at")
        self.clock = FixedClock(datetime.fromisoformat(str(start)) if start else DEFAULT_START)
        self.rt = Runtime(db=db, clock=self.clock)
        self.workflows_dir = workflows_dir
        self.forms_dir = forms_dir
        self.position = 0
        self.case_id: int | None = None
        self.case_number: str | None = None
        self.log: list[str] = []

    # -- setting up
    def run(self) -> None:
        process = str(self.scenario["process"])
        with self.rt.db.write() as conn:
            load_demo_org(conn, now=self.clock.now(), password_for=lambda _p: "scenario")
        for needed in (process, *PROCESSES_NEEDED.get(process, ())):
            self._deploy(needed)
        earlier = self.scenario.get("cases") or []
        if not isinstance(earlier, list):
            raise ScenarioFailed("'cases' must be a list of cases to open before the scenario's own")
        for other in earlier:
            self._start(_mapping(other, "cases[]"), own=False)
        self._start(_mapping(self.scenario.get("start"), "start"))
        steps = self.scenario.get("steps") or []
        if not isinstance(steps, list):
            raise ScenarioFailed("'steps' must be a list")
        for self.position, raw in enumerate(steps, start=1):
            self._step(_mapping(raw, f"step {self.position}"))
            self.rt.workflows.clear()  # every step is saved, and the next one reloads it from the database
            self.rt.specs = type(self.rt.specs)()

    def _deploy(self, process: str) -> None:
        folder = self.workflows_dir / process
        validation = specs.validate(
            specs.read_sources([folder]), forms_dir=self.forms_dir, sandbox=self.rt.sandbox
        )
        with self.rt.db.write() as conn:
            specs.deploy(conn, validation, actor="owner_1", now=self.clock.now())

    def _start(self, start: Mapping[str, object], *, own: bool = True) -> None:
        view = cases.start_case(
            str(self.scenario["process"]),
            rt=self.rt,
            actor=str(start.get("as", "gw_g1")),
            title=str(start.get("title", "场景测试")),
            kind=str(start.get("kind") or _kind_of(str(self.scenario["process"]))),
            grid_id=_opt(start.get("grid")),
            category=_opt(start.get("category")),
            channel=_opt(start.get("channel")),
            data=_mapping(start.get("data") or {}, "start.data"),
            variables=_mapping(start.get("variables") or {}, "start.variables"),
        )
        if own:
            self.case_id, self.case_number = view.id, view.number
        self.log.append(f"started {view.number}" + ("" if own else " (an earlier case)"))

    # -- steps
    def _step(self, step: Mapping[str, object]) -> None:
        expected_error = step.get("error")
        actions: dict[str, Callable[[Mapping[str, object]], None]] = {
            "complete": self._complete,
            "claim": self._claim,
            "return": self._return,
            "request_extension": self._request_extension,
            "decide_extension": self._decide_extension,
            "reassign": self._reassign,
            "advance": self._advance,
            "fire_due": self._fire_due,
            "message": self._message,
            "expect": self._expect,
        }
        kind = next((k for k in actions if k in step), None)
        if kind is None:
            raise ScenarioFailed(f"unknown step {sorted(step)}; one of {sorted(actions)}")
        if expected_error is None:
            actions[kind](step)
            return
        before = self._fingerprint()
        try:
            actions[kind](step)
        except EngineError as err:
            if err.code != expected_error:
                raise ScenarioFailed(
                    f"expected error {expected_error}, got {err.code}: {err.message}"
                ) from None
            if self._fingerprint() != before:
                raise ScenarioFailed(f"refused step ({err.code}) changed the case") from None
            self.log.append(f"refused as expected: {err.code}")
            return
        raise ScenarioFailed(f"expected error {expected_error}, but the step succeeded")

    def _task_for(self, spec_name: str, actor: str, case_id: int | None = None) -> tasks.TaskView:
        ready = [t for t in tasks.case_tasks(case_id or self._case_id(), rt=self.rt) if t.state == "ready"]
        matching = [t for t in ready if t.task_spec == spec_name]
        if not matching:
            raise ScenarioFailed(f"no ready task '{spec_name}'; ready: {sorted(t.task_spec for t in ready)}")
        with self.rt.db.read() as conn:
            for task in matching:
                if task.assignee_id == actor or (
                    task.role
                    and task.org_unit_id
                    and orgs.may_act(conn, person_id=actor, role=task.role, org_unit_id=task.org_unit_id)
                ):
                    return task
        return matching[0]  # let the engine refuse it with its own error

    def _complete(self, step: Mapping[str, object]) -> None:
        actor = str(step.get("as", ""))
        task = self._task_for(str(step["complete"]), actor, self._target(step))
        data = _mapping(step.get("data") or {}, "data")
        tasks.complete_task(task.id, rt=self.rt, actor=actor, data=data, expected_version=task.case_version)
        self.log.append(f"{actor} completed {task.task_spec}")

    def _claim(self, step: Mapping[str, object]) -> None:
        actor = str(step.get("as", ""))
        task = self._task_for(str(step["claim"]), actor, self._target(step))
        tasks.claim_task(task.id, rt=self.rt, actor=actor)
        self.log.append(f"{actor} claimed {task.task_spec}")

    def _return(self, step: Mapping[str, object]) -> None:
        actor = str(step.get("as", ""))
        task = self._task_for(str(step["return"]), actor, self._target(step))
        tasks.return_task(
            task.id,
            rt=self.rt,
            actor=actor,
            reason=str(step.get("reason", "")),
            reason_code=_opt(step.get("reason_code")),
            expected_version=task.case_version,
        )
        self.log.append(f"{actor} returned {task.task_spec}")

    def _request_extension(self, step: Mapping[str, object]) -> None:
        actor = str(step.get("as", ""))
        task = self._task_for(str(step["request_extension"]), actor, self._target(step))
        tasks.request_extension(
            task.id,
            rt=self.rt,
            actor=actor,
            days=_int(step.get("days")),
            reason=str(step.get("reason", "")),
            expected_version=task.case_version,
        )
        self.log.append(f"{actor} asked to extend {task.task_spec}")

    def _decide_extension(self, step: Mapping[str, object]) -> None:
        actor = str(step.get("as", ""))
        task = self._task_for(str(step["decide_extension"]), actor, self._target(step))
        days = step.get("days")
        tasks.decide_extension(
            task.id,
            rt=self.rt,
            actor=actor,
            approve=step.get("approve") is True,
            days=None if days is None else _int(days),
            comment=_opt(step.get("comment")),
            expected_version=task.case_version,
        )
        self.log.append(f"{actor} decided {task.task_spec}")

    def _reassign(self, step: Mapping[str, object]) -> None:
        actor = str(step.get("as", ""))
        task = self._task_for(str(step["reassign"]), actor, self._target(step))
        moved = tasks.reassign_task(
            task.id,
            rt=self.rt,
            actor=actor,
            reason=str(step.get("reason", "")),
            assignee_id=_opt(step.get("to")),
            org_unit_id=_opt(step.get("unit")),
            expected_version=task.case_version,
        )
        self.log.append(f"{actor} reassigned {task.task_spec} to {moved.assignee_id or moved.org_unit_id}")

    def _advance(self, step: Mapping[str, object]) -> None:
        duration = parse_duration(str(step["advance"]))
        if duration.unit != DurationUnit.CALENDAR:
            raise ScenarioFailed("'advance' takes calendar time (PT3H, P2D), not working time")
        self.clock.set(_add_calendar(self.clock.now(), duration))
        self.log.append(f"clock → {self.clock.now().isoformat()}")

    def _fire_due(self, step: Mapping[str, object]) -> None:
        report = timers.fire_due(rt=self.rt)
        if report.failed:
            raise ScenarioFailed(f"timers failed: {report.failed}")
        self.log.append(f"fired {len(report.fired)}")

    def _message(self, step: Mapping[str, object]) -> None:
        caught = events.deliver_message(
            self._target(step) or self._case_id(),
            str(step["message"]),
            rt=self.rt,
            actor=str(step.get("as", "system")),
            payload=_mapping(step.get("payload") or {}, "payload"),
        )
        if not caught and step.get("caught", True):
            raise ScenarioFailed(f"message {step['message']} was not caught by the case")
        self.log.append(f"message {step['message']}")

    # -- expectations
    def _expect(self, step: Mapping[str, object]) -> None:
        expect = _mapping(step["expect"], "expect")
        linked = expect.get("linked")
        self._check(self._case_id(), expect)
        if linked is not None:
            self._check(self._linked_case_id(), _mapping(linked, "linked"))

    def _check(self, case_id: int, expect: Mapping[str, object]) -> None:
        view = cases.get_case(case_id, rt=self.rt)
        all_tasks = tasks.case_tasks(case_id, rt=self.rt)
        ready = sorted(t.task_spec for t in all_tasks if t.state == "ready")
        problems: list[str] = []
        if "ready" in expect and ready != sorted(_list(expect["ready"])):
            problems.append(f"ready tasks {ready}, expected {sorted(_list(expect['ready']))}")
        for name in ("status", "outcome", "category", "priority", "process"):
            if name in expect:
                actual = view.process_id if name == "process" else getattr(view, name)
                if actual != expect[name]:
                    problems.append(f"{name} is {actual!r}, expected {expect[name]!r}")
        for spec_name, state in _mapping(expect.get("tasks") or {}, "tasks").items():
            states = [t.state for t in all_tasks if t.task_spec == spec_name]
            if not states or states[-1] != state:
                problems.append(f"task {spec_name} is {states[-1] if states else 'absent'}, expected {state}")
        for spec_name, unit in _mapping(expect.get("assigned") or {}, "assigned").items():
            units = sorted(
                {str(t.org_unit_id) for t in all_tasks if t.task_spec == spec_name and t.state == "ready"}
            )
            wanted = sorted(_list(unit)) if isinstance(unit, list) else [str(unit)]
            if units != wanted:
                problems.append(f"{spec_name} assigned to {units}, expected {wanted}")
        for spec_name, person in _mapping(expect.get("assignee") or {}, "assignee").items():
            people = sorted(
                {str(t.assignee_id) for t in all_tasks if t.task_spec == spec_name and t.state == "ready"}
            )
            if people != [str(person)]:
                problems.append(f"{spec_name} claimed by {people}, expected {person}")
        if "audit" in expect:
            with self.rt.db.read() as conn:
                actions = conn.execute(
                    select(audit_event.c.action).where(audit_event.c.case_id == case_id)
                ).scalars()
                seen = set(actions)
            missing = [a for a in _list(expect["audit"]) if a not in seen]
            if missing:
                problems.append(f"audit events missing: {missing}")
        if "data" in expect:
            problems.extend(self._check_data(case_id, _mapping(expect["data"], "data")))
        if "clocks" in expect:
            problems.extend(
                _check_clocks(
                    sla_views.case_clocks(case_id, rt=self.rt), _mapping(expect["clocks"], "clocks")
                )
            )
        if "count" in expect:
            counts = _mapping(expect["count"], "count")
            for spec_name, number in counts.items():
                actual = sum(1 for t in all_tasks if t.task_spec == spec_name and t.state == "completed")
                if actual != number:
                    problems.append(f"{spec_name} completed {actual} time(s), expected {number}")
        if problems:
            raise ScenarioFailed("; ".join(problems))

    def _check_data(self, case_id: int, wanted: Mapping[str, object]) -> list[str]:
        with self.rt.db.read() as conn:
            row = conn.execute(select(case).where(case.c.id == case_id)).one()
            entry = self.rt.specs.get(conn, row.spec_version_id)
            from engine.runtime import load_instance

            data = load_instance(self.rt, conn, entry, case_id).data()
        return [
            f"variable {k} is {data.get(k)!r}, expected {v!r}" for k, v in wanted.items() if data.get(k) != v
        ]

    # -- helpers
    def _case_id(self) -> int:
        if self.case_id is None:
            raise ScenarioFailed("no case started")
        return self.case_id

    def _linked_case_id(self) -> int:
        with self.rt.db.read() as conn:
            linked = (
                conn.execute(
                    select(case.c.id).where(
                        (case.c.related_case_id == self._case_id())
                        | (
                            case.c.id
                            == select(case.c.related_case_id)
                            .where(case.c.id == self._case_id())
                            .scalar_subquery()
                        )
                    )
                )
                .scalars()
                .first()
            )
        if linked is None:
            raise ScenarioFailed("the case has no linked case")
        return int(linked)

    def _target(self, step: Mapping[str, object]) -> int | None:
        return self._linked_case_id() if step.get("on") == "linked" else None

    def _fingerprint(self) -> tuple[object, ...]:
        with self.rt.db.read() as conn:
            row = conn.execute(
                select(case.c.version, case.c.status).where(case.c.id == self._case_id())
            ).one()
            count = len(
                conn.execute(select(audit_event.c.id).where(audit_event.c.case_id == self._case_id())).all()
            )
        return (row.version, row.status, count)


_CLOCK_FIELDS = ("budget", "status", "state", "warn_pct", "supervise_after", "escalate_after")


def _check_clocks(clocks: list[sla_views.ClockView], wanted: Mapping[str, object]) -> list[str]:
    """``{"handle": {"warn_pct": 50, "sources": {"warn_at": "variable:sla_warn_at"}}}`` against the latest
    clock of each task."""
    problems: list[str] = []
    for spec_name, raw in wanted.items():
        expected = _mapping(raw, f"clocks.{spec_name}")
        found = [c for c in clocks if c.task_spec == spec_name]
        if not found:
            problems.append(f"no SLA clock for {spec_name}")
            continue
        clock = found[-1]
        for name, value in expected.items():
            if name == "sources":
                recorded = clock.policy_sources or {}
                for key, source in _mapping(value, f"clocks.{spec_name}.sources").items():
                    if recorded.get(key) != source:
                        problems.append(
                            f"clock {spec_name}: {key} came from {recorded.get(key)!r}, expected {source!r}"
                        )
            elif name in _CLOCK_FIELDS:
                if getattr(clock, name) != value:
                    problems.append(
                        f"clock {spec_name}: {name} is {getattr(clock, name)!r}, expected {value!r}"
                    )
            else:
                raise ScenarioFailed(
                    f"clocks.{spec_name}: unknown field {name!r}; one of {[*_CLOCK_FIELDS, 'sources']}"
                )
    return problems


def _add_calendar(instant: datetime, duration: Duration) -> datetime:
    return instant + timedelta(days=duration.days) + duration.clock


def _kind_of(process: str) -> str:
    return {"mediation": "dispute"}.get(process, process if process in cases.KINDS else "work_order")


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioFailed(f"expected a whole number, got {value!r}")
    return value


def _list(value: object) -> list[str]:
    if not isinstance(value, list):
        raise ScenarioFailed(f"expected a list, got {value!r}")
    return [str(v) for v in value]


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise InvalidInput("scenario.invalid", f"{where} must be a JSON object", {"where": where})
    return value
