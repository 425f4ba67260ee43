"""The ``gridcase`` commands a user types: clear output, exit codes, one line per problem, no tracebacks."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from api.cli import main
from tests.conftest import REPO


def run(db: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--db", str(db), *args], env={"GRIDCASE_DEMO_PASSWORD": "pw"})
    return result.exit_code, result.output


def test_calendar_add_counts_in_an_org_units_working_hours(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    assert run(db, "demo")[0] == 0
    assert run(db, "org", "hours", "c1", "08:00-12:00,14:00-18:00") == (0, "c1: 08:00-12:00, 14:00-18:00\n")
    assert run(db, "calendar", "add", "2025-03-03T11:00+08:00", "2WH", "--org", "g1")[1].startswith(
        "2025-03-03T15:00:00+08:00"
    )
    assert run(db, "calendar", "add", "2025-09-30T10:00+08:00", "3WD")[1].startswith(
        "2025-10-11T10:00:00+08:00"
    )
    code, output = run(db, "org", "hours", "g1", "8-12")
    assert code == 1 and output.startswith("error: calendar.bad_working_hours") and "Traceback" not in output


def test_validate_prints_each_problem_once_and_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "workflows" / "broken"
    broken.mkdir(parents=True)
    (broken / "broken.bpmn").write_text(
        (REPO / "workflows" / "demo" / "demo.bpmn").read_text().replace('camunda:formKey="demo/verify"', "")
    )
    code, output = run(tmp_path / "v.db", "validate", str(broken), "--forms", str(REPO / "forms"))
    assert code == 1
    problem_lines = [line for line in output.splitlines() if "user task has no form" in line]
    assert len(problem_lines) == 1 and "[verify]" in problem_lines[0]
    assert output.strip().endswith("error: spec.invalid: 1 problem(s) found")


def test_deploy_stores_nothing_when_any_process_has_an_error(tmp_path: Path) -> None:
    workflows = tmp_path / "workflows"
    (workflows / "demo").mkdir(parents=True)
    (workflows / "demo" / "demo.bpmn").write_text((REPO / "workflows" / "demo" / "demo.bpmn").read_text())
    (workflows / "zz_broken").mkdir()
    (workflows / "zz_broken" / "zz.bpmn").write_text("<not xml")
    db = tmp_path / "d.db"
    code, output = run(db, "deploy", str(workflows), "--forms", str(REPO / "forms"))
    assert code == 1 and "nothing was deployed" in output
    code, output = run(db, "case", "start", "demo", "--title", "t", "--as", "gw_g1")
    assert code == 1 and "spec.not_found" in output


def test_diagram_draws_a_process_as_svg_with_highlights(tmp_path: Path) -> None:
    out = tmp_path / "demo.svg"
    bpmn = str(REPO / "workflows" / "demo" / "demo.bpmn")
    code, output = run(tmp_path / "x.db", "diagram", bpmn, "-o", str(out), "--highlight", "handle=current")
    assert code == 0 and output.strip() == f"wrote {out}"
    svg = out.read_text(encoding="utf-8")
    assert svg.startswith("<svg") or "<svg" in svg[:200]
    assert "处置" in svg and "current" in svg
    code, output = run(tmp_path / "x.db", "diagram", bpmn, "--highlight", "handle")
    assert code == 1 and output.startswith("error: diagram.bad_highlight")


def test_case_clocks_shows_each_threshold_and_where_it_came_from(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    assert run(db, "demo")[0] == 0
    code, output = run(
        db,
        "case",
        "start",
        "work_order",
        "--title",
        "噪声",
        "--grid",
        "g1",
        "--category",
        "noise",
        "--as",
        "gw_g1",
    )
    assert code == 0, output
    number = next(word for word in output.split() if word.startswith("WO"))
    code, output = run(db, "case", "clocks", number)
    assert code == 0, output
    assert "时限 1WD（依据：任务属性）" in output  # 社区受理: its own sla …
    assert "用时 80%" in output and "督办：超期后 1WD" in output  # … the process's thresholds
    assert output.count("（依据：流程属性）") == 3


def _task_id(output: str, spec: str) -> str:
    [line] = [
        line for line in output.splitlines() if line.strip().startswith("task ") and f"({spec})" in line
    ]
    return line.split()[1]


def test_task_reassign_and_return_from_the_command_line(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    assert run(db, "demo")[0] == 0
    code, output = run(
        db,
        *("case", "start", "work_order", "--title", "过期食品", "--grid", "g1", "--category", "garbage"),
        *("--channel", "hotline_12345", "--as", "gw_g1"),
    )
    assert code == 0, output
    accept = _task_id(output, "accept")
    code, output = run(
        db, "task", "complete", accept, "--as", "community_c1", "--data", '{"decision": "accept"}'
    )
    code, output = run(
        db,
        "task",
        "complete",
        _task_id(output, "dispatch"),
        "--as",
        "street_s1",
        "--data",
        '{"dispatch_decision": "confirm"}',
    )
    claim = _task_id(output, "claim")
    code, output = run(
        db, "task", "reassign", claim, "--as", "dept_urban_1", "--unit", "dept_market", "--reason", "不归我管"
    )
    assert code == 1 and output.startswith("error: task.reassign_forbidden") and "Traceback" not in output
    code, output = run(
        db, "task", "reassign", claim, "--as", "street_s1", "--to", "gw_g1", "--reason", "改派"
    )
    assert code == 1 and output.startswith("error: task.reassign_not_candidate")
    assert "assignee_id: not a department of dept_urban" in output
    code, output = run(
        db,
        "task",
        "reassign",
        claim[:8],
        "--as",
        "street_s1",
        "--unit",
        "dept_market",
        "--reason",
        "属市场监管职责",
    )
    assert code == 0 and output.startswith(
        f"reassigned 部门领单 ({claim}) to the shared list @dept_market"
    ), output
    code, output = run(db, "task", "return", claim, "--as", "dept_market_1", "--reason", "已由其他部门办理")
    assert code == 1 and output.startswith("error: form.invalid")  # the claim form wants a reason code
    code, output = run(
        db,
        "task",
        "return",
        claim,
        "--as",
        "dept_market_1",
        "--reason",
        "非本部门职责",
        "--code",
        "not_responsible",
    )
    assert code == 0 and output.startswith("returned 部门领单") and "(dispatch)" in output, output
    code, output = run(
        db,
        "task",
        "request-extension",
        _task_id(output, "dispatch"),
        "--as",
        "street_s1",
        "--days",
        "2",
        "--reason",
        "x",
    )
    assert code == 1 and output.startswith("error: task.action_unsupported")


def test_text_that_no_database_can_store_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 on the command line (here the 13th argument, after --db and its file)
    reach Python as half surrogate pairs; a \\ud800 or \\u0000 escape in --data or --var JSON gives
    the same. Each is one clear line and exit code 1 (it was a traceback from the database write), and
    nothing is stored: the case started afterwards is the first."""
    db = tmp_path / "u.db"
    assert run(db, "demo")[0] == 0
    start = ("case", "start", "work_order", "--grid", "g1", "--category", "garbage", "--as", "gw_g1")
    not_utf8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of such bytes
    code, output = run(db, *start, "--title", not_utf8)
    assert code == 1 and output == "error: cli.invalid_unicode: argument 13 is not UTF-8 text" + (
        " (check the terminal's or the script's encoding)\n"
    )
    code, output = run(db, *start, "--title", "占道", "--var", 'note="\\ud800"')
    assert code == 1 and output.startswith("error: cli.invalid_unicode: --var note: text must be Unicode")
    code, output = run(db, *start, "--title", "占道", "--var", 'note="a\\u0000b"')
    assert code == 1 and output.startswith("error: cli.nul_character: --var note: text may not contain NUL")
    assert "Traceback" not in output
    code, output = run(db, *start, "--title", "占道 🚧")
    assert code == 0 and "(id 1) started" in output, output
    accept = _task_id(output, "accept")
    code, output = run(
        db, "task", "complete", accept, "--as", "community_c1", "--data", '{"decision": "\\udc00"}'
    )
    assert code == 1 and output.startswith("error: cli.invalid_unicode: --data: text must be Unicode")
