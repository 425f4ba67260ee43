"""``engine.search.search_cases`` against a plain reading of its rules, on SQLite and PostgreSQL.

Random cases over the demo org (grids, reporters, statuses, kinds, categories, channels, creation
instants, titles, department tasks) with SLA clocks running, paused or stopped, on time or late. For
each demo role and each filter, the pages (walked with the cursor) must be exactly the visible cases
(``access.sees_case``, the rule's other implementation) that match, newest first. SQLite's plans of the
overdue filters and of the supervisors' provisional list are checked for reads that grow with history."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import Connection, insert, select

from engine import access, search, sla_views, supervision
from engine.clock import FixedClock
from engine.demo_org import load_demo_org
from engine.runtime import Runtime
from engine.store.db import Database
from engine.store.models import case, human_task, org_unit, sla_clock
from tests.conftest import insert_bare_spec_version

NOW = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)
VIEWERS = [
    "gw_g1",
    "community_c1",
    "street_s1",
    "dept_urban_1",
    "supervisor_d",
    "supervisor_s1",
    "cc_1",
    "resident_1",
]
DEPTS = ["dept_urban", "dept_market", "dept_fire"]
TITLES = ["噪声扰民", "路灯不亮", "占道经营", "Noise_100%", "垃圾清运"]


@dataclass
class Made:
    id: int
    status: str
    kind: str
    category: str | None
    channel: str | None
    grid_id: str
    unit_path: str
    reporter_id: str
    title: str
    number: str
    created_at: datetime
    tasks: list[tuple[str, str]]
    late: bool  # a running clock past due


def _fill(conn: Connection, seed: int) -> list[Made]:
    rng = random.Random(seed)
    load_demo_org(conn, now=NOW, password_for=lambda _p: "not-used-here-1")
    insert_bare_spec_version(conn, "work_order", NOW)
    paths = dict(conn.execute(select(org_unit.c.id, org_unit.c.path).where(org_unit.c.kind == "grid")).all())
    made: list[Made] = []
    for n in range(1, 121):
        grid = rng.choice(sorted(paths))
        created = NOW - timedelta(days=rng.randint(0, 40), minutes=rng.randint(0, 600))
        row = Made(
            id=n,
            status=rng.choice(["open", "open", "completed", "cancelled"]),
            kind=rng.choice(["work_order", "dispute"]),
            category=rng.choice([None, "noise", "lighting"]),
            channel=rng.choice([None, "web", "hotline_12345"]),
            grid_id=grid,
            unit_path=paths[grid],
            reporter_id=rng.choice(["gw_g1", "gw_g2", "resident_1", "community_c1"]),
            title=f"{rng.choice(TITLES)} {n}",
            number=f"WO2025{n:06d}",
            created_at=created,
            tasks=[("department", d) for d in rng.sample(DEPTS, rng.randint(0, 2))],
            late=False,
        )
        conn.execute(
            insert(case).values(
                id=n, number=row.number, kind=row.kind, process_id="work_order", spec_version_id=1,
                title=row.title, category=row.category, channel=row.channel, grid_id=grid,
                unit_path=row.unit_path, status=row.status, version=1, data={}, reporter_id=row.reporter_id,
                created_at=created, updated_at=created,
            )
        )  # fmt: skip
        for k, (role, unit) in enumerate(row.tasks):
            conn.execute(
                insert(human_task).values(
                    id=f"t{n}-{k}", case_id=n, task_spec="handle", name="处置", role=role, org_unit_id=unit,
                    state=rng.choice(["ready", "completed"]), created_at=created,
                )
            )  # fmt: skip
        for k in range(rng.randint(0, 3)):
            state = rng.choice(["running", "running", "paused", "stopped"])
            due = NOW + timedelta(hours=rng.choice([-30, -1, 2, 50]))
            row.late = row.late or (state == "running" and due < NOW)
            conn.execute(
                insert(sla_clock).values(
                    case_id=n, task_id=None, task_spec="handle", clock_key=f"k{k}", budget="2WD",
                    budget_kind="working", budget_seconds=57600, started_at=created, pauses=[], extensions=[],
                    due_at=due, state=state, status="overdue" if due < NOW else "on_time",
                    calendar_version="test",
                )
            )  # fmt: skip
        made.append(row)
    return made


FILTERS = [
    search.CaseFilter(),
    search.CaseFilter(overdue=True),
    search.CaseFilter(overdue=False),
    search.CaseFilter(overdue=True, status="open"),
    search.CaseFilter(status="completed", kind="dispute"),
    search.CaseFilter(category="noise", channel="web"),
    search.CaseFilter(grid_id="g1"),
    search.CaseFilter(unit_id="c2"),
    search.CaseFilter(created_from=NOW - timedelta(days=10), created_to=NOW - timedelta(days=2)),
    search.CaseFilter(text="噪声"),
    search.CaseFilter(text="noise_100%"),  # case-insensitive, and _ and % are no wildcards
    search.CaseFilter(text="WO2025000007"),
]


def _matches(m: Made, f: search.CaseFilter, paths: dict[str, str]) -> bool:
    plain = all(
        getattr(f, name) is None or getattr(f, name) == getattr(m, name)
        for name in ("status", "kind", "category", "channel", "grid_id")
    )
    return (
        plain
        and (f.unit_id is None or m.unit_path.startswith(paths[f.unit_id]))
        and (f.overdue is None or f.overdue == m.late)
        and (f.created_from is None or m.created_at >= f.created_from)
        and (f.created_to is None or m.created_at < f.created_to)
        and (not f.text or f.text.strip().lower() in m.title.lower() or f.text == m.number)
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_case_pages_are_the_visible_matching_cases_newest_first(db: Database, seed: int) -> None:
    with db.write() as conn:
        made = _fill(conn, seed)
    with db.read() as conn:
        paths = dict(conn.execute(select(org_unit.c.id, org_unit.c.path)).all())
        viewers = {person: access.principal(conn, person) for person in VIEWERS}
    rt = Runtime(db=db, clock=FixedClock(NOW))
    assert any(m.late for m in made) and not all(m.late for m in made)
    for person, who in viewers.items():
        visible = [
            m
            for m in made
            if access.sees_case(
                who,
                unit_path=m.unit_path,
                reporter_id=m.reporter_id,
                tasks=[SimpleNamespace(role=r, org_unit_id=u) for r, u in m.tasks],
            )
        ]
        for f in FILTERS:
            expected = sorted((m.id for m in visible if _matches(m, f, paths)), reverse=True)
            seen: list[int] = []
            cursor = None
            while True:
                page = search.search_cases(who, rt=rt, filters=f, cursor=cursor, limit=7)
                seen += [c.id for c in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == expected, (person, f)


def test_the_overdue_filters_read_the_late_clocks_once_not_per_case(db: Database) -> None:
    """SQLite's plan for ``overdue``: the late clocks are one search of ``ix_sla_clock_state_due``, run
    once (a list subquery), never a subquery correlated with each case walked."""
    if db.dialect != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    with db.write() as conn:
        load_demo_org(conn, now=NOW, password_for=lambda _p: "not-used-here-1")
    with db.read() as conn:
        for person in ("supervisor_d", "dept_urban_1"):
            who = access.principal(conn, person)
            for overdue in (True, False):
                query = search._page_query(conn, who, search.CaseFilter(overdue=overdue), NOW, None, 21)
                sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
                plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
                clocks = [step for step in plan if "sla_clock" in step]
                assert len(clocks) == 1 and "ix_sla_clock_state_due (state=? AND due_at<?)" in clocks[0], plan
                assert any(step.startswith("LIST SUBQUERY") for step in plan), plan


def test_the_provisional_list_reads_only_provisional_clocks(db: Database) -> None:
    """SQLite's plan for the supervisors' provisional list: a search of ``ix_sla_clock_provisional`` by
    provisional and live state, so neither every clock ever started nor the stopped clocks of closed
    cases are read; only the live provisional ones are sorted."""
    if db.dialect != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    query = supervision._watch_query(["/district/"], *sla_views.PROVISIONAL, limit=20)
    with db.read() as conn:
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    clocks = [step for step in plan if "sla_clock" in step]
    assert clocks == ["SEARCH sla_clock USING INDEX ix_sla_clock_provisional (provisional=? AND state=?)"], (
        plan
    )
