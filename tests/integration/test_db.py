"""SQLite's single write lock: a second writer waits its turn (in-process lock, then the lock file
beside the database, then polling for writers outside gridcase — never SQLite's 100 ms back-off) and
gives up with a Conflict (``store.busy``) once the wait is over. The checkpointer. Reads: one snapshot
on SQLite, statements on their own on PostgreSQL, and a write after them still all or nothing."""

from __future__ import annotations

import select as os_select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.pool import QueuePool

from engine.errors import Conflict
from engine.store import db as db_module
from engine.store.db import Database
from engine.store.models import login_failure
from tests.conftest import START, fresh_database, postgres_url


def hold_write_lock(database: Database, seconds: float, started: threading.Event) -> None:
    with database.write() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        started.set()
        time.sleep(seconds)  # a long step in another process, simulated


def test_a_second_writer_waits_for_the_first_and_then_writes(tmp_path: Path) -> None:
    database = Database.for_tests(f"sqlite:///{tmp_path / 'w.db'}")
    started = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(database, 0.2, started))
    holder.start()
    started.wait(5)
    began = time.monotonic()
    with database.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    waited = time.monotonic() - began
    holder.join()
    assert 0.1 < waited < 2.0  # it waited for the holder, and was let in soon after
    with database.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_a_writer_gives_up_when_the_lock_is_held_past_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "WRITER_WAIT_S", 0.05)
    database = Database.for_tests(f"sqlite:///{tmp_path / 'w.db'}")
    started = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(database, 0.5, started))
    holder.start()
    started.wait(5)
    with pytest.raises(Conflict) as busy, database.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    holder.join()
    assert busy.value.code == "store.busy"


def test_writers_of_two_processes_take_turns_on_the_lock_file(tmp_path: Path) -> None:
    """Two handles on one file stand for two processes: the second writer sleeps on the lock file
    beside the database and is woken when the first commits."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    first, second = Database.for_tests(url), Database.for_tests(url)
    assert (tmp_path / "w.db.writer-lock").exists()
    started = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(first, 0.2, started))
    holder.start()
    started.wait(5)
    began = time.monotonic()
    with second.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    waited = time.monotonic() - began
    holder.join()
    assert 0.1 < waited < 2.0
    with second.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
    first.dispose()
    second.dispose()


def test_a_writer_outside_gridcase_is_still_waited_for_and_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that does not know the lock file (the sqlite3 shell, say) holds SQLite's own lock: a
    gridcase writer polls for it and gives up with store.busy after the wait."""
    import sqlite3

    monkeypatch.setattr(db_module, "WRITER_WAIT_S", 0.05)
    database = Database.for_tests(f"sqlite:///{tmp_path / 'w.db'}")
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    outsider = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Conflict) as busy, database.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        assert busy.value.code == "store.busy"
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()
    with database.write() as conn:  # and the lock file was let go on the way out
        conn.execute(text("INSERT INTO t VALUES (3)"))
    database.dispose()


def _wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling the checkpointer's thread, not travelling in time
    return True


def _write_blobs(database: Database, count: int, size: int) -> None:
    with database.write() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS blob (b BLOB)"))
        for _ in range(count):
            conn.execute(text("INSERT INTO blob VALUES (randomblob(:size))"), {"size": size})


def test_a_commit_leaves_copying_the_log_into_the_file_to_the_checkpointer(tmp_path: Path) -> None:
    """SQLite would checkpoint inside the commit that takes the log past 1000 pages (4 MB), while the
    writer still holds the write lock; gridcase's commits only append to the log, and the checkpointer's
    thread copies it into the database file."""
    path = tmp_path / "w.db"
    idle = Database(f"sqlite:///{path}", checkpoint_every_s=3600)
    _write_blobs(idle, 2000, 4000)  # about 8 MB
    assert path.stat().st_size < 1_000_000 and Path(f"{path}-wal").stat().st_size > 8_000_000
    idle.dispose()
    busy = Database(f"sqlite:///{path}", checkpoint_every_s=0.05)
    _write_blobs(busy, 1, 10)
    assert _wait_for(lambda: path.stat().st_size > 8_000_000)
    busy.dispose()


def test_under_steady_writes_the_log_starts_over_instead_of_growing(tmp_path: Path) -> None:
    """The checkpointer's passes run while writers go on committing, so alone they never reach the end of
    the log and SQLite never starts it over; the writer after a pass catches it up under the write lock.
    40 MB committed in 4 KB steps leave a log of a few MB."""
    path = tmp_path / "w.db"
    database = Database(f"sqlite:///{path}", checkpoint_every_s=0.02)
    passes = 0
    for _ in range(10_000):
        _write_blobs(database, 1, 4000)
        if database._checkpointer is not None:
            passes = database._checkpointer.passes
    assert passes >= 5
    assert Path(f"{path}-wal").stat().st_size < 16_000_000
    with database.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM blob")).scalar() == 10_000
    database.dispose()


def test_a_process_that_exits_leaves_no_log_behind(tmp_path: Path) -> None:
    """SQLite empties the log into the file when a process's last connection closes. The checkpointer
    holds no connection between its passes, so a short-lived process (a CLI command, a cron job) that
    exits without disposing of its handle still leaves the database whole in its file: run after run,
    the log does not grow."""
    import subprocess
    import sys

    from tests.conftest import REPO

    path = tmp_path / "cli.db"
    script = f"""
import time
from sqlalchemy import text
from engine.store.db import Database
db = Database("sqlite:///{path}", checkpoint_every_s=0.05)
def write():
    with db.write() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS blob (b BLOB)"))
        for _ in range(200):
            conn.execute(text("INSERT INTO blob VALUES (randomblob(4000))"))
write()
deadline = time.monotonic() + 30
while db._checkpointer.passes < 1 and time.monotonic() < deadline:
    time.sleep(0.01)
write()
"""
    for run in (1, 2):
        subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=120)
        wal = Path(f"{path}-wal")
        assert not wal.exists() or wal.stat().st_size == 0, f"run {run}: {wal.stat().st_size} bytes of log"
        assert path.stat().st_size > run * 1_600_000


def test_a_write_stands_when_the_checkpointer_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpointer starts after a commit: if no thread can be had then, the committed write is not
    reported as failed, and a later commit starts the thread."""
    database = Database(f"sqlite:///{tmp_path / 'w.db'}", checkpoint_every_s=0.05)

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", no_thread)
        _write_blobs(database, 1, 10)
    _write_blobs(database, 1, 10)
    assert database._checkpointer is not None
    assert _wait_for(lambda: database._checkpointer is not None and database._checkpointer.passes >= 1)
    with database.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM blob")).scalar() == 2
    database.dispose()


def _in_transaction(conn: Any) -> bool:
    dbapi = conn.connection.dbapi_connection
    if isinstance(dbapi, sqlite3.Connection):
        return dbapi.in_transaction
    return str(dbapi.info.transaction_status.name) != "IDLE"  # psycopg: INTRANS inside a transaction


def test_a_read_is_one_snapshot_on_sqlite_and_statements_on_their_own_on_postgresql(db: Database) -> None:
    """On PostgreSQL a read sends no BEGIN: at READ COMMITTED a transaction gives each statement its own
    snapshot anyway. A write is a transaction on both."""
    with db.read() as conn:
        conn.execute(text("SELECT 1"))
        assert _in_transaction(conn) is db.is_sqlite
    with db.write() as conn:
        conn.execute(text("SELECT 1"))
        assert _in_transaction(conn)


def test_a_write_on_a_connection_a_read_had_is_still_all_or_nothing(db: Database) -> None:
    """The pool's one connection serves a read, then a write that fails half-way: nothing of the write
    stays (the read's autocommit on PostgreSQL ends with the read)."""
    pooled = Database(db.url, checkpoint_every_s=3600)
    try:
        with pooled.read() as conn:
            conn.execute(text("SELECT 1"))
        with pytest.raises(RuntimeError), pooled.write() as conn:
            conn.execute(insert(login_failure).values(login="x", client_ip="127.0.0.1", at=START))
            assert _in_transaction(conn)
            raise RuntimeError("half-way")
        with pooled.read() as conn:
            assert conn.execute(select(func.count()).select_from(login_failure)).scalar() == 0
        pool = pooled.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedin() == 1  # one connection served all three
    finally:
        pooled.dispose()


@pytest.fixture
def pooled_pg(tmp_path: Path) -> Iterator[Database]:
    """The app's kind of handle (a pool) on PostgreSQL: SQLite has no server to lose."""
    fresh_database("postgresql", tmp_path).dispose()
    pooled = Database(postgres_url() or "")
    yield pooled
    pooled.dispose()


def _backend(database: Database) -> tuple[int, int]:
    """The server process of the pooled connection a read gets, and that connection's socket."""
    with database.read() as conn:
        pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return pid, int(conn.connection.dbapi_connection.fileno())  # type: ignore[union-attr]


def _counting_pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = database.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(database.engine.dialect, "do_ping", counted)
    return pings


@pytest.mark.postgres
def test_a_pooled_connection_the_server_ended_is_replaced_at_its_next_use(pooled_pg: Database) -> None:
    """PostgreSQL restarted, or an administrator ended the session: the server says goodbye on the idle
    connection's socket, and the next checkout pings it, finds it dead and takes a new one (before, the
    request failed with a 500)."""
    first, sock = _backend(pooled_pg)
    admin = Database.for_tests(pooled_pg.url)  # a connection of its own ends the pooled one's session
    with admin.engine.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
    admin.dispose()
    assert os_select.select([sock], [], [], 10)[0], "the server's goodbye did not arrive"
    second, _ = _backend(pooled_pg)
    assert second != first


@pytest.mark.postgres
def test_a_pooled_connection_is_pinged_only_after_lying_idle(
    pooled_pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection back from its last use moments ago goes straight to work: a ping is a round trip of
    every request. One idle for ``PING_AFTER_IDLE_S`` is pinged first (a silent network drop sends no
    goodbye)."""
    _backend(pooled_pg)  # the connection is made (a new one needs no ping) and returned
    pings = _counting_pings(pooled_pg, monkeypatch)
    for _ in range(3):
        _backend(pooled_pg)
    assert pings == []
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)
    _backend(pooled_pg)
    assert pings == [1]
