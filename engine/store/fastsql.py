"""The step path's writes (and a few narrow reads) as prepared SQL on the transaction's DBAPI cursor.

A step writes the same seven rows every time (human task, outbox, audit, workflow state, task rows,
case version). Through SQLAlchemy Core each of those costs ~40 µs of Python before SQLite sees it,
which is more than the engine step itself; here each costs ~5 µs. The statements run inside the
caller's SQLAlchemy transaction (same connection, same BEGIN/COMMIT), and store values exactly as the
Core types do — instants as naive UTC (SQLite: SQLAlchemy's text format), JSON as JSON — so Core reads
them back unchanged (tests/integration/test_fastsql.py proves the round trip on both backends).

Statements are written once with ``:name`` parameters; the PostgreSQL form is derived from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection

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


def execute(
    conn: Connection, statement: Statement, params: Mapping[str, object] | Sequence[Mapping[str, object]]
) -> int:
    """Run ``statement`` once (a mapping) or for each mapping of a sequence; returns the row count."""
    is_pg = conn.dialect.name == "postgresql"
    if is_pg:
        sql = _PG_SQL.get(statement.sql)
        if sql is None:
            sql = _PG_SQL.setdefault(statement.sql, statement.postgresql)
    else:
        sql = statement.sql
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if isinstance(params, Mapping):
            cursor.execute(sql, _adapt(statement, params, is_pg))
        else:
            memo: dict[datetime, object] = {}  # a batch repeats its instants (``now``) many times
            cursor.executemany(sql, [_adapt(statement, p, is_pg, memo) for p in params])
        return int(cursor.rowcount)
    finally:
        cursor.close()


def fetch(conn: Connection, statement: Statement, params: Mapping[str, object]) -> list[tuple[object, ...]]:
    """Run a query whose columns need no conversion (ids, strings, numbers) and return its rows."""
    is_pg = conn.dialect.name == "postgresql"
    sql = _PG_SQL.setdefault(statement.sql, statement.postgresql) if is_pg else statement.sql
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, _adapt(statement, params, is_pg))
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def fetch_mappings(
    conn: Connection, statement: Statement, params: Mapping[str, object]
) -> list[dict[str, object]]:
    """Run a query and return its rows as dicts, with instants and JSON read back as Core would."""
    is_pg = conn.dialect.name == "postgresql"
    sql = _PG_SQL.setdefault(statement.sql, statement.postgresql) if is_pg else statement.sql
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, _adapt(statement, params, is_pg))
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    finally:
        cursor.close()
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
