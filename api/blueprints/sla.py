"""/api/cases/{id}/… SLA actions (挂起/恢复, 催办, 督办, 延期) and clocks, and /api/supervision lists.

Who may do what is decided in ``engine.supervision``; views only parse, call and dump."""

from __future__ import annotations

from typing import Any

from api.auth import caller
from api.blueprints.base import Blueprint
from api.http import etag, expected_version, runtime
from api.schemas.common import IfMatchHeader
from api.schemas.sla import CaseSlaOut, ExtensionIn, NoteIn, SuspendIn, WatchQuery, WatchRowOut
from engine import supervision

blp = Blueprint("sla", __name__, url_prefix="/api", description="SLA clocks, suspension and supervision")
_ETAG = {"ETag": {"$ref": "#/components/headers/ETAG"}}
Result = tuple[supervision.CaseSla, int, dict[str, str]]


def _answer(found: supervision.CaseSla) -> Result:
    return found, 200, etag(found.version)


@blp.route("/cases/<id:case_id>/clocks", methods=["GET"])
@blp.response(200, CaseSlaOut, headers=_ETAG)
def clocks(case_id: int) -> Result:
    """Every SLA clock of the case with ``explain`` lines ("why is this red?"): start, pauses,
    extensions, skipped holidays, deadline, time used."""
    return _answer(supervision.case_sla(caller(), case_id, rt=runtime()))


@blp.route("/cases/<id:case_id>/suspend", methods=["POST"])
@blp.arguments(SuspendIn)
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, CaseSlaOut, headers=_ETAG)
def suspend(body: dict[str, Any], _headers: dict[str, Any], case_id: int) -> Result:
    """挂起: stop every running clock of the case — street, supervisor or command centre of its area."""
    return _answer(
        supervision.suspend(
            caller(), case_id, rt=runtime(), reason=body["reason"], expected_version=expected_version()
        )
    )


@blp.route("/cases/<id:case_id>/resume", methods=["POST"])
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, CaseSlaOut, headers=_ETAG)
def resume(_headers: dict[str, Any], case_id: int) -> Result:
    """恢复: restart the clocks; every deadline moves by the working time spent suspended."""
    return _answer(supervision.resume(caller(), case_id, rt=runtime(), expected_version=expected_version()))


@blp.route("/cases/<id:case_id>/remind", methods=["POST"])
@blp.arguments(NoteIn)
@blp.response(200, CaseSlaOut, headers=_ETAG)
def remind(body: dict[str, Any], case_id: int) -> Result:
    """催办: notify the current handlers — street, supervisor or command centre of the case's area."""
    return _answer(supervision.remind(caller(), case_id, rt=runtime(), note=body["note"]))


@blp.route("/cases/<id:case_id>/supervise", methods=["POST"])
@blp.arguments(NoteIn)
@blp.response(200, CaseSlaOut, headers=_ETAG)
def supervise(body: dict[str, Any], case_id: int) -> Result:
    """督办: priority urgent, notifications up the chain, ``sla_supervise`` to the workflow — supervisor
    or command centre of the case's area."""
    return _answer(supervision.supervise(caller(), case_id, rt=runtime(), note=body["note"]))


@blp.route("/cases/<id:case_id>/extensions", methods=["POST"])
@blp.arguments(ExtensionIn)
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, CaseSlaOut, headers=_ETAG)
def extend(body: dict[str, Any], _headers: dict[str, Any], case_id: int) -> Result:
    """延期 approved directly by a street or supervisor of the area; all extensions together may add at
    most the original budget (422 ``sla.extension_cap``)."""
    return _answer(
        supervision.extend(
            caller(),
            case_id,
            rt=runtime(),
            clock_key=body["clock"],
            added=body["added"],
            reason=body["reason"],
            expected_version=expected_version(),
        )
    )


@blp.route("/supervision/overdue", methods=["GET"])
@blp.arguments(WatchQuery, location="query")
@blp.response(200, WatchRowOut(many=True))
def overdue(query: dict[str, Any]) -> list[supervision.WatchRow]:
    """Running clocks past their deadline in the caller's area, most overdue first (streets,
    supervisors, the command centre)."""
    return supervision.overdue(caller(), rt=runtime(), limit=query["limit"])


@blp.route("/supervision/provisional", methods=["GET"])
@blp.arguments(WatchQuery, location="query")
@blp.response(200, WatchRowOut(many=True))
def provisional(query: dict[str, Any]) -> list[supervision.WatchRow]:
    """Live deadlines of the caller's area computed without holiday data (weekends only), with the
    reason; they are recomputed when the year's calendar overlay is loaded."""
    return supervision.provisional(caller(), rt=runtime(), limit=query["limit"])
