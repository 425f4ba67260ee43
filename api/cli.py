"""The ``gridcase`` command line: serve, demo, validate, deploy, case/task actions, timers, calendar.

It sits beside the Flask app as an outer layer (it starts the server), so it lives in ``api/``; the
engine never imports it. Every ``EngineError`` becomes ``error: <code>: <message>`` (one line per
problem for a refused spec) and exit code 1 — never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click

from api.config import Config
from api.http import REFUSED, unstorable
from engine import cases, sla_views, specs, tasks, timers
from engine.calendar import WorkCalendar, WorkingHours, explain
from engine.clock import SHANGHAI
from engine.demo_org import load_demo_org
from engine.errors import EngineError, InvalidInput, SpecError
from engine.runtime import Runtime
from engine.store.db import Database, resolve_url


class Ctx:
    def __init__(self, db: str | None) -> None:
        self.db_option = db
        self._rt: Runtime | None = None

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            db = Database(resolve_url(self.db_option))
            db.migrate()
            self._rt = Runtime(db=db)
        return self._rt


pass_ctx = click.make_pass_decorator(Ctx)


@contextmanager
def reported() -> Iterator[None]:
    """Turn domain errors into plain lines and exit code 1."""
    try:
        yield
    except SpecError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        click.echo(f"error: {err.code}: {err.message}", err=True)
        sys.exit(1)
    except EngineError as err:
        click.echo(f"error: {err.code}: {err.message}", err=True)
        fields = err.details.get("fields")
        if isinstance(fields, dict):
            for name, message in fields.items():
                click.echo(f"  {name}: {message}", err=True)
        sys.exit(1)


class _Commands(click.Group):
    """The command group, refusing arguments that are not text before any command runs: bytes that are
    not UTF-8 reach Python as half surrogate pairs, which no database can store (the step failed with a
    traceback)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for n, arg in enumerate(args, 1):
            if unstorable(arg) is not None:
                click.echo(
                    f"error: cli.invalid_unicode: argument {n} is not UTF-8 text"
                    " (check the terminal's or the script's encoding)",
                    err=True,
                )
                ctx.exit(1)
        return super().parse_args(ctx, args)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="GRIDCASE_DB",
    help="SQLite file or database URL (default: DATABASE_URL, then "
    "the SQLite file under your data directory).",
)
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """gridcase — BPMN case management for community grid governance (网格化管理)."""
    ctx.obj = Ctx(db)


# --- setting up -----------------------------------------------------------------------------------


def _process_folders(workflows: Path) -> list[Path]:
    """``workflows/<process>/`` folders holding BPMN (or the path itself when it is one process)."""
    if not workflows.is_dir():
        return [workflows]
    folders = sorted(p for p in workflows.iterdir() if p.is_dir() and any(p.glob("*.bpmn")))
    return folders or [workflows]


def _deploy_dir(rt: Runtime, workflows: Path, forms: Path | None, actor: str | None) -> list[str]:
    """Validate every process first; deploy them all (one transaction) only if none has an error."""
    validations = []
    problems = []
    for folder in _process_folders(workflows):
        sources = specs.read_sources([folder])
        if sources:
            validation = specs.validate(sources, forms_dir=forms, sandbox=rt.sandbox)
            validations.append(validation)
            problems.extend(validation.problems)
    if any(p.severity == "error" for p in problems):
        raise SpecError(problems)
    lines = []
    with rt.db.write() as conn:
        for validation in validations:
            for version in specs.deploy(conn, validation, actor=actor, now=rt.now()):
                state = "deployed" if version.created else "unchanged"
                lines.append(
                    f"{version.process_id}: version {version.id} {state} ({version.content_hash[:12]})"
                )
    return lines


def ensure_demo(rt: Runtime, config: Config, echo: Callable[[str], None]) -> None:
    """Load the demo organisation (printing passwords once) and deploy the shipped processes."""
    with rt.db.write() as conn:
        people = load_demo_org(conn, now=rt.now())
    if people:
        echo("Demo organisation loaded. Logins and passwords (shown once):")
        for login, name, roles, password in people:
            echo(f"  {login:<18} {password:<14} {name}  {roles}")
    for line in _deploy_dir(rt, config.workflows_dir, config.forms_dir, "system"):
        echo(f"  {line}")


@main.command()
@pass_ctx
def demo(ctx: Ctx) -> None:
    """Load the demo organisation and deploy the shipped processes (idempotent)."""
    with reported():
        ensure_demo(ctx.rt, Config(), click.echo)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--forms", "forms_dir", type=click.Path(path_type=Path), help="forms/ folder (default: beside)."
)
def validate(paths: tuple[Path, ...], forms_dir: Path | None) -> None:
    """Check BPMN/DMN files or folders; print every problem (exit 1 when any is an error)."""
    from engine.sandbox import Sandbox

    with reported():
        sources = specs.read_sources(list(paths))
        if not sources:
            raise InvalidInput(
                "spec.no_files", "no .bpmn or .dmn files found", {"paths": [str(p) for p in paths]}
            )
        result = specs.validate(
            sources, forms_dir=forms_dir or specs.default_forms_dir(list(paths)), sandbox=Sandbox()
        )
        for problem in result.problems:
            click.echo(str(problem), err=problem.severity == "error")
        if not result.ok:
            errors = sum(p.severity == "error" for p in result.problems)
            click.echo(f"error: spec.invalid: {errors} problem(s) found", err=True)
            sys.exit(1)
        click.echo(f"ok: {len(sources)} file(s), processes: {', '.join(sorted(result.processes)) or 'none'}")


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--forms", "forms_dir", type=click.Path(path_type=Path))
@click.option("--as", "actor", default=None, help="who deploys (recorded).")
@pass_ctx
def deploy(ctx: Ctx, path: Path, forms_dir: Path | None, actor: str | None) -> None:
    """Validate and deploy a workflows folder (one spec version per changed process)."""
    with reported():
        for line in _deploy_dir(ctx.rt, path, forms_dir or specs.default_forms_dir([path]), actor):
            click.echo(line)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--no-demo", is_flag=True, help="do not load the demo organisation on first start.")
@pass_ctx
def serve(ctx: Ctx, host: str, port: int, no_demo: bool) -> None:
    """Run the web app with the embedded timer scheduler (Ctrl-C stops both)."""
    from werkzeug.serving import make_server

    from api.app import create_app

    config = Config(database_url=resolve_url(ctx.db_option), start_scheduler=True)
    rt = ctx.rt
    with reported():
        if not no_demo:
            ensure_demo(rt, config, click.echo)
    app = create_app(config, runtime=rt)
    server = make_server(host, port, app, threaded=True)

    def stop(signum: int, _frame: object) -> None:
        click.echo(f"stopping ({signal.Signals(signum).name})…")
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)  # Ctrl-C, or a service manager's stop
    click.echo(
        f"gridcase serving on http://{host}:{server.server_port}/  (database: {rt.db.dialect}; Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        scheduler = app.extensions.get("gridcase.scheduler")
        if scheduler is not None:
            scheduler.stop()
        rt.db.dispose()
        click.echo("stopped")


# --- cases and tasks ------------------------------------------------------------------------------


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _strict_json(text: str, what: str) -> object:
    """``json.loads`` without Python's ``NaN``/``Infinity``: JSON has no such numbers. A value no store
    can hold (``"\\u0000"``, half a surrogate pair) is refused (InvalidInput) with the API's reasons."""
    value = json.loads(text, parse_constant=_no_constant)
    found = unstorable(value)
    if found is not None:
        code, message = REFUSED[found]
        raise InvalidInput(f"cli.{code}", f"{what}: {message}", {})
    return value


def _parse_vars(pairs: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise InvalidInput("cli.bad_variable", f"--var takes NAME=VALUE, got '{pair}'", {"value": pair})
        try:
            out[key] = _strict_json(value, f"--var {key}")
        except ValueError:
            out[key] = value
    return out


def _parse_json(text: str) -> dict[str, object]:
    try:
        data = _strict_json(text, "--data")
    except ValueError as err:
        raise InvalidInput("cli.bad_json", f"--data is not valid JSON: {err}", {}) from None
    if not isinstance(data, dict):
        raise InvalidInput("cli.bad_json", "--data must be a JSON object", {})
    return data


@main.group("case")
def case_group() -> None:
    """Start and inspect cases."""


@case_group.command("start")
@click.argument("process_id")
@click.option("--title", required=True)
@click.option("--grid", "grid_id", help="grid id (e.g. g1).")
@click.option("--kind", default=None, help="work_order, dispute, grid_event or demo (default: from process).")
@click.option("--category")
@click.option("--channel")
@click.option("--var", "variables", multiple=True, help="routing variable NAME=VALUE (JSON values allowed).")
@click.option("--as", "actor", required=True, help="who reports the case.")
@pass_ctx
def case_start(
    ctx: Ctx,
    process_id: str,
    title: str,
    grid_id: str | None,
    kind: str | None,
    category: str | None,
    channel: str | None,
    variables: tuple[str, ...],
    actor: str,
) -> None:
    """Start a case on the newest deployed version of PROCESS_ID."""
    with reported():
        view = cases.start_case(
            process_id,
            rt=ctx.rt,
            actor=actor,
            title=title,
            kind=kind or _default_kind(process_id),
            grid_id=grid_id,
            category=category,
            channel=channel,
            variables=_parse_vars(variables),
        )
        click.echo(f"case {view.number} (id {view.id}) started, version {view.version}")
        _echo_open_tasks(ctx.rt, view.id)


def _default_kind(process_id: str) -> str:
    return {"mediation": "dispute"}.get(process_id, process_id if process_id in cases.KINDS else "work_order")


def _echo_open_tasks(rt: Runtime, case_id: int) -> None:
    for task in tasks.case_tasks(case_id, rt=rt):
        if task.state == "ready":
            who = task.assignee_id or f"{task.role}@{task.org_unit_id}"
            click.echo(f"  task {task.id}  {task.name} ({task.task_spec})  for {who}  form {task.form_key}")


@case_group.command("show")
@click.argument("reference")
@pass_ctx
def case_show(ctx: Ctx, reference: str) -> None:
    """Show a case (by id or number): state, tasks, timeline."""
    from engine.audit import timeline

    with reported():
        view = cases.find_case(reference, rt=ctx.rt)
        click.echo(
            f"{view.number}  {view.title}  [{view.status}]  version {view.version}  "
            f"process {view.process_id} v{view.spec_version_id}  grid {view.grid_id}"
        )
        for task in tasks.case_tasks(view.id, rt=ctx.rt):
            click.echo(
                f"  {task.state:<10} {task.name} ({task.task_spec})  {task.id}  "
                f"{task.role}@{task.org_unit_id}  {task.completed_by or ''}"
            )
        with ctx.rt.db.read() as conn:
            for event in timeline(conn, view.id):
                click.echo(
                    f"  {event.at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}  {event.actor_id or '-':<14} "
                    f"{event.action}"
                )


def _case_action(name: str, doc: str) -> None:
    @case_group.command(name)
    @click.argument("reference")
    @click.option("--as", "actor", required=True)
    @click.option("--reason", "--note", "text", default="", help="reason (挂起) or note (催办/督办).")
    @pass_ctx
    def command(ctx: Ctx, reference: str, actor: str, text: str) -> None:
        from engine import escalation, sla

        with reported():
            view = cases.find_case(reference, rt=ctx.rt)
            if name == "suspend":
                count = sla.suspend_case(view.id, rt=ctx.rt, actor=actor, reason=text)
                click.echo(f"{view.number} suspended; {count} clock(s) paused")
            elif name == "resume":
                count = sla.resume_case(view.id, rt=ctx.rt, actor=actor)
                click.echo(f"{view.number} resumed; {count} clock(s) running again")
            elif name == "remind":
                escalation.remind(view.id, rt=ctx.rt, actor=actor, note=text)
                click.echo(f"reminder sent for {view.number}")
            else:
                escalation.supervise(view.id, rt=ctx.rt, actor=actor, note=text)
                click.echo(f"{view.number} under supervision (督办)")

    command.__doc__ = doc


_case_action("suspend", "挂起: pause every SLA clock of the case (needs --reason).")
_case_action("resume", "Resume a suspended case; deadlines move by the paused working time.")
_case_action("remind", "催办: remind the current handlers (needs --note).")
_case_action("supervise", "督办: supervise the case — raises priority, notifies up the chain (needs --note).")


@case_group.command("clocks")
@click.argument("reference")
@pass_ctx
def case_clocks(ctx: Ctx, reference: str) -> None:
    """The case's SLA clocks, each explained ("why is this red?")."""

    with reported():
        view = cases.find_case(reference, rt=ctx.rt)
        for clock in sla_views.case_clocks(view.id, rt=ctx.rt):
            click.echo(f"[{clock.status}/{clock.state}] {clock.task_spec}")
            for line in sla_views.explain_clock(clock, calendar=ctx.rt.calendar):
                click.echo(f"  {line}")


@main.group("sla")
def sla_group() -> None:
    """Supervisors' views of deadlines."""


@sla_group.command("overdue")
@pass_ctx
def sla_overdue(ctx: Ctx) -> None:
    """Open cases past a deadline, oldest first."""

    with reported():
        rows = sla_views.overdue_cases(rt=ctx.rt)
        for _, number, due in rows:
            click.echo(f"{number}  due {due.astimezone(SHANGHAI):%Y-%m-%d %H:%M}")
        click.echo(f"{len(rows)} overdue")


@sla_group.command("provisional")
@pass_ctx
def sla_provisional(ctx: Ctx) -> None:
    """Deadlines computed without holiday data (weekends only), with the reason."""

    with reported():
        clocks = sla_views.provisional_clocks(rt=ctx.rt)
        for clock in clocks:
            due = clock.due_at.astimezone(SHANGHAI).isoformat() if clock.due_at else "-"
            click.echo(f"case {clock.case_id} {clock.task_spec} due {due}: {clock.provisional_reason}")
        click.echo(f"{len(clocks)} provisional")


@main.group("task")
def task_group() -> None:
    """Work lists and task actions."""


@task_group.command("list")
@click.option("--as", "person", required=True, help="whose work list.")
@pass_ctx
def task_list(ctx: Ctx, person: str) -> None:
    """The open tasks PERSON may work on."""
    with reported():
        found = tasks.list_tasks(rt=ctx.rt, person_id=person)
        for task in found:
            click.echo(
                f"{task.id}  {task.case_number}  v{task.case_version}  {task.name} ({task.task_spec})  "
                f"form {task.form_key}  {task.case_title}"
            )
        if not found:
            click.echo("no open tasks")


@task_group.command("complete")
@click.argument("task_id")
@click.option("--as", "person", required=True)
@click.option("--data", default="{}", help="form data as a JSON object.")
@click.option("--version", "expected_version", type=int, help="the case version you saw (stale → refused).")
@pass_ctx
def task_complete(ctx: Ctx, task_id: str, person: str, data: str, expected_version: int | None) -> None:
    """Complete TASK_ID (full id or a unique prefix of 8+ characters) with form data."""
    with reported():
        done = tasks.complete_task(
            task_id, rt=ctx.rt, actor=person, data=_parse_json(data), expected_version=expected_version
        )
        view = cases.get_case(done.case_id, rt=ctx.rt)
        click.echo(f"completed {done.name}; case {view.number} is {view.status}, version {view.version}")
        _echo_open_tasks(ctx.rt, view.id)


def _assign_command(name: str, action: Callable[..., tasks.TaskView], verb: str) -> None:
    @task_group.command(name)
    @click.argument("task_id")
    @click.option("--as", "person", required=True)
    @click.option("--version", "expected_version", type=int)
    @pass_ctx
    def command(ctx: Ctx, task_id: str, person: str, expected_version: int | None) -> None:
        with reported():
            done = action(task_id, rt=ctx.rt, actor=person, expected_version=expected_version)
            click.echo(f"{verb} {done.name} ({done.id})")

    command.__doc__ = f"{verb.capitalize()} a task."


_assign_command("claim", tasks.claim_task, "claimed")
_assign_command("unclaim", tasks.unclaim_task, "released")


@task_group.command("reassign")
@click.argument("task_id")
@click.option("--as", "person", required=True, help="who reassigns (a leader, community, street … above it).")
@click.option("--to", "assignee", help="the person to give the task to.")
@click.option("--unit", help="the unit to move the task to (alone: to its shared list).")
@click.option("--reason", required=True, help="why (改派原因).")
@click.option("--version", "expected_version", type=int, help="the case version you saw (stale → refused).")
@pass_ctx
def task_reassign(
    ctx: Ctx,
    task_id: str,
    person: str,
    assignee: str | None,
    unit: str | None,
    reason: str,
    expected_version: int | None,
) -> None:
    """改派: move TASK_ID to another person (--to) and/or unit (--unit)."""
    with reported():
        done = tasks.reassign_task(
            task_id,
            rt=ctx.rt,
            actor=person,
            reason=reason,
            assignee_id=assignee,
            org_unit_id=unit,
            expected_version=expected_version,
        )
        click.echo(
            f"reassigned {done.name} ({done.id}) to {done.assignee_id or 'the shared list'} "
            f"@{done.org_unit_id}; version {done.case_version}"
        )


@task_group.command("return")
@click.argument("task_id")
@click.option("--as", "person", required=True)
@click.option("--reason", required=True, help="why (退单说明).")
@click.option("--code", "reason_code", help="a reason code of the task's form, e.g. not_responsible.")
@click.option("--version", "expected_version", type=int)
@pass_ctx
def task_return(
    ctx: Ctx, task_id: str, person: str, reason: str, reason_code: str | None, expected_version: int | None
) -> None:
    """退单: return TASK_ID down the path its diagram declares."""
    with reported():
        done = tasks.return_task(
            task_id,
            rt=ctx.rt,
            actor=person,
            reason=reason,
            reason_code=reason_code,
            expected_version=expected_version,
        )
        click.echo(f"returned {done.name}; version {done.case_version}")
        _echo_open_tasks(ctx.rt, done.case_id)


@task_group.command("request-extension")
@click.argument("task_id")
@click.option("--as", "person", required=True)
@click.option("--days", type=click.IntRange(1, 365), required=True, help="working days asked for.")
@click.option("--reason", required=True, help="why (延期理由).")
@click.option("--version", "expected_version", type=int)
@pass_ctx
def task_request_extension(
    ctx: Ctx, task_id: str, person: str, days: int, reason: str, expected_version: int | None
) -> None:
    """延期申请 on TASK_ID."""
    with reported():
        done = tasks.request_extension(
            task_id, rt=ctx.rt, actor=person, days=days, reason=reason, expected_version=expected_version
        )
        click.echo(f"asked for {days} more working day(s) on {done.name}; version {done.case_version}")
        _echo_open_tasks(ctx.rt, done.case_id)


@task_group.command("decide-extension")
@click.argument("task_id")
@click.option("--as", "person", required=True)
@click.option("--approve/--reject", required=True, help="approve or reject the request.")
@click.option("--days", type=click.IntRange(1, 365), help="working days granted (with --approve).")
@click.option("--comment", help="审批意见.")
@click.option("--version", "expected_version", type=int)
@pass_ctx
def task_decide_extension(
    ctx: Ctx,
    task_id: str,
    person: str,
    approve: bool,
    days: int | None,
    comment: str | None,
    expected_version: int | None,
) -> None:
    """延期审批: decide the extension request TASK_ID."""
    with reported():
        done = tasks.decide_extension(
            task_id,
            rt=ctx.rt,
            actor=person,
            approve=approve,
            days=days,
            comment=comment,
            expected_version=expected_version,
        )
        verdict = "approved" if approve else "rejected"
        click.echo(f"{verdict} the extension ({done.name}); version {done.case_version}")
        _echo_open_tasks(ctx.rt, done.case_id)


@main.command("scenarios")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="print each scenario's steps.")
def scenarios_command(paths: tuple[Path, ...], verbose: bool) -> None:
    """Run workflow scenarios (default: every workflows/*/scenarios/*.json); exit 0 when all pass."""
    from engine.scenarios import discover, run_file

    config = Config()
    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*.json")))]
    files = files or discover(config.workflows_dir)
    failed = 0
    for file in files:
        # the processes and forms next to the scenario file (workflows/<process>/scenarios/x.json)
        workflows_dir = file.resolve().parent.parent.parent
        forms_dir = workflows_dir.parent / "forms"
        outcome = run_file(
            file,
            workflows_dir=workflows_dir,
            forms_dir=forms_dir if forms_dir.is_dir() else config.forms_dir,
        )
        mark = "PASS" if outcome.passed else "FAIL"
        click.echo(
            f"{mark}  {file.parent.parent.name}/{file.stem}: {outcome.name}"
            + ("" if outcome.passed else f" — {outcome.message}")
        )
        if verbose or not outcome.passed:
            for line in outcome.log:
                click.echo(f"        {line}")
        failed += not outcome.passed
    click.echo(f"{len(files) - failed} passed, {failed} failed")
    if failed or not files:
        sys.exit(1)


# --- time -----------------------------------------------------------------------------------------


@main.command("fire-due")
@pass_ctx
def fire_due_command(ctx: Ctx) -> None:
    """Fire every BPMN timer that is due now, once."""
    with reported():
        report = timers.fire_due(rt=ctx.rt)
        click.echo(
            f"fired timers of {len(report.fired)} case(s) and {report.rungs} SLA rung(s); "
            f"{len(report.failed)} failed"
        )
        for case_id, code in report.failed.items():
            click.echo(f"  case {case_id}: {code}", err=True)
        if report.failed:
            sys.exit(1)


@main.group("calendar")
def calendar_group() -> None:
    """Working-day calendar (Chinese holidays and make-up workdays)."""


@calendar_group.command("reload")
@pass_ctx
def calendar_reload(ctx: Ctx) -> None:
    """Re-read the overlay files and recompute provisional deadlines the calendar now covers."""
    from engine import sla

    with reported():
        changed = sla.recompute_provisional(rt=ctx.rt)
        click.echo(f"calendar {ctx.rt.calendar.version}; {changed} provisional deadline(s) now final")


@calendar_group.command("add")
@click.argument("start")
@click.argument("duration")
@click.option(
    "--org", "org_unit", help="count in this org unit's working hours (its own or its nearest ancestor's)."
)
@click.option("--hours", "hours_text", help="working hours, e.g. '08:30-12:00,13:30-17:30'.")
@click.option("--explain", "show", is_flag=True, help="list each skipped day and why.")
@pass_ctx
def calendar_add(
    ctx: Ctx, start: str, duration: str, org_unit: str | None, hours_text: str | None, show: bool
) -> None:
    """Print START + DURATION (3WD, 2WH, P7D, PT2H …) as an ISO instant with offset."""
    with reported():
        try:
            instant = datetime.fromisoformat(start)
        except ValueError:
            raise InvalidInput("calendar.bad_instant", f"'{start}' is not an ISO 8601 instant", {}) from None
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=SHANGHAI)
        if org_unit is not None and hours_text is None:
            from engine import orgs

            with ctx.rt.db.read() as conn:
                orgs.get_unit(conn, org_unit)
                hours_text = orgs.working_hours_of(conn, org_unit)
        overlay = os.environ.get("GRIDCASE_CALENDAR_DIR")
        calendar = WorkCalendar(Path(overlay) if overlay else None)
        hours = WorkingHours.from_text(hours_text) if hours_text else None
        deadline = calendar.add(instant, duration, hours=hours)
        click.echo(deadline.due_at.isoformat())
        if show:
            click.echo(f"  working hours {hours or WorkingHours()}")
            for line in explain(deadline):
                click.echo(f"  {line}")


@main.group("org")
def org_group() -> None:
    """The organisation: units and their working hours."""


@org_group.command("hours")
@click.argument("unit")
@click.argument("hours", required=False)
@click.option("--clear", is_flag=True, help="use the parent's (or the default) hours again.")
@pass_ctx
def org_hours(ctx: Ctx, unit: str, hours: str | None, clear: bool) -> None:
    """Show, set ("08:00-12:00,14:00-18:00") or --clear a unit's working hours (new SLA clocks use them)."""
    from engine import orgs

    with reported():
        with ctx.rt.db.write() as conn:
            if hours is not None or clear:
                orgs.set_working_hours(conn, unit, None if clear else hours)
            orgs.get_unit(conn, unit)
            effective = orgs.working_hours_of(conn, unit)
        click.echo(f"{unit}: {effective or str(WorkingHours()) + ' (default)'}")


@main.command("diagram")
@click.argument("bpmn_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="SVG file (default: stdout)."
)
@click.option(
    "--highlight",
    "marks",
    multiple=True,
    metavar="ID=CLASS",
    help="mark an element: current, overdue, warning, done, another CSS class or #rrggbb (repeatable).",
)
def diagram_command(bpmn_file: Path, output: Path | None, marks: tuple[str, ...]) -> None:
    """Draw a BPMN file's diagram (its DI) as a standalone SVG."""
    from engine.diagram import render_file

    with reported():
        highlight: dict[str, str] = {}
        for pair in marks:
            element_id, sep, css = pair.partition("=")
            if not sep or not element_id.strip() or not css.strip():
                raise InvalidInput("diagram.bad_highlight", f"--highlight takes ID=CLASS, got '{pair}'", {})
            highlight[element_id.strip()] = css.strip()
        svg = render_file(bpmn_file, highlight=highlight)
        if output is None:
            click.echo(svg, nl=False)
        else:
            output.write_text(svg, encoding="utf-8")
            click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
