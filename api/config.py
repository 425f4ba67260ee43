"""Configuration for the Flask app and the CLI, read from the environment with safe defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str | None = None  # None: DATABASE_URL, then the SQLite file under the user's data dir
    workflows_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("GRIDCASE_WORKFLOWS", REPO_ROOT / "workflows"))
    )
    forms_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("GRIDCASE_FORMS", REPO_ROOT / "forms"))
    )
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL"))
    secret_key: str = field(default_factory=lambda: os.environ.get("GRIDCASE_SECRET_KEY", ""))
    start_scheduler: bool = False
    testing: bool = False
