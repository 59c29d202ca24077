"""Reconciliation between two agencies: the summaries a node sent and what their answers
found (reconciliations), from which each peer's last agreed point is read.

Revision ID: node_0003
Revises: node_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0003"
down_revision = "node_0002"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reconciliations",
        sa.Column("summary_message_id", sa.String(length=36), nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("window_from", UTC_DATETIME, nullable=True),
        sa.Column("window_until", UTC_DATETIME, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("ids_sha256", sa.String(length=64), nullable=False),
        sa.Column("sent_at", UTC_DATETIME, nullable=False),
        sa.Column("answered_at", UTC_DATETIME, nullable=True),
        sa.Column("answer_message_id", sa.String(length=36), nullable=True),
        sa.Column("agreed", sa.Boolean(), nullable=True),
        sa.Column("peer_count", sa.Integer(), nullable=True),
        sa.Column("missing", sa.JSON(), nullable=True),
        sa.Column("resent", sa.JSON(), nullable=True),
        sa.Column("unexpected", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("summary_message_id"),
    )
    op.create_index("ix_reconciliations_peer", "reconciliations", ["peer"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reconciliations_peer", table_name="reconciliations")
    op.drop_table("reconciliations")
