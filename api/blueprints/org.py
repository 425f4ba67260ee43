"""/api/org: the unit tree and the members of a unit."""

from __future__ import annotations

from api.auth import caller
from api.blueprints.base import Blueprint
from api.http import runtime
from api.schemas.org import MemberOut, UnitNodeOut
from engine import directory

blp = Blueprint("org", __name__, url_prefix="/api/org", description="Organisation")


@blp.route("/units", methods=["GET"])
@blp.response(200, UnitNodeOut(many=True))
def unit_tree() -> list[directory.UnitNode]:
    """District → streets → communities → grids → micro-grids, and the departments."""
    return directory.unit_tree(caller(), rt=runtime())


@blp.route("/units/<unit_id>/members", methods=["GET"])
@blp.response(200, MemberOut(many=True))
def members(unit_id: str) -> list[directory.MemberInfo]:
    """People holding a role in exactly this unit (staff only; phones masked)."""
    return directory.members(caller(), unit_id, rt=runtime())
