"""The database handle: engine creation, SQLite WAL and ``BEGIN IMMEDIATE``, write/read transactions,
schema migration through Alembic.

``Database.write()`` opens the single-writer transaction a step needs: ``BEGIN IMMEDIATE`` on SQLite
(one writer at a time, readers go on under WAL) and an ordinary transaction on PostgreSQL, where the
caller locks the case row with ``SELECT … FOR UPDATE`` (``lock_case``). There its ``BEGIN`` and the
writes of ``fastsql`` are held back and sent with the next statement that needs an answer. On SQLite,
writers queue first in-process (a lock per handle) and then across processes on
``<database>.writer-lock`` (``flock``), so the next writer starts the moment the last one commits;
SQLite's own lock is then free at once, and is polled for only when a writer outside gridcase holds it.

Commits on SQLite only append to the write-ahead log: copying it into the database file (a
checkpoint) is left to ``Checkpointer``, a thread of the process, not done inside a commit.

A pooled PostgreSQL connection is checked before use only when it may have died: when it has lain in
the pool for ``PING_AFTER_IDLE_S`` or more, or when the server has sent it something since it was
returned (a server that shuts down or ends a session sends a last message and closes the socket).
Otherwise it is used as it is: a ping before every transaction was a round trip of every request.
"""

from __future__ import annotations

import fcntl
import os
import random
import select
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from engine.errors import Conflict
from engine.store import fastsql
from engine.store.jsontext import loads as json_loads

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_WRITE = "gridcase_write"
MIGRATION_LOCK_KEY = 0x6772_6964_6361_7365  # "gridcase": the PostgreSQL advisory lock migrations take


def default_sqlite_path() -> Path:
    """The embedded database file under the user's data directory."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("gridcase")) / "gridcase.db"


def resolve_url(db: str | os.PathLike[str] | None = None) -> str:
    """``--db PATH`` wins, then ``DATABASE_URL``, then the SQLite file under the user's data dir."""
    if db is not None:
        text = str(db)
        return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    path = default_sqlite_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's work, outside the write lock
    cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cur.close()


WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes of WAL file kept once a checkpoint has emptied it
CHECKPOINT_EVERY_S = 0.25  # how often the checkpointer looks for committed writes to copy
CHECKPOINTER_IDLE_S = 10.0  # with no commit for this long, its thread ends (the next commit starts one)
WRITER_WAIT_S = 30.0  # how long a writer waits for SQLite's single write lock before giving up
# A PostgreSQL connection stays in autocommit: a read is its statements on their own, a write sends its
# own BEGIN (``Database.write``). Set on the engine, not per checkout: setting and resetting it on every
# connection cost about 65 µs of client time a transaction.
POSTGRESQL_ISOLATION = "AUTOCOMMIT"
PING_AFTER_IDLE_S = 10.0  # a pooled PostgreSQL connection unused this long is pinged before use
_RETURNED_AT = "gridcase.returned_at"  # pool entry info: monotonic instant the connection came back


def _sqlite_begin(conn: Connection) -> None:
    if not conn.get_execution_options().get(_WRITE):
        # On the DBAPI cursor, as the write path does: through exec_driver_sql this one statement cost
        # about a tenth of a case-file read.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute("BEGIN")
        finally:
            cursor.close()
        return
    # Take the write lock ourselves, polling every millisecond or so: SQLite's own busy handler backs
    # off to 100 ms sleeps, which under contention from several processes turns into second-long
    # tails. Statements inside the transaction keep the ordinary busy timeout.
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    deadline = time.monotonic() + WRITER_WAIT_S
    try:
        cursor.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
                if time.monotonic() > deadline:
                    raise Conflict(
                        "store.busy",
                        f"another writer held the database for over {WRITER_WAIT_S:g} s; try again",
                        {"waited_s": WRITER_WAIT_S},
                    ) from None
                time.sleep(random.uniform(0.0005, 0.002))
    finally:
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _send_held_writes_in_order(engine: Engine) -> None:
    """On PostgreSQL ``fastsql.execute`` holds writes back to send them with the transaction's next
    statement: a Core statement sends them first, a commit sends them with its COMMIT (one round
    trip), a rollback forgets them."""

    def before_statement(conn: Connection, *_args: Any) -> None:
        fastsql.send_held(conn)

    event.listen(engine, "before_cursor_execute", before_statement)
    event.listen(engine, "commit", lambda conn: fastsql.send_held(conn, commit=True))
    event.listen(engine, "rollback", fastsql.drop_held)


def _ping_when_in_doubt(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it lay idle ``PING_AFTER_IDLE_S`` or its socket has
    something to read (the server's goodbye); a failed ping makes the pool replace the connection."""

    def returned(_dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        entry.info[_RETURNED_AT] = time.monotonic()

    def checkout(dbapi_connection: Any, entry: ConnectionPoolEntry, _proxy: Any) -> None:
        returned_at = entry.info.get(_RETURNED_AT)
        if returned_at is None:  # connected just now for this checkout
            return
        if time.monotonic() - returned_at < PING_AFTER_IDLE_S and not _readable(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            raise DisconnectionError(f"the pooled connection failed its ping: {err}") from err

    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", checkout)


def _readable(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket has data or end-of-file waiting (it should have neither)."""
    try:
        poller = select.poll()  # not select.select: that refuses descriptors above 1023
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed already: the ping fails and the pool reconnects
        return True


def _sqlite_file(url: str) -> str | None:
    """The database file a ``sqlite:///`` URL names; None for anything else (memory, URI options)."""
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path.startswith(":memory:") or "?" in path:
        return None
    return path


def _writer_lock_file(url: str) -> int | None:
    """A lock file beside the SQLite database that gridcase processes take (``flock``) before SQLite's
    write lock: a waiting writer is woken by the kernel as soon as the holder commits, instead of
    polling SQLite's lock (writers outside gridcase are still polled for)."""
    path = _sqlite_file(url)
    if path is None:
        return None
    try:
        return os.open(f"{path}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None


class Checkpointer:
    """Copies the write-ahead log into the SQLite database file, mostly off the write lock.

    SQLite's own automatic checkpoint runs inside the commit that takes the log past 1000 pages, while
    that writer still holds the single write lock. Measured over 150 work-order lifecycles in-process,
    1 % of commits took 4.4 ms or more, the longest 329 ms, and under load every writer of every worker
    waited behind them. Here the work is split in two:

    - a daemon thread of the process runs a ``PASSIVE`` checkpoint on a connection of its own every
      ``every_s`` seconds in which a write committed: it copies the bulk of the log, taking no lock
      that writers or readers wait for (the sqlite3 module lets go of the GIL meanwhile);
    - the next writer to commit after that pass, still holding the write lock, runs one more passive
      checkpoint on its own connection: it copies only what was committed during the pass, but with
      no writer appending meanwhile it reaches the end of the log, so the writer after it starts the
      log again from its beginning. (Passes alone never reach the end under a steady load: the log
      grew to 2 GB in a 40 s load bench.)

    The thread starts with the first commit in a process, so a process forked after that (gunicorn,
    Celery) starts its own, and ends after ``CHECKPOINTER_IDLE_S`` without one. Two processes' passes
    at once are harmless: the second finds the work done or the checkpoint lock taken, and the next
    pass goes on from there."""

    def __init__(self, path: str, every_s: float) -> None:
        self.path, self.every_s = path, every_s
        self.passes = 0  # background passes done by this process's thread
        self._dirty = False
        self._behind = False  # a pass ended: the next writer catches the log up
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def committed(self, dbapi_connection: Any) -> None:
        """A write committed on ``dbapi_connection``, whose writer still holds the write lock: catch the
        log up if a pass has ended since the last time, and make sure this process has its thread."""
        self._dirty = True
        if self._behind:
            self._behind = False
            try:
                dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:  # the write is committed all the same: a later writer catches up
                self._behind = True
        if self._pid != os.getpid():
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(stop,), name="checkpointer", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no thread to be had now: the write stands, the next commit tries again
                return
            self._pid, self._stop, self._thread = os.getpid(), stop, thread

    def _run(self, stop: threading.Event) -> None:
        idle = 0
        while not stop.wait(self.every_s):
            if not self._dirty:
                idle += 1
                if idle * self.every_s >= CHECKPOINTER_IDLE_S:  # the next commit starts another
                    self._pid = None
                    return
                continue
            idle, self._dirty = 0, False
            # A connection a pass: one left open while the thread waits would outlive the process's
            # other connections at exit, and SQLite empties the log only when the last one closes.
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                finally:
                    conn.close()
            except sqlite3.Error:  # the file is gone or taken over for a moment: next turn
                self._dirty = True
                continue
            self.passes += 1
            self._behind = True

    def stop(self) -> None:
        """End this process's thread (what is left in the log stays there, as safe as in the file)."""
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=30)
        self._thread, self._pid = None, None


def _checkpointer(url: str, every_s: float) -> Checkpointer | None:
    path = _sqlite_file(url)
    return Checkpointer(path, every_s) if path is not None else None


class Database:
    """One SQLAlchemy engine plus the transaction helpers the engine uses."""

    def __init__(
        self, url: str, *, echo: bool = False, checkpoint_every_s: float = CHECKPOINT_EVERY_S
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "json_deserializer": json_loads}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
                raise ValueError("use a file for SQLite: the engine needs WAL and several connections")
        else:
            kwargs["isolation_level"] = POSTGRESQL_ISOLATION
        self.engine: Engine = create_engine(url, **kwargs)
        if not self.is_sqlite:
            _send_held_writes_in_order(self.engine)
            _ping_when_in_doubt(self.engine)
        self._writer = threading.RLock() if self.is_sqlite else None
        self._depth = 0
        self._lock_fd = _writer_lock_file(url) if self.is_sqlite else None
        self._checkpointer = _checkpointer(url, checkpoint_every_s) if self.is_sqlite else None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)

    @classmethod
    def for_tests(cls, url: str) -> Database:
        """A handle without pooling, for tests that open and drop many databases."""
        db = cls.__new__(cls)
        db.url = url
        db.is_sqlite = url.startswith("sqlite")
        connect_args = {"check_same_thread": False, "timeout": 30} if db.is_sqlite else {}
        db.engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args=connect_args,
            json_deserializer=json_loads,
            **({} if db.is_sqlite else {"isolation_level": POSTGRESQL_ISOLATION}),
        )
        db._writer = threading.RLock() if db.is_sqlite else None
        db._depth = 0
        db._lock_fd = _writer_lock_file(url) if db.is_sqlite else None
        db._checkpointer = _checkpointer(url, CHECKPOINT_EVERY_S) if db.is_sqlite else None
        if db.is_sqlite:
            event.listen(db.engine, "connect", _sqlite_connect)
            event.listen(db.engine, "begin", _sqlite_begin)
        else:
            _send_held_writes_in_order(db.engine)
        return db

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on any exception.

        On SQLite the threads of one process queue for the single write lock here, in order, rather
        than polling the file lock against each other (other processes are still polled for)."""
        if self._writer is None:
            # PostgreSQL: the connection is in autocommit (the engine's), and the BEGIN is sent by us, with
            # the first statement (``fastsql.begin``); psycopg would send it on its own, a round trip of
            # every write.
            with self.engine.connect() as conn:
                with conn.begin():
                    fastsql.begin(conn)
                    yield conn
            return
        # The pool hands the connection out and takes it back outside the lock: only the transaction
        # itself is spent in the queue every writer waits in.
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{_WRITE: True})
            if not self._writer.acquire(timeout=WRITER_WAIT_S):
                raise Conflict(
                    "store.busy",
                    f"another writer held the database for over {WRITER_WAIT_S:g} s; try again",
                    {"waited_s": WRITER_WAIT_S},
                )
            try:
                self._depth += 1
                if self._depth == 1 and self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # the kernel wakes us the moment it is free
                try:
                    with conn.begin():
                        yield conn
                    if self._checkpointer is not None and self._depth == 1:
                        self._checkpointer.committed(conn.connection.dbapi_connection)
                finally:
                    if self._depth == 1 and self._lock_fd is not None:
                        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    self._depth -= 1
            finally:
                self._writer.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read. On SQLite one transaction: every statement sees the same snapshot of the file. On
        PostgreSQL each statement on its own (autocommit): a transaction at READ COMMITTED, the level
        gridcase runs at, also gives each statement a snapshot of its own, so it only cost a ``BEGIN``
        and a ``COMMIT`` (two round trips of a case file's nine). Reads that lock rows (``FOR UPDATE``)
        belong in ``write``."""
        with self.engine.connect() as conn:  # PostgreSQL: in autocommit, the engine's
            with conn.begin():
                yield conn

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        # migrations in a transaction of their own on PostgreSQL, not statement by statement
        migrating = (
            self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="READ COMMITTED")
        )
        cfg.attributes["engine"] = migrating
        return cfg

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent). Processes starting together on one
        new database (``gunicorn -w 2``) take turns: the first migrates, the others find it done."""
        with self._migration_lock():
            command.upgrade(self.alembic_config(), "head")

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """SQLite: the writer lock file (Alembic's own connections do not take it, so it cannot
        deadlock with them). PostgreSQL: a session advisory lock on a connection of its own."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        elif self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
                conn.commit()
                try:
                    yield
                finally:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                    conn.commit()
        else:
            yield

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table("case")

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
