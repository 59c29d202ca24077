"""The joint-meeting office's own tables: observed metadata and deadline steps.

Kept in a separate metadata so agency nodes do not carry them. No personal data: only
signed envelope metadata and the non-personal facts listed in services/office/model.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON

from .tables import UtcDateTime


class OfficeBase(DeclarativeBase):
    pass


class ObservedMessageRow(OfficeBase):
    __tablename__ = "observed_messages"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    sender: Mapped[str] = mapped_column(String(64), index=True)
    recipient: Mapped[str] = mapped_column(String(64), index=True)
    referral_id: Mapped[str] = mapped_column(String(36), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sha256: Mapped[str] = mapped_column(String(64))
    sealed: Mapped[bool] = mapped_column(Boolean)
    facts: Mapped[dict] = mapped_column(JSON)
    # Set when the signature held but the message breaks a later rule (its recipient
    # refuses it too); such a message opens and closes no step.
    problem: Mapped[str | None] = mapped_column(String(64), nullable=True)


class StepRow(OfficeBase):
    __tablename__ = "deadline_steps"

    step_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    referral_id: Mapped[str] = mapped_column(String(36), index=True)
    start_message_id: Mapped[str] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # None when the working-day calendar does not cover a day the count needs: the step is
    # then marked ``calendar_missing`` (the first such year), never given a guessed limit.
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    calendar_missing: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    late_agency: Mapped[str] = mapped_column(String(64), index=True)
    counterpart: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    closing_message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Each level of reminder happens once per step, however often the timer runs: these are
    # set in the same transaction that puts the signed urge into the outbox.
    warned_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    urged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    urge_message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    escalation_message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
