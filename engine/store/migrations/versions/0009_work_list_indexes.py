"""human_task indexes that give a work list's sources in page order

A work list is the caller's claimed ready tasks plus the unclaimed ready tasks of each (role, unit) they
hold, oldest first, a page at a time. With (role, org_unit_id, state) and assignee_id alone, SQLite read
every unclaimed task of the database for it (50 ms at 40,000 cases), and every task a person had ever
claimed. The new indexes end in (created_at, id), so each source is read in page order and stops at the
page size; they replace the two they extend.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_human_task_queue",
        "human_task",
        ["role", "org_unit_id", "state", "assignee_id", "created_at", "id"],
    )
    op.create_index("ix_human_task_claimed", "human_task", ["assignee_id", "state", "created_at", "id"])
    op.drop_index("ix_human_task_role_unit_state", table_name="human_task")
    op.drop_index("ix_human_task_assignee_id", table_name="human_task")


def downgrade() -> None:
    op.create_index("ix_human_task_assignee_id", "human_task", ["assignee_id"])
    op.create_index("ix_human_task_role_unit_state", "human_task", ["role", "org_unit_id", "state"])
    op.drop_index("ix_human_task_claimed", table_name="human_task")
    op.drop_index("ix_human_task_queue", table_name="human_task")
