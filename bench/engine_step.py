"""Per-step cost of gridcase's durable step against bare SpiffWorkflow and a naive host.

Run from the repo root::

    python bench/engine_step.py            # full run (200 timed steps per history size)
    python bench/engine_step.py --quick    # smoke run (20 timed steps per history size)
    DATABASE_URL=postgresql+psycopg://user@host/db python bench/engine_step.py   # + PostgreSQL

What is timed, per step (one user task of ``workflows/demo/demo.bpmn``: ``handle`` or ``verify``):

(a) bare SpiffWorkflow 3.2.0 in memory: look the READY user task up by id, put the form data on it,
    ``task.run()`` and ``workflow.do_engine_steps()``. Spec parsed with ``CamundaParser`` here, plain
    ``PythonScriptEngine``.
(b) a naive durable host: ``BEGIN IMMEDIATE``, read the whole ``serialize_json`` blob (spec included)
    from one row, deserialize, complete the task + ``do_engine_steps``, serialize, write the row back,
    ``COMMIT``. SQLite in WAL with the pragmas of ``engine/store/db.py`` (PostgreSQL: ``SELECT … FOR
    UPDATE``).
(c) gridcase ``engine.tasks.complete_task`` (lock, permission check, form validation, step, delta save,
    human-task / timer projections, audit, version bump, its own transaction, and the final read-back).
(c cold) as (c) but ``rt.workflows.clear()`` before every step (outside the timed region), so the
    workflow is loaded from its rows every time. Informational only; not used in RESULT.

History: a case is first brought through N *fail* loops (handle, verify=fail) with N = 1, 10, 100; then
handle/verify pairs are timed (verify keeps answering ``fail`` so the loop goes on). Each fresh case is
timed for a fixed number of steps (2 at N=1 and N=10, 20 at N=100), so history stays within N..N+1 loops
(N+10 at N=100) — a new case is brought to depth N whenever a case has used up its steps. The figure is
the median of the per-step times (handle and verify steps together, always in pairs).

The last line is machine-readable::

    RESULT step_vs_bare=<c/a at 1 loop> step_vs_naive=<c/b at 10 loops> growth_100_vs_1=<(c-a)@100/(c-a)@1>

with the SQLite figures. Targets: step_vs_bare ≤ 3, step_vs_naive ≤ 0.5, growth_100_vs_1 ≤ 1.5.
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from SpiffWorkflow.bpmn import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine  # noqa: E402
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser  # noqa: E402
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402

BPMN_FILE = ROOT / "workflows" / "demo" / "demo.bpmn"
PROCESS_ID = "demo"
DEPTHS = (1, 10, 100)
STEPS_PER_CASE = {1: 2, 10: 2, 100: 20}
HANDLE_DATA = {"result": "已到现场处置"}
FAIL_DATA = {"verify_result": "fail"}
GRID = "g1"
ACTORS = {"handle": "gw_g1", "verify": "community_c1"}

perf_ns = time.perf_counter_ns


def step_data(spec_name: str) -> dict[str, object]:
    return dict(HANDLE_DATA) if spec_name == "handle" else dict(FAIL_DATA)


@dataclass
class Series:
    """Per-step times (ns) of one variant at one history size."""

    times: list[int] = field(default_factory=list)

    def median_us(self) -> float:
        return statistics.median(self.times) / 1000 if self.times else float("nan")

    def p90_us(self) -> float:
        if not self.times:
            return float("nan")
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] / 1000


def run_depth(
    depth: int,
    reps: int,
    new_case: Callable[[int], object],
    timed_step: Callable[[object], int],
) -> Series:
    """Time ``reps`` steps at history ``depth``, taking a fresh case every STEPS_PER_CASE[depth] steps."""
    series = Series()
    per_case = STEPS_PER_CASE[depth]
    gc.collect()
    while len(series.times) < reps:
        case = new_case(depth)
        for _ in range(min(per_case, reps - len(series.times))):
            series.times.append(timed_step(case))
    gc.collect()
    return series


# --- (a) bare SpiffWorkflow -----------------------------------------------------------------------


def parse_demo() -> tuple[object, dict[str, object]]:
    parser = CamundaParser()
    parser.add_bpmn_file(str(BPMN_FILE))
    return parser.get_spec(PROCESS_ID), parser.get_subprocess_specs(PROCESS_ID)


class Bare:
    """One in-memory workflow; ``ready`` is the READY user task the next step completes."""

    def __init__(self, spec: object, subs: dict[str, object], engine: PythonScriptEngine) -> None:
        self.wf = BpmnWorkflow(spec, subs, script_engine=engine)
        self.wf.do_engine_steps()
        self.ready = self._next_ready()

    def _next_ready(self) -> tuple[UUID, str]:
        tasks = self.wf.get_tasks(state=TaskState.READY, manual=True)
        if len(tasks) != 1:
            raise RuntimeError(f"expected one READY user task, found {[t.task_spec.name for t in tasks]}")
        return tasks[0].id, tasks[0].task_spec.name

    def step(self) -> int:
        tid, name = self.ready
        data = step_data(name)
        t0 = perf_ns()
        task = self.wf.get_task_from_id(tid)
        task.data.update(data)
        task.run()
        self.wf.do_engine_steps()
        elapsed = perf_ns() - t0
        self.ready = self._next_ready()
        return elapsed

    def advance_loops(self, n: int) -> None:
        for _ in range(2 * n):
            self.step()


def bench_bare(depths: tuple[int, ...], reps: int) -> dict[int, Series]:
    spec, subs = parse_demo()
    engine = PythonScriptEngine()

    def new_case(depth: int) -> Bare:
        case = Bare(spec, subs, engine)
        case.advance_loops(depth)
        return case

    return {d: run_depth(d, reps, new_case, lambda c: c.step()) for d in depths}  # type: ignore[attr-defined]


# --- (b) naive host: the whole serialized workflow in one row -------------------------------------


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """The same connection settings as ``engine/store/db.py``: WAL, synchronous=NORMAL, own BEGINs."""
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    conn.isolation_level = None
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


class NaiveStore:
    """One table ``naive_workflow(id, body)`` on SQLite (sqlite3) or PostgreSQL (psycopg)."""

    def __init__(
        self, *, sqlite_path: Path | None = None, pg_conninfo: str | None = None, pg_schema: str | None = None
    ) -> None:
        self.pg = pg_conninfo is not None
        self.conn: Any
        if pg_conninfo is not None:
            import psycopg

            self.conn = psycopg.connect(pg_conninfo, autocommit=True)
            if pg_schema:
                self.conn.execute(f"SET search_path TO {pg_schema}")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS naive_workflow (id BIGINT PRIMARY KEY, body TEXT NOT NULL)"
            )
            self.begin, self.lock = "BEGIN", "SELECT body FROM naive_workflow WHERE id = %s FOR UPDATE"
            self.put, self.add = (
                "UPDATE naive_workflow SET body = %s WHERE id = %s",
                "INSERT INTO naive_workflow (id, body) VALUES (%s, %s)",
            )
        else:
            assert sqlite_path is not None
            self.conn = sqlite_connect(sqlite_path)
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS naive_workflow (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
            )
            self.begin, self.lock = "BEGIN IMMEDIATE", "SELECT body FROM naive_workflow WHERE id = ?"
            self.put, self.add = (
                "UPDATE naive_workflow SET body = ? WHERE id = ?",
                "INSERT INTO naive_workflow (id, body) VALUES (?, ?)",
            )
        self.next_id = 1

    def close(self) -> None:
        self.conn.close()


class Naive:
    def __init__(
        self, store: NaiveStore, serializer: BpmnWorkflowSerializer, engine: PythonScriptEngine, bare: Bare
    ) -> None:
        self.store, self.serializer, self.engine = store, serializer, engine
        self.id = store.next_id
        store.next_id += 1
        self.ready = bare.ready
        c = store.conn
        c.execute(store.begin)
        c.execute(store.add, (self.id, serializer.serialize_json(bare.wf)))
        c.execute("COMMIT")

    def step(self) -> int:
        tid, name = self.ready
        data = step_data(name)
        s, c = self.store, self.store.conn
        t0 = perf_ns()
        c.execute(s.begin)
        row = c.execute(s.lock, (self.id,)).fetchone()
        assert row is not None
        body = row[0]
        wf = self.serializer.deserialize_json(body)
        wf.script_engine = self.engine
        task = wf.get_task_from_id(tid)
        task.data.update(data)
        task.run()
        wf.do_engine_steps()
        c.execute(s.put, (self.serializer.serialize_json(wf), self.id))
        c.execute("COMMIT")
        elapsed = perf_ns() - t0
        tasks = wf.get_tasks(state=TaskState.READY, manual=True)
        self.ready = (tasks[0].id, tasks[0].task_spec.name)
        return elapsed


def bench_naive(store: NaiveStore, depths: tuple[int, ...], reps: int) -> dict[int, Series]:
    spec, subs = parse_demo()
    engine = PythonScriptEngine()
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG))

    def new_case(depth: int) -> Naive:
        bare = Bare(spec, subs, engine)
        bare.advance_loops(depth)
        return Naive(store, serializer, engine, bare)

    return {d: run_depth(d, reps, new_case, lambda c: c.step()) for d in depths}  # type: ignore[attr-defined]


# --- (c) gridcase ---------------------------------------------------------------------------------


class Gridcase:
    """The engine on one database: migrated, demo org loaded, demo process deployed."""

    def __init__(self, url: str) -> None:
        from engine import specs
        from engine.clock import SystemClock
        from engine.demo_org import load_demo_org
        from engine.runtime import Runtime
        from engine.store.db import Database

        self.db = Database(url)
        self.db.migrate()
        self.rt = Runtime(db=self.db, clock=SystemClock())
        now = datetime.now(UTC)
        with self.db.write() as conn:
            load_demo_org(conn, now=now, password_for=lambda _pid: "bench-only-password")
        validation = specs.validate(
            specs.read_sources([BPMN_FILE.parent]), forms_dir=ROOT / "forms", sandbox=self.rt.sandbox
        )
        with self.db.write() as conn:
            specs.deploy(conn, validation, actor=None, now=now)

    def dispose(self) -> None:
        self.db.dispose()


class GridcaseCase:
    def __init__(self, gc_: Gridcase, *, cold: bool) -> None:
        from engine.cases import start_case

        self.rt, self.cold = gc_.rt, cold
        view = start_case(
            PROCESS_ID, rt=self.rt, actor="resident_1", title="bench: 楼道堆物", kind="demo", grid_id=GRID
        )
        self.case_id = view.id
        self._load_ready()

    def _load_ready(self) -> None:
        from engine.tasks import case_tasks

        ready = [t for t in case_tasks(self.case_id, rt=self.rt) if t.state == "ready"]
        if len(ready) != 1:
            raise RuntimeError(f"expected one ready task, found {[t.task_spec for t in ready]}")
        self.task = ready[0]

    def step(self, *, timed: bool = True) -> int:
        from engine.tasks import complete_task

        t = self.task
        data = step_data(t.task_spec)
        if self.cold and timed:
            self.rt.workflows.clear()
        t0 = perf_ns()
        complete_task(t.id, rt=self.rt, actor=ACTORS[t.task_spec], data=data, expected_version=t.case_version)
        elapsed = perf_ns() - t0
        self._load_ready()
        return elapsed

    def advance_loops(self, n: int) -> None:
        for _ in range(2 * n):
            self.step(timed=False)


def bench_gridcase(g: Gridcase, depths: tuple[int, ...], reps: int, *, cold: bool) -> dict[int, Series]:
    def new_case(depth: int) -> GridcaseCase:
        case = GridcaseCase(g, cold=cold)
        case.advance_loops(depth)
        return case

    return {d: run_depth(d, reps, new_case, lambda c: c.step()) for d in depths}  # type: ignore[attr-defined]


# --- PostgreSQL helpers ---------------------------------------------------------------------------


def pg_urls(url: str, schema: str) -> tuple[str, str]:
    """(SQLAlchemy URL pinned to ``schema``, libpq conninfo) from ``DATABASE_URL``."""
    from sqlalchemy.engine import make_url

    sa = make_url(url)
    if sa.drivername in ("postgresql", "postgres"):
        sa = sa.set(drivername="postgresql+psycopg")
    libpq = sa.set(drivername="postgresql").render_as_string(hide_password=False)
    pinned = sa.update_query_dict({"options": f"-csearch_path={schema}"})
    return pinned.render_as_string(hide_password=False), libpq


# --- running and printing -------------------------------------------------------------------------


@dataclass
class BackendResult:
    name: str
    naive: dict[int, Series]
    grid: dict[int, Series]
    grid_cold: dict[int, Series]


def run_backend(
    name: str, naive_store: NaiveStore, grid_url: str, depths: tuple[int, ...], reps: int, cold_reps: int
) -> BackendResult:
    print(f"[{name}] (b) naive host …", file=sys.stderr, flush=True)
    naive = bench_naive(naive_store, depths, reps)
    gc.collect()
    print(f"[{name}] setting up gridcase (migrate, demo org, deploy) …", file=sys.stderr, flush=True)
    g = Gridcase(grid_url)
    try:
        GridcaseCase(g, cold=False).advance_loops(2)  # warm-up: imports, spec cache, form validators
        gc.collect()
        print(f"[{name}] (c) gridcase complete_task …", file=sys.stderr, flush=True)
        grid = bench_gridcase(g, depths, reps, cold=False)
        gc.collect()
        print(
            f"[{name}] (c cold) gridcase, workflow cache cleared before each step …",
            file=sys.stderr,
            flush=True,
        )
        grid_cold = bench_gridcase(g, depths, cold_reps, cold=True)
        gc.collect()
    finally:
        g.dispose()
    return BackendResult(name, naive, grid, grid_cold)


def fmt_row(label: str, values: list[float], width: int = 11) -> str:
    return f"{label:<52}" + "".join(f"{v:>{width},.0f}" for v in values)


def ratio_row(label: str, values: list[float], width: int = 11) -> str:
    return f"{label:<52}" + "".join(f"{v:>{width}.2f}" for v in values)


def print_table(bare: dict[int, Series], res: BackendResult, depths: tuple[int, ...]) -> None:
    head = f"{'median µs per step':<52}" + "".join(
        f"{f'{d} loop' + ('s' if d > 1 else ''):>11}" for d in depths
    )
    print(f"\n== backend: {res.name} ==")
    print(head)
    print("-" * len(head))
    a = [bare[d].median_us() for d in depths]
    b = [res.naive[d].median_us() for d in depths]
    c = [res.grid[d].median_us() for d in depths]
    cc = [res.grid_cold[d].median_us() for d in depths]
    print(fmt_row("(a) bare SpiffWorkflow, in memory", a))
    print(fmt_row("(b) naive host: whole JSON blob in one row", b))
    print(fmt_row("(c) gridcase complete_task (warm workflow cache)", c))
    print(fmt_row("[info, not in RESULT] (c) with cold workflow cache", cc))
    print(ratio_row("c / a", [y / x for x, y in zip(a, c, strict=True)]))
    print(ratio_row("c / b", [y / x for x, y in zip(b, c, strict=True)]))
    print(fmt_row("c - a (gridcase overhead over bare)", [y - x for x, y in zip(a, c, strict=True)]))
    print(fmt_row("cold - warm (share of the workflow cache)", [y - x for x, y in zip(c, cc, strict=True)]))
    print(f"{'p90 µs per step':<52}")
    print(fmt_row("(a) p90", [bare[d].p90_us() for d in depths]))
    print(fmt_row("(b) p90", [res.naive[d].p90_us() for d in depths]))
    print(fmt_row("(c) p90", [res.grid[d].p90_us() for d in depths]))
    print(fmt_row("(c cold) p90", [res.grid_cold[d].p90_us() for d in depths]))
    n = ", ".join(f"{d}: {len(res.grid[d].times)}" for d in depths)
    print(
        f"timed steps per history size (a/b/c): {n}; cold: "
        + ", ".join(f"{d}: {len(res.grid_cold[d].times)}" for d in depths)
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 timed steps per history size")
    ap.add_argument("--reps", type=int, default=None, help="timed steps per history size (default 200)")
    args = ap.parse_args(argv)
    reps = args.reps or (20 if args.quick else 200)
    cold_reps = max(2, reps // 2)
    depths = DEPTHS

    print(
        "gridcase engine step bench — SpiffWorkflow 3.2.0, workflows/demo/demo.bpmn"
        " (handle → verify → fail → handle)"
    )
    print(
        f"history: N fail loops done before timing; timed: {reps} steps per N"
        " (handle/verify pairs, verify=fail),"
        f" median of per-step times"
    )
    print(
        "history band while timing: "
        + ", ".join(
            f"N={d}: {STEPS_PER_CASE[d]} steps per fresh case"
            f" (history {d}..{d + STEPS_PER_CASE[d] // 2} loops)"
            for d in depths
        )
    )

    print("(a) bare SpiffWorkflow …", file=sys.stderr, flush=True)
    gc.collect()
    bare = bench_bare(depths, reps)
    gc.collect()

    results: list[BackendResult] = []
    with tempfile.TemporaryDirectory(prefix="gridcase-bench-") as tmp:
        naive_store = NaiveStore(sqlite_path=Path(tmp) / "naive.db")
        try:
            results.append(
                run_backend(
                    "sqlite (WAL, synchronous=NORMAL, temp file)",
                    naive_store,
                    f"sqlite:///{Path(tmp) / 'gridcase.db'}",
                    depths,
                    reps,
                    cold_reps,
                )
            )
        finally:
            naive_store.close()

    pg_url = os.environ.get("DATABASE_URL")
    pg_failure: str | None = None
    if pg_url and pg_url.startswith("postgres"):
        import psycopg

        schema = f"gridcase_bench_{os.getpid()}"
        grid_url, conninfo = pg_urls(pg_url, schema)
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        try:
            naive_store = NaiveStore(pg_conninfo=conninfo, pg_schema=schema)
            try:
                results.append(
                    run_backend(
                        "postgresql (DATABASE_URL, temporary schema)",
                        naive_store,
                        grid_url,
                        depths,
                        reps,
                        cold_reps,
                    )
                )
            except Exception as err:  # the SQLite figures and RESULT still print
                pg_failure = f"{type(err).__name__}: {str(err).splitlines()[0]}"
            finally:
                naive_store.close()
        finally:
            with psycopg.connect(conninfo, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")

    for res in results:
        print_table(bare, res, depths)
    if pg_failure:
        print(f"\n== backend: postgresql == FAILED, no figures: {pg_failure}")

    sq = results[0]
    a1, c1 = bare[1].median_us(), sq.grid[1].median_us()
    b10, c10 = sq.naive[10].median_us(), sq.grid[10].median_us()
    a100, c100 = bare[100].median_us(), sq.grid[100].median_us()
    step_vs_bare = c1 / a1
    step_vs_naive = c10 / b10
    growth = (c100 - a100) / (c1 - a1)
    print(
        f"\ntargets: step_vs_bare ≤ 3 ({'ok' if step_vs_bare <= 3 else 'MISSED'}), "
        f"step_vs_naive ≤ 0.5 ({'ok' if step_vs_naive <= 0.5 else 'MISSED'}), "
        f"growth_100_vs_1 ≤ 1.5 ({'ok' if growth <= 1.5 else 'MISSED'})"
    )
    print(
        f"RESULT step_vs_bare={step_vs_bare:.2f} step_vs_naive={step_vs_naive:.2f}"
        f" growth_100_vs_1={growth:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
