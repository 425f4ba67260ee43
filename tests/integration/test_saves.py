"""Each save rewrites the workflow's state, subprocesses included; a completed subprocess's conversion
is kept on the cached instance and used again (``Instance._convert_subprocess``). A work order goes
through its main line on one runtime (the workflow stays cached between steps), and every conversion
used is checked against a fresh one from the serializer."""

from __future__ import annotations

from typing import Any

import pytest

from engine import access, casework, search, spiff, tasks
from engine.runtime import Runtime
from tests.conftest import REPO, deploy_folder

MAIN_LINE = (
    ("accept", "community_c1", {"decision": "accept"}),
    ("dispatch", "street_s1", {"dispatch_decision": "confirm"}),
    ("claim", "dept_urban_1", {"claim_decision": "claim"}),
    ("handle", "dept_urban_1", {"handle_result": "done", "handle_summary": "已清运"}),
    ("feedback", "dept_urban_1", {"feedback_summary": "已清运完毕"}),
    ("verify", "community_c1", {"verify_result": "pass"}),
    ("follow_up", "caller_1", {"rating": "satisfied", "contact_result": "phone"}),
)


def test_a_kept_subprocess_conversion_equals_a_fresh_one(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy_folder(rt, REPO / "workflows" / "work_order", REPO / "forms")
    kept = spiff.Instance._convert_subprocess
    reused: list[object] = []
    stale: list[object] = []  # not asserted in place: the work done before the write lock swallows errors

    def checked(self: spiff.Instance, key: Any, sub: Any) -> object:
        before = self._finished_subs.get(key)
        found = kept(self, key, sub)
        if found != spiff._serializer().registry.convert(sub):
            stale.append(key)
        if before is not None and found is before[2]:
            reused.append(key)
        return found

    monkeypatch.setattr(spiff.Instance, "_convert_subprocess", checked)
    with rt.db.read() as conn:
        reporter = access.principal(conn, "gw_g1")
    intake = casework.Intake(
        process_id="work_order",
        title="东门垃圾站三天未清运",
        grid_id="g1",
        channel="hotline_12345",
        category="garbage",
        data={"description": "东门垃圾站三天未清运"},
    )
    case_id = casework.report_case(reporter, intake, rt=rt)[0].id
    for spec, person, data in MAIN_LINE:
        [task_id] = [
            t.id for t in tasks.case_tasks(case_id, rt=rt) if t.task_spec == spec and t.state == "ready"
        ]
        tasks.complete_task(task_id, rt=rt, actor=person, data=data)
    assert search.case_file(reporter, case_id, rt=rt).summary.status == "completed"
    assert not stale
    assert len(reused) >= 2, "feedback, verify and follow-up each saved the completed joint handling again"
