"""The node database: messages (raw signed bytes verbatim), outbox, inbox, quarantine,
referrals and the hash-chained audit log."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON, TypeDecorator

# Directions of a stored message.
INBOUND = "in"
OUTBOUND = "out"

# Outbox states.
PENDING = "pending"          # committed, not yet confirmed by the broker
PUBLISHED = "published"      # broker confirmed; waiting for the recipient's receipt
RECEIPTED = "receipted"      # the recipient's receipt arrived (accepted or rejected)
DONE = "done"                # published and needs no receipt (receipts themselves)
FAILED = "failed"            # gave up after the last attempt

# Inbound outcomes.
ACCEPTED = "accepted"
REJECTED = "rejected"


class Base(DeclarativeBase):
    pass


class UtcDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (no zones) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    direction: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[int] = mapped_column(Integer)
    sender: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(64))
    referral_id: Mapped[str] = mapped_column(String(36), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sha256: Mapped[str] = mapped_column(String(64))
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # The plain body (wire form) when this node can read it; None when sealed for another.
    body: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # Inbound: accepted / rejected. Outbound: mirrors the receipt once it arrives.
    status: Mapped[str] = mapped_column(String(16))
    reason_codes: Mapped[list | None] = mapped_column(JSON, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class OutboxEntry(Base):
    __tablename__ = "outbox"
    # The relay's query (state, then oldest next_attempt_at first) stays an index range scan
    # however many delivered entries the table keeps.
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.message_id"), unique=True)
    routing_key: Mapped[str] = mapped_column(String(200))
    needs_receipt: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    last_published_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    receipted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    receipt_message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class InboxEntry(Base):
    """One row per message id ever received: the idempotency key."""

    __tablename__ = "inbox"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    # The receipt this node sent for it (None for receipts, which are not answered).
    receipt_message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    deliveries: Mapped[int] = mapped_column(Integer, default=1)


class QuarantineEntry(Base):
    """A message that could not be authenticated (or otherwise not answered), kept with its reason."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    rule: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    # Kept verbatim up to the message size limit; an oversized message keeps only its head.
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_sender: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Referral(Base):
    """This node's view of one referral."""

    __tablename__ = "referrals"

    referral_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    state: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    opened_by: Mapped[str] = mapped_column(String(64))
    first_kind: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(64), nullable=True)  # clue_no / case_no
    last_message_id: Mapped[str] = mapped_column(String(36))
    close_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditEntry(Base):
    """Append-only; each entry carries the hash of the previous one."""

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("prev_hash"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    event: Mapped[str] = mapped_column(String(64))
    referral_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    detail: Mapped[dict] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last audit entry, locked while appending so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ControlRequest(Base):
    """A state-changing control call, by the caller's request id: a repeated call (the
    caller's retry, or the broker redelivering the request) gets this stored result and
    sends nothing new. Written in the same transaction as what the call sent."""

    __tablename__ = "control_requests"

    request_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    result: Mapped[dict] = mapped_column(JSON)


class Lease(Base):
    """Who may relay this node's outbox now: one process at a time (a second process of the
    same agency waits as a standby until the lease expires), so nothing is published twice
    by two relays."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Reconciliation(Base):
    """One reconciliation summary this node sent a peer, and what its answer found
    (docs/protocol.md §20). The per-peer state is read from these rows: the last agreed point
    is the latest ``window_until`` of an answered round that agreed."""

    __tablename__ = "reconciliations"

    summary_message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    peer: Mapped[str] = mapped_column(String(64), index=True)
    window_from: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    window_until: Mapped[datetime] = mapped_column(UtcDateTime())
    count: Mapped[int] = mapped_column(Integer)
    ids_sha256: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Set when the answer arrives: None until then.
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    answer_message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    agreed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    peer_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Ids we sent that the peer lacks, those of them put back to be sent again, and ids the
    # peer holds that we did not send (reported only).
    missing: Mapped[list | None] = mapped_column(JSON, nullable=True)
    resent: Mapped[list | None] = mapped_column(JSON, nullable=True)
    unexpected: Mapped[list | None] = mapped_column(JSON, nullable=True)
