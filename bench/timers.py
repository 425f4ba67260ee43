"""Timer firing at scale: fired/s and lag from due instant to fired, embedded and via Celery; and the
overdue-list query over a million cases.

Run from the repo root::

    python bench/timers.py             # 100,000 open cases, 10,000 due at once; overdue list over 1,000,000
    python bench/timers.py --quick     # 5,000 open cases, 1,000 due at once; overdue list over 100,000
    python bench/timers.py --no-celery # skip the Celery part (no Redis here)
    DATABASE_URL=postgresql+psycopg://user@host/db python bench/timers.py   # + PostgreSQL (temp schema)

Set-up. One real case of ``tests/fixtures/timed/timed.bpmn`` (a user task with a PT2H interrupting
boundary timer) is started through the engine; its rows (``case``, ``workflow_state``, ``workflow_task``,
``human_task``, ``timer``, ``audit_event``, ``outbox`` and any other per-case table) are then cloned in
bulk with new ids — the SpiffWorkflow task ids inside the serialized workflow are rewritten per clone —
so every clone is a valid workflow that a real step can load and fire. Two groups of ``--due`` clones
are parked with a far ``next_wake_at``; the rest wake over the next weeks.

Embedded. Group E is made due at one instant T0 (``case.next_wake_at`` and ``timer.due_at``); at T0 a
fresh Runtime (cold workflow cache) runs the ``engine.timers.fire_due`` loop until nothing is due.

Celery. A real worker (``celery -A engine.worker worker``, prefork, ``--celery-concurrency`` processes,
default the CPU count) on the real Redis (``REDIS_URL``, default 127.0.0.1:6379); group C is made due at
T1 and one ``gridcase.fire_due`` is sent at T1, as beat would (beat's period adds up to one period of
lag on top: 5 s by default).

Lag of a case = its ``timer.fired`` audit instant (the step's clock) minus the due instant; fired/s =
cases / (last fired − due instant).

Overdue list. A separate database of ``--overdue-cases`` case rows (10 % open, open ones waking within
±30 days, so about half of them overdue), analysed: the median time of ``overdue_page`` (the first 50
overdue open cases, most overdue first) over 50 runs, with the query plan; then again with an index on
``case (status, next_wake_at)`` created in that bench database only, to show what a migration adding it
would buy (RESULT uses the schema as deployed).

Last line::

    RESULT lag_p99_embedded_s=… lag_p99_celery_s=… overdue_query_ms=…

SQLite figures. Targets (issue 4): ≤ 1 s, ≤ 2 s, ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Integer, Table, func, insert, select, text, update  # noqa: E402

from engine import cases, specs, timers  # noqa: E402
from engine.clock import FixedClock, SystemClock  # noqa: E402
from engine.demo_org import load_demo_org  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.store.db import Database  # noqa: E402
from engine.store.models import audit_event, case, human_task, metadata, notification, spec_version  # noqa: E402
from engine.store.models import timer as timer_table  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
FAR = timedelta(days=365)
_UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-)[0-9a-f]{12}")
CHUNK = 2_000  # cases per insert transaction


# --- set-up ----------------------------------------------------------------------------------------


def open_runtime(url: str) -> Runtime:
    db = Database(url)
    db.migrate()
    rt = Runtime(db=db, clock=SystemClock())
    with db.write() as conn:
        load_demo_org(conn, now=rt.now(), password_for=lambda _p: "bench-pass-123")
    validation = specs.validate(
        specs.read_sources([FIXTURES / "timed"]), forms_dir=FIXTURES / "forms", sandbox=rt.sandbox
    )
    assert validation.ok, [str(p) for p in validation.problems]
    with db.write() as conn:
        specs.deploy(conn, validation, actor="owner_1", now=rt.now())
    return rt


def per_case_tables() -> list[Table]:
    """Every table holding rows of one case, in insert order (``case`` excluded)."""
    skip = {"case", notification.name}
    return [t for t in metadata.sorted_tables if "case_id" in t.c and t.name not in skip]


@dataclass
class Template:
    """One real case's rows, as format strings with ``{k}`` where each task id's tail goes."""

    case_row: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]]
    event_value: str  # the boundary timer's instant inside the serialized workflow

    @classmethod
    def capture(cls, rt: Runtime, case_id: int) -> Template:
        with rt.db.read() as conn:
            case_row = dict(conn.execute(select(case).where(case.c.id == case_id)).one()._mapping)
            rows = {
                t.name: [dict(r._mapping) for r in conn.execute(select(t).where(t.c.case_id == case_id))]
                for t in per_case_tables()
            }
        bodies = " ".join(r["body"] for r in rows["workflow_task"])
        found = re.search(r'"event_value": "([^"]+)"', bodies)
        assert found, "the template has no waiting timer"
        prepared = {name: [cls._prepare(name, r) for r in table_rows] for name, table_rows in rows.items()}
        return cls(case_row, prepared, found.group(1))

    @staticmethod
    def _prepare(name: str, row: dict[str, Any]) -> dict[str, Any]:
        table = metadata.tables[name]
        out: dict[str, Any] = {}
        for key, value in row.items():
            column = table.c[key]
            if key == "id" and isinstance(column.type, Integer) and column.autoincrement is not False:
                continue  # a fresh serial id
            if isinstance(value, (dict, list)):
                value = ("json", _template(json.dumps(value, ensure_ascii=False)))
            elif isinstance(value, str) and _UUID.search(value):
                value = ("text", _template(value))
            out[key] = value
        if name == "outbox":
            out["delivered_at"] = out["created_at"]
        return out

    def clone(
        self, k: int, case_id: int, *, wake: datetime, event_value: str | None
    ) -> dict[str, list[dict]]:
        tail = f"{k:012x}"
        rows: dict[str, list[dict[str, Any]]] = {}
        for name, table_rows in self.rows.items():
            rows[name] = []
            for row in table_rows:
                new: dict[str, Any] = {}
                for key, value in row.items():
                    if isinstance(value, tuple):
                        filled = value[1].format(k=tail)
                        if name == "workflow_task" and event_value is not None:
                            filled = filled.replace(self.event_value, event_value)
                        value = json.loads(filled) if value[0] == "json" else filled
                    new[key] = value
                new["case_id"] = case_id
                if name == "timer":
                    new["due_at"] = wake
                rows[name].append(new)
        return rows


def _template(value: str) -> str:
    return _UUID.sub(r"\1{k}", value.replace("{", "{{").replace("}", "}}"))


def clone_cases(
    rt: Runtime,
    template: Template,
    count: int,
    *,
    first_k: int,
    wake: Callable[[int], datetime],
    timer_at_wake: bool,
) -> range:
    """Insert ``count`` clones of ``template``; returns their case ids (consecutive). With
    ``timer_at_wake`` the workflow's own timer is moved to the wake instant, else it keeps the
    template's (already due) instant: parked cases that fire as soon as they are made due."""
    with rt.db.read() as conn:
        start = int(conn.execute(select(func.max(case.c.id))).scalar_one()) + 1
    tables = per_case_tables()
    for offset in range(0, count, CHUNK):
        case_rows: list[dict[str, Any]] = []
        child: dict[str, list[dict[str, Any]]] = {t.name: [] for t in tables}
        for i in range(offset, min(count, offset + CHUNK)):
            k, case_id, due = first_k + i, start + i, wake(i)
            case_rows.append(
                {**template.case_row, "id": case_id, "number": f"BM{k:012d}", "next_wake_at": due}
            )
            event = due.isoformat() if timer_at_wake else None
            for name, rows in template.clone(k, case_id, wake=due, event_value=event).items():
                child[name].extend(rows)
        with rt.db.write() as conn:
            conn.execute(insert(case), case_rows)
            for table in tables:
                if child[table.name]:
                    conn.execute(insert(table), child[table.name])
    if rt.db.dialect == "postgresql":
        with rt.db.write() as conn:
            conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('\"case\"', 'id'), (SELECT max(id) FROM \"case\"))"
                )
            )
    return range(start, start + count)


def make_due(rt: Runtime, ids: range, instant: datetime) -> None:
    with rt.db.write() as conn:
        conn.execute(
            update(case).where(case.c.id.between(ids.start, ids.stop - 1)).values(next_wake_at=instant)
        )
        conn.execute(
            update(timer_table)
            .where(timer_table.c.case_id.between(ids.start, ids.stop - 1))
            .values(due_at=instant)
        )


def wait_until(instant: datetime) -> None:
    delay = (instant - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


@dataclass
class Firing:
    count: int
    lags: list[float]

    @property
    def per_s(self) -> float:
        return self.count / max(self.lags[-1], 1e-9) if self.lags else 0.0

    def pct(self, q: float) -> float:
        if not self.lags:
            return float("nan")
        return self.lags[min(len(self.lags) - 1, int(q * len(self.lags)))]


def firing_of(rt: Runtime, ids: range, due: datetime) -> Firing:
    with rt.db.read() as conn:
        instants = conn.execute(
            select(audit_event.c.at).where(
                audit_event.c.action == "timer.fired", audit_event.c.case_id.between(ids.start, ids.stop - 1)
            )
        ).scalars()
        lags = sorted((at - due).total_seconds() for at in instants)
    return Firing(len(lags), lags)


def fired_count(rt: Runtime, ids: range) -> int:
    with rt.db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(audit_event)
                .where(
                    audit_event.c.action == "timer.fired",
                    audit_event.c.case_id.between(ids.start, ids.stop - 1),
                )
            ).scalar_one()
        )


# --- the two firing paths --------------------------------------------------------------------------


def fire_embedded(url: str, ids: range) -> Firing:
    rt = Runtime(db=Database(url), clock=SystemClock())  # cold caches, as after a restart
    due = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    make_due(rt, ids, due)
    wait_until(due)
    while True:
        report = timers.fire_due(rt=rt, limit=500)
        if not report.fired and not report.failed:
            break
        if report.failed:
            print(f"  embedded: {len(report.failed)} failed, e.g. {next(iter(report.failed.items()))}")
    result = firing_of(rt, ids, due)
    check_escalated(rt, ids, result)
    rt.db.dispose()
    return result


def check_escalated(rt: Runtime, ids: range, firing: Firing) -> None:
    """Every fired clone really ran its workflow: the boundary timer opened the escalation task."""
    with rt.db.read() as conn:
        escalated = conn.execute(
            select(func.count())
            .select_from(human_task)
            .where(
                human_task.c.task_spec == "escalated",
                human_task.c.state == "ready",
                human_task.c.case_id.between(ids.start, ids.stop - 1),
            )
        ).scalar_one()
    if escalated != firing.count:
        print(f"  WARNING: {firing.count} fired but {escalated} escalation tasks opened")


@contextmanager
def celery_worker(url: str, redis_url: str, concurrency: int, log: Path) -> Iterator[str]:
    queue = f"gridcase-bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "GRIDCASE_QUEUE": queue}
    env["PYTHONPATH"] = str(ROOT)
    pool = ["--pool=solo"] if concurrency <= 1 else ["--pool=prefork", f"--concurrency={concurrency}"]
    command = [sys.executable, "-m", "celery", "-A", "engine.worker", "worker", *pool, "-Q", queue]
    command += ["-n", f"{queue}@%h", "-l", "WARNING", f"--logfile={log}"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        yield queue
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        import redis

        redis.Redis.from_url(redis_url).delete(queue)


def fire_celery(url: str, ids: range, *, redis_url: str, concurrency: int, workdir: Path) -> Firing:
    from engine.worker.app import celery_app

    rt = Runtime(db=Database(url), clock=SystemClock())
    with celery_worker(url, redis_url, concurrency, workdir / "worker.log") as queue:
        # the worker is warm (imported, connected) before the instant: send a no-op round first
        celery_app.send_task("gridcase.fire_due", queue=queue)
        time.sleep(3)
        due = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
        make_due(rt, ids, due)
        wait_until(due)
        celery_app.send_task("gridcase.fire_due", queue=queue)  # the beat tick at the due instant
        deadline = time.monotonic() + max(120.0, len(ids) * 0.1)
        while fired_count(rt, ids) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.25)
    result = firing_of(rt, ids, due)
    check_escalated(rt, ids, result)
    rt.db.dispose()
    return result


# --- the overdue list ------------------------------------------------------------------------------


def overdue_page(conn: Any, now: datetime, *, limit: int = 50) -> list[tuple[int, str, datetime]]:
    """The supervisors' overdue list, first page: open cases whose wake-up (deadline) has passed, most
    overdue first, through the ``case.next_wake_at`` index. When SLA clocks carry the deadlines, this
    is the query to switch to ``sla_clock`` (``engine.sla.overdue_cases``)."""
    rows = conn.execute(
        select(case.c.id, case.c.number, case.c.next_wake_at)
        .where(case.c.status == "open", case.c.next_wake_at.is_not(None), case.c.next_wake_at <= now)
        .order_by(case.c.next_wake_at)
        .limit(limit)
    ).all()
    return [(int(r[0]), str(r[1]), r[2]) for r in rows]


def bulk_cases(rt: Runtime, total: int) -> None:
    """``total`` plain case rows, 10 % open waking within ±30 days, the rest completed."""
    now = rt.now()
    with rt.db.read() as conn:
        version = int(conn.execute(select(func.max(spec_version.c.id))).scalar_one())
    base = {
        "kind": "demo",
        "process_id": "timed",
        "spec_version_id": version,
        "title": "楼道堆物",
        "priority": "normal",
        "version": 3,
        "data": {},
        "grid_id": "g1",
        "unit_path": "/district/s1/c1/g1/",
        "created_at": now - timedelta(days=60),
        "updated_at": now - timedelta(days=30),
    }
    step = 20_000
    for offset in range(0, total, step):
        rows = []
        for i in range(offset, min(total, offset + step)):
            is_open = i % 10 == 0
            wake = now + timedelta(seconds=((i * 7919) % 5_184_000) - 2_592_000) if is_open else None
            rows.append(
                {
                    **base,
                    "number": f"OV{i:012d}",
                    "status": "open" if is_open else "completed",
                    "next_wake_at": wake,
                    "closed_at": None if is_open else now - timedelta(days=30),
                }
            )
        with rt.db.write() as conn:
            conn.execute(insert(case), rows)


def time_overdue(url: str, total: int) -> tuple[float, float, int, str]:
    """(median ms as deployed, median ms with a (status, next_wake_at) index, rows, plan as deployed)."""
    rt = open_runtime(url)
    bulk_cases(rt, total)
    with rt.db.write() as conn:
        conn.execute(text('ANALYZE "case"'))
    now = rt.now()
    explain = "EXPLAIN QUERY PLAN " if rt.db.dialect == "sqlite" else "EXPLAIN "
    sql = (
        "SELECT id, number, next_wake_at FROM \"case\" WHERE status = 'open' AND next_wake_at IS NOT NULL"
        " AND next_wake_at <= :now ORDER BY next_wake_at LIMIT 50"
    )

    def median_ms() -> tuple[float, int, str]:
        times = []
        with rt.db.read() as conn:
            page = overdue_page(conn, now)
            for _ in range(50):
                started = time.perf_counter()
                overdue_page(conn, now)
                times.append((time.perf_counter() - started) * 1000)
            plan = " | ".join(str(r[-1]) for r in conn.execute(text(explain + sql), {"now": now}))
        return statistics.median(times), len(page), plan

    deployed, rows, plan = median_ms()
    with rt.db.write() as conn:  # the index a migration could add; this bench database only
        conn.execute(text('CREATE INDEX ix_bench_case_status_wake ON "case" (status, next_wake_at)'))
        conn.execute(text('ANALYZE "case"'))
    proposed, _, _ = median_ms()
    rt.db.dispose()
    return deployed, proposed, rows, plan


# --- backends and output ---------------------------------------------------------------------------


@dataclass
class Figures:
    backend: str
    embedded: Firing
    celery: Firing | None
    overdue_ms: float
    overdue_indexed_ms: float
    overdue_plan: str


def run_backend(name: str, url: str, overdue_url: str, args: argparse.Namespace, workdir: Path) -> Figures:
    started = time.perf_counter()
    rt = open_runtime(url)
    template_rt = Runtime(db=rt.db, clock=FixedClock(datetime.now(UTC) - timedelta(hours=3)))
    first = cases.start_case(
        "timed", rt=template_rt, actor="gw_g1", title="楼道堆物", kind="demo", grid_id="g1"
    )
    make_due(rt, range(first.id, first.id + 1), rt.now() + FAR)  # the template itself never fires
    template = Template.capture(rt, first.id)
    far = rt.now() + FAR
    group_e = clone_cases(rt, template, args.due, first_k=1, wake=lambda _i: far, timer_at_wake=False)
    group_c = clone_cases(
        rt, template, args.due, first_k=1 + args.due, wake=lambda _i: far, timer_at_wake=False
    )
    soon = rt.now() + timedelta(days=1)
    rest = max(0, args.cases - 2 * args.due)
    spread: Callable[[int], datetime] = lambda i: soon + timedelta(minutes=i % 40_000)  # noqa: E731
    clone_cases(rt, template, rest, first_k=1 + 2 * args.due, wake=spread, timer_at_wake=True)
    print(f"  {name}: {args.cases:,} open cases cloned in {time.perf_counter() - started:.1f} s", flush=True)

    embedded = fire_embedded(url, group_e)
    print(f"  {name}: embedded fired {embedded.count:,} in {embedded.lags[-1] if embedded.lags else 0:.1f} s")
    celery = None
    if not args.no_celery:
        celery = fire_celery(
            url, group_c, redis_url=args.redis_url, concurrency=args.celery_concurrency, workdir=workdir
        )
        print(f"  {name}: celery fired {celery.count:,} in {celery.lags[-1] if celery.lags else 0:.1f} s")
    rt.db.dispose()
    overdue_ms, indexed_ms, page, plan = time_overdue(overdue_url, args.overdue_cases)
    print(f"  {name}: overdue list over {args.overdue_cases:,} cases: {overdue_ms:.2f} ms ({page} rows)")
    return Figures(name, embedded, celery, overdue_ms, indexed_ms, plan)


def print_figures(figures: Figures, args: argparse.Namespace) -> None:
    print(f"\n== {figures.backend}: {args.cases:,} open cases, {args.due:,} due at one instant ==")
    print(f"{'path':<10} {'fired':>8} {'fired/s':>9} {'lag p50 s':>10} {'lag p99 s':>10} {'lag max s':>10}")
    paths: Sequence[tuple[str, Firing | None]] = (("embedded", figures.embedded), ("celery", figures.celery))
    for label, firing in paths:
        if firing is None:
            print(f"{label:<10} skipped")
            continue
        print(
            f"{label:<10} {firing.count:>8,} {firing.per_s:>9.0f} {firing.pct(0.5):>10.2f}"
            f" {firing.pct(0.99):>10.2f} {firing.pct(1.0):>10.2f}"
        )
    print(f"overdue list (first 50 of {args.overdue_cases:,} cases, 10% open): {figures.overdue_ms:.2f} ms")
    print(f"  plan: {figures.overdue_plan}")
    print(
        f"  with an index on (status, next_wake_at) (not in the schema): {figures.overdue_indexed_ms:.2f} ms"
    )


def pg_url_for(url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    sa = make_url(url)
    if sa.drivername in ("postgresql", "postgres"):
        sa = sa.set(drivername="postgresql+psycopg")
    return sa.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@contextmanager
def pg_schemas(url: str, names: Sequence[str]) -> Iterator[list[str]]:
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        for name in names:
            admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield [pg_url_for(url, name) for name in names]
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            for name in names:
                admin.execute(f"DROP SCHEMA {name} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5,000 cases, 1,000 due, 100,000 for the list")
    parser.add_argument("--cases", type=int, default=None, help="open cases with timers (100,000)")
    parser.add_argument("--due", type=int, default=None, help="cases due at the same instant (10,000)")
    parser.add_argument(
        "--overdue-cases", type=int, default=None, help="cases for the overdue list (1,000,000)"
    )
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery worker part")
    parser.add_argument("--celery-concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args(argv)
    args.cases = args.cases or (5_000 if args.quick else 100_000)
    args.due = args.due or (1_000 if args.quick else 10_000)
    args.overdue_cases = args.overdue_cases or (100_000 if args.quick else 1_000_000)
    if not args.no_celery:
        import redis

        try:
            redis.Redis.from_url(args.redis_url, socket_timeout=2).ping()
        except redis.RedisError as err:
            print(f"no Redis at {args.redis_url} ({err}): Celery part skipped")
            args.no_celery = True
    os.environ["REDIS_URL"] = args.redis_url  # before engine.worker.app is imported

    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="gridcase-bench-") as tmp:
        workdir = Path(tmp)
        print("sqlite:", flush=True)
        results.append(
            run_backend("sqlite", f"sqlite:///{workdir / 'timers.db'}", f"sqlite:///{workdir / 'overdue.db'}",
                        args, workdir)
        )  # fmt: skip
        pg = os.environ.get("DATABASE_URL", "")
        if pg.startswith("postgres"):
            print("postgresql (DATABASE_URL, temporary schemas):", flush=True)
            names = [f"gridcase_bench_timers_{os.getpid()}", f"gridcase_bench_overdue_{os.getpid()}"]
            try:
                with pg_schemas(pg, names) as (url, overdue_url):
                    results.append(run_backend("postgresql", url, overdue_url, args, workdir))
            except Exception as err:  # the SQLite figures and RESULT still print
                print(f"  postgresql FAILED: {type(err).__name__}: {str(err).splitlines()[0]}")
    for figures in results:
        print_figures(figures, args)
    sq = results[0]
    celery_p99 = f"{sq.celery.pct(0.99):.2f}" if sq.celery else "nan"
    print(
        f"\ntargets: lag p99 embedded ≤ 1 s, via Celery ≤ 2 s, overdue list ≤ 10 ms"
        f" (SQLite, {args.due:,} due at once{'; quick run' if args.quick else ''})"
    )
    print(
        f"RESULT lag_p99_embedded_s={sq.embedded.pct(0.99):.2f} lag_p99_celery_s={celery_p99}"
        f" overdue_query_ms={sq.overdue_ms:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
