"""Round 2 node tables: stored results of control calls (control_requests), the relay's lease
(leases) and the relay's compound index on the outbox (ix_outbox_due).

Revision ID: node_0002
Revises: node_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0002"
down_revision = "node_0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "control_requests",
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # An index needs no table rebuild, on SQLite either.
    with op.batch_alter_table("outbox") as batch:
        batch.create_index("ix_outbox_due", ["state", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_due")
    op.drop_table("leases")
    op.drop_table("control_requests")
