"""Delivering BPMN messages to a case from outside (an SLA rung, a supervisor's action, a caller).

A message is a step like any other: locked, versioned, audited. What the message *does* is drawn in
the BPMN (a boundary or intermediate message event); a case that waits for no such message records
the delivery and carries on unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine import audit
from engine.projection import refresh
from engine.runtime import Runtime, step


def deliver_message(
    case_id: int,
    name: str,
    *,
    rt: Runtime,
    actor: str | None,
    payload: Mapping[str, object] | None = None,
    expected_version: int | None = None,
) -> bool:
    """Send message ``name`` to the case; True when the workflow caught it."""
    with step(rt, case_id, expected_version=expected_version) as current:
        waiting = [element for message, element in current.instance.waiting_messages() if message == name]
        caught = current.instance.send_message(name, dict(payload or {}), rt.clock)
        change = refresh(current, actor=actor)
        audit.record(
            current.conn,
            "message.delivered" if caught else "message.ignored",
            at=current.now,
            actor_id=actor,
            case_id=case_id,
            before={"message": name, "waiting": waiting},
            after={"created": change.created, "closed": change.closed},
        )
    return caught
