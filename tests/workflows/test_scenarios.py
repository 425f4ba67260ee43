"""Every scenario in workflows/*/scenarios/ runs, saving and reloading the case after every step
(SQLite always; PostgreSQL too when DATABASE_URL is set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.scenarios import discover, run_file
from tests.conftest import REPO, postgres_url

SCENARIOS = discover(REPO / "workflows")


def test_every_process_folder_ships_scenarios() -> None:
    for folder in sorted(p for p in (REPO / "workflows").iterdir() if p.is_dir() and any(p.glob("*.bpmn"))):
        assert list((folder / "scenarios").glob("*.json")), f"{folder.name} has no scenarios"


@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in SCENARIOS])
def test_scenario_passes_on_sqlite(path: Path) -> None:
    outcome = run_file(path, workflows_dir=REPO / "workflows", forms_dir=REPO / "forms")
    assert outcome.passed, f"{outcome.message}\n" + "\n".join(outcome.log)


@pytest.mark.postgres
@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in SCENARIOS])
def test_scenario_passes_on_postgresql(path: Path, tmp_path: Path) -> None:
    from tests.conftest import fresh_database

    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL run needs DATABASE_URL=postgresql+psycopg://… (unset)")
    fresh_database("postgresql", tmp_path).dispose()
    outcome = run_file(path, workflows_dir=REPO / "workflows", forms_dir=REPO / "forms", database_url=url)
    assert outcome.passed, f"{outcome.message}\n" + "\n".join(outcome.log)
