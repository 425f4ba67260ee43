"""``gridcase serve`` as a user runs it: starts on SQLite with the demo data, answers, stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import REPO


def test_serve_starts_with_demo_data_answers_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "GRIDCASE_DEMO_PASSWORD": "demo-pass", "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "api.cli", "--db", str(tmp_path / "serve.db"), "serve", "--port", "0"]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", line)
            port = int(found.group(1)) if found else None
        assert port is not None, "".join(lines)
        assert any("gw_g1" in line and "demo-pass" in line for line in lines)  # passwords printed once
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as response:
            health = json.loads(response.read())
        assert health == {"database": "sqlite", "scheduler": True, "status": "ok"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        rest = proc.stdout.read()
        assert "stopping (SIGINT)" in rest and "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
