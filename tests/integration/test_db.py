"""SQLite's single write lock: a second writer waits its turn (polling, not SQLite's 100 ms back-off)
and gives up with a Conflict (``store.busy``) once the wait is over."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.errors import Conflict
from engine.store import db as db_module
from engine.store.db import Database


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
