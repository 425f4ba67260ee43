"""The step path's writes (and a few narrow reads) as prepared SQL on the transaction's DBAPI cursor.

A step writes the same seven rows every time (human task, outbox, audit, workflow state, task rows,
case version). Through SQLAlchemy Core each of those costs ~40 µs of Python before SQLite sees it,
which is more than the engine step itself; here each costs ~5 µs. The statements run inside the
caller's SQLAlchemy transaction (same connection, same BEGIN/COMMIT), and store values exactly as the
Core types do — instants as naive UTC (SQLite: SQLAlchemy's text format), JSON as JSON — so Core reads
them back unchanged (tests/integration/test_fastsql.py proves the round trip on both backends).

Statements are written once with ``:name`` parameters; the PostgreSQL form is derived from them.

On PostgreSQL round trips cost more than the statements: a write transaction's ``BEGIN`` and its writes
are held back and go with the next statement that needs an answer (a read, a Core statement, the
``COMMIT``) in one round trip (``_pipelined``); several reads can go together too
(``fetch_mappings_of``). ``Database`` sends what is held before any Core statement and at the commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from engine.store.jsontext import loads as json_loads

_NAMED = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement with ``:name`` parameters; ``json``/``instants`` name the parameters to adapt."""

    sql: str
    json: frozenset[str] = field(default_factory=frozenset)
    instants: frozenset[str] = field(default_factory=frozenset)
    result_json: frozenset[str] = field(default_factory=frozenset)  # columns to read back as JSON
    result_instants: frozenset[str] = field(default_factory=frozenset)  # columns to read as aware UTC

    @property
    def postgresql(self) -> str:
        return _NAMED.sub(r"%(\1)s", self.sql)


_PG_SQL: dict[str, str] = {}
# Key, in the pooled connection's info, of the statements not yet sent: there from ``begin`` to the
# commit or rollback of a write on PostgreSQL (then writes are held), absent otherwise.
_PENDING = "gridcase.fastsql.pending"


@dataclass(frozen=True, slots=True)
class _Write:
    sql: str
    params: dict[str, object] | list[dict[str, object]] | None  # a list: one run per mapping


_BEGIN = _Write("BEGIN", None)


def _sql(statement: Statement, is_pg: bool) -> str:
    if not is_pg:
        return statement.sql
    sql = _PG_SQL.get(statement.sql)
    return sql if sql is not None else _PG_SQL.setdefault(statement.sql, statement.postgresql)


def execute(
    conn: Connection, statement: Statement, params: Mapping[str, object] | Sequence[Mapping[str, object]]
) -> None:
    """Write: run ``statement`` once (a mapping) or for each mapping of a sequence.

    On PostgreSQL, inside a ``Database.write``, the write is held back and sent with whatever the transaction
    sends next (a read, a Core statement, its ``COMMIT``), all in one round trip where there were
    several. The server runs them in order, so the next read sees the write. A write that
    fails raises there, as the error SQLAlchemy raises, and the whole transaction rolls back as before.
    No row count comes back: a caller that needs one reads the rows instead."""
    is_pg = conn.dialect.name == "postgresql"
    sql = _sql(statement, is_pg)
    if isinstance(params, Mapping):
        write = _Write(sql, _adapt(statement, params, is_pg))
    else:
        memo: dict[datetime, object] = {}  # a batch repeats its instants (``now``) many times
        write = _Write(sql, [_adapt(statement, p, is_pg, memo) for p in params])
    held = conn.connection.info.get(_PENDING) if is_pg else None
    if held is not None:
        held.append(write)
        return
    _round_trip(conn, [write], [])


def fetch(conn: Connection, statement: Statement, params: Mapping[str, object]) -> list[tuple[object, ...]]:
    """Run a query whose columns need no conversion (ids, strings, numbers) and return its rows."""
    is_pg = conn.dialect.name == "postgresql"
    [(_names, rows)] = _round_trip(conn, [], [(_sql(statement, is_pg), _adapt(statement, params, is_pg))])
    return [tuple(row) for row in rows]


def fetch_mappings(
    conn: Connection, statement: Statement, params: Mapping[str, object]
) -> list[dict[str, object]]:
    """Run a query and return its rows as dicts, with instants and JSON read back as Core would."""
    [rows] = fetch_mappings_of(conn, [(statement, params)])
    return rows


def fetch_mappings_of(
    conn: Connection, queries: Sequence[tuple[Statement, Mapping[str, object]]]
) -> list[list[dict[str, object]]]:
    """Run several queries, on PostgreSQL in one round trip, and return each one's rows as
    ``fetch_mappings`` does. In a read on PostgreSQL each query has a snapshot of its own, as every
    statement of a read there has (``Database.read``)."""
    is_pg = conn.dialect.name == "postgresql"
    results = _round_trip(
        conn,
        [],
        [(_sql(statement, is_pg), _adapt(statement, params, is_pg)) for statement, params in queries],
    )
    return [
        _mappings(statement, names, rows, is_pg)
        for (statement, _params), (names, rows) in zip(queries, results, strict=True)
    ]


def _mappings(
    statement: Statement, names: list[str], rows: Sequence[Sequence[object]], is_pg: bool
) -> list[dict[str, object]]:
    out = []
    for row in rows:
        item = dict(zip(names, row, strict=True))
        for name in statement.result_instants:
            value = item.get(name)
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            if isinstance(value, datetime):
                item[name] = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        for name in statement.result_json:
            value = item.get(name)
            if not is_pg and isinstance(value, str | bytes):  # psycopg already decodes json columns
                item[name] = json_loads(value)
        out.append(item)
    return out


Result = tuple[list[str], Sequence[Sequence[object]]]  # column names and rows of one query


def _round_trip(
    conn: Connection,
    writes: list[_Write],
    reads: Sequence[tuple[str, dict[str, object]]],
    *,
    commit: bool = False,
) -> list[Result]:
    """Send the held-back writes, then ``writes``, then ``reads`` (and, with ``commit``, the COMMIT) on
    the transaction's DBAPI connection; returns each read's columns and rows. On PostgreSQL, when more
    than one statement goes, they go in one round trip (``_pipelined``). DBAPI errors are raised as
    SQLAlchemy's."""
    dbapi = conn.connection.dbapi_connection
    is_pg = conn.dialect.name == "postgresql"
    held = conn.connection.info.get(_PENDING) if is_pg else None  # nothing is held on SQLite
    if held:
        writes = [*held, *writes]
        held.clear()
    statement = ""  # the statement that failed, for the error
    try:
        if is_pg and len(writes) + len(reads) + commit > 1:
            statement = ";\n".join([w.sql for w in writes] + [sql for sql, _ in reads])
            return _pipelined(dbapi, writes, reads, commit=commit, error=conn.dialect.loaded_dbapi.Error)
        results: list[Result] = []
        cursor = dbapi.cursor()  # type: ignore[union-attr]
        try:
            for write in writes:
                statement = write.sql
                if isinstance(write.params, list):
                    cursor.executemany(write.sql, write.params)
                else:
                    cursor.execute(write.sql, write.params)
            for statement, params in reads:
                cursor.execute(statement, params)
                results.append((_column_names(cursor), cursor.fetchall()))
        finally:
            cursor.close()
        return results
    except conn.dialect.loaded_dbapi.Error as err:
        # as Core raises it (an IntegrityError is SQLAlchemy's), without the values: they hold personal data
        raise DBAPIError.instance(
            statement, None, err, conn.dialect.loaded_dbapi.Error, hide_parameters=True
        ) from err


def _column_names(cursor: Any) -> list[str]:
    """The names of a result's columns. psycopg's ``description`` builds a ``Column`` (with its type
    looked up) for each: 22 µs for 18 columns, against under 2 µs for the names off the result."""
    result = getattr(cursor, "pgresult", None)  # psycopg; sqlite3's description is plain tuples
    if result is None:
        return [d[0] for d in cursor.description]
    return [result.fname(i).decode() for i in range(result.nfields)]


def _pipelined(
    dbapi: Any,
    writes: list[_Write],
    reads: Sequence[tuple[str, dict[str, object]]],
    *,
    commit: bool,
    error: type[Exception],
) -> list[Result]:
    """Writes, then reads, then the COMMIT, in psycopg's pipeline mode: one round trip. Each statement
    keeps its server-side binding, so psycopg prepares the ones that recur and the server plans them
    once. (Tried, and measured against it over 100 in-process lifecycles, three runs of each: the same
    statements as one simple-protocol message with client-side binding took the client less CPU time
    but the server about a quarter more, planning every statement each time; no better in all.)"""
    writer = dbapi.cursor()
    readers = [dbapi.cursor() for _ in reads]
    failed: Exception | None = None  # the first failure, which can show up while later ones are sent
    try:
        try:
            with dbapi.pipeline():
                try:
                    for write in writes:
                        if isinstance(write.params, list):
                            writer.executemany(write.sql, write.params)
                        else:
                            writer.execute(write.sql, write.params)
                    for reader, (sql, params) in zip(readers, reads, strict=True):
                        reader.execute(sql, params)
                    if commit:  # as a statement: ``dbapi.commit()`` would sync the pipeline once more
                        writer.execute("COMMIT")
                except error as err:
                    failed = err  # leaving the block then says only that the pipeline was aborted
        except error as err:
            raise failed or err from None
        if failed is not None:
            raise failed
        return [(_column_names(reader), reader.fetchall()) for reader in readers]
    finally:
        writer.close()
        for reader in readers:
            reader.close()


def begin(conn: Connection) -> None:
    """Open a write transaction on a PostgreSQL connection in autocommit (``Database.write``): its
    ``BEGIN`` is held back like a write and goes with the transaction's first statement, in one round
    trip (psycopg sends its own ``BEGIN`` as a round trip of its own). Writes are held until the end."""
    conn.connection.info[_PENDING] = [_BEGIN]


def send_held(conn: Connection, *, commit: bool = False) -> None:
    """Send the writes ``execute`` held back on ``conn``, if any (with ``commit``, and the COMMIT after
    them, in the same round trip). ``Database`` calls it before every Core statement and every commit
    on PostgreSQL."""
    if not commit:
        if conn.connection.info.get(_PENDING):
            _round_trip(conn, [], [])
        return
    held = conn.connection.info.pop(_PENDING, None)  # the write ends: nothing is held after it
    if held and held != [_BEGIN]:  # [BEGIN] alone: the transaction sent nothing, there is nothing to commit
        _round_trip(conn, held, [], commit=True)


def drop_held(conn: Connection) -> None:
    """Forget the writes held back on ``conn``: its transaction is rolling back, they never ran."""
    conn.connection.info.pop(_PENDING, None)


def _adapt(
    statement: Statement,
    params: Mapping[str, object],
    is_pg: bool,
    memo: dict[datetime, object] | None = None,
) -> dict[str, object]:
    out = dict(params)
    for name in statement.instants:
        value = out.get(name)
        if isinstance(value, datetime):
            if memo is not None and value in memo:
                out[name] = memo[value]
                continue
            if value.tzinfo is None:
                raise ValueError(f"naive datetime for {name}")
            naive = value.astimezone(UTC).replace(tzinfo=None)
            # SQLAlchemy's SQLite DATETIME storage format, YYYY-MM-DD HH:MM:SS.ffffff (year zero-padded)
            out[name] = naive if is_pg else naive.isoformat(sep=" ", timespec="microseconds")
            if memo is not None:
                memo[value] = out[name]
    for name in statement.json:
        value = out.get(name)
        if value is not None:
            if is_pg:
                from psycopg.types.json import Json

                out[name] = Json(value)
            else:
                out[name] = json.dumps(value)
    return out
