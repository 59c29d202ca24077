"""Queries and writes on one node database, inside one transaction."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Iterable, Sequence

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.crypto.canonical import canonical_bytes
from adapters.crypto.timestamps import format_timestamp

from .exceptions import AuditChainBroken, DuplicateRequest
from .tables import (INBOUND, PENDING, PUBLISHED, AuditEntry, AuditHead, ControlRequest, InboxEntry,
                     Message, OutboxEntry, QuarantineEntry, Referral)

GENESIS_HASH = "0" * 64


def audit_hash(seq: int, at: datetime, event: str, referral_id: str | None,
               message_id: str | None, detail: dict, prev_hash: str) -> str:
    document = {"seq": seq, "at": format_timestamp(at), "event": event, "referral_id": referral_id,
                "message_id": message_id, "detail": detail, "prev_hash": prev_hash}
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


class NodeRepository:
    def __init__(self, session: Session):
        self.session = session

    # -- messages ------------------------------------------------------------------
    def message(self, message_id: str) -> Message | None:
        return self.session.scalar(select(Message).where(Message.message_id == message_id))

    def add_message(self, message: Message) -> Message:
        self.session.add(message)
        self.session.flush()
        return message

    def messages_for_referral(self, referral_id: str) -> Sequence[Message]:
        return self.session.scalars(
            select(Message).where(Message.referral_id == referral_id)
            .order_by(Message.sent_at, Message.id)).all()

    def replies_to(self, message_id: str) -> Sequence[Message]:
        return self.session.scalars(select(Message).where(Message.in_reply_to == message_id)
                                    .order_by(Message.sent_at, Message.id)).all()

    def inbound_messages(self, *, kind: str | None = None, status: str | None = None,
                         limit: int = 100) -> Sequence[Message]:
        query = select(Message).where(Message.direction == INBOUND)
        if kind:
            query = query.where(Message.kind == kind)
        if status:
            query = query.where(Message.status == status)
        return self.session.scalars(query.order_by(Message.id.desc()).limit(limit)).all()

    # -- inbox -------------------------------------------------------------------------
    def inbox_entry(self, message_id: str) -> InboxEntry | None:
        return self.session.get(InboxEntry, message_id)

    def add_inbox_entry(self, entry: InboxEntry) -> None:
        self.session.add(entry)
        self.session.flush()

    # -- outbox ------------------------------------------------------------------------
    def add_outbox_entry(self, entry: OutboxEntry) -> None:
        self.session.add(entry)
        self.session.flush()

    def outbox_entry(self, message_id: str) -> OutboxEntry | None:
        return self.session.scalar(select(OutboxEntry).where(OutboxEntry.message_id == message_id))

    def due_outbox(self, now: datetime, limit: int = 100) -> Sequence[OutboxEntry]:
        """Entries to publish now: never published, or published and still unreceipted."""
        return self.session.scalars(
            select(OutboxEntry)
            .where(or_(OutboxEntry.state == PENDING,
                       (OutboxEntry.state == PUBLISHED) & OutboxEntry.needs_receipt))
            .where(OutboxEntry.next_attempt_at <= now)
            .order_by(OutboxEntry.next_attempt_at, OutboxEntry.id).limit(limit)).all()

    def outbox_entries(self, states: Iterable[str] | None = None) -> Sequence[OutboxEntry]:
        query = select(OutboxEntry)
        if states:
            query = query.where(OutboxEntry.state.in_(list(states)))
        return self.session.scalars(query.order_by(OutboxEntry.id)).all()

    # -- quarantine --------------------------------------------------------------------
    def add_quarantine(self, entry: QuarantineEntry) -> None:
        self.session.add(entry)
        self.session.flush()

    def quarantined(self, limit: int = 100) -> Sequence[QuarantineEntry]:
        return self.session.scalars(select(QuarantineEntry).order_by(QuarantineEntry.id.desc())
                                    .limit(limit)).all()

    # -- referrals ---------------------------------------------------------------------
    def referral(self, referral_id: str, *, for_update: bool = False) -> Referral | None:
        query = select(Referral).where(Referral.referral_id == referral_id)
        if for_update:
            query = query.with_for_update()
        return self.session.scalar(query)

    def add_referral(self, referral: Referral) -> None:
        self.session.add(referral)
        self.session.flush()

    def referrals(self, limit: int = 100) -> Sequence[Referral]:
        return self.session.scalars(select(Referral).order_by(Referral.updated_at.desc()).limit(limit)).all()

    # -- control requests ----------------------------------------------------------------
    def control_request(self, request_id: str) -> ControlRequest | None:
        return self.session.get(ControlRequest, request_id)

    def add_control_request(self, request: ControlRequest) -> None:
        """Store a request id; DuplicateRequest when a concurrent transaction stored it first."""
        try:
            with self.session.begin_nested():
                self.session.add(request)
        except IntegrityError:
            raise DuplicateRequest(f"request {request.request_id} was stored meanwhile") from None

    # -- audit log ---------------------------------------------------------------------
    def append_audit(self, at: datetime, event: str, *, referral_id: str | None = None,
                     message_id: str | None = None, detail: dict | None = None) -> AuditEntry:
        detail = detail or {}
        head = self.session.scalar(select(AuditHead).where(AuditHead.id == 1).with_for_update())
        if head is None:
            head = AuditHead(id=1, seq=0, hash=GENESIS_HASH)
            self.session.add(head)
        seq = head.seq + 1
        digest = audit_hash(seq, at, event, referral_id, message_id, detail, head.hash)
        entry = AuditEntry(seq=seq, at=at, event=event, referral_id=referral_id,
                           message_id=message_id, detail=detail, prev_hash=head.hash, hash=digest)
        self.session.add(entry)
        head.seq, head.hash = seq, digest
        self.session.flush()
        return entry

    def audit_entries(self, referral_id: str | None = None) -> Sequence[AuditEntry]:
        query = select(AuditEntry)
        if referral_id:
            query = query.where(AuditEntry.referral_id == referral_id)
        return self.session.scalars(query.order_by(AuditEntry.seq)).all()

    def verify_audit_chain(self) -> int:
        """Recompute every hash; return the number of entries, or raise AuditChainBroken."""
        previous = GENESIS_HASH
        count = 0
        for entry in self.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)):
            count += 1
            if entry.seq != count:
                raise AuditChainBroken(f"audit entry {count} is missing (found seq {entry.seq})")
            if entry.prev_hash != previous:
                raise AuditChainBroken(f"audit entry {entry.seq} does not follow entry {entry.seq - 1}")
            expected = audit_hash(entry.seq, entry.at, entry.event, entry.referral_id,
                                  entry.message_id, entry.detail, entry.prev_hash)
            if entry.hash != expected:
                raise AuditChainBroken(f"audit entry {entry.seq} has been altered")
            previous = entry.hash
        head = self.session.get(AuditHead, 1)
        if head is not None and (head.seq != count or head.hash != previous):
            raise AuditChainBroken("audit log has been truncated")
        return count
