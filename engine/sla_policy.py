"""SLA clock policy: the budget and rung thresholds a user task's clock uses, and where each came from.

Owns the SLA vocabulary of the BPMN properties and the syntax of their values, for both sides: deploy
validation (``engine.specs`` checks the literals in BPMN properties and in DMN output columns) and the
run time (``engine.sla`` starts a clock from ``policy_for``). Imports neither the database nor
SpiffWorkflow (``spiff.TaskMeta`` is a plain value).

For each threshold — ``warn_at`` (黄, a percentage of the budget), ``supervise_after`` (督办) and
``escalate_after`` (升级), both after the deadline — the first of these that is set wins:

1. the case variable named by the task's ``<threshold>_from`` property, e.g.
   ``warn_at_from="sla_warn_at"``, an output column of the routing DMN (per category);
2. the task's own ``<threshold>`` property;
3. the ``<threshold>`` property of the task's ``<bpmn:process>`` (the default for the whole process);
4. the built-in default: no warning, supervision 1WD and escalation 5WD after the deadline.

The budget has no process level: ``sla_from`` names the variable, ``sla`` is the fallback, and a task
with neither has no clock. A variable that is absent, ``None`` or ``""`` (an empty DMN cell) is "not
set" and the next level applies. A value that *is* set but invalid is never skipped or guessed: at
deploy it is a problem of the file; at run time the step is refused with ``sla.invalid_threshold`` or
``sla.invalid_budget``, naming the task, the property, the variable and the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine import spiff
from engine.calendar import parse_duration
from engine.errors import EngineError, InvalidInput

THRESHOLDS = ("warn_at", "supervise_after", "escalate_after")
DEFAULT_SUPERVISE_AFTER = "1WD"
DEFAULT_ESCALATE_AFTER = "5WD"
BUILT_IN: dict[str, str | None] = {
    "warn_at": None,
    "supervise_after": DEFAULT_SUPERVISE_AFTER,
    "escalate_after": DEFAULT_ESCALATE_AFTER,
}
# Property naming a case variable -> the value the variable holds.
FROM_PROPERTIES = {"sla_from": "sla", **{f"{name}_from": name for name in THRESHOLDS}}
# What a <bpmn:process> may set for all its user tasks, and what only a user task may carry.
PROCESS_PROPERTIES = frozenset(THRESHOLDS)
TASK_ONLY_PROPERTIES = frozenset(
    {
        "sla",
        "sla_clock",
        "sla_holds",
        "sla_extends",
        "sla_approval_field",
        "sla_extension_field",
        *FROM_PROPERTIES,
    }
)

_PERCENT = re.compile(r"^(\d{1,3})%$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class Source:
    """Where a value of a clock came from, as recorded on the clock (``policy_sources``)."""

    TASK = "task"
    PROCESS = "process"
    DEFAULT = "default"
    VARIABLE_PREFIX = "variable:"

    @staticmethod
    def variable(name: str) -> str:
        return f"{Source.VARIABLE_PREFIX}{name}"


def value_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the clock's ``name`` (``sla`` or a threshold); None when it can.

    One syntax for properties, DMN cells and case variables: ``"80%"`` (1%–99%) for ``warn_at``; a
    duration as text (``5WD``, ``2WH``, ``P7D``; no months) for ``sla``, ``supervise_after``,
    ``escalate_after``.
    """
    if name == "warn_at":
        match = _PERCENT.match(value) if isinstance(value, str) else None
        if match is None or not 0 < int(match.group(1)) < 100:
            return "must be a percentage between 1% and 99%, written as text (e.g. 80%)"
        return None
    if not isinstance(value, str):
        return "must be a duration written as text (e.g. 5WD, 2WH, P7D)"
    try:
        duration = parse_duration(value)
    except EngineError as err:
        return err.message
    if duration.months:
        return "months and years have no fixed length; use days (P30D) or working days (20WD)"
    return None


def variable_problem(value: str) -> str | None:
    """Why ``value`` cannot name a case variable (a ``*_from`` property); None when it can."""
    if _VARIABLE.match(value):
        return None
    return "must name a case variable (letters, digits and _, e.g. sla_warn_at)"


def is_unset(value: object) -> bool:
    """A variable that is absent, None or an empty string (an empty DMN output cell) is not set."""
    return value is None or value == ""


@dataclass(frozen=True, slots=True)
class ClockPolicy:
    """What a task's clock uses: budget, thresholds, key; ``sources`` says where each value came from
    (``"variable:<name>"``, ``"task"``, ``"process"`` or ``"default"``)."""

    budget: str
    warn_pct: int | None
    supervise_after: str
    escalate_after: str
    clock_key: str
    holds: str | None
    sources: dict[str, str] = field(default_factory=dict)


def policy_for(meta: spiff.TaskMeta, data: Mapping[str, object]) -> ClockPolicy | None:
    """The clock policy of a task that has just become ready, from its properties, its process's
    properties and the task's data; None when the task has no budget (no clock)."""
    found = _budget(meta, data)
    if found is None:
        return None
    budget, budget_source = found
    chosen = {name: _threshold(meta, name, data) for name in THRESHOLDS}
    warn, _ = chosen["warn_at"]
    supervise, _ = chosen["supervise_after"]
    escalate, _ = chosen["escalate_after"]
    return ClockPolicy(
        budget=budget,
        warn_pct=int(warn.rstrip("%")) if warn else None,
        supervise_after=supervise or DEFAULT_SUPERVISE_AFTER,
        escalate_after=escalate or DEFAULT_ESCALATE_AFTER,
        clock_key=meta.properties.get("sla_clock", meta.bpmn_id),
        holds=meta.properties.get("sla_holds"),
        sources={"sla": budget_source, **{name: source for name, (_, source) in chosen.items()}},
    )


def _budget(meta: spiff.TaskMeta, data: Mapping[str, object]) -> tuple[str, str] | None:
    variable = meta.properties.get("sla_from")
    if variable and not is_unset(data.get(variable)):
        value = data[variable]
        _require(meta, "sla", value, prop="sla_from", variable=variable)
        return str(value).strip(), Source.variable(variable)
    literal = meta.properties.get("sla")
    if not literal:
        return None
    _require(meta, "sla", literal, prop="sla", variable=None)
    return literal.strip(), Source.TASK


def _threshold(meta: spiff.TaskMeta, name: str, data: Mapping[str, object]) -> tuple[str | None, str]:
    variable = meta.properties.get(f"{name}_from")
    if variable and not is_unset(data.get(variable)):
        value = data[variable]
        _require(meta, name, value, prop=f"{name}_from", variable=variable)
        return str(value).strip(), Source.variable(variable)
    for source, props in ((Source.TASK, meta.properties), (Source.PROCESS, meta.process_properties)):
        literal = props.get(name)
        if literal:
            _require(meta, name, literal, prop=name, variable=None, source=source)
            return literal.strip(), source
    return BUILT_IN[name], Source.DEFAULT


def _require(
    meta: spiff.TaskMeta,
    name: str,
    value: object,
    *,
    prop: str,
    variable: str | None,
    source: str = Source.TASK,
) -> None:
    """Refuse the step when a set value is invalid: never skip it, never guess another."""
    problem = value_problem(name, value)
    if problem is None:
        return
    shown = value if isinstance(value, str | int | float | bool) else repr(value)[:200]
    quoted = repr(value)[:200]
    where = (
        f"{prop} reads variable {variable} = {quoted}"
        if variable
        else f"{'the process property' if source == Source.PROCESS else 'property'} {prop} = {quoted}"
    )
    code = "sla.invalid_budget" if name == "sla" else "sla.invalid_threshold"
    fix = "the routing table or wherever the variable is set" if variable else "the BPMN"
    raise InvalidInput(
        code,
        f"task '{meta.name}' ({meta.bpmn_id}): {where} — {problem}; nothing was changed (correct {fix})",
        {
            "task": meta.bpmn_id,
            "threshold": name,
            "property": prop,
            "variable": variable,
            "value": shown,
            "reason": problem,
        },
    )
