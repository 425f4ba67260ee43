"""HTTP load benchmark: gunicorn (2 workers of ``api.serving.KeepAliveWorker``, the class gridcase is
served with) on a temporary SQLite database (and PostgreSQL when DATABASE_URL names a scratch database
whose name contains "test" or "bench"), N concurrent keep-alive clients on loopback driving work-order
lifecycles (``--process work_order``, the default: intake, the community's work list, then for each of
the 7 tasks of the main line a case read, a claim and a complete by the person who holds it, and a read
of the closed case; ``--process demo``: the 2-task demo process), for a bounded time, with no think time
(a closed loop: each client sends its next request as soon as the last one is answered). The clients
run on an event loop in ``--client-processes`` load-generator processes; all log in before the common
start. Prints completed tasks/s, p50/p99 per endpoint, the run second by second, and the HTTP cost of
one step against the service-layer cost of the same step (engine called in-process), the two measured
alternately.

A run lasts 60 s by default: a server reaches its steady state only after half a minute. Each worker's
workflow cache fills within about 20 s, idle keep-alive connections (the clients' logins) expire at
30 s, and the write-ahead log and the collector's heap grow meanwhile; the stalls of session 8 (a 2 s
lingering close, checkpoints in commits, 110 ms collector pauses) did not show in 15 s runs.

Client i starts at request i mod (requests a lifecycle) (it first reads its work list that many times),
as independent users do. Started all at intake in the same instant (``--in-step``), the clients stay in
step for the whole run: a server answering in arrival order gives each client one answer per round.

``--worker-class gthread`` (with ``--threads N``) and ``sync`` are there for comparison. ``--rate R``
adds a second run on the same server in which the clients are paced to offer R completed tasks a
second between them: the latency at that load (timed from each request's scheduled instant), where the
closed loop gives the latency at saturation (by Little's law, the clients divided by the answer rate).

    python bench/api_load.py [--clients 50] [--seconds 60] [--workers 2] [--client-processes 2]
                             [--process work_order|demo] [--rate TASKS_PER_S]

Last line: ``RESULT tasks_per_s=… p99_ms=… http_vs_service=…`` (SQLite figures).
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import json
import multiprocessing
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from engine import access, casework, specs  # noqa: E402
from engine.demo_org import load_demo_org  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.store.db import Database  # noqa: E402

PASSWORD = "bench-pass-123"
GRIDS = [f"g{i}" for i in range(1, 9)]
COMMUNITY = {"g1": "c1", "g2": "c1", "g3": "c2", "g4": "c2", "g5": "c3", "g6": "c3", "g7": "c4", "g8": "c4"}
STREET = {"c1": "s1", "c2": "s1", "c3": "s2", "c4": "s2"}
# Street-level categories of workflows/work_order/routing.dmn, each with one lead department and no
# co-departments: client i reports category i mod 5, so the orders reach four departments.
CATEGORIES = {
    "noise": "dept_urban",
    "garbage": "dept_urban",
    "public_security": "dept_police",
    "welfare": "dept_civil_affairs",
    "dispute_legal": "dept_justice",
}
# The work-order main line (workflows/work_order/scenarios/happy_path.json): task, who does it, form data.
WORK_ORDER_STEPS: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("accept", "community", {"decision": "accept", "opinion": "属实，受理"}),
    ("dispatch", "street", {"dispatch_decision": "confirm"}),
    ("claim", "department", {"claim_decision": "claim"}),
    ("handle", "department", {"handle_result": "done", "handle_summary": "已到现场处置"}),
    ("feedback", "department", {"feedback_summary": "已处置完毕，现场已恢复"}),
    ("verify", "community", {"verify_result": "pass"}),
    ("follow_up", "caller", {"rating": "satisfied", "contact_result": "phone"}),
)
DEMO_STEPS: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("handle", "reporter", {"result": "已处置"}),
    ("verify", "community", {"verify_result": "pass"}),
)
PROCESS_STEPS = {"work_order": WORK_ORDER_STEPS, "demo": DEMO_STEPS}


def lifecycle_requests(process: str) -> int:
    """Requests in one lifecycle: intake, one work list, a case read, a claim and a complete a task, and
    the reporter's read of the closed case."""
    return 3 + 3 * len(PROCESS_STEPS[process])


@dataclass(frozen=True)
class Cast:
    """Who plays each part in client ``i``'s lifecycles: login by part, grid and category."""

    grid: str
    category: str
    people: dict[str, str]

    @classmethod
    def of_client(cls, i: int) -> Cast:
        grid = GRIDS[i % len(GRIDS)]
        category = list(CATEGORIES)[i % len(CATEGORIES)]
        community = COMMUNITY[grid]
        people = {
            "reporter": f"gw_{grid}",
            "community": f"community_{community}",
            "street": f"street_{STREET[community]}",
            "department": f"{CATEGORIES[category]}_1",
            "caller": "caller_1",
        }
        return cls(grid, category, people)


def prepare(url: str) -> None:
    db = Database(url)
    if not db.is_sqlite:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    db.migrate()
    rt = Runtime(db=db)
    with db.write() as conn:
        load_demo_org(conn, now=rt.now(), password_for=lambda _p: PASSWORD)
    for process in ("work_order", "demo"):
        validation = specs.validate(
            specs.read_sources([ROOT / "workflows" / process]), forms_dir=ROOT / "forms", sandbox=rt.sandbox
        )
        with db.write() as conn:
            specs.deploy(conn, validation, actor="owner_1", now=rt.now())
    db.dispose()


WORKER_CLASSES = {"keepalive": "api.serving.KeepAliveWorker", "gthread": "gthread", "sync": "sync"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    url: str, workers: int, threads: int, worker_class: str = "gthread"
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "GRIDCASE_SECRET_KEY": "bench-secret"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--worker-class",
            WORKER_CLASSES[worker_class],
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--keep-alive",
            "30",
            "api.app:create_app()",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("gunicorn did not answer within 30 s")


Request = tuple[str, str, str, object, "str | None"]  # label, method, path, JSON body or None, token
Lifecycle = Generator[Request, Any, int]  # yields requests, is sent each answer, returns tasks completed


def encode_request(method: str, path: str, body: object, token: str | None) -> bytes:
    """The request as bytes: built by hand, the load generators share the server's 2 cores."""
    raw = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(raw)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    return head.encode() + b"\r\n" + raw


def parse_answer(buffer: bytes) -> tuple[int, bytes, bytes, bool] | None:
    """(status, body, bytes left over, server closes) of the first whole answer in ``buffer``; None
    while it is incomplete. Answers are read by their Content-Length."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise OSError(f"an answer without Content-Length: {head[:200]!r}")
    line_end = head.find(b"\r\n", at + 2)
    need = end + 4 + int(head[at + 17 : line_end if line_end > 0 else len(head)])
    if len(buffer) < need:
        return None
    return int(head[9:12]), buffer[end + 4 : need], buffer[need:], b"\r\nconnection: close" in head


class Client:
    """One keep-alive HTTP/1.1 connection on a blocking socket, for the serial step costs and logins;
    records the latency of every request by endpoint label."""

    def __init__(self, port: int, stats: dict[str, list[float]]) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.stats = stats

    def call(
        self, label: str, method: str, path: str, body: object = None, token: str | None = None
    ) -> object:
        message = encode_request(method, path, body, token)
        started = time.perf_counter()
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(message)
        while (answer := parse_answer(self.buffer)) is None:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.sock.close()
                self.sock = None
                raise OSError("the server closed the connection")
            self.buffer += chunk
        status, data, self.buffer, closes = answer
        self.stats[label].append(time.perf_counter() - started)
        if closes:
            self.sock.close()
            self.sock = None
        if status >= 400:
            raise RuntimeError(f"{label}: {status} {data[:200]!r}")
        return json.loads(data) if data else None

    def run(self, cycle: Lifecycle) -> int:
        """Drive one lifecycle to its end on this connection; returns its completed tasks."""
        try:
            request = next(cycle)
            while True:
                request = cycle.send(self.call(*request))
        except StopIteration as done:
            return int(done.value)

    def login(self, person: str) -> str:
        found = self.call("login", "POST", "/api/auth/login", {"login": person, "password": PASSWORD})
        return str(found["token"])  # type: ignore[index]


def intake_body(process: str, cast: Cast, n: int) -> dict[str, object]:
    if process == "demo":
        title = f"bench {cast.grid} {n}"
        return {"process_id": "demo", "title": title, "grid_id": cast.grid, "channel": "web"}
    return {
        "process_id": "work_order",
        "title": f"bench {cast.category} {cast.grid} {n}",
        "grid_id": cast.grid,
        "channel": "hotline_12345",
        "category": cast.category,
        "description": "市民来电反映：小区东门附近问题持续多日，请尽快处理",
        "address": "青山街道示范路1号",
        "reporter": {"name": "市民", "phone": "13800000000", "address_detail": "3栋2单元501"},
    }


def lifecycle(process: str, cast: Cast, tokens: dict[str, str], n: int) -> Lifecycle:
    """One case from intake to closure over HTTP, as its handlers' apps would drive it: the reporter's
    intake, the community's work list, then per task the handler reads the case, claims the task and
    completes it, and the reporter reads the closed case. Yields the requests, is sent the answers;
    returns the number of tasks completed."""
    found = yield ("intake", "POST", "/api/cases", intake_body(process, cast, n), tokens["reporter"])
    case_id = found["id"]
    yield ("list", "GET", "/api/tasks?limit=20", None, tokens["community"])
    steps = PROCESS_STEPS[process]
    for spec, part, data in steps:
        token = tokens[part]
        case = yield ("case", "GET", f"/api/cases/{case_id}", None, token)
        ready = [t["id"] for t in case["tasks"] if t["state"] == "ready" and t["task_spec"] == spec]
        if not ready:
            raise RuntimeError(f"case {case_id}: no ready {spec!r} task for {cast.people[part]}")
        yield ("claim", "POST", f"/api/tasks/{ready[0]}/claim", None, token)
        yield ("complete", "POST", f"/api/tasks/{ready[0]}/complete", {"data": data}, token)
    closed = yield ("case", "GET", f"/api/cases/{case_id}", None, tokens["reporter"])
    if closed["status"] != "completed":
        raise RuntimeError(f"case {case_id} is {closed['status']!r} after its last task")
    return len(steps)


def warm_up(k: int, token: str) -> Lifecycle:
    """``k`` reads of the work list: client i starts at step i mod (requests a lifecycle)."""
    for _ in range(k):
        yield ("list", "GET", "/api/tasks?limit=20", None, token)
    return 0


class LoopClient:
    """One client of the event loop: a non-blocking keep-alive connection and the lifecycle it drives."""

    def __init__(self, cast: Cast, port: int, process: str, tokens: dict[str, str], offset: int) -> None:
        self.cast, self.port, self.process, self.tokens = cast, port, process, tokens
        self.n = 0
        self.cycle: Lifecycle = warm_up(offset, tokens["reporter"])
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.label = ""
        self.request: Request | None = None  # the next request, sent when it is due
        # perf_counter instant the next request is due (closed loop: when it is sent); its latency is
        # timed from this instant
        self.due = 0.0
        self.index = 0  # its place in its load generator's list of clients

    def connect(self, greet: bool = False) -> socket.socket:
        """A new connection; with ``greet``, one ``/api/health`` answered on it first, so the server has
        accepted it before the common start (a burst of new connections waits in the listen backlog
        while the workers answer, and the bench measures keep-alive clients, not connection set-up)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if greet:
            sock.sendall(encode_request("GET", "/api/health", None, None))
            buffer = b""
            while parse_answer(buffer) is None:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("the server closed the connection")
                buffer += chunk
        sock.setblocking(False)
        self.sock, self.buffer = sock, b""
        return sock

    def new_lifecycle(self) -> None:
        self.cycle = lifecycle(self.process, self.cast, self.tokens, self.n)
        self.n += 1


def _drive_part(
    port: int,
    first: int,
    clients: int,
    barrier: Any,
    stop_at: Any,
    results: Any,
    process: str,
    in_step: bool = False,
    interval: float | None = None,
    total: int = 1,
) -> None:
    """One load-generator process: ``clients`` clients (numbers ``first`` …) on one thread, each with its
    own keep-alive connection, driven by an event loop (``selectors``): every answer that arrives is
    timed when the loop wakes for it and the client's next request goes out at once. One thread waits on
    every socket, so a wake-up serves all the answers that are in, and no client queues behind the
    others' threads for a GIL (measured with 5 processes of 10 threads: p99 132 ms; with 10 of 5: 95 ms;
    the server saw the same requests). The persons the clients play log in first, once per process.

    Paced (``interval`` seconds, of ``total`` clients in all): each client sends a request every
    ``interval``, on a schedule of its own (client i's first one ``interval × i / total`` after the start),
    whatever the server does. A latency is timed from the instant the request was due, not from when it
    went out: a client whose last answer came late sends its next request at once, and the time it spent
    waiting for that answer counts in the next one's latency too (no "coordinated omission")."""
    stats: dict[str, list[float]] = defaultdict(list)
    answered: list[tuple[float, float]] = []  # (wall-clock instant, latency) of every answer
    errors: list[str] = []
    done = 0
    login = Client(port, defaultdict(list))
    tokens_of: dict[str, str] = {}
    loop = []
    for i in range(first, first + clients):
        cast = Cast.of_client(i)
        for person in cast.people.values():
            if person not in tokens_of:
                tokens_of[person] = login.login(person)
        tokens = {part: tokens_of[person] for part, person in cast.people.items()}
        offset = 0 if in_step else i % lifecycle_requests(process)
        loop.append(LoopClient(cast, port, process, tokens, offset))
    selector = selectors.DefaultSelector()
    for c in loop:
        selector.register(c.connect(greet=True), selectors.EVENT_READ, c)
    barrier.wait()  # every process has logged its clients in
    barrier.wait()  # the parent has set stop_at
    stopping = stop_at.value
    due: list[tuple[float, int]] = []  # paced: (instant the client's next request is due, its index)

    def send(c: LoopClient, answer: object) -> None:
        """Advance ``c`` by one answer (None to start) and send its next request (paced: put it on the
        schedule, and send it when it is due); a finished lifecycle is counted and, before the stop,
        the next one begins."""
        nonlocal done
        while True:
            try:
                c.request = c.cycle.send(answer)
                break
            except StopIteration as finished:
                done += int(finished.value)
                if time.time() >= stopping:
                    selector.unregister(c.sock)  # type: ignore[arg-type]
                    return
                c.new_lifecycle()
                answer = None
        if interval is None:
            c.due = time.perf_counter()
            transmit(c)
        else:
            c.due += interval
            heapq.heappush(due, (c.due, c.index))

    def transmit(c: LoopClient) -> None:
        """Send ``c``'s next request now, its latency timed from the instant it was due."""
        assert c.sock is not None and c.request is not None
        c.label, method, path, body, token = c.request
        c.sock.sendall(encode_request(method, path, body, token))

    def fail(c: LoopClient, message: str) -> None:
        errors.append(message)
        selector.unregister(c.sock)  # type: ignore[arg-type]
        assert c.sock is not None
        c.sock.close()
        selector.register(c.connect(), selectors.EVENT_READ, c)
        c.new_lifecycle()
        send(c, None)

    start = time.perf_counter()
    for k, c in enumerate(loop):
        c.index = k
        if interval is not None:
            c.due = start + interval * ((first + k) / total - 1)  # ``send`` adds one interval
        send(c, None)
    while selector.get_map():
        now = time.perf_counter()
        while due and due[0][0] <= now:
            transmit(loop[heapq.heappop(due)[1]])
        wait = 60.0 if not due else max(0.0, due[0][0] - time.perf_counter())
        for key, _ in selector.select(timeout=wait):
            c = key.data
            try:
                chunk = c.sock.recv(65536)
                if not chunk:
                    raise OSError("the server closed the connection")
                c.buffer += chunk
                answer = parse_answer(c.buffer)
                if answer is None:
                    continue
                status, data, c.buffer, closes = answer
                took = time.perf_counter() - c.due
                stats[c.label].append(took)
                answered.append((time.time(), took))
                if closes:
                    raise OSError("the server closed the connection")
                if status >= 400:
                    raise RuntimeError(f"{c.label}: {status} {data[:200]!r}")
                send(c, json.loads(data) if data else None)
            except (RuntimeError, OSError, KeyError, StopIteration) as err:
                fail(c, str(err))
    results.put((done, dict(stats), errors, answered))


@dataclass(frozen=True)
class Second:
    """The answers that arrived in one second of the run: how many, and the longest of them (ms)."""

    answers: int
    longest_ms: float


@dataclass(frozen=True)
class Drive:
    rate: float  # completed tasks a second
    stats: dict[str, list[float]]  # latencies by endpoint label
    errors: int
    seconds: list[Second]  # second by second, whole seconds of the run only


def by_second(answered: list[tuple[float, float]], started: float, elapsed: float) -> list[Second]:
    """Answers and the longest latency in each whole second of the run: a stall of the server (a
    collector pause, a checkpoint, a worker held up) shows as a second with few answers and a long one,
    which a p99 over the whole run can hide."""
    counts = [0] * int(elapsed)
    longest = [0.0] * int(elapsed)
    for at, took in answered:
        k = int(at - started)
        if 0 <= k < len(counts):
            counts[k] += 1
            longest[k] = max(longest[k], took * 1000)
    return [Second(n, ms) for n, ms in zip(counts, longest, strict=True)]


def drive(
    port: int,
    clients: int,
    seconds: float,
    process: str,
    processes: int = 1,
    in_step: bool = False,
    rate: float | None = None,
) -> Drive:
    """``clients`` keep-alive clients spread over ``processes`` load-generator processes, all logged in
    before the common start; completed tasks per second and latencies. With ``rate`` (tasks a second),
    the clients are paced to offer that many between them (``_drive_part``); without, a closed loop."""
    processes = max(1, min(processes, clients))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    stop_at = context.Value("d", float("inf"))
    results = context.Queue()
    share, extra = divmod(clients, processes)
    interval = None  # paced: seconds between one client's requests
    if rate is not None:
        interval = clients * len(PROCESS_STEPS[process]) / (rate * lifecycle_requests(process))
    workers, first = [], 0
    for k in range(processes):
        n = share + (1 if k < extra else 0)
        proc = context.Process(
            target=_drive_part,
            args=(port, first, n, barrier, stop_at, results, process, in_step, interval, clients),
            daemon=True,
        )
        proc.start()
        workers.append(proc)
        first += n
    barrier.wait()
    started = time.time()
    stop_at.value = started + seconds
    barrier.wait()
    parts = [results.get(timeout=seconds + 300) for _ in workers]
    elapsed = time.time() - started
    for proc in workers:
        proc.join(timeout=30)
    stats: dict[str, list[float]] = defaultdict(list)
    done, errors = 0, []
    answered: list[tuple[float, float]] = []
    for part_done, part_stats, part_errors, part_answered in parts:
        answered += part_answered
        done += part_done
        errors += part_errors
        for label, values in part_stats.items():
            stats[label] += values
    if errors:
        print(f"  {len(errors)} failed requests, e.g. {errors[0]}")
    return Drive(done / elapsed, stats, len(errors), by_second(answered, started, elapsed))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def http_step(c: Client, process: str, tokens: dict[str, str], n: int, stats: dict[str, list[float]]) -> None:
    """One lifecycle over HTTP from a single client; its claim and complete latencies go to ``stats``."""
    c.stats = defaultdict(list)
    c.run(lifecycle(process, Cast.of_client(0), tokens, n))
    stats["http"] += c.stats["claim"] + c.stats["complete"]


class ServiceSteps:
    """The same claim and complete steps called in-process (casework → engine) on a SQLite database of
    their own: the service-layer cost that HTTP is measured against."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.folder = Path(tempfile.mkdtemp(prefix="gridcase-svc-"))
        url = f"sqlite:///{self.folder / 'svc.db'}"
        prepare(url)
        self.rt = Runtime(db=Database(url))
        self.cast = Cast.of_client(0)
        with self.rt.db.read() as conn:
            self.who = {part: access.principal(conn, person) for part, person in self.cast.people.items()}

    def lifecycle(self, n: int, stats: dict[str, list[float]]) -> None:
        rt, cast = self.rt, self.cast
        body = intake_body(self.process, cast, n)
        data: dict[str, object] = {k: body[k] for k in ("description", "address", "reporter") if k in body}
        intake = casework.Intake(
            self.process,
            str(body["title"]),
            cast.grid,
            str(body["channel"]),
            cast.category if "category" in body else None,
            data=data,
        )
        view, _ = casework.report_case(self.who["reporter"], intake, rt=rt)
        for spec, part, form in PROCESS_STEPS[self.process]:
            who = self.who[part]
            task = next(
                t for t in casework.my_tasks(who, rt=rt) if t.case_id == view.id and t.task_spec == spec
            )
            t0 = time.perf_counter()
            casework.claim(who, task.id, rt=rt)
            t1 = time.perf_counter()
            casework.complete(who, task.id, form, rt=rt)
            t2 = time.perf_counter()
            stats["service"] += [t1 - t0, t2 - t1]

    def close(self) -> None:
        self.rt.db.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)


def step_costs(port: int, rounds: int, service: ServiceSteps) -> tuple[float, float]:
    """Mean ms of one step (claim or complete) over HTTP from one client with nothing else running, and
    of the same step in-process; the two alternate lifecycle by lifecycle, so a machine whose speed
    drifts during the run (a shared VM) skews neither side."""
    stats: dict[str, list[float]] = defaultdict(list)
    c = Client(port, defaultdict(list))
    tokens = {part: c.login(person) for part, person in Cast.of_client(0).people.items()}
    for n in range(3):  # warm both paths (caches, first connections) before timing
        http_step(c, service.process, tokens, -1 - n, defaultdict(list))
        service.lifecycle(-1 - n, defaultdict(list))
    for n in range(rounds):
        http_step(c, service.process, tokens, n, stats)
        service.lifecycle(n, stats)
    return statistics.mean(stats["http"]) * 1000, statistics.mean(stats["service"]) * 1000


def run_backend(
    name: str, url: str, args: argparse.Namespace, service: ServiceSteps
) -> tuple[float, float, float, float]:
    prepare(url)
    proc, port = start_server(url, args.workers, args.threads, args.worker_class)
    try:
        http_cost, service_cost = step_costs(port, args.serial_rounds, service)
        run = drive(port, args.clients, args.seconds, args.process, args.client_processes, args.in_step)
        paced = None
        if args.rate is not None:
            paced = drive(
                port, args.clients, args.seconds, args.process, args.client_processes, args.in_step, args.rate
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(
        f"{name}: {args.process} lifecycles ({len(PROCESS_STEPS[args.process])} tasks, "
        f"{lifecycle_requests(args.process)} requests), {args.clients} clients × {args.seconds:g} s, "
        f"gunicorn {args.workers} workers of {WORKER_CLASSES[args.worker_class]}"
        + (f" × {args.threads} threads" if args.worker_class == "gthread" else "")
    )
    print(f"  completed tasks/s: {run.rate:.1f}")
    p99 = report(run)
    print(
        f"  one step (claim or complete), one client: over HTTP {http_cost:.2f} ms, "
        f"in-process {service_cost:.2f} ms"
    )
    if paced is not None:
        print(
            f"  paced: the {args.clients} clients offering {args.rate:g} tasks/s, "
            f"latency from each request's scheduled instant; completed tasks/s: {paced.rate:.1f}"
        )
        paced_p99 = report(paced)
        print(
            f"PACED {name} offered_tasks_per_s={args.rate:g} tasks_per_s={paced.rate:.1f}"
            f" p99_ms={paced_p99:.1f}"
        )
    return run.rate, p99, http_cost, service_cost


def report(run: Drive) -> float:
    """Print a run's latencies by endpoint and second by second; returns the p99 of all its answers."""
    stats = run.stats
    for label in ("intake", "list", "case", "claim", "complete"):
        values = stats.get(label, [])
        if values:
            print(
                f"  {label:<9} n={len(values):>6}  "
                f"p50 {pct(values, 0.5):7.1f} ms  p99 {pct(values, 0.99):7.1f} ms"
            )
    everything = [v for values in stats.values() for v in values]
    p99 = pct(everything, 0.99) if everything else float("nan")
    p50 = pct(everything, 0.5) if everything else float("nan")
    print(f"  all       n={len(everything):>6}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")
    if run.seconds:
        answers = sorted(second.answers for second in run.seconds)
        slowest = min(run.seconds, key=lambda second: second.answers)
        worst = max(run.seconds, key=lambda second: second.longest_ms)
        print(
            f"  second by second ({len(run.seconds)} s): answers median {answers[len(answers) // 2]}, "
            f"fewest {slowest.answers} (longest answer then {slowest.longest_ms:.0f} ms); "
            f"longest answer of the run {worst.longest_ms:.0f} ms (in a second of {worst.answers} answers)"
        )
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="request threads per gthread worker")
    parser.add_argument("--worker-class", default="keepalive", choices=sorted(WORKER_CLASSES))
    parser.add_argument(
        "--client-processes", type=int, default=2, help="load-generator processes the clients are spread over"
    )
    parser.add_argument("--serial-rounds", type=int, default=50)
    parser.add_argument(
        "--process",
        default="work_order",
        choices=sorted(PROCESS_STEPS),
        help="work_order: the 7-task main line; demo: the 2-task demo process (the bench before session 5)",
    )
    parser.add_argument(
        "--in-step",
        action="store_true",
        help="every client starts at intake at the same instant (they then move through lifecycles in step)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="TASKS_PER_S",
        help="after the closed loop, a second run on the same server with the clients paced to offer this "
        "many completed tasks a second between them: latency at that load, not at saturation",
    )
    args = parser.parse_args()
    if args.rate is not None and not 0 < args.rate <= 10_000:
        parser.error("--rate must be above 0 and at most 10000 tasks a second")
    args.clients = max(1, min(args.clients, 200))
    args.seconds = max(1.0, min(args.seconds, 120.0))

    service = ServiceSteps(args.process)
    folder = Path(tempfile.mkdtemp(prefix="gridcase-bench-"))
    try:
        rate, p99, http_cost, service_cost = run_backend(
            "sqlite", f"sqlite:///{folder / 'bench.db'}", args, service
        )
        pg = os.environ.get("DATABASE_URL", "")
        name = pg.rsplit("/", 1)[-1]
        if pg.startswith("postgresql") and ("test" in name or "bench" in name):
            run_backend("postgresql", pg, args, service)
        elif pg:
            print("postgresql: skipped (DATABASE_URL must name a scratch database with 'test' or 'bench')")
    finally:
        service.close()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"RESULT tasks_per_s={rate:.1f} p99_ms={p99:.1f} http_vs_service={http_cost / service_cost:.2f}")


if __name__ == "__main__":
    main()
