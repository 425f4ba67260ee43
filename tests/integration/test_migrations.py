"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from engine.store.db import Database
from engine.store.models import metadata
from tests.conftest import postgres_url


def test_migrating_to_head_gives_the_schema_of_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_migrating_twice_changes_nothing(db: Database) -> None:
    db.migrate()
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0011"


def test_a_migration_that_fails_half_way_leaves_none_of_its_changes(db: Database) -> None:
    """Migrations run in one transaction on the engine ``alembic_config`` hands Alembic, although the
    app's own PostgreSQL connections are in autocommit (a write sends its own BEGIN)."""
    migrating = db.alembic_config().attributes["engine"]
    with pytest.raises(RuntimeError), migrating.begin() as conn:
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("the migration failed")
    assert not inspect(db.engine).has_table("half_done")


def _migrate(url: str, start: Any) -> None:
    database = Database(url)
    start.wait()
    database.migrate()
    database.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_starting_together_on_a_new_database_take_turns_migrating(
    kind: str, tmp_path: Path
) -> None:
    """``gunicorn -w 4`` on a new database: every worker migrates at boot; none may fail."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'new.db'}"
    else:
        url = postgres_url() or pytest.skip("no PostgreSQL (DATABASE_URL) for this run")
        fresh = Database.for_tests(url)
        with fresh.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        fresh.dispose()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    workers = [context.Process(target=_migrate, args=(url, start)) for _ in range(4)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in workers] == [0, 0, 0, 0]
    database = Database.for_tests(url)
    try:
        with database.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == "0011"
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        database.dispose()
