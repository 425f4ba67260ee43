"""The organisation lookups that run for every new task and every SLA clock start, at the demo's size
and at a district's: how long each takes, in microseconds.

Run from the repo root::

    python bench/org_lookups.py               # demo org (38 units), then + 40 streets (≈ 8,900 units)
    python bench/org_lookups.py --streets 100 # ≈ 22,000 units
    python bench/org_lookups.py --quick       # + 4 streets, 200 calls each (a smoke run, for tests)

Set-up. A fresh SQLite database (migrated) holds the demo organisation (``engine.demo_org``). The large
run adds ``--streets`` streets under its district, 20 communities a street and 10 grids a community,
with one active holder each (street, community, grid worker): the shape of a real district's tree.

Timed, per call, the median over ``--calls`` calls (after one untimed call), on one read transaction:

- ``working_hours_of``: a grid's working hours, inherited from the nearest unit that sets them
  (every SLA clock start);
- ``resolve_assignment``: the unit for a community task of a grid (the walk up), for a department task
  with the dispatch hint, and for the 司法所 tier (``within_district``): every new human task;
- ``ancestors``: a grid's chain up to the district (escalation's recipients).

The last line: ``RESULT units=<large run's units> growth=<slowest lookup at the large size / the same
lookup at the demo's size>``. A lookup that reads the whole organisation grows with it (before
2026-12-07: 2.7 ms for ``working_hours_of`` at 8,900 units against 29 µs at 38); one that walks up the
tree does not. Target: ``growth ≤ 2``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from medians import median_ns
from sqlalchemy import Connection, insert

from engine import orgs
from engine.demo_org import load_demo_org
from engine.store.db import Database
from engine.store.models import membership, org_unit, person

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def build(folder: Path, streets: int) -> Database:
    """A migrated SQLite database with the demo org and ``streets`` extra streets of 20 × 10 grids."""
    db = Database(f"sqlite:///{folder}/org_{streets}.db")
    db.migrate()
    with db.write() as conn:
        load_demo_org(conn, now=NOW, password_for=lambda _person: "bench-password-1")
        units: list[dict[str, object]] = []
        people: list[dict[str, object]] = []
        holders: list[dict[str, object]] = []

        def add(uid: str, kind: str, parent: str, path: str, role: str) -> None:
            units.append({"id": uid, "name": uid, "kind": kind, "parent_id": parent, "path": path,
                          "created_at": NOW})  # fmt: skip
            people.append({"id": f"p_{uid}", "name": uid, "active": True, "created_at": NOW})
            holders.append({"person_id": f"p_{uid}", "org_unit_id": uid, "role": role})

        for s in range(streets):
            street = f"bs{s}"
            add(street, "street", "district", f"/district/{street}/", "street")
            for c in range(20):
                community = f"{street}_c{c}"
                add(community, "community", street, f"/district/{street}/{community}/", "community")
                for g in range(10):
                    grid = f"{community}_g{g}"
                    path = f"/district/{street}/{community}/{grid}/"
                    add(grid, "grid", community, path, "grid_worker")
        if units:
            conn.execute(insert(org_unit), units)
            conn.execute(insert(person), people)
            conn.execute(insert(membership), holders)
    return db


def median_us(call: Callable[[], object], calls: int) -> float:
    return median_ns(call, calls) / 1000


def measure(conn: Connection, grid: str, calls: int) -> dict[str, float]:
    return {
        "working_hours_of": median_us(lambda: orgs.working_hours_of(conn, grid), calls),
        "assign (walk up)": median_us(
            lambda: orgs.resolve_assignment(conn, role="community", grid_id=grid), calls
        ),
        "assign (hint)": median_us(
            lambda: orgs.resolve_assignment(conn, role="department", grid_id=grid, unit_hint="dept_urban"),
            calls,
        ),
        "assign (district)": median_us(
            lambda: orgs.resolve_assignment(conn, role="judicial_office", grid_id=grid, within_district=True),
            calls,
        ),
        "ancestors": median_us(lambda: orgs.ancestors(conn, grid), calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streets", type=int, default=40, help="extra streets of 20 × 10 grids")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per lookup")
    parser.add_argument("--quick", action="store_true", help="4 streets, 200 calls")
    args = parser.parse_args()
    streets, calls = (4, 200) if args.quick else (args.streets, args.calls)
    figures: list[tuple[int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        for extra in (0, streets):
            db = build(Path(folder), extra)
            with db.read() as conn:
                units = int(conn.exec_driver_sql("SELECT count(*) FROM org_unit").scalar_one())
                members = int(conn.exec_driver_sql("SELECT count(*) FROM membership").scalar_one())
                grid = "g1" if extra == 0 else f"bs{extra // 2}_c7_g3"
                times = measure(conn, grid, calls)
            db.dispose()
            figures.append((units, times))
            print(f"sqlite: {units} units, {members} memberships, grid {grid} (median of {calls} calls)")
            for name, us in times.items():
                print(f"  {name:<18} {us:8.1f} µs")
    (_small, before), (large, after) = figures
    growth = max(after[name] / before[name] for name in before)
    print(f"growth ≤ 2: {'met' if growth <= 2 else 'NOT met'}")
    print(f"RESULT units={large} growth={growth:.2f}")


if __name__ == "__main__":
    main()
