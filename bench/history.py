"""The API's read endpoints on a young database and on one with a district's history: how long each takes,
in milliseconds, and how much that grows.

Run from the repo root::

    python bench/history.py               # 80 real cases, then doubled 11 times (≈ 164,000 cases)
    python bench/history.py --doublings 8 # ≈ 20,000 cases
    python bench/history.py --quick       # doubled 3 times, 5 calls each (a smoke run, for tests)

Set-up. A temporary SQLite database with the demo org and the ``work_order`` process (as
``bench/api_load.py``). Through the app in-process (WSGI calls, no server): 40 work-order lifecycles run
to closure and 40 cases are reported and left open at the community's 受理 task, each with a running
SLA clock. Measured once like that ("young"), then every case is cloned ``--doublings`` times with its
task, clock, timeline and workflow rows under new ids (the clones are only read, never stepped), a
quarter of the running clocks are made late, and measured again ("history").

Timed, the median of ``--calls`` calls each after one untimed call: the community's work list, case list
(plain, ``overdue=true``, ``status=open``), a department's case list (plain; ``overdue=true`` and
``status=open``, which none of its cases match), a resident's (who reported none), the command centre's
overdue and provisional lists, and one case file.

The last line: ``RESULT cases=<history size> growth=<slowest endpoint's history time / its young time>``.
An endpoint whose work follows the page and the caller's own queue stays flat; one that reads every
case, task or clock grows with the history. Target: ``growth ≤ 5`` (SQLite's B-trees deepen by a level or
two, and some lists must skip what the caller may not see).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import api_load  # noqa: E402
from medians import median_ns  # noqa: E402

from engine.runtime import Runtime  # noqa: E402

SEED_CLOSED = 40
SEED_OPEN = 40
# (label, person, path)
READS = [
    ("work list", "community_c1", "/api/tasks?limit=20"),
    ("cases", "community_c1", "/api/cases?limit=20"),
    ("cases overdue", "community_c1", "/api/cases?limit=20&overdue=true"),
    ("cases open", "community_c1", "/api/cases?limit=20&status=open"),
    ("dept cases", "dept_urban_1", "/api/cases?limit=20"),
    ("dept overdue", "dept_urban_1", "/api/cases?limit=20&overdue=true"),
    ("dept open", "dept_urban_1", "/api/cases?limit=20&status=open"),
    ("my reports", "resident_1", "/api/cases?limit=20"),
    ("overdue list", "cc_1", "/api/supervision/overdue?limit=20"),
    ("provisional", "cc_1", "/api/supervision/provisional?limit=20"),
    ("case file", "cc_1", "/api/cases/{case}"),
]


class App:
    """The gridcase app called in-process with WSGI environs (what gunicorn builds), bearer tokens."""

    def __init__(self, url: str, runtime: Runtime | None = None) -> None:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("GRIDCASE_SECRET_KEY", "bench-secret")
        from api.app import create_app

        self.app = create_app(runtime=runtime)
        self.tokens: dict[str, str] = {}

    def call(self, method: str, path: str, body: object, person: str | None) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else b""
        route, _, query = path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": route, "QUERY_STRING": query, "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(raw), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
            "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }  # fmt: skip
        if raw:
            environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"] = "application/json", str(len(raw))
        if person is not None:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {self.token(person)}"
        status: list[str] = []

        def start_response(line: str, _headers: Any, _info: Any = None) -> Callable[[bytes], object]:
            status.append(line)
            return lambda _data: None

        out = b"".join(self.app(environ, start_response))
        code = int(status[0].split()[0])
        if code >= 400:
            raise RuntimeError(f"{method} {path}: {code} {out[:300]!r}")
        return code, json.loads(out) if out else None

    def token(self, person: str) -> str:
        if person not in self.tokens:
            body = {"login": person, "password": api_load.PASSWORD}
            self.tokens[person] = self.call("POST", "/api/auth/login", body, None)[1]["token"]
        return self.tokens[person]


def run_lifecycle(app: App, n: int, *, leave_open: bool = False) -> int:
    """Client ``n``'s work-order lifecycle through the API (``api_load.lifecycle``), to closure or, with
    ``leave_open``, only its intake; returns the case's id."""
    cast = api_load.Cast.of_client(n)
    tokens = {part: app.token(person) for part, person in cast.people.items()}
    people = {token: person for person, token in app.tokens.items()}
    cycle = api_load.lifecycle("work_order", cast, tokens, n)
    answer: Any = None
    case_id = 0
    while True:
        try:
            _label, method, path, body, token = cycle.send(answer)
        except StopIteration:
            return case_id
        assert token is not None
        answer = app.call(method, path, body, people[token])[1]
        if method == "POST" and path == "/api/cases":
            case_id = answer["id"]
            if leave_open:
                return case_id  # left open at 受理


def seed(app: App) -> int:
    """40 closed and 40 open work orders, through the API; returns the last closed case's id."""
    last = 0
    for n in range(SEED_CLOSED + SEED_OPEN):
        case_id = run_lifecycle(app, n, leave_open=n >= SEED_CLOSED)
        if n < SEED_CLOSED:
            last = case_id
    return last


def double(path: str, k: int) -> int:
    """Clone every case and its rows under new ids (case number and task ids suffixed with ``k``)."""
    db = sqlite3.connect(path)
    (offset,) = db.execute('SELECT max(id) FROM "case"').fetchone()

    def clone(table: str, changed: dict[str, str]) -> None:
        columns = [
            r[1] for r in db.execute(f'PRAGMA table_info("{table}")') if r[1] != "id" or "id" in changed
        ]
        names = ", ".join(f'"{c}"' for c in columns)
        values = ", ".join(changed.get(c, f'"{c}"') for c in columns)
        key = "id" if table == "case" else "case_id"
        db.execute(f'INSERT INTO "{table}" ({names}) SELECT {values} FROM "{table}" WHERE {key} <= {offset}')

    moved = {"case_id": f"case_id + {offset}"}
    clone("case", {"id": f"id + {offset}", "number": f"number || '-{k}'", "idempotency_key": "NULL"})
    clone("workflow_state", moved)
    clone("workflow_task", moved)
    clone("human_task", {**moved, "id": f"id || '-{k}'"})
    clone("sla_clock", {**moved, "task_id": f"task_id || '-{k}'"})
    clone("audit_event", {**moved, "task_id": f"task_id || '-{k}'"})
    db.commit()
    (cases,) = db.execute('SELECT count(*) FROM "case"').fetchone()
    db.close()
    return int(cases)


def make_a_quarter_late(path: str) -> None:
    db = sqlite3.connect(path)
    db.execute(
        "UPDATE sla_clock SET due_at = '2020-01-01 00:00:00.000000', status = 'overdue'"
        " WHERE state = 'running' AND case_id % 4 = 0"
    )
    db.commit()
    db.close()


def median_ms(call: Callable[[], object], calls: int) -> float:
    return median_ns(call, calls) / 1e6


def measure(app: App, case_id: int, calls: int) -> dict[str, float]:
    def reader(person: str, path: str) -> Callable[[], object]:
        return lambda: app.call("GET", path.format(case=case_id), None, person)

    return {label: median_ms(reader(person, path), calls) for label, person, path in READS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doublings", type=int, default=11, help="times every case is cloned")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per endpoint")
    parser.add_argument("--quick", action="store_true", help="3 doublings, 5 calls")
    args = parser.parse_args()
    doublings, calls = (3, 5) if args.quick else (args.doublings, args.calls)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/history.db"
        url = f"sqlite:///{path}"
        api_load.prepare(url)
        app = App(url)
        case_id = seed(app)
        make_a_quarter_late(path)
        young = measure(app, case_id, calls)
        cases = 0
        for k in range(doublings):
            cases = double(path, k)
        make_a_quarter_late(path)
        old = measure(app, case_id, calls)
    print(
        f"sqlite: {SEED_CLOSED + SEED_OPEN} cases (young) and {cases} (history); median of {calls} calls, ms"
    )
    print(f"  {'endpoint':<14} {'young':>8} {'history':>8}  person")
    for label, person, _path in READS:
        print(f"  {label:<14} {young[label]:8.2f} {old[label]:8.2f}  {person}")
    growth = max(old[label] / young[label] for label in young)
    print(f"growth ≤ 5: {'met' if growth <= 5 else 'NOT met'}")
    print(f"RESULT cases={cases} growth={growth:.2f}")


if __name__ == "__main__":
    main()
