"""A step may lack a limit: ``deadline_steps.calendar_missing`` (the first year the working-day
calendar does not cover) and ``due_at`` nullable. SQLite cannot drop a NOT NULL: batch mode
rebuilds the table there, its rows and indexes kept; PostgreSQL alters it in place.

Revision ID: office_0002
Revises: office_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "office_0002"
down_revision = "office_0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("deadline_steps") as batch:
        batch.add_column(sa.Column("calendar_missing", sa.Integer(), nullable=True))
        batch.alter_column("due_at", existing_type=UTC_DATETIME, nullable=True)
        batch.create_index("ix_deadline_steps_calendar_missing", ["calendar_missing"], unique=False)


def downgrade() -> None:
    # Only possible while every step has a limit.
    with op.batch_alter_table("deadline_steps") as batch:
        batch.drop_index("ix_deadline_steps_calendar_missing")
        batch.alter_column("due_at", existing_type=UTC_DATETIME, nullable=False)
        batch.drop_column("calendar_missing")
