"""The joint office's tables as round 1 shipped them (adapters/storage/office_tables.py at
9280898): observed envelope metadata and deadline steps (every step with a limit).

Revision ID: office_0001
Revises: (base of the office branch; only observer agencies' databases carry it)
"""

import sqlalchemy as sa
from alembic import op

revision = "office_0001"
down_revision = None
branch_labels = ("office",)
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "observed_messages",
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("referral_id", sa.String(length=36), nullable=False),
        sa.Column("in_reply_to", sa.String(length=36), nullable=True),
        sa.Column("sent_at", UTC_DATETIME, nullable=False),
        sa.Column("observed_at", UTC_DATETIME, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("problem", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("message_id"),
    )
    for column in ("in_reply_to", "kind", "recipient", "referral_id", "sender", "sent_at"):
        op.create_index(f"ix_observed_messages_{column}", "observed_messages", [column], unique=False)

    op.create_table(
        "deadline_steps",
        sa.Column("step_id", sa.String(length=120), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("referral_id", sa.String(length=36), nullable=False),
        sa.Column("start_message_id", sa.String(length=36), nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=False),
        sa.Column("due_at", UTC_DATETIME, nullable=False),
        sa.Column("late_agency", sa.String(length=64), nullable=False),
        sa.Column("counterpart", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("closed_at", UTC_DATETIME, nullable=True),
        sa.Column("closing_message_id", sa.String(length=36), nullable=True),
        sa.Column("warned_at", UTC_DATETIME, nullable=True),
        sa.Column("urged_at", UTC_DATETIME, nullable=True),
        sa.Column("urge_message_id", sa.String(length=36), nullable=True),
        sa.Column("escalated_at", UTC_DATETIME, nullable=True),
        sa.Column("escalation_message_id", sa.String(length=36), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("step_id"),
    )
    for column in ("due_at", "late_agency", "referral_id", "rule", "started_at", "state"):
        op.create_index(f"ix_deadline_steps_{column}", "deadline_steps", [column], unique=False)


def downgrade() -> None:
    op.drop_table("deadline_steps")
    op.drop_table("observed_messages")
