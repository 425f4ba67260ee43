"""in-app notifications

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", engine.store.models.UTCDateTime(), nullable=False),
        sa.Column("read_at", engine.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_notification_case_id_case")),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"], name=op.f("fk_notification_person_id_person")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
    )
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_person_read", ["person_id", "read_at", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_person_read")
    op.drop_table("notification")
