"""Links between cases, driven by messages a workflow throws outwards (ARCHITECTURE §2: routing is
drawn in the BPMN, the engine carries it out):

- ``start_work_order`` — a grid patrol event handed over (转办) opens a linked work order; the new case
  copies title, grid, category and description from the event.
- ``merge_duplicate`` — a duplicate report (并单) is linked to the case it repeats, named by the
  variable ``duplicate_of`` (a case number); the duplicate itself is not dispatched again.

Every link is written in the same transaction as the step that threw the message, with an audit event
on both cases.
"""

from __future__ import annotations

from sqlalchemy import select, update

from engine import audit
from engine.errors import InvalidInput
from engine.runtime import Step
from engine.store.models import case

HANDLERS = ("start_work_order", "merge_duplicate")


def handle_outgoing(step: Step, events: list[tuple[str, dict[str, object]]], *, actor: str | None) -> None:
    for name, payload in events:
        if name == "start_work_order":
            _start_work_order(step, payload, actor=actor)
        elif name == "merge_duplicate":
            _merge_duplicate(step, payload, actor=actor)
        else:
            audit.record(
                step.conn,
                "message.unhandled",
                at=step.now,
                actor_id=actor,
                case_id=step.case_id,
                after={"message": name},
            )


def _start_work_order(step: Step, payload: dict[str, object], *, actor: str | None) -> None:
    from engine.cases import CaseRequest, open_case

    source = step.case
    data = dict(source.data or {})
    request = CaseRequest(
        process_id="work_order",
        title=str(payload.get("title") or source.title),
        kind="work_order",
        grid_id=source.grid_id,
        category=str(payload.get("category") or step.case_values.get("category") or source.category or "")
        or None,
        channel="grid_patrol",
        data={**data, "source_case": source.number},
        variables={"reported_by_grid_worker": True},
        related_case_id=step.case_id,
    ).checked()
    new_id, _ = open_case(step.conn, request, rt=step.rt, actor=actor, now=step.now)
    number = step.conn.execute(select(case.c.number).where(case.c.id == new_id)).scalar()
    step.case_values["related_case_id"] = new_id
    audit.record(
        step.conn,
        "case.transferred",
        at=step.now,
        actor_id=actor,
        case_id=step.case_id,
        after={"work_order_id": new_id, "work_order_number": number},
    )


def _merge_duplicate(step: Step, payload: dict[str, object], *, actor: str | None) -> None:
    reference = payload.get("duplicate_of") or step.instance.data().get("duplicate_of")
    if not isinstance(reference, str) or not reference:
        raise InvalidInput(
            "case.duplicate_of_missing",
            "a duplicate must name the case it repeats (duplicate_of)",
            {"fields": {"duplicate_of": "required"}},
        )
    target = step.conn.execute(select(case.c.id, case.c.number).where(case.c.number == reference)).first()
    if target is None or target.id == step.case_id:
        raise InvalidInput(
            "case.duplicate_of_unknown",
            f"no other case numbered '{reference}'",
            {"fields": {"duplicate_of": "unknown case number"}},
        )
    step.case_values["related_case_id"] = target.id
    audit.record(
        step.conn,
        "case.merged",
        at=step.now,
        actor_id=actor,
        case_id=step.case_id,
        after={"duplicate_of": target.number},
    )
    audit.record(
        step.conn,
        "case.duplicate_linked",
        at=step.now,
        actor_id=actor,
        case_id=target.id,
        after={"duplicate_case_id": step.case_id},
    )
    step.conn.execute(update(case).where(case.c.id == target.id).values(updated_at=step.now))
