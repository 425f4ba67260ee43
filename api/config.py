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
    # None: "attachments" beside the SQLite file, else under the user's data directory
    attachments_dir: Path | None = field(
        default_factory=lambda: Path(v) if (v := os.environ.get("GRIDCASE_ATTACHMENTS")) else None
    )
    max_body_bytes: int = 1024 * 1024  # JSON bodies; uploads have their own limits
    secure_cookies: bool = field(default_factory=lambda: os.environ.get("GRIDCASE_SECURE_COOKIES") == "1")
    trusted_proxies: int = field(default_factory=lambda: int(os.environ.get("GRIDCASE_TRUSTED_PROXIES", "0")))

    def attachments_path(self) -> Path:
        """Where attachment files live (outside the database)."""
        if self.attachments_dir is not None:
            return self.attachments_dir
        url = self.database_url or ""
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///")).parent / "attachments"
        from platformdirs import user_data_dir

        return Path(user_data_dir("gridcase")) / "attachments"
