"""Shared fixtures: ``db`` (SQLite always; PostgreSQL too when DATABASE_URL is set), ``clock`` (fixed,
advanceable), ``rt`` (a Runtime with the demo organisation and the shipped demo process deployed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, text

from engine import specs
from engine.clock import FixedClock
from engine.demo_org import load_demo_org
from engine.runtime import Runtime
from engine.store.db import Database
from engine.store.models import spec_version

REPO = Path(__file__).resolve().parents[1]
# Monday 2025-03-03 09:00 Asia/Shanghai, a working day.
START = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
PASSWORD = "demo-pass-123"


def postgres_url() -> str | None:
    """DATABASE_URL when it names a PostgreSQL database for tests: the tests drop and recreate its
    ``public`` schema, so the database name must contain "test"."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        return None
    if "test" not in url.rsplit("/", 1)[-1]:
        pytest.skip("DATABASE_URL does not name a test database (its name must contain 'test')")
    return url


def fresh_database(kind: str, tmp_path: Path) -> Database:
    if kind == "sqlite":
        database = Database.for_tests(f"sqlite:///{tmp_path / 't.db'}")
    else:
        url = postgres_url()
        if url is None:
            pytest.skip("PostgreSQL run needs DATABASE_URL=postgresql+psycopg://… (unset)")
        database = Database.for_tests(url)
        with database.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    database.migrate()
    return database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    database = fresh_database(request.param, tmp_path)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


def deploy_folder(rt: Runtime, folder: Path, forms: Path) -> None:
    validation = specs.validate(specs.read_sources([folder]), forms_dir=forms, sandbox=rt.sandbox)
    assert validation.ok, [str(p) for p in validation.problems]
    with rt.db.write() as conn:
        specs.deploy(conn, validation, actor="owner_1", now=rt.now())


@pytest.fixture
def rt(db: Database, clock: FixedClock) -> Runtime:
    runtime = Runtime(db=db, clock=clock)
    with db.write() as conn:
        load_demo_org(conn, now=clock.now(), password_for=lambda _p: PASSWORD)
    deploy_folder(runtime, REPO / "workflows" / "demo", REPO / "forms")
    return runtime


def insert_bare_spec_version(conn: Connection, process_id: str, at: datetime) -> None:
    """A spec_version row without files: what cases inserted straight into the tables (not started
    through the engine) refer to."""
    conn.execute(
        insert(spec_version).values(
            process_id=process_id, content_hash="h", files={}, spec_json="{}", task_meta={},
            serializer_version="1", deployed_at=at,
        )
    )  # fmt: skip
