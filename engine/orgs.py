"""The organisation: units (district → street → community → grid → micro_grid, departments), people,
memberships (person, unit, role), password hashes, task assignment and the data scopes of a person.

Owns the ``org_unit``, ``person`` and ``membership`` tables. SQLAlchemy Core only; every function takes
the caller's ``Connection`` (the caller owns the transaction). Must not import flask, api, celery or
SpiffWorkflow.

Hierarchy. ``org_unit.path`` is a materialized path of ids, ``/district/s1/c1/g1/`` (leading and
trailing slash), so "u is an ancestor of v" is "v.path starts with u.path". Unit ids may not contain
``/``. Prefix tests are written as ``substr(v.path, 1, length(u.path)) = u.path`` rather than ``LIKE``,
because ids often contain ``_`` (a LIKE wildcard); use ``in_scope`` to build scope filters. Lookups
from one unit upwards (``ancestors``, ``resolve_assignment``, ``working_hours_of``) walk ``parent_id``
instead, one primary-key search a level, since a prefix test against every unit reads the whole table.

Assignment (ARCHITECTURE §2). A task's candidates are (role, org unit). ``resolve_assignment`` picks the
unit: the dispatch hint (a department) if it has an active member with the role, else the nearest unit
on the way up from the case's grid (grid → community → street → district) that has one.

Kinds. ``ROLE_UNIT_KINDS`` says which kinds of unit hold each role (a grid worker a grid, a department
handler a department …); reassigning a task (改派) to a unit of another kind is refused.

Acting. ``may_act`` is true when the person (active) holds the role in the task's unit, or holds
``supervisor`` in that unit or any ancestor of it: a supervisor may take over (代办) any task of their
subtree; the audit event records who actually acted. Nobody else may act, not even a supervisor of a
sibling subtree or a holder of the same role in a parent unit.

Remembered answers. ``Lookups`` answers ``may_act``, ``resolve_assignment`` and ``working_hours_of``
for steps from memory while the organisation stays as it was: triggers move ``org_revision`` on every
change to units, memberships and people's ``active`` (migration 0011), a step reads it with its lock,
and an answer is kept only under the revision it was found at.

Scopes. ``scope_paths`` lists the unit paths whose subtree a person may see: the path of every unit
they hold a role in, except ``resident`` (a resident sees their own cases, not their grid's), with
paths already covered by a shorter one dropped.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    false,
    or_,
    select,
    update,
)

from engine.errors import Conflict, InvalidInput, NotFound
from engine.store import fastsql
from engine.store.models import membership, org_unit, person

__all__ = [
    "ROLES",
    "ROLE_UNIT_KINDS",
    "UNIT_KINDS",
    "UNIT_KIND_LABELS",
    "Lookups",
    "Membership",
    "PersonRow",
    "UnitRow",
    "add_membership",
    "add_person",
    "add_unit",
    "ancestors",
    "candidates",
    "get_person",
    "get_unit",
    "hash_password",
    "in_scope",
    "mask_phone",
    "may_act",
    "memberships_of",
    "resolve_assignment",
    "scope_paths",
    "set_working_hours",
    "verify_password",
    "working_hours_of",
]

ROLES: dict[str, str] = {
    "resident": "居民",
    "grid_worker": "网格员",
    "grid_leader": "网格长",
    "community": "社区受理员",
    "street": "街道派单员",
    "department": "部门办理人",
    "command_centre": "指挥中心",
    "satisfaction_caller": "回访员",
    "mediator": "人民调解员",
    "judicial_office": "司法所",
    "process_owner": "流程管理员",
    "supervisor": "督办领导",
    "leader": "单位负责人",  # receives "unit leader" notifications (督办 copies, monthly bulletins)
}

UNIT_KINDS: tuple[str, ...] = (
    "district",
    "street",
    "community",
    "grid",
    "micro_grid",
    "special_grid",
    "department",
)

UNIT_KIND_LABELS: dict[str, str] = {
    "district": "区",
    "street": "街道",
    "community": "社区",
    "grid": "网格",
    "micro_grid": "微网格",
    "special_grid": "专属网格",
    "department": "部门",
}

_GRIDS = frozenset({"grid", "micro_grid", "special_grid"})
# The kinds of unit a role is held in: where a task of that role may be assigned (改派 refuses others).
ROLE_UNIT_KINDS: dict[str, frozenset[str]] = {
    "resident": _GRIDS,
    "grid_worker": _GRIDS,
    "grid_leader": _GRIDS,
    "community": frozenset({"community"}),
    "street": frozenset({"street"}),
    "department": frozenset({"department"}),
    "command_centre": frozenset({"district", "street"}),
    "satisfaction_caller": frozenset({"district", "street"}),
    "mediator": frozenset({"street", "community"}),
    "judicial_office": frozenset({"department"}),
    "process_owner": frozenset({"district"}),
    "supervisor": frozenset({"district", "street", "community"}),
    "leader": frozenset(UNIT_KINDS),
}

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# Verified against when the person is unknown or has no password, so that the answer takes about as
# long as for a real person (no user enumeration by timing).
_dummy_hash: list[str] = []  # computed on first use, not at import


def _dummy() -> str:
    if not _dummy_hash:
        _dummy_hash.append(_hasher.hash("gridcase-no-such-person"))
    return _dummy_hash[0]


@dataclass(frozen=True, slots=True)
class UnitRow:
    id: str
    name: str
    kind: str
    parent_id: str | None
    path: str


@dataclass(frozen=True, slots=True)
class PersonRow:
    id: str
    name: str
    phone: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class Membership:
    person_id: str
    org_unit_id: str
    role: str


# ---------------------------------------------------------------------------------------------- helpers


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``; shorter numbers keep only their last two characters."""
    if len(phone) >= 7:
        return phone[:3] + "****" + phone[-4:]
    if len(phone) > 2:
        return "*" * (len(phone) - 2) + phone[-2:]
    return "*" * len(phone)


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (for callers that store many people with one password)."""
    return _hasher.hash(password)


def in_scope(path_column: ColumnElement[str], paths: Iterable[str]) -> ColumnElement[bool]:
    """A filter "``path_column`` lies in one of the subtrees ``paths``" (e.g. ``case.c.unit_path``).

    Escapes LIKE wildcards (ids contain ``_``); no paths means nothing is visible.
    """
    clauses = [path_column.startswith(p, autoescape=True) for p in paths]
    return or_(*clauses) if clauses else false()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput("org.unknown_role", f"unknown role {role!r}", {"role": role, "known": list(ROLES)})


def _unit_row(row: Any) -> UnitRow:
    return UnitRow(id=row.id, name=row.name, kind=row.kind, parent_id=row.parent_id, path=row.path)


_UNIT_COLS = (org_unit.c.id, org_unit.c.name, org_unit.c.kind, org_unit.c.parent_id, org_unit.c.path)


# ------------------------------------------------------------------------------------------------ units


def add_unit(
    conn: Connection, *, id: str, name: str, kind: str, parent_id: str | None, now: datetime
) -> None:
    """Add a unit under ``parent_id`` (``None`` makes a root, normally the district)."""
    if not _ID.match(id):
        raise InvalidInput(
            "org.invalid_id", "a unit id is 1–64 letters, digits, '_', '-', '.', no '/'", {"id": id}
        )
    if kind not in UNIT_KINDS:
        raise InvalidInput("org.unknown_kind", f"unknown unit kind {kind!r}", {"kind": kind})
    if conn.execute(select(org_unit.c.id).where(org_unit.c.id == id)).first() is not None:
        raise Conflict("org.duplicate_unit", f"unit {id!r} already exists", {"id": id})
    if parent_id is None:
        path = f"/{id}/"
    else:
        parent_path = conn.execute(select(org_unit.c.path).where(org_unit.c.id == parent_id)).scalar()
        if parent_path is None:
            raise InvalidInput(
                "org.parent_not_found", f"parent unit {parent_id!r} does not exist", {"parent_id": parent_id}
            )
        path = f"{parent_path}{id}/"
    conn.execute(
        org_unit.insert().values(id=id, name=name, kind=kind, parent_id=parent_id, path=path, created_at=now)
    )


def get_unit(conn: Connection, unit_id: str) -> UnitRow:
    row = conn.execute(select(*_UNIT_COLS).where(org_unit.c.id == unit_id)).first()
    if row is None:
        raise NotFound("org.unit_not_found", f"unit {unit_id!r} does not exist", {"id": unit_id})
    return _unit_row(row)


def ancestors(conn: Connection, unit_id: str) -> list[UnitRow]:
    """The unit and every unit above it, nearest first (grid, community, street, district)."""
    rows = fastsql.fetch(conn, _ANCESTORS, {"unit": unit_id})
    if not rows:
        raise NotFound("org.unit_not_found", f"unit {unit_id!r} does not exist", {"id": unit_id})
    return [
        UnitRow(id=str(r[0]), name=str(r[1]), kind=str(r[2]), parent_id=_opt(r[3]), path=str(r[4]))
        for r in rows
    ]


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


# The units from one unit up to its district, one primary-key lookup a level: ``up(id, parent_id,
# depth)``, the unit itself at depth 0. The walk follows ``parent_id``, which ``add_unit`` sets from the
# same parent as ``path``; a prefix test on ``path`` instead reads every unit of the organisation (a
# district has thousands), and these run for every new task and every clock start.
_UP = (
    "WITH RECURSIVE up(id, parent_id, depth) AS ("
    " SELECT id, parent_id, 0 FROM org_unit WHERE id = :unit"
    " UNION ALL SELECT o.id, o.parent_id, up.depth + 1 FROM org_unit o JOIN up ON o.id = up.parent_id)"
)

_ANCESTORS = fastsql.Statement(
    f"{_UP} SELECT u.id, u.name, u.kind, u.parent_id, u.path FROM up JOIN org_unit u ON u.id = up.id"
    " ORDER BY up.depth"
)


# ----------------------------------------------------------------------------------------------- people


def add_person(
    conn: Connection,
    *,
    id: str,
    name: str,
    phone: str | None,
    password: str | None,
    now: datetime,
    password_hash: str | None = None,
) -> None:
    """Add a person; ``password`` is stored as an argon2id hash (``None``: cannot log in).

    ``password_hash`` (from ``hash_password``) may be given instead of ``password``.
    """
    if not _ID.match(id):
        raise InvalidInput("person.invalid_id", "a login is 1–64 letters, digits, '_', '-', '.'", {"id": id})
    if conn.execute(select(person.c.id).where(person.c.id == id)).first() is not None:
        raise Conflict("person.duplicate", f"person {id!r} already exists", {"id": id})
    if password is not None:
        password_hash = _hasher.hash(password)
    conn.execute(
        person.insert().values(
            id=id, name=name, phone=phone, password_hash=password_hash, active=True, created_at=now
        )
    )


def get_person(conn: Connection, person_id: str) -> PersonRow:
    row = conn.execute(
        select(person.c.id, person.c.name, person.c.phone, person.c.active).where(person.c.id == person_id)
    ).first()
    if row is None:
        raise NotFound("person.not_found", f"person {person_id!r} does not exist", {"id": person_id})
    return PersonRow(id=row.id, name=row.name, phone=row.phone, active=bool(row.active))


def verify_password(conn: Connection, person_id: str, password: str) -> bool:
    """True when ``person_id`` is active and ``password`` matches. Unknown people still cost a hash."""
    row = conn.execute(
        select(person.c.password_hash, person.c.active).where(person.c.id == person_id)
    ).first()
    stored = row.password_hash if row is not None and row.password_hash else None
    try:
        _hasher.verify(stored or _dummy(), password)
    except (VerificationError, InvalidHashError):
        return False
    return stored is not None and row is not None and bool(row.active)


# ------------------------------------------------------------------------------------------ memberships


def add_membership(conn: Connection, *, person_id: str, org_unit_id: str, role: str) -> None:
    """Give ``person_id`` the ``role`` in ``org_unit_id`` (a person may hold many)."""
    _check_role(role)
    get_person(conn, person_id)
    get_unit(conn, org_unit_id)
    exists = conn.execute(
        select(membership.c.id).where(
            membership.c.person_id == person_id,
            membership.c.org_unit_id == org_unit_id,
            membership.c.role == role,
        )
    ).first()
    if exists is not None:
        raise Conflict(
            "org.duplicate_membership",
            f"{person_id!r} already holds {role!r} in {org_unit_id!r}",
            {"person_id": person_id, "org_unit_id": org_unit_id, "role": role},
        )
    conn.execute(membership.insert().values(person_id=person_id, org_unit_id=org_unit_id, role=role))


def memberships_of(conn: Connection, person_id: str) -> list[Membership]:
    rows = conn.execute(
        select(membership.c.person_id, membership.c.org_unit_id, membership.c.role)
        .where(membership.c.person_id == person_id)
        .order_by(membership.c.org_unit_id, membership.c.role)
    ).all()
    return [Membership(person_id=r.person_id, org_unit_id=r.org_unit_id, role=r.role) for r in rows]


# ------------------------------------------------------------------------------------------- assignment


def resolve_assignment(
    conn: Connection,
    *,
    role: str,
    grid_id: str,
    unit_hint: str | None = None,
    within_district: bool = False,
) -> str | None:
    """The unit that owns a ``role`` task of a case in ``grid_id``, or ``None`` if nobody holds the role.

    ``unit_hint`` (e.g. the department chosen by dispatch) wins when it has an active member with the
    role; otherwise the nearest unit from the grid upwards that has one. With ``within_district``, a
    unit off that path but in the same district (e.g. the 司法所 for ``judicial_office``) comes last,
    the first by path. One query (plus one to tell an unknown grid from "nobody" when nothing is found).
    """
    _check_role(role)
    params: dict[str, object] = {"unit": grid_id, "role": role, "hint": unit_hint}
    rows = fastsql.fetch(conn, _assignment_statement(unit_hint is not None, within_district), params)
    if rows:
        return str(rows[0][0])
    get_unit(conn, grid_id)  # NotFound for an unknown grid
    return None


_ASSIGNMENT: dict[tuple[bool, bool], fastsql.Statement] = {}


def _assignment_statement(hinted: bool, within_district: bool) -> fastsql.Statement:
    """The assignment query for one combination of options, written once (it runs for every new task).

    Reach: the units on the grid's path (``_UP``: the grid and its ancestors), plus the hinted unit,
    plus (``within_district``) the units of the grid's district where someone holds the role (found
    from the role's memberships, ``ix_membership_role_unit``). Order: the hint first, then units on
    the path nearest first, then the rest by path. The holder test is a correlated ``EXISTS`` so the
    few units reached drive the query: joined, SQLite read every holder of the role in the
    organisation (thousands of grid workers in a district) and looked each one's unit up in the reach.
    """
    key = (hinted, within_district)
    if key in _ASSIGNMENT:
        return _ASSIGNMENT[key]
    reach = ["SELECT id AS unit, 1 AS rank, depth, '' AS path FROM up"]
    if hinted:
        reach.append("SELECT CAST(:hint AS VARCHAR(64)), 0, 0, ''")
    if within_district:
        reach.append(
            "SELECT u.id, 2, 0, u.path FROM membership dm JOIN org_unit u ON u.id = dm.org_unit_id"
            " JOIN (SELECT '/' || id || '/' AS root FROM up WHERE parent_id IS NULL) d"
            " ON substr(u.path, 1, length(d.root)) = d.root WHERE dm.role = :role"
        )
    statement = fastsql.Statement(
        f"{_UP} SELECT c.unit FROM ({' UNION ALL '.join(reach)}) c"
        " WHERE EXISTS (SELECT 1 FROM membership m JOIN person p ON p.id = m.person_id"
        "  WHERE m.org_unit_id = c.unit AND m.role = :role AND p.active)"
        " ORDER BY c.rank, c.depth, c.path LIMIT 1"
    )
    _ASSIGNMENT[key] = statement
    return statement


def candidates(conn: Connection, *, role: str, org_unit_id: str) -> list[str]:
    """Ids of the active people holding ``role`` in ``org_unit_id`` (exactly that unit), sorted."""
    rows = conn.execute(
        select(membership.c.person_id)
        .join(person, person.c.id == membership.c.person_id)
        .where(
            membership.c.role == role,
            membership.c.org_unit_id == org_unit_id,
            person.c.active.is_(True),
        )
        .order_by(membership.c.person_id)
    ).all()
    return [r.person_id for r in rows]


def may_act(conn: Connection, *, person_id: str, role: str, org_unit_id: str) -> bool:
    """May ``person_id`` act on a task assigned to (``role``, ``org_unit_id``)?

    Yes if the person is active and holds ``role`` in that unit, or holds ``supervisor`` in that unit or
    an ancestor of it (takeover by a supervisor of the subtree). One query.
    """
    params = {"person": person_id, "role": role, "unit": org_unit_id}
    return bool(fastsql.fetch(conn, _MAY_ACT, params))


# Runs on every task action, so it is prepared SQL (portable: SQLite and PostgreSQL).
_MAY_ACT = fastsql.Statement(
    "SELECT m.id FROM membership m JOIN person p ON p.id = m.person_id"
    " JOIN org_unit u ON u.id = m.org_unit_id"
    " WHERE m.person_id = :person AND p.active AND ("
    "   (m.role = :role AND m.org_unit_id = :unit)"
    "   OR (m.role = 'supervisor'"
    "       AND substr((SELECT t.path FROM org_unit t WHERE t.id = :unit), 1, length(u.path)) = u.path)"
    ") LIMIT 1"
)


# ------------------------------------------------------------------------------------------ working hours

_HOURS = fastsql.Statement(
    f"{_UP} SELECT u.working_hours FROM up JOIN org_unit u ON u.id = up.id"
    " WHERE u.working_hours IS NOT NULL ORDER BY up.depth LIMIT 1"
)


def working_hours_of(conn: Connection, unit_id: str | None) -> str | None:
    """The working hours a unit keeps: its own, else its nearest ancestor's, else None (the default)."""
    if unit_id is None:
        return None
    rows = fastsql.fetch(conn, _HOURS, {"unit": unit_id})
    return str(rows[0][0]) if rows else None


def set_working_hours(conn: Connection, unit_id: str, text: str | None) -> None:
    """Set (or with None clear) a unit's working hours, e.g. "08:00-12:00,14:00-18:00"."""
    from engine.calendar import WorkingHours

    get_unit(conn, unit_id)
    if text is not None:
        text = str(WorkingHours.from_text(text))  # refuses malformed periods with calendar.* codes
    conn.execute(update(org_unit).where(org_unit.c.id == unit_id).values(working_hours=text))


# ----------------------------------------------------------------------------------------------- scopes


def scope_paths(conn: Connection, person_id: str) -> list[str]:
    """Unit paths whose subtrees ``person_id`` may see (filter cases with ``in_scope``), sorted.

    Every unit the (active) person holds a role in, except ``resident`` memberships; a path inside
    another listed path is dropped. Unknown or inactive people get ``[]``: they see nothing.
    """
    rows = conn.execute(
        select(org_unit.c.path)
        .select_from(
            membership.join(org_unit, org_unit.c.id == membership.c.org_unit_id).join(
                person, person.c.id == membership.c.person_id
            )
        )
        .where(
            membership.c.person_id == person_id,
            membership.c.role != "resident",
            person.c.active.is_(True),
        )
        .distinct()
    ).all()
    paths = sorted({r.path for r in rows}, key=lambda p: (len(p), p))
    kept: list[str] = []
    for p in paths:
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return sorted(kept)


# ------------------------------------------------------------------------------------ remembered answers

_T = TypeVar("_T")


class Lookups:
    """The organisation lookups of steps, each answer kept for as long as the organisation is unchanged.

    ``revision`` is ``org_revision.n`` as the step read it with its lock (``None``: not known, the
    lookup goes to the database). Answers found under one revision are dropped when a step shows up
    with another, so a membership ended or a unit's hours changed count from the next step on, in every
    process; an answer is stored only under the revision it was asked at. At most ``capacity`` answers
    are kept (then all are dropped and found again). Shared by the threads of a process."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._revision: int | None = None
        self._answers: dict[Hashable, object] = {}
        self._lock = threading.Lock()

    def may_act(
        self, conn: Connection, revision: int | None, *, person_id: str, role: str, org_unit_id: str
    ) -> bool:
        return self._answer(
            revision,
            ("may_act", person_id, role, org_unit_id),
            lambda: may_act(conn, person_id=person_id, role=role, org_unit_id=org_unit_id),
        )

    def resolve_assignment(
        self,
        conn: Connection,
        revision: int | None,
        *,
        role: str,
        grid_id: str,
        unit_hint: str | None = None,
        within_district: bool = False,
    ) -> str | None:
        return self._answer(
            revision,
            ("assign", role, grid_id, unit_hint, within_district),
            lambda: resolve_assignment(
                conn, role=role, grid_id=grid_id, unit_hint=unit_hint, within_district=within_district
            ),
        )

    def working_hours_of(self, conn: Connection, revision: int | None, unit_id: str | None) -> str | None:
        return self._answer(revision, ("hours", unit_id), lambda: working_hours_of(conn, unit_id))

    def _answer(self, revision: int | None, key: Hashable, find: Callable[[], _T]) -> _T:
        if revision is None:
            return find()
        with self._lock:
            if revision != self._revision:
                self._answers.clear()
                self._revision = revision
            elif key in self._answers:
                return self._answers[key]  # type: ignore[return-value]
        answer = find()  # an error (an unknown grid, say) is raised, not kept
        with self._lock:
            if revision == self._revision:
                if len(self._answers) >= self.capacity:
                    self._answers.clear()
                self._answers[key] = answer
        return answer
