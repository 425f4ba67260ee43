"""Who may see what: the caller as a ``Principal``, the case visibility filter, and personal-data masking.

Owns the read-side authorization rules of ARCHITECTURE §5 (acting on a task is ``orgs.may_act``, checked
by the step). Must not import flask, api or celery; SQLAlchemy Core only.

Visibility of a case, by the roles the caller holds (one grant per membership):

    role                                        sees the cases …
    grid_worker, grid_leader, community,        whose grid lies in the subtree of the grant's unit
    street, supervisor, leader,                 (a grid its grid, a community its grids, a street its
    command_centre, satisfaction_caller         communities, a district-level role the district)
    department, mediator, judicial_office       that have a human task (any state) of that (role, unit):
                                                the orders dispatched to the department, the disputes
                                                assigned to the mediator's or the 司法所's tier
    process_owner                               none (manages specs)
    resident                                    none through the role …
    anyone                                      … but every case they reported themselves

A case outside the caller's view is *not found* (never "forbidden"), so ids do not leak existence.

Masking. Personal data in ``case.data`` and in audit payloads (``phone``, ``id_number``, ``address_detail``
and their ``reporter_``/``contact_`` variants, at any depth, e.g. the parties of a dispute) is shown only
when a grant that makes the case visible belongs to a role that works with the person in the field:
``PERSONAL_DATA_ROLES`` (grid staff, community, department, mediator, 司法所, satisfaction caller), or to
the reporter. Supervisors, street dispatchers, the command centre and leaders see it masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, or_, select

from engine import orgs
from engine.errors import NotFound
from engine.store import fastsql
from engine.store.models import case, human_task, membership, org_unit, person

__all__ = [
    "PERSONAL_DATA_ROLES",
    "SUBTREE_ROLES",
    "TASK_ROLES",
    "Grant",
    "Principal",
    "case_task_pairs",
    "get_visible_case",
    "mask_personal",
    "may_see_personal",
    "principal",
    "sees_case_row",
    "visible_filter",
]

SUBTREE_ROLES = frozenset(
    {
        "grid_worker",
        "grid_leader",
        "community",
        "street",
        "supervisor",
        "leader",
        "command_centre",
        "satisfaction_caller",
    }
)
TASK_ROLES = frozenset({"department", "mediator", "judicial_office"})
PERSONAL_DATA_ROLES = frozenset(
    {
        "grid_worker",
        "grid_leader",
        "community",
        "department",
        "mediator",
        "judicial_office",
        "satisfaction_caller",
    }
)
# Keys of personal data in case data and form data, at any depth.
PHONE_KEYS = frozenset({"phone", "reporter_phone", "contact_phone", "mobile", "party_phone"})
ID_KEYS = frozenset({"id_number", "reporter_id_number", "id_card", "party_id_number"})
ADDRESS_KEYS = frozenset({"address_detail", "reporter_address_detail", "home_address"})


@dataclass(frozen=True, slots=True)
class Grant:
    """One membership of the caller: a role in a unit, with the unit's materialized path."""

    role: str
    unit_id: str
    path: str


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: who they are and every (role, unit) they hold."""

    person_id: str
    name: str
    grants: tuple[Grant, ...]

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(g.role for g in self.grants)

    def has_role(self, *roles: str) -> bool:
        return any(g.role in roles for g in self.grants)

    def subtree_paths(self, roles: Iterable[str] = SUBTREE_ROLES) -> list[str]:
        wanted = set(roles)
        return sorted({g.path for g in self.grants if g.role in wanted})

    def task_grants(self) -> list[tuple[str, str]]:
        return sorted({(g.role, g.unit_id) for g in self.grants if g.role in TASK_ROLES})

    def covers(self, unit_path: str | None, roles: Iterable[str]) -> bool:
        """True when one of the caller's ``roles`` grants covers the unit at ``unit_path``."""
        wanted = set(roles)
        return unit_path is not None and any(
            g.role in wanted and unit_path.startswith(g.path) for g in self.grants
        )


_GRANTS = (
    select(membership.c.role, membership.c.org_unit_id, org_unit.c.path)
    .join(org_unit, org_unit.c.id == membership.c.org_unit_id)
    .order_by(membership.c.org_unit_id, membership.c.role)
)


def principal(conn: Connection, person_id: str) -> Principal:
    """The caller with their grants; NotFound ``person.not_found`` for an unknown or inactive person."""
    row = conn.execute(select(person.c.name, person.c.active).where(person.c.id == person_id)).first()
    if row is None or not row.active:
        raise NotFound("person.not_found", f"person {person_id!r} does not exist", {"id": person_id})
    grants = tuple(
        Grant(r.role, r.org_unit_id, r.path)
        for r in conn.execute(_GRANTS.where(membership.c.person_id == person_id))
    )
    return Principal(person_id=person_id, name=row.name, grants=grants)


# One alias for every filter: an alias builds its column collection on first use, ~0.5 ms.
_VISIBLE_TASK = human_task.alias("visible_task")
_REPORTED = case.alias("reported")


def visible_filter(who: Principal) -> ColumnElement[bool]:
    """A filter on the ``case`` table: the cases ``who`` may see (see the module docstring).

    A caller with neither an area nor a task grant (a resident) sees only their own reports: a set of
    ids read once through ``ix_case_reporter_id``. Tested per case instead, their list walked every
    case of the database, newest first, looking for a page of theirs."""
    paths = who.subtree_paths()
    pairs = who.task_grants()
    if not paths and not pairs:
        return case.c.id.in_(select(_REPORTED.c.id).where(_REPORTED.c.reporter_id == who.person_id))
    clauses: list[ColumnElement[bool]] = [case.c.reporter_id == who.person_id]
    if paths:
        clauses.append(orgs.in_scope(case.c.unit_path, paths))
    if pairs:
        mine = _VISIBLE_TASK
        clauses.append(
            exists(
                select(mine.c.id)
                .where(
                    mine.c.case_id == case.c.id,
                    or_(*[and_(mine.c.role == r, mine.c.org_unit_id == u) for r, u in pairs]),
                )
                .correlate(case)
            )
        )
    return or_(*clauses)


def sees_case(
    who: Principal, *, unit_path: str | None, reporter_id: str | None, tasks: Iterable[Any]
) -> bool:
    """``visible_filter``'s rule on rows already read: the case's reporter, an area grant over its unit,
    or a task grant matching one of its human tasks (``tasks``: rows with ``role`` and ``org_unit_id``)."""
    if reporter_id is not None and reporter_id == who.person_id:
        return True
    if who.covers(unit_path, SUBTREE_ROLES):
        return True
    pairs = set(who.task_grants())
    return bool(pairs) and any((t.role, t.org_unit_id) in pairs for t in tasks)


# The (role, unit) pairs of one case's human tasks, prepared: a department's, mediator's or 司法所's every
# task action checks them on the locked case row.
_CASE_TASK_GRANTS = fastsql.Statement(
    "SELECT DISTINCT role, org_unit_id FROM human_task WHERE case_id = :case_id AND role IS NOT NULL"
)


def sees_case_row(
    conn: Connection, who: Principal, case_id: int, *, unit_path: str | None, reporter_id: str | None
) -> bool:
    """``sees_case`` on one case row already read; the case's task pairs are queried only when the
    reporter and area grants did not decide it and the caller holds task grants."""
    return sees_case(who, unit_path=unit_path, reporter_id=reporter_id, tasks=_task_pairs_of(conn, case_id))


def _task_pairs_of(conn: Connection, case_id: int) -> Iterator[SimpleNamespace]:
    """The case's (role, unit) pairs, read when first iterated."""
    for role, unit in fastsql.fetch(conn, _CASE_TASK_GRANTS, {"case_id": case_id}):
        yield SimpleNamespace(role=role, org_unit_id=unit)


def get_visible_case(conn: Connection, who: Principal, case_id: int) -> Any:
    """The case row when ``who`` may see it; NotFound ``case.not_found`` otherwise (no existence leak)."""
    row = conn.execute(select(case).where(case.c.id == case_id, visible_filter(who))).first()
    if row is None:
        raise NotFound("case.not_found", f"case {case_id} does not exist", {"case_id": case_id})
    return row


def case_task_pairs(conn: Connection, case_ids: Iterable[int]) -> dict[int, set[tuple[str, str]]]:
    """For each case, the (role, unit) pairs its human tasks were ever assigned to."""
    ids = list(case_ids)
    found: dict[int, set[tuple[str, str]]] = {i: set() for i in ids}
    if not ids:
        return found
    rows = conn.execute(
        select(human_task.c.case_id, human_task.c.role, human_task.c.org_unit_id)
        .where(human_task.c.case_id.in_(ids), human_task.c.role.is_not(None))
        .distinct()
    )
    for r in rows:
        if r.org_unit_id is not None:
            found[r.case_id].add((r.role, r.org_unit_id))
    return found


def may_see_personal(
    who: Principal, *, unit_path: str | None, reporter_id: str | None, task_pairs: set[tuple[str, str]]
) -> bool:
    """True when a grant that makes the case visible needs the persons' details (see the docstring)."""
    if reporter_id is not None and reporter_id == who.person_id:
        return True
    if who.covers(unit_path, SUBTREE_ROLES & PERSONAL_DATA_ROLES):
        return True
    return any((g.role, g.unit_id) in task_pairs for g in who.grants if g.role in PERSONAL_DATA_ROLES)


def _mask_id(value: str) -> str:
    return value[:4] + "*" * max(len(value) - 8, 4) + value[-4:] if len(value) > 8 else "*" * len(value)


def mask_personal(value: object) -> Any:
    """A copy of ``value`` (JSON-like) with phone numbers, ID numbers and address details masked."""
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            if isinstance(item, str) and key in PHONE_KEYS:
                out[key] = orgs.mask_phone(item)
            elif isinstance(item, str) and key in ID_KEYS:
                out[key] = _mask_id(item)
            elif isinstance(item, str) and key in ADDRESS_KEYS:
                out[key] = "****"
            else:
                out[key] = mask_personal(item)
        return out
    if isinstance(value, list):
        return [mask_personal(item) for item in value]
    return value
