"""The organisation as callers read it: the unit tree, the members of a unit, and "who am I".

Owns no table (``engine.orgs`` owns the org tables). Phone numbers of other people are masked; a
resident sees the tree but no members. Must not import flask, api or celery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from engine import access, orgs
from engine.errors import NotFound, PermissionDenied
from engine.runtime import Runtime
from engine.store.models import membership, org_unit, person

__all__ = ["MemberInfo", "Profile", "UnitNode", "me", "members", "unit_tree"]


@dataclass(slots=True)
class UnitNode:
    id: str
    name: str
    kind: str
    parent_id: str | None
    children: list[UnitNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    person_id: str
    name: str
    role: str
    role_label: str
    phone: str | None


@dataclass(frozen=True, slots=True)
class GrantInfo:
    role: str
    role_label: str
    unit_id: str
    unit_name: str


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    name: str
    phone: str | None
    memberships: list[GrantInfo]


def unit_tree(who: access.Principal, *, rt: Runtime) -> list[UnitNode]:
    """Every unit as a forest (normally one district), children sorted by id."""
    with rt.db.read() as conn:
        rows = conn.execute(
            select(org_unit.c.id, org_unit.c.name, org_unit.c.kind, org_unit.c.parent_id).order_by(
                org_unit.c.path
            )
        ).all()
    nodes = {r.id: UnitNode(r.id, r.name, r.kind, r.parent_id) for r in rows}
    roots: list[UnitNode] = []
    for node in nodes.values():
        parent = nodes.get(node.parent_id) if node.parent_id else None
        (parent.children if parent is not None else roots).append(node)
    return roots


def members(who: access.Principal, unit_id: str, *, rt: Runtime) -> list[MemberInfo]:
    """The people holding a role in ``unit_id`` (exactly that unit); staff only, phones masked."""
    if not (who.roles - {"resident"}):
        raise PermissionDenied("org.members_forbidden", "residents cannot list members of units", {})
    with rt.db.read() as conn:
        if conn.execute(select(org_unit.c.id).where(org_unit.c.id == unit_id)).first() is None:
            raise NotFound("org.unit_not_found", f"unit {unit_id!r} does not exist", {"id": unit_id})
        rows = conn.execute(
            select(person.c.id, person.c.name, person.c.phone, membership.c.role)
            .join(membership, membership.c.person_id == person.c.id)
            .where(membership.c.org_unit_id == unit_id, person.c.active.is_(True))
            .order_by(membership.c.role, person.c.id)
        ).all()
    return [
        MemberInfo(
            r.id,
            r.name,
            r.role,
            orgs.ROLES.get(r.role, r.role),
            r.phone if r.id == who.person_id or r.phone is None else orgs.mask_phone(r.phone),
        )
        for r in rows
    ]


def me(who: access.Principal, *, rt: Runtime) -> Profile:
    with rt.db.read() as conn:
        found = orgs.get_person(conn, who.person_id)
        rows = conn.execute(
            select(org_unit.c.id, org_unit.c.name).where(org_unit.c.id.in_([g.unit_id for g in who.grants]))
        ).all()
        names = {r.id: r.name for r in rows}
    return Profile(
        found.id,
        found.name,
        found.phone,
        [
            GrantInfo(g.role, orgs.ROLES.get(g.role, g.role), g.unit_id, names.get(g.unit_id, g.unit_id))
            for g in who.grants
        ],
    )
