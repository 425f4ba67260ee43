"""an index on membership (role, org_unit_id): the units where somebody holds a role

Assigning a district-wide task (the 司法所 tier of mediation) asks which units of the district have an
active holder of the role. With only (org_unit_id, role) and person_id indexed, SQLite read every
membership of the organisation for it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_membership_role_unit", "membership", ["role", "org_unit_id"])


def downgrade() -> None:
    op.drop_index("ix_membership_role_unit", table_name="membership")
