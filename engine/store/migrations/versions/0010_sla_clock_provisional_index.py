"""an index on sla_clock (provisional, due_at): the supervisors' provisional list

Deadlines computed without a year's holiday data are few, but finding them read every clock ever
started (140–180 ms at 640,000 clocks, and a district's clocks only accumulate). The index holds them
together, nearest deadline first.

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
    op.create_index("ix_sla_clock_provisional_due", "sla_clock", ["provisional", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_sla_clock_provisional_due", table_name="sla_clock")
