"""org_revision: a counter that every change to the organisation moves, kept by triggers

A step asks the organisation who may act on a task, which unit a new task goes to and which working
hours its clock counts in: the same few answers over and over, while the organisation changes a few
times a day. ``engine.orgs.Lookups`` keeps those answers in memory for as long as this counter stays
where it was when they were found; a step reads it together with its case row.

The triggers move it on every insert, update or delete of ``org_unit`` and ``membership``, and on a
person's insert, delete or change of ``active`` — whatever makes the change: gridcase, a migration, a
hand-written statement in a database console. (A password or a name change leaves it alone.)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# (table, the events that change the answers of the lookups)
_WATCHED = [
    ("org_unit", ("INSERT", "UPDATE", "DELETE")),
    ("membership", ("INSERT", "UPDATE", "DELETE")),
    ("person", ("INSERT", "UPDATE OF active", "DELETE")),
]
_BUMP = "UPDATE org_revision SET n = n + 1"


def _trigger(table: str, event: str) -> str:
    return f"{table}_{event.split()[0].lower()}_moves_org_revision"


def upgrade() -> None:
    op.create_table(
        "org_revision",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="one_row"),
    )
    op.execute("INSERT INTO org_revision (id, n) VALUES (1, 1)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION gridcase_org_changed() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for table, events in _WATCHED:  # once a statement, however many rows it changed
            op.execute(
                f"CREATE TRIGGER {table}_moves_org_revision AFTER {' OR '.join(events)} OR TRUNCATE"
                f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION gridcase_org_changed()"
            )
        return
    for table, events in _WATCHED:  # SQLite has row triggers only
        for event in events:
            op.execute(
                f"CREATE TRIGGER {_trigger(table, event)} AFTER {event} ON {table}"
                f" FOR EACH ROW BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, _events in _WATCHED:
            op.execute(f"DROP TRIGGER {table}_moves_org_revision ON {table}")
        op.execute("DROP FUNCTION gridcase_org_changed()")
    else:
        for table, events in _WATCHED:
            for event in events:
                op.execute(f"DROP TRIGGER {_trigger(table, event)}")
    op.execute("DROP TABLE org_revision")
