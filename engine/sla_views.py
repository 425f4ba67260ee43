"""Reading SLA clocks: ``ClockView`` (with its hand-overs, as ``engine.sla.hand_overs`` reads them), a
case's clocks, "why is this red?" explanations (``explain_clock``), and the supervisors' provisional
and overdue lists.

Writes nothing: starting, stopping, handing over, suspending and extending clocks is ``engine.sla``'s.
Must not import flask, api or celery.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from sqlalchemy import select, true

from engine.calendar import DEFAULT_HOURS, WorkCalendar, explain
from engine.runtime import Runtime
from engine.sla import ClockRow, HandOver, as_clock, consumed_seconds, hand_overs, hours_of
from engine.sla_policy import DEFAULT_ESCALATE_AFTER, DEFAULT_SUPERVISE_AFTER, Source
from engine.store.models import case, sla_clock


@dataclass(frozen=True, slots=True)
class ClockView:
    id: int
    case_id: int
    task_id: str | None
    task_spec: str
    clock_key: str
    org_unit_id: str | None
    budget: str
    state: str
    status: str
    started_at: datetime
    due_at: datetime | None
    warn_due_at: datetime | None
    consumed_seconds: int
    budget_seconds: int
    provisional: bool
    provisional_reason: str | None
    calendar_version: str
    working_hours: str | None
    pauses: list[dict[str, object]]
    extensions: list[dict[str, object]]
    warn_pct: int | None = None
    supervise_after: str | None = None
    escalate_after: str | None = None
    supervise_at: datetime | None = None
    escalate_at: datetime | None = None
    policy_sources: dict[str, str] | None = None  # None on clocks started before it was recorded
    handovers: tuple[HandOver, ...] = ()  # 改派, oldest first


def case_clocks(case_id: int, *, rt: Runtime) -> list[ClockView]:
    with rt.db.read() as conn:
        rows = conn.execute(
            select(sla_clock).where(sla_clock.c.case_id == case_id).order_by(sla_clock.c.id)
        ).all()
        handovers = hand_overs(conn, case_id)
    now = rt.now()
    return [
        replace(view, handovers=tuple(handovers.get(view.id, ())))
        for view in (_view(as_clock(r), rt.calendar, now) for r in rows)
    ]


def _view(m: ClockRow, calendar: WorkCalendar, now: datetime) -> ClockView:
    consumed = m["consumed_seconds"]
    if consumed is None:
        consumed = consumed_seconds(calendar, m, now)
    return ClockView(
        id=m["id"],
        case_id=m["case_id"],
        task_id=m["task_id"],
        task_spec=m["task_spec"],
        clock_key=m["clock_key"],
        org_unit_id=m["org_unit_id"],
        budget=m["budget"],
        state=m["state"],
        status=m["status"],
        started_at=m["started_at"],
        due_at=m["due_at"],
        warn_due_at=m["warn_due_at"],
        consumed_seconds=int(consumed or 0),
        budget_seconds=m["budget_seconds"],
        provisional=m["provisional"],
        provisional_reason=m["provisional_reason"],
        calendar_version=m["calendar_version"],
        working_hours=m["working_hours"],
        pauses=list(m["pauses"]),
        extensions=list(m["extensions"]),
        warn_pct=m["warn_pct"],
        supervise_after=m["supervise_after"],
        escalate_after=m["escalate_after"],
        supervise_at=m["supervise_at"],
        escalate_at=m["escalate_at"],
        policy_sources=dict(m["policy_sources"]) if m.get("policy_sources") else None,
    )


def explain_clock(clock: ClockView, *, calendar: WorkCalendar) -> list[str]:
    """ "Why is this red?" — the clock's arithmetic in plain lines, from the clock alone."""
    local = calendar_tz()
    lines = [
        f"任务 {clock.task_spec}：时限 {clock.budget}{_source_note(clock, 'sla')}，"
        f"{clock.started_at.astimezone(local).isoformat()} 开始计时（单位 {clock.org_unit_id or '-'}）",
    ]
    for pause in clock.pauses:
        lines.append(
            f"挂起 {pause['from']} → {pause.get('to') or '至今'}："
            f"{pause.get('reason')}（{pause.get('actor')}）"
        )
    for ext in clock.extensions:
        lines.append(f"延期 +{ext['added']}，{ext['by']} 于 {ext['at']} 批准：{ext.get('reason')}")
    for hand in clock.handovers:
        giver = hand.from_unit or "-"
        why = f"：{hand.reason}" if hand.reason else ""
        lines.append(
            f"改派 {hand.at.astimezone(local).isoformat()}：{giver} → {hand.to_unit or '-'}，"
            f"{giver} 用时 {hand.spent_seconds // 60} 分钟工作时间（{hand.actor or 'system'}{why}）"
        )
    if clock.due_at is not None:
        deadline = calendar.add(
            clock.started_at, clock.budget, hours=hours_of(clock.working_hours), provisional_ok=True
        )
        lines.extend(explain(deadline)[:-1])
        lines.append(
            f"截止 {clock.due_at.astimezone(local).isoformat()}；"
            f"已用 {clock.consumed_seconds // 60} 分钟工作时间，预算 {clock.budget_seconds // 60} 分钟；"
            f"状态 {clock.status}（{clock.state}）"
        )
        lines.extend(_rung_lines(clock))
    if clock.provisional:
        lines.append(f"暂定：{clock.provisional_reason}")
    lines.append(f"日历版本 {clock.calendar_version}")
    return lines


_SOURCE_WORDS = {Source.TASK: "任务属性", Source.PROCESS: "流程属性", Source.DEFAULT: "系统默认"}


def _source_note(clock: ClockView, name: str) -> str:
    """``（依据：变量 sla_warn_at）`` — where a value of the clock came from, when it was recorded."""
    source = (clock.policy_sources or {}).get(name)
    if source is None:
        return ""
    if source.startswith(Source.VARIABLE_PREFIX):
        return f"（依据：变量 {source.removeprefix(Source.VARIABLE_PREFIX)}）"
    return f"（依据：{_SOURCE_WORDS.get(source, source)}）"


def _rung_lines(clock: ClockView) -> list[str]:
    """The thresholds the clock uses: warning, supervision and escalation, with where each came from."""
    local = calendar_tz()

    def at(instant: datetime | None) -> str:
        return instant.astimezone(local).isoformat() if instant is not None else "-"

    warn = (
        f"预警（黄灯）：用时 {clock.warn_pct}%，{at(clock.warn_due_at)}"
        if clock.warn_pct
        else "预警（黄灯）：不预警"
    )
    supervise = clock.supervise_after or DEFAULT_SUPERVISE_AFTER
    escalate = clock.escalate_after or DEFAULT_ESCALATE_AFTER
    return [
        warn + _source_note(clock, "warn_at"),
        f"督办：超期后 {supervise}，{at(clock.supervise_at)}{_source_note(clock, 'supervise_after')}",
        f"升级：超期后 {escalate}，{at(clock.escalate_at)}{_source_note(clock, 'escalate_after')}",
    ]


def calendar_tz() -> tzinfo:
    return DEFAULT_HOURS.tz


# Live clocks with a provisional deadline, found through ix_sla_clock_provisional. "= true", not "IS
# true" (PostgreSQL serves only the former from an index), and the live states by name: "!= 'stopped'"
# would read the stopped ones too, and every clock of a closed case is stopped.
PROVISIONAL = (sla_clock.c.provisional == true(), sla_clock.c.state.in_(["running", "paused"]))


def provisional_clocks(*, rt: Runtime) -> list[ClockView]:
    """Deadlines computed without holiday data, for supervisors to see."""
    with rt.db.read() as conn:
        rows = conn.execute(select(sla_clock).where(*PROVISIONAL)).all()
    return [_view(as_clock(r), rt.calendar, rt.now()) for r in rows]


def overdue_cases(*, rt: Runtime, limit: int = 200) -> list[tuple[int, str, datetime]]:
    """Open cases with a running clock past its deadline: (case id, case number, due_at), oldest first."""
    with rt.db.read() as conn:
        rows = conn.execute(
            select(case.c.id, case.c.number, sla_clock.c.due_at)
            .join(case, case.c.id == sla_clock.c.case_id)
            .where(sla_clock.c.state == "running", sla_clock.c.due_at < rt.now())
            .order_by(sla_clock.c.due_at)
            .limit(limit)
        ).all()
    return [(int(r.id), str(r.number), r.due_at) for r in rows]
