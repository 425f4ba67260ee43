"""改派 (reassign): who may move an open human task to another person or unit, and which targets are
valid. The rules only; the step that applies them is ``engine.tasks.reassign_task``.

Owns no table; reads ``org_unit``, ``person`` and ``membership`` on the step's connection. Flask, api
and celery must not be imported here.

Who. Reassigning is an act of the level that routes or leads the work, never of the handler whose
task it is: the caller needs a grant of ``REASSIGN_ROLES`` that *reaches* both the task's current unit
and the target unit, and that is not the task's own (role, unit) — so a community moves a grid
worker's task but not its own 受理, a street re-routes a department's order but not its own 派单. A task
that could be assigned to no unit (nobody held its role) may be placed by any of those roles whose
area holds the case.

    grant role                                   reaches a unit …
    grid_leader, community                       in the subtree of the grant's unit (a grid leader
                                                 between the people of the grid, a community between
                                                 its grids)
    street, supervisor, leader, command_centre   in the subtree of the grant's unit, and any department
                                                 of the same district when the case lies in the grant's
                                                 area (departments sit under the district and serve
                                                 every street: the street re-routes a wrongly
                                                 dispatched order)

Refused: 403 ``task.reassign_forbidden`` (checked before anything about the target is looked up, so a
caller without the right learns nothing about units or people).

Where. The target unit exists (``task.reassign_unknown_unit``), is of a kind that holds the task's role
(``orgs.ROLE_UNIT_KINDS``, ``task.reassign_unit_kind``) and has an active holder of it
(``task.reassign_no_candidate``); a target person exists and is active
(``task.reassign_unknown_person``) and holds the task's role in the target unit
(``task.reassign_not_candidate``). Moving a task where it already is: ``task.reassign_unchanged``. All
422, the case unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from engine import access, orgs
from engine.errors import InvalidInput, PermissionDenied
from engine.store.models import org_unit, person

__all__ = ["AREA_ROLES", "REASSIGN_ROLES", "Target", "check_authority", "check_reach", "check_target"]

REASSIGN_ROLES = frozenset({"grid_leader", "community", "street", "supervisor", "leader", "command_centre"})
AREA_ROLES = frozenset({"street", "supervisor", "leader", "command_centre"})


@dataclass(frozen=True, slots=True)
class Target:
    """Where a task goes: a unit, and optionally one person of it (else the unit's shared list)."""

    unit: orgs.UnitRow
    assignee_id: str | None


def _unit(conn: Connection, unit_id: str | None) -> orgs.UnitRow | None:
    if unit_id is None:
        return None
    row = conn.execute(
        select(org_unit.c.id, org_unit.c.name, org_unit.c.kind, org_unit.c.parent_id, org_unit.c.path).where(
            org_unit.c.id == unit_id
        )
    ).first()
    if row is None:
        return None
    return orgs.UnitRow(id=row.id, name=row.name, kind=row.kind, parent_id=row.parent_id, path=row.path)


def _reaches(grant: access.Grant, unit: orgs.UnitRow, case_path: str) -> bool:
    if unit.path.startswith(grant.path):
        return True
    same_district = unit.path.split("/")[1] == case_path.split("/")[1]
    return (
        grant.role in AREA_ROLES
        and unit.kind == "department"
        and same_district
        and case_path.startswith(grant.path)
    )


def _grants(who: access.Principal, role: str | None, unit_id: str | None) -> list[access.Grant]:
    return [g for g in who.grants if g.role in REASSIGN_ROLES and (g.role, g.unit_id) != (role, unit_id)]


def check_authority(
    conn: Connection,
    who: access.Principal,
    *,
    task_id: str,
    role: str | None,
    unit_id: str | None,
    case_path: str,
) -> list[access.Grant]:
    """The caller's grants that reach the task where it is now; ``task.reassign_forbidden`` if none."""
    unit = _unit(conn, unit_id)
    usable = [
        g
        for g in _grants(who, role, unit_id)
        # a task nobody could be assigned (no unit) may be placed by anyone above the case itself
        if (_reaches(g, unit, case_path) if unit is not None else case_path.startswith(g.path))
    ]
    if not usable or role is None:
        raise PermissionDenied(
            "task.reassign_forbidden",
            "only a grid leader, community, street, supervisor, leader or command centre above the task's "
            "unit may reassign it, and never through the task's own role",
            {"task_id": task_id},
        )
    return usable


def check_reach(grants: list[access.Grant], target: Target, *, task_id: str, case_path: str) -> None:
    """One of ``grants`` (from ``check_authority``) must also reach the target unit."""
    if not any(_reaches(g, target.unit, case_path) for g in grants):
        raise PermissionDenied(
            "task.reassign_forbidden",
            f"you may not move tasks to {target.unit.name} ({target.unit.id})",
            {"task_id": task_id, "org_unit_id": target.unit.id},
        )


def check_target(
    conn: Connection, *, role: str, current_unit: str | None, org_unit_id: str | None, assignee_id: str | None
) -> Target:
    """The target named by a request, validated (see the module docstring for the codes)."""
    if org_unit_id is None and assignee_id is None:
        raise InvalidInput(
            "task.reassign_no_target",
            "name the person (assignee_id) or the unit (org_unit_id) to move the task to",
            {"fields": {"assignee_id": "or org_unit_id"}},
        )
    if org_unit_id is None and current_unit is None:
        raise InvalidInput(
            "task.reassign_no_target",
            "the task has no unit yet: name the unit (org_unit_id) to move it to",
            {"fields": {"org_unit_id": "required"}},
        )
    unit = _unit(conn, org_unit_id or current_unit)
    if unit is None:
        raise InvalidInput(
            "task.reassign_unknown_unit",
            f"unit {org_unit_id!r} does not exist",
            {"fields": {"org_unit_id": "unknown unit"}},
        )
    kinds = orgs.ROLE_UNIT_KINDS.get(role, frozenset(orgs.UNIT_KINDS))
    if unit.kind not in kinds:
        raise InvalidInput(
            "task.reassign_unit_kind",
            f"a {orgs.UNIT_KIND_LABELS.get(unit.kind, unit.kind)} cannot hold a {role} task",
            {"fields": {"org_unit_id": f"a {unit.kind} holds no {role}"}, "kinds": sorted(kinds)},
        )
    holders = orgs.candidates(conn, role=role, org_unit_id=unit.id)
    if assignee_id is not None:
        active = conn.execute(select(person.c.active).where(person.c.id == assignee_id)).scalar()
        if not active:
            raise InvalidInput(
                "task.reassign_unknown_person",
                f"person {assignee_id!r} does not exist or is inactive",
                {"fields": {"assignee_id": "unknown person"}},
            )
        if assignee_id not in holders:
            raise InvalidInput(
                "task.reassign_not_candidate",
                f"{assignee_id} does not hold the role {role} in {unit.name} ({unit.id})",
                {"fields": {"assignee_id": f"not a {role} of {unit.id}"}},
            )
    elif not holders:
        raise InvalidInput(
            "task.reassign_no_candidate",
            f"nobody holds the role {role} in {unit.name} ({unit.id})",
            {"fields": {"org_unit_id": f"no {role} there"}},
        )
    return Target(unit, assignee_id)
