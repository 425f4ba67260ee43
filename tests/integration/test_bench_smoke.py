"""The benches still run end to end. ``bench/api_load.py``: a short run per lifecycle (real gunicorn,
real clients), every request answered, lifecycles completed and the RESULT line printed;
``bench/org_lookups.py`` and ``bench/history.py``: both sizes built and timed; ``bench/instructions.py``:
a lifecycle counted. Timings are not checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _bench(script: str, *args: str, timeout: float = 300) -> str:
    """Run ``bench/<script>`` on SQLite (DATABASE_URL left out: short runs); its output, after checking
    that it exited 0."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    return out


@pytest.mark.parametrize("process", ["work_order", "demo"])
def test_the_api_load_bench_completes_lifecycles_without_failed_requests(process: str) -> None:
    out = _bench(
        "api_load.py", "--process", process, *("--clients", "4", "--seconds", "2", "--serial-rounds", "2")
    )
    assert "failed requests" not in out, out
    assert f"sqlite: {process} lifecycles" in out, out
    found = re.search(r"^RESULT tasks_per_s=([0-9.]+) p99_ms=([0-9.]+) http_vs_service=([0-9.]+)$", out, re.M)
    assert found is not None, out
    assert float(found.group(1)) > 0, out
    seconds = re.search(r"second by second \((\d+) s\): answers median (\d+), fewest (\d+)", out)
    assert seconds is not None and int(seconds.group(1)) >= 1 and int(seconds.group(3)) > 0, out


def test_the_api_load_bench_paces_its_clients_to_the_rate_asked() -> None:
    """``--rate``: after the closed loop, the clients offer the rate asked on a schedule. 4 clients
    offering 14 tasks/s (48 requests/s: one every 83 ms each) for 3 s complete about 14 a second; a
    closed loop on the same server completes far more."""
    out = _bench(
        "api_load.py", "--process", "work_order", "--rate", "14",
        *("--clients", "4", "--seconds", "3", "--serial-rounds", "2"),
    )  # fmt: skip
    assert "failed requests" not in out, out
    paced = r"^PACED sqlite offered_tasks_per_s=14 tasks_per_s=([0-9.]+) p99_ms=[0-9.]+$"
    found = re.search(paced, out, re.M)
    assert found is not None, out
    closed = re.search(r"^RESULT tasks_per_s=([0-9.]+) ", out, re.M)
    assert closed is not None, out
    assert 7 <= float(found.group(1)) <= 15, out  # whole lifecycles only, and the run's ends
    assert float(closed.group(1)) > 2 * float(found.group(1)), out


def test_the_org_lookups_bench_runs_at_both_sizes() -> None:
    """``bench/org_lookups.py --quick``: both organisations are built and every lookup is timed."""
    out = _bench("org_lookups.py", "--quick")
    assert "sqlite: 38 units" in out, out
    assert "sqlite: 922 units" in out, out  # 38 + 4 streets × (1 + 20 communities × (1 + 10 grids))
    assert out.count("working_hours_of") == 2, out
    assert re.search(r"^RESULT units=922 growth=[0-9.]+$", out, re.M), out


def test_the_history_bench_measures_every_read_young_and_old() -> None:
    """``bench/history.py --quick``: 80 real cases through the app, cloned three times, every read timed
    at both sizes (a read that fails, e.g. a 4xx, stops the bench)."""
    out = _bench("history.py", "--quick")
    assert "sqlite: 80 cases (young) and 640 (history)" in out, out
    for label in ("work list", "cases overdue", "dept open", "my reports", "provisional", "case file"):
        assert re.search(rf"^  {label} +[0-9.]+ +[0-9.]+ ", out, re.M), (label, out)
    assert re.search(r"^RESULT cases=640 growth=[0-9.]+$", out, re.M), out


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="bench/instructions.py needs valgrind")
def test_the_instructions_bench_counts_a_lifecycle() -> None:
    """``bench/instructions.py``: one lifecycle counted under callgrind after one of warm-up; the count
    is of the lifecycle only (a run that counted nothing, or the interpreter's start, would be far off)."""
    out = _bench("instructions.py", "--lifecycles", "1", "--warm-up", "1", timeout=600)
    result_line = r"^RESULT instructions_per_lifecycle=([0-9.]+)M instructions_per_request=[0-9]+k$"
    found = re.search(result_line, out, re.M)
    assert found, out
    assert 20 < float(found.group(1)) < 2000, out
