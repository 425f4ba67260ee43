"""an index on sla_clock (state, next_rung_at): what is due next among running clocks

Every firing round and the scheduler's "when do I wake next" ask for running clocks whose next rung has
come, earliest first. With only (state, due_at) and next_rung_at on their own, SQLite chose the first and
read every running clock, then sorted them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sla_clock_state_next_rung", "sla_clock", ["state", "next_rung_at"])


def downgrade() -> None:
    op.drop_index("ix_sla_clock_state_next_rung", table_name="sla_clock")
