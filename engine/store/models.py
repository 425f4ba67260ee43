"""The tables of ARCHITECTURE §4 as SQLAlchemy Core ``Table`` objects (one ``MetaData``).

Owns the schema only; migrations in ``migrations/`` mirror it. The step path uses Core, not the ORM.
All instants are stored in UTC and come back timezone-aware (``UTCDateTime``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant stored as UTC on every backend (SQLite keeps no offset)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


org_unit = Table(
    "org_unit",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),  # district street community grid micro_grid department …
    Column("parent_id", String(64), ForeignKey("org_unit.id"), nullable=True, index=True),
    Column("path", String(1000), nullable=False, index=True),  # "/district/street/community/grid/"
    Column("created_at", UTCDateTime(), nullable=False),
    # "08:30-12:00,13:30-17:30"; NULL = the nearest ancestor's, or the default (engine.calendar)
    Column("working_hours", String(100), nullable=True),
)

person = Table(
    "person",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("phone", String(32), nullable=True),
    Column("password_hash", String(255), nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

membership = Table(
    "membership",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", String(64), ForeignKey("person.id"), nullable=False, index=True),
    Column("org_unit_id", String(64), ForeignKey("org_unit.id"), nullable=False),
    Column("role", String(64), nullable=False),
    UniqueConstraint("person_id", "org_unit_id", "role", name="uq_membership_person_unit_role"),
    Index("ix_membership_unit_role", "org_unit_id", "role"),
    Index("ix_membership_role_unit", "role", "org_unit_id"),  # the district-wide roles' holders (司法所)
)

# One row: moved by triggers on every change of org_unit, membership and person.active (migration
# 0011); ``engine.orgs.Lookups`` keeps its answers while it stays put.
org_revision = Table(
    "org_revision",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="one_row"),
)

spec_version = Table(
    "spec_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("process_id", String(100), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("files", JSON, nullable=False),  # {relative name: text} of every BPMN/DMN/form in the version
    Column("spec_json", Text, nullable=False),  # serialized process + subprocess specs, stored once
    # per user task: name, lane, form_key, its properties (sla, warn_at …) and its process's properties
    Column("task_meta", JSON, nullable=False),
    Column("serializer_version", String(16), nullable=False),
    Column("deployed_at", UTCDateTime(), nullable=False),
    Column("deployed_by", String(64), nullable=True),
    UniqueConstraint("process_id", "content_hash", name="uq_spec_version_process_hash"),
)

case = Table(
    "case",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(32), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # work_order, dispute, grid_event, demo
    Column("process_id", String(100), nullable=False),
    Column("spec_version_id", Integer, ForeignKey("spec_version.id"), nullable=False),
    Column("title", String(200), nullable=False),
    Column("category", String(64), nullable=True),
    Column("channel", String(32), nullable=True),
    Column("grid_id", String(64), ForeignKey("org_unit.id"), nullable=True, index=True),
    Column("unit_path", String(1000), nullable=True, index=True),  # path of grid_id, for subtree scopes
    Column("priority", String(16), nullable=False, default="normal"),
    Column("status", String(16), nullable=False, index=True),  # open completed cancelled incident
    Column("outcome", String(64), nullable=True),
    Column("version", Integer, nullable=False, default=1),
    Column("data", JSON, nullable=False),  # case fields the engine does not route on
    Column("reporter_id", String(64), nullable=True, index=True),  # a resident's own reports
    Column("related_case_id", Integer, ForeignKey("case.id"), nullable=True),
    Column("idempotency_key", String(100), nullable=True, unique=True),
    Column("next_wake_at", UTCDateTime(), nullable=True, index=True),
    Column("created_by", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("closed_at", UTCDateTime(), nullable=True),
)

# The workflow's own state: everything but its tasks in one row, each task in a row of its own so that a
# step writes only the tasks it changed. The spec lives once in spec_version.
workflow_state = Table(
    "workflow_state",
    metadata,
    Column("case_id", Integer, ForeignKey("case.id"), primary_key=True),
    Column("serializer_version", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

workflow_task = Table(
    "workflow_task",
    metadata,
    Column("case_id", Integer, ForeignKey("case.id"), primary_key=True),
    Column("task_id", String(36), primary_key=True),
    Column("body", Text, nullable=False),
)

human_task = Table(
    "human_task",
    metadata,
    Column("id", String(36), primary_key=True),  # the SpiffWorkflow task id
    Column("case_id", Integer, ForeignKey("case.id"), nullable=False, index=True),
    Column("task_spec", String(100), nullable=False),  # BPMN element id, e.g. "claim"
    Column("name", String(200), nullable=False),
    Column("lane", String(100), nullable=True),
    Column("role", String(64), nullable=True),
    Column("org_unit_id", String(64), ForeignKey("org_unit.id"), nullable=True),
    Column("assignee_id", String(64), ForeignKey("person.id"), nullable=True),
    Column("form_key", String(200), nullable=True),
    Column("state", String(16), nullable=False),  # ready completed cancelled
    Column("created_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=True),
    Column("completed_by", String(64), nullable=True),
    # a work list's sources in page order (engine.tasks.work_page): a unit's queue, a person's claims
    Index("ix_human_task_queue", "role", "org_unit_id", "state", "assignee_id", "created_at", "id"),
    Index("ix_human_task_claimed", "assignee_id", "state", "created_at", "id"),
    Index("ix_human_task_case_state", "case_id", "state"),
)

timer = Table(
    "timer",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("case.id"), nullable=False, index=True),
    Column("task_id", String(36), nullable=False),
    Column("task_spec", String(100), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False, index=True),
    UniqueConstraint("case_id", "task_id", name="uq_timer_case_task"),
)

audit_event = Table(
    "audit_event",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("case.id"), nullable=True, index=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("task_id", String(36), nullable=True),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("recipient_id", String(64), nullable=True),
    Column("case_id", Integer, ForeignKey("case.id"), nullable=True),
    Column("payload", JSON, nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Index("ix_outbox_pending", "delivered_at", "id"),
)

# One SLA clock per timed step (ARCHITECTURE §3): budget, pauses (挂起 ledger), extensions (延期), the
# instants of each rung and when it fired. ``next_rung_at`` is the indexed column the scheduler reads.
sla_clock = Table(
    "sla_clock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("case.id"), nullable=False, index=True),
    Column("task_id", String(36), nullable=True),  # the human task the clock currently runs for
    Column("task_spec", String(100), nullable=False),
    Column("clock_key", String(100), nullable=False),
    Column("org_unit_id", String(64), nullable=True),  # whose time is being spent
    Column("budget", String(32), nullable=False),  # as written: "5WD", "2WH", "P30D"
    Column("budget_kind", String(16), nullable=False),  # working | calendar
    Column("budget_seconds", Integer, nullable=False),  # with approved extensions
    Column("warn_pct", Integer, nullable=True),
    Column("supervise_after", String(32), nullable=True),
    Column("escalate_after", String(32), nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("pauses", JSON, nullable=False),  # [{"from", "to", "reason", "actor"}]
    Column("extensions", JSON, nullable=False),  # [{"added", "seconds", "by", "at", "reason"}]
    Column("warn_due_at", UTCDateTime(), nullable=True),
    Column("due_at", UTCDateTime(), nullable=True),
    Column("supervise_at", UTCDateTime(), nullable=True),
    Column("escalate_at", UTCDateTime(), nullable=True),
    Column("warning_fired_at", UTCDateTime(), nullable=True),
    Column("overdue_fired_at", UTCDateTime(), nullable=True),
    Column("supervise_fired_at", UTCDateTime(), nullable=True),
    Column("escalate_fired_at", UTCDateTime(), nullable=True),
    Column("next_rung_at", UTCDateTime(), nullable=True, index=True),
    Column("state", String(16), nullable=False),  # running paused stopped
    Column("status", String(16), nullable=False),  # on_time warning overdue
    Column("stopped_at", UTCDateTime(), nullable=True),
    Column("consumed_seconds", Integer, nullable=True),  # working (or calendar) seconds used, at stop
    Column("calendar_version", String(200), nullable=False),
    Column("provisional", Boolean, nullable=False, default=False),
    Column("provisional_reason", String(300), nullable=True),
    Column("working_hours", String(100), nullable=True),  # the unit's hours the clock counts in
    # where sla / warn_at / supervise_after / escalate_after came from: "variable:<name>", "task",
    # "process" or "default" (NULL on clocks started before migration 0006)
    Column("policy_sources", JSON, nullable=True),
    Index("ix_sla_clock_state_due", "state", "due_at"),
    Index("ix_sla_clock_state_next_rung", "state", "next_rung_at"),
    Index("ix_sla_clock_provisional", "provisional", "state", "due_at"),  # the live provisional deadlines
)

# In-app notifications (engine.notify.InAppNotifier): one row per (outbox row, recipient); ``id`` is that
# pair, so a retried delivery cannot show a person the same message twice.
notification = Table(
    "notification",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("person_id", String(64), ForeignKey("person.id"), nullable=False),
    Column("case_id", Integer, ForeignKey("case.id"), nullable=True),
    Column("topic", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("read_at", UTCDateTime(), nullable=True),
    Index("ix_notification_person_read", "person_id", "read_at", "created_at"),
)

# --- API (migration 0004): bearer tokens, login throttling, attachments --------------------------------

# A bearer token (or the token behind a web session cookie): shown to its owner once, stored as sha256.
api_token = Table(
    "api_token",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", String(64), ForeignKey("person.id"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(100), nullable=False),
    Column("kind", String(16), nullable=False),  # bearer | session
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

# Failed logins inside the throttling window, per (login as typed, client address); old rows are pruned.
login_failure = Table(
    "login_failure",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("login", String(64), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_login_failure_login_ip_at", "login", "client_ip", "at"),
    Index("ix_login_failure_ip_at", "client_ip", "at"),
)

# A file (photo, voice note, PDF) of a case; the bytes live under the attachments directory, not here.
attachment = Table(
    "attachment",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("case_id", Integer, ForeignKey("case.id"), nullable=False, index=True),
    Column("filename", String(200), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("storage_key", String(200), nullable=False),  # path relative to the attachments directory
    Column("uploaded_by", String(64), ForeignKey("person.id"), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)
