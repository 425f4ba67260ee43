"""working hours per org unit, recorded on each SLA clock

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("org_unit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("working_hours", sa.String(length=100), nullable=True))
    with op.batch_alter_table("sla_clock", schema=None) as batch_op:
        batch_op.add_column(sa.Column("working_hours", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sla_clock", schema=None) as batch_op:
        batch_op.drop_column("working_hours")
    with op.batch_alter_table("org_unit", schema=None) as batch_op:
        batch_op.drop_column("working_hours")
