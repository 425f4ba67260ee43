"""gridcase's case runtime: the public API of the engine, and nothing else.

Layers (ARCHITECTURE §1): ``api → engine → engine.store``. The engine never imports Flask or
marshmallow; only ``engine.spiff`` imports SpiffWorkflow; only ``engine.worker`` imports Celery.
"""

from engine.cases import CaseView, find_case, get_case, start_case
from engine.clock import Clock, FixedClock, SystemClock
from engine.errors import (
    Conflict,
    EngineError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Problem,
    ScriptError,
    SpecError,
)
from engine.runtime import Runtime
from engine.tasks import (
    TaskView,
    case_tasks,
    claim_task,
    complete_task,
    decide_extension,
    get_task,
    list_tasks,
    reassign_task,
    request_extension,
    return_task,
    unclaim_task,
)
from engine.timers import fire_due

__all__ = [
    "CaseView",
    "Clock",
    "Conflict",
    "EngineError",
    "FixedClock",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "Problem",
    "Runtime",
    "ScriptError",
    "SpecError",
    "SystemClock",
    "TaskView",
    "case_tasks",
    "claim_task",
    "complete_task",
    "decide_extension",
    "find_case",
    "fire_due",
    "get_case",
    "get_task",
    "list_tasks",
    "reassign_task",
    "request_extension",
    "return_task",
    "start_case",
    "unclaim_task",
]
