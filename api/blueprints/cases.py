"""/api/cases: intake from any channel, the scoped case list, the case file, BPMN messages."""

from __future__ import annotations

from typing import Any

from api.auth import caller
from api.blueprints.base import Blueprint
from api.http import etag, expected_version, runtime
from api.schemas.cases import CaseFileOut, CasePageOut, CaseQuery, IntakeIn, MessageIn, MessageOut
from api.schemas.common import IdempotencyHeader, IfMatchHeader
from engine import casework, search

blp = Blueprint("cases", __name__, url_prefix="/api/cases", description="Cases (work orders, disputes …)")

_CASE_DATA_FIELDS = ("description", "address", "location", "reporter", "attachments")


@blp.route("", methods=["POST"])
@blp.arguments(IntakeIn)
@blp.arguments(IdempotencyHeader, location="headers")
@blp.response(201, CaseFileOut, headers={"ETag": {"$ref": "#/components/headers/ETAG"}})
@blp.alt_response(
    200, schema=CaseFileOut, description="replayed: the case of an earlier request with this key"
)
def report(body: dict[str, Any], headers: dict[str, Any]) -> tuple[search.CaseFile, int, dict[str, str]]:
    """Report a case (点单) into a grid of the caller's units; ``Idempotency-Key`` makes retries safe."""
    who = caller()
    intake = casework.Intake(
        process_id=body["process_id"],
        title=body["title"],
        grid_id=body["grid_id"],
        channel=body["channel"],
        category=body["category"],
        kind=body["kind"],
        data={name: body[name] for name in _CASE_DATA_FIELDS if name in body},
    )
    view, replayed = casework.report_case(
        who, intake, rt=runtime(), idempotency_key=headers.get("idempotency_key")
    )
    found = search.case_file(who, view.id, rt=runtime())
    return found, 200 if replayed else 201, etag(found.summary.version)


@blp.route("", methods=["GET"])
@blp.arguments(CaseQuery, location="query")
@blp.response(200, CasePageOut)
def list_cases(query: dict[str, Any]) -> search.CasePage:
    """The cases the caller may see, newest first; filters combine with AND; follow ``next_cursor``."""
    cursor, limit = query.pop("cursor", None), query.pop("limit")
    return search.search_cases(
        caller(), rt=runtime(), filters=search.CaseFilter(**query), cursor=cursor, limit=limit
    )


@blp.route("/<id:case_id>", methods=["GET"])
@blp.response(200, CaseFileOut, headers={"ETag": {"$ref": "#/components/headers/ETAG"}})
def get_case(case_id: int) -> tuple[search.CaseFile, int, dict[str, str]]:
    """The case file: fields, current and past tasks, SLA state, full timeline, attachments."""
    found = search.case_file(caller(), case_id, rt=runtime())
    return found, 200, etag(found.summary.version)


@blp.route("/<id:case_id>/messages", methods=["POST"])
@blp.arguments(MessageIn)
@blp.arguments(IfMatchHeader, location="headers")
@blp.response(200, MessageOut, headers={"ETag": {"$ref": "#/components/headers/ETAG"}})
def send_message(
    body: dict[str, Any], _headers: dict[str, Any], case_id: int
) -> tuple[dict[str, object], int, dict[str, str]]:
    """Deliver a BPMN message (e.g. ``sla_overdue``) to the case — supervisors and the command centre."""
    caught, version = casework.send_message(
        caller(), case_id, body["name"], body["payload"], rt=runtime(), expected_version=expected_version()
    )
    return {"caught": caught, "version": version}, 200, etag(version)
