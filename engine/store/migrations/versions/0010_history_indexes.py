"""indexes for lists that must not grow with the history: live provisional deadlines, own reports

- sla_clock (provisional, state, due_at): the supervisors' provisional list asks for live clocks with a
  provisional deadline, nearest first. It read every clock ever started (140–180 ms at 640,000 clocks);
  an index on provisional alone still walked the stopped ones of closed cases.
- case (reporter_id): a resident's case list starts from their own reports instead of testing every
  case of the database.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sla_clock_provisional", "sla_clock", ["provisional", "state", "due_at"])
    op.create_index("ix_case_reporter_id", "case", ["reporter_id"])


def downgrade() -> None:
    op.drop_index("ix_case_reporter_id", table_name="case")
    op.drop_index("ix_sla_clock_provisional", table_name="sla_clock")
