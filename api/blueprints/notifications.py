"""/api/notifications: the caller's own in-app notifications (the bell), and marking them read."""

from __future__ import annotations

from typing import Any

from api.auth import caller
from api.blueprints.base import Blueprint
from api.http import runtime
from api.schemas.notifications import MarkReadIn, MarkReadOut, NotificationOut, NotificationQuery
from engine import notify, supervision

blp = Blueprint(
    "notifications", __name__, url_prefix="/api/notifications", description="In-app notifications"
)


@blp.route("", methods=["GET"])
@blp.arguments(NotificationQuery, location="query")
@blp.response(200, NotificationOut(many=True))
def inbox(query: dict[str, Any]) -> list[notify.InAppMessage]:
    """My notifications, newest first; ``unread=true`` for the unread ones only."""
    return supervision.inbox(caller(), rt=runtime(), unread_only=query["unread"], limit=query["limit"])


@blp.route("/read", methods=["POST"])
@blp.arguments(MarkReadIn)
@blp.response(200, MarkReadOut)
def mark_read(body: dict[str, Any]) -> dict[str, int]:
    """Mark some of my notifications read (ids that are not mine are ignored)."""
    return {"marked": supervision.mark_read(caller(), body["ids"], rt=runtime())}
