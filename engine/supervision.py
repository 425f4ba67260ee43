"""SLA work as an authenticated caller does it: 挂起/恢复 (suspend/resume), 催办 (remind), 督办
(supervise), a supervisor's direct 延期 (extension), a case's clocks explained, the overdue and
provisional lists of the caller's area, and the caller's own in-app notifications.

Owns no table. The steps are ``engine.sla`` and ``engine.escalation`` (locked, audited, notified); this
module decides *who* may call them, through ``engine.access``, before the step runs. Reads ``case``,
``sla_clock`` and ``human_task`` for the lists. Must not import flask, api or celery.

Who may do what, on a case of the area (the case's grid lies in the subtree of the grant's unit):

    action                      roles                                    code when refused (403)
    suspend / resume            street, supervisor, command_centre       sla.suspend_forbidden
    remind (催办)               street, supervisor, command_centre       sla.remind_forbidden
    supervise (督办)            supervisor, command_centre               sla.supervise_forbidden
    extend (延期, direct)       street, supervisor                       sla.extend_forbidden
    read clocks                 anyone who may see the case (``access``)
    overdue / provisional list  street, supervisor, command_centre       supervision.forbidden

Reasons. Suspending stops the statutory clock, so it is an act of the level that dispatches (the
street's 指挥分中心) or watches (supervisors, the district command centre), never of the handler whose
time is being measured. 催办 is a nudge, so the same people; 督办 is formal supervision, which raises
priority and reaches the workflow as ``sla_supervise``, so only supervisors and the command centre (as
for BPMN messages, ``casework.MESSAGE_ROLES``). A direct extension overrides the BPMN approval path
(the ``extension_decision`` task decided by the street), so it is open to the street — who would have
decided it anyway — and to supervisors, not to the command centre, which does not approve extensions.

A case the caller cannot see is ``case.not_found`` (404, no data); a visible case outside the caller's
acting roles is a 403 with the codes above. Notifications are always the caller's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, select

from engine import access, escalation, notify, orgs, search, sla, sla_views
from engine.errors import Conflict, InvalidInput, PermissionDenied
from engine.runtime import Runtime
from engine.store.models import case, human_task, sla_clock

__all__ = [
    "EXTEND_ROLES",
    "MAX_LIST",
    "REMIND_ROLES",
    "SUPERVISE_ROLES",
    "SUPERVISION_ROLES",
    "SUSPEND_ROLES",
    "CaseSla",
    "ClockExplained",
    "WatchRow",
    "case_sla",
    "extend",
    "inbox",
    "mark_read",
    "overdue",
    "provisional",
    "remind",
    "resume",
    "supervise",
    "suspend",
]

SUSPEND_ROLES = frozenset({"street", "supervisor", "command_centre"})
REMIND_ROLES = frozenset({"street", "supervisor", "command_centre"})
SUPERVISE_ROLES = frozenset({"supervisor", "command_centre"})
EXTEND_ROLES = frozenset({"street", "supervisor"})
SUPERVISION_ROLES = frozenset({"street", "supervisor", "command_centre"})
MAX_LIST = 500
MAX_NOTIFICATIONS = 200
MAX_MARK = 200


@dataclass(frozen=True, slots=True)
class ClockExplained:
    clock: sla_views.ClockView
    clock_key: str  # what an extension names (the step's BPMN id unless the diagram sets ``sla_clock``)
    explain: list[str]  # "why is this red?", one plain line each (zh-CN)


@dataclass(frozen=True, slots=True)
class CaseSla:
    """A case's SLA state: its status and version (the ETag), the worst live clock status, the nearest
    deadline, and every clock (running, paused, stopped) with its explanation."""

    case_id: int
    number: str
    status: str  # the case's status (open, suspended, completed …)
    version: int
    sla_status: str  # none | on_time | warning | overdue (same rule as the case file's ``sla.status``)
    due_at: datetime | None
    clocks: list[ClockExplained]


@dataclass(frozen=True, slots=True)
class WatchRow:
    """One row of a supervision list: a live clock of a case of the caller's area."""

    case_id: int
    case_number: str
    case_title: str
    case_status: str
    task_id: str | None
    task_spec: str
    task_name: str | None
    org_unit_id: str | None
    due_at: datetime | None
    status: str  # the clock's rung status: on_time | warning | overdue
    state: str  # running | paused
    provisional: bool
    provisional_reason: str | None


# --- checks ---------------------------------------------------------------------------------------


def _acting_case(
    rt: Runtime, who: access.Principal, case_id: int, roles: frozenset[str], code: str, what: str
) -> Any:
    """The case row, when visible to ``who`` (else 404) and in the area of one of ``roles`` (else 403)."""
    with rt.db.read() as conn:
        row = access.get_visible_case(conn, who, case_id)
    if not who.covers(row.unit_path, roles):
        allowed = "、".join(sorted(roles))
        raise PermissionDenied(code, f"only {allowed} of the case's area may {what}", {"case_id": case_id})
    return row


# --- reading --------------------------------------------------------------------------------------


def case_sla(who: access.Principal, case_id: int, *, rt: Runtime) -> CaseSla:
    """Every clock of a visible case with its explanation; ``case.not_found`` outside the scope."""
    with rt.db.read() as conn:
        row = access.get_visible_case(conn, who, case_id)
    return _case_sla(rt, row)


def _case_sla(rt: Runtime, row: Any) -> CaseSla:
    views = sla_views.case_clocks(int(row.id), rt=rt)
    with rt.db.read() as conn:
        found = conn.execute(
            select(sla_clock.c.id, sla_clock.c.clock_key).where(sla_clock.c.case_id == row.id)
        )
        keys = {int(r.id): str(r.clock_key) for r in found}
    live = [c for c in views if c.state != "stopped"]
    dues = [c.due_at for c in live if c.due_at is not None]
    return CaseSla(
        case_id=int(row.id),
        number=str(row.number),
        status=str(row.status),
        version=int(row.version),
        sla_status=search.worst_status([c.status for c in live]) if live else "none",
        due_at=min(dues) if dues else None,
        clocks=[
            ClockExplained(
                c, str(keys.get(c.id, c.task_spec)), sla_views.explain_clock(c, calendar=rt.calendar)
            )
            for c in views
        ],
    )


# --- actions --------------------------------------------------------------------------------------


def suspend(
    who: access.Principal, case_id: int, *, rt: Runtime, reason: str, expected_version: int | None = None
) -> CaseSla:
    """挂起: pause every running clock of the case (street, supervisor or command centre of its area).

    A suspended case again → 409 ``case.suspended``; a closed one → 409 ``case.closed``."""
    _acting_case(rt, who, case_id, SUSPEND_ROLES, "sla.suspend_forbidden", "suspend it")
    sla.suspend_case(case_id, rt=rt, actor=who.person_id, reason=reason, expected_version=expected_version)
    return case_sla(who, case_id, rt=rt)


def resume(
    who: access.Principal, case_id: int, *, rt: Runtime, expected_version: int | None = None
) -> CaseSla:
    """恢复: restart the paused clocks; every deadline moves by the working time spent suspended (the
    same roles as ``suspend``). A case that is not suspended → 409 ``case.not_suspended``."""
    row = _acting_case(rt, who, case_id, SUSPEND_ROLES, "sla.suspend_forbidden", "resume it")
    if row.status != "suspended":
        raise Conflict(
            "case.not_suspended",
            f"case {row.number} is {row.status}, not suspended",
            {"case_id": case_id, "status": row.status},
        )
    sla.resume_case(case_id, rt=rt, actor=who.person_id, expected_version=expected_version)
    return case_sla(who, case_id, rt=rt)


def remind(who: access.Principal, case_id: int, *, rt: Runtime, note: str) -> CaseSla:
    """催办: nudge the current handlers (street, supervisor or command centre of the area)."""
    _acting_case(rt, who, case_id, REMIND_ROLES, "sla.remind_forbidden", "remind its handlers")
    escalation.remind(case_id, rt=rt, actor=who.person_id, note=note)
    return case_sla(who, case_id, rt=rt)


def supervise(who: access.Principal, case_id: int, *, rt: Runtime, note: str) -> CaseSla:
    """督办: formal supervision — priority urgent, notifications up the chain, ``sla_supervise`` to the
    workflow (supervisor or command centre of the area)."""
    _acting_case(rt, who, case_id, SUPERVISE_ROLES, "sla.supervise_forbidden", "supervise it")
    escalation.supervise(case_id, rt=rt, actor=who.person_id, note=note)
    return case_sla(who, case_id, rt=rt)


def extend(
    who: access.Principal,
    case_id: int,
    *,
    rt: Runtime,
    clock_key: str,
    added: str,
    reason: str,
    expected_version: int | None = None,
) -> CaseSla:
    """延期 approved directly by a street or supervisor of the area, overriding the BPMN approval task.

    The engine's rules hold: same unit family as the budget (``sla.extension_unit``), all extensions
    together at most the original budget (``sla.extension_cap``), an open clock (``sla.no_open_clock``)."""
    _acting_case(rt, who, case_id, EXTEND_ROLES, "sla.extend_forbidden", "extend its deadlines")
    sla.extend_clock(
        case_id,
        rt=rt,
        actor=who.person_id,
        clock_key=clock_key,
        added=added,
        reason=reason,
        expected_version=expected_version,
    )
    return case_sla(who, case_id, rt=rt)


# --- supervision lists ----------------------------------------------------------------------------


def _area_paths(who: access.Principal) -> list[str]:
    paths = who.subtree_paths(SUPERVISION_ROLES)
    if not paths:
        raise PermissionDenied(
            "supervision.forbidden",
            "supervision lists are for streets, supervisors and the command centre",
            {},
        )
    return paths


_WATCH_COLUMNS = (
    case.c.id.label("case_id"),
    case.c.number.label("case_number"),
    case.c.title.label("case_title"),
    case.c.status.label("case_status"),
    sla_clock.c.task_id,
    sla_clock.c.task_spec,
    human_task.c.name.label("task_name"),
    sla_clock.c.org_unit_id,
    sla_clock.c.due_at,
    sla_clock.c.status,
    sla_clock.c.state,
    sla_clock.c.provisional,
    sla_clock.c.provisional_reason,
)


def _watch_query(paths: list[str], *where: Any, limit: int) -> Select[Any]:
    return (
        select(*_WATCH_COLUMNS)
        .select_from(sla_clock)
        .join(case, case.c.id == sla_clock.c.case_id)
        .outerjoin(human_task, human_task.c.id == sla_clock.c.task_id)
        .where(orgs.in_scope(case.c.unit_path, paths), *where)
        .order_by(sla_clock.c.due_at, sla_clock.c.id)
        .limit(limit)
    )


def _watch(conn: Connection, paths: list[str], *where: Any, limit: int) -> list[WatchRow]:
    rows = conn.execute(_watch_query(paths, *where, limit=limit)).all()
    return [WatchRow(**dict(r._mapping)) for r in rows]


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput("supervision.bad_limit", f"limit must be 1 to {MAX_LIST}", {"limit": limit})


def overdue(who: access.Principal, *, rt: Runtime, limit: int = 200) -> list[WatchRow]:
    """Running clocks past their deadline in the caller's area, most overdue first (the rule of
    ``sla_views.overdue_cases`` and of the case list's ``overdue`` filter, scoped)."""
    _check_limit(limit)
    paths = _area_paths(who)
    with rt.db.read() as conn:
        return _watch(conn, paths, sla_clock.c.state == "running", sla_clock.c.due_at < rt.now(), limit=limit)


def provisional(who: access.Principal, *, rt: Runtime, limit: int = 200) -> list[WatchRow]:
    """Live clocks of the caller's area whose deadline was computed without holiday data (weekends
    only), nearest first — as ``sla_views.provisional_clocks``, scoped."""
    _check_limit(limit)
    paths = _area_paths(who)
    with rt.db.read() as conn:
        return _watch(conn, paths, *sla_views.PROVISIONAL, limit=limit)


# --- the caller's notifications -------------------------------------------------------------------


def inbox(
    who: access.Principal, *, rt: Runtime, unread_only: bool = False, limit: int = 50
) -> list[notify.InAppMessage]:
    """The caller's own in-app notifications, newest first."""
    if not 1 <= limit <= MAX_NOTIFICATIONS:
        raise InvalidInput(
            "notification.bad_limit", f"limit must be 1 to {MAX_NOTIFICATIONS}", {"limit": limit}
        )
    with rt.db.read() as conn:
        return notify.list_notifications(conn, who.person_id, unread_only=unread_only, limit=limit)


def mark_read(who: access.Principal, ids: Sequence[str], *, rt: Runtime) -> int:
    """Mark the caller's own notifications read; ids of other people's (or unknown, or already read)
    notifications are ignored. Returns how many were marked."""
    if len(ids) > MAX_MARK:
        raise InvalidInput(
            "notification.too_many", f"mark at most {MAX_MARK} at once", {"fields": {"ids": "too many"}}
        )
    with rt.db.write() as conn:
        return notify.mark_read(conn, who.person_id, list(dict.fromkeys(ids)), now=rt.now())
