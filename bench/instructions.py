"""Instructions a work-order lifecycle costs the app, counted by valgrind's callgrind: a yardstick that a
shared VM's drifting speed does not move (timings on these VMs vary by ±15 % from run to run and by 2×
from session to session; the count repeats to about 1 %: the app reads the real clock, and deadlines
are worked out from it).

Run from the repo root (needs valgrind)::

    python bench/instructions.py               # 3 warm-up lifecycles, then 10 counted
    python bench/instructions.py --lifecycles 4 --warm-up 2

What is counted: the app called in-process with WSGI environs (``bench/history.py``'s ``App``, what
gunicorn hands it; gunicorn's own parsing and socket work are outside the count) on a temporary SQLite
database prepared as ``bench/api_load.py`` prepares it, driving ``api_load.lifecycle``: intake, the
community's work list, per task of the main line a case read, a claim and a complete, and the reporter's
read of the closed case (24 requests). The script runs itself under ``valgrind --tool=callgrind
--instr-atstart=no``; the child switches counting on (``callgrind_control -i on``) after the warm-up and
off before it exits, so imports, migrations, logins and the first lifecycles (spec parsing, caches) are
not counted, nor is the copy of the write-ahead log into the database file (the checkpointer's passes
come every 0.25 s of the clock, which valgrind stretches some 50-fold). The decoding of each answer
(``json.loads``) is counted with the app; it is the same for any server-side change.

Last line: ``RESULT instructions_per_lifecycle=<millions> instructions_per_request=<thousands>``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import api_load  # noqa: E402
from history import App, run_lifecycle  # noqa: E402

from engine.runtime import Runtime  # noqa: E402
from engine.store.db import Database  # noqa: E402

PROCESS = "work_order"


def drive(app: App, first: int, count: int) -> None:
    """``count`` lifecycles to closure, clients ``first`` … ``first + count - 1`` (their casts vary)."""
    for n in range(first, first + count):
        run_lifecycle(app, n)


def counting(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def child(url: str, warm_up: int, lifecycles: int) -> None:
    # The checkpointer's passes come by the clock (every 0.25 s), and valgrind stretches the clock some
    # 50-fold: counted, they would weigh 50 times what they weigh in a server. Held back here.
    app = App(url, Runtime(db=Database(url, checkpoint_every_s=3600)))
    # Every person of the casts logs in before counting starts: logins are not part of a lifecycle.
    for n in range(warm_up + lifecycles):
        for person in api_load.Cast.of_client(n).people.values():
            app.token(person)
    drive(app, 0, warm_up)
    counting(True)
    drive(app, warm_up, lifecycles)
    counting(False)


def totals(out_file: str) -> int:
    text = Path(out_file).read_text()
    found = re.search(r"^totals: (\d+)", text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"no totals in {out_file}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=10, help="lifecycles counted")
    parser.add_argument("--warm-up", type=int, default=3, help="lifecycles run before counting starts")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lifecycles < 1 or args.warm_up < 1:
        parser.error("--lifecycles and --warm-up must be at least 1")
    if args.child:
        child(args.child, args.warm_up, args.lifecycles)
        return
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/instructions.db"
        api_load.prepare(url)
        out_file = f"{folder}/callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0", "GRIDCASE_SECRET_KEY": "bench-secret"}
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}",
            sys.executable, __file__, "--child", url,
            "--warm-up", str(args.warm_up), "--lifecycles", str(args.lifecycles),
        ]  # fmt: skip
        done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        counted = totals(out_file)
    per_lifecycle = counted / args.lifecycles
    requests = api_load.lifecycle_requests(PROCESS)
    print(f"{args.lifecycles} {PROCESS} lifecycles counted after {args.warm_up} warm-up")
    print(f"  {requests} requests a lifecycle")
    print(f"  instructions: {counted / 1e6:.1f} M in all, {per_lifecycle / 1e6:.1f} M a lifecycle")
    print(
        f"RESULT instructions_per_lifecycle={per_lifecycle / 1e6:.1f}M"
        f" instructions_per_request={per_lifecycle / requests / 1e3:.0f}k"
    )


if __name__ == "__main__":
    main()
