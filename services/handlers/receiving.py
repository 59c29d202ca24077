"""Receiving: verify, deduplicate, check the lifecycle, store, apply and answer, in one
transaction keyed by message_id. The caller acks the broker only after this returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from adapters.crypto.timestamps import parse_timestamp
from adapters.storage.repository import NodeRepository
from adapters.storage.tables import (ACCEPTED, INBOUND, OUTBOUND, PENDING, RECEIPTED, REJECTED,
                                     InboxEntry, Message, QuarantineEntry)
from schemas.bodies.receipts import ACCEPTED as RECEIPT_ACCEPTED
from schemas.bodies.receipts import REJECTED as RECEIPT_REJECTED
from schemas.registry import RECEIPT
from services.domain.exceptions import DomainError, ReferralMismatch
from services.domain.lifecycle import NEW, next_state
from services.protocol.exceptions import ComposeError, Rejection
from services.protocol.signing_input import message_sha256
from services.protocol.transport import TransportFacts
from services.protocol.verify import VerifiedMessage

from .context import NodeContext
from .referrals import advance_referral
from .sending import store_outbound

# Outcomes.
OUTCOME_ACCEPTED = "accepted"
OUTCOME_REJECTED = "rejected"
OUTCOME_DUPLICATE = "duplicate"
OUTCOME_QUARANTINED = "quarantined"
OUTCOME_RECEIPT = "receipt"


@dataclass(frozen=True)
class ReceiveOutcome:
    status: str
    message_id: str | None = None
    kind: str | None = None
    referral_id: str | None = None
    rule: str | None = None
    detail: str | None = None
    receipt_message_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A message as the bus delivered it: the body's exact bytes, its content type, the
    broker-checked ``user_id`` of its publisher and the agency that account belongs to."""

    raw: bytes
    content_type: str | None = None
    user_id: str | None = None
    publisher: str | None = None
    redelivered: bool = False

    @property
    def transport(self) -> TransportFacts:
        return TransportFacts(self.content_type, self.publisher, self.user_id)


def receive(ctx: NodeContext, message: bytes | Delivery) -> ReceiveOutcome:
    """Receive a delivery from the bus (checked against its transport facts too), or bytes
    handed over in process (a test, a replay from a node's own records)."""
    if isinstance(message, Delivery):
        raw, transport = message.raw, message.transport
    else:
        raw, transport = message, None
    now = ctx.clock()
    try:
        verified = ctx.verifier.verify(raw, expected_recipient=ctx.agency, now=now, transport=transport)
    except Rejection as rejection:
        if rejection.envelope is None or rejection.envelope.get("kind") == RECEIPT:
            # Unauthenticated senders are not answered; receipts are never answered.
            with ctx.store.transaction() as repo:
                return quarantine(repo, raw, rejection.rule, rejection.detail, now,
                                  envelope=rejection.envelope)
        with ctx.store.transaction() as repo:
            duplicate = _duplicate(repo, rejection.envelope["message_id"], message_sha256(raw), raw, now)
            if duplicate:
                return duplicate
            return _reject(ctx, repo, raw, rejection.envelope, rejection.rule, rejection.detail, now)
    with ctx.store.transaction() as repo:
        duplicate = _duplicate(repo, verified.message_id, verified.sha256, raw, now)
        if duplicate:
            return duplicate
        if verified.kind == RECEIPT:
            return _record_receipt(repo, verified, now)
        return _accept(ctx, repo, verified, now)


def _accept(ctx: NodeContext, repo: NodeRepository, verified: VerifiedMessage, now: datetime) -> ReceiveOutcome:
    referral = repo.referral(verified.referral_id, for_update=True)
    state = referral.state if referral else NEW
    try:
        if verified.in_reply_to:
            answered = repo.message(verified.in_reply_to)
            if answered is not None and answered.referral_id != verified.referral_id:
                raise ReferralMismatch(f"in_reply_to {verified.in_reply_to} belongs to referral "
                                       f"{answered.referral_id}")
        new_state = next_state(verified.kind, state, verified.plain_body)
    except DomainError as error:
        return _reject(ctx, repo, verified.raw, verified.envelope, error.rule, error.detail, now)

    _store_inbound(repo, verified.raw, verified.envelope, now, status=ACCEPTED,
                   body=verified.plain_body, sealed=verified.sealed)
    advance_referral(repo, referral, referral_id=verified.referral_id, kind=verified.kind,
                     body=verified.plain_body, new_state=new_state, message_id=verified.message_id,
                     opened_by=verified.sender, now=now)
    receipt_id = _answer(ctx, repo, verified.envelope, verified.sha256, now, RECEIPT_ACCEPTED, [], None)
    repo.add_inbox_entry(InboxEntry(message_id=verified.message_id, sha256=verified.sha256,
                                    received_at=now, outcome=ACCEPTED, receipt_message_id=receipt_id))
    repo.append_audit(now, "message.accepted", referral_id=verified.referral_id,
                      message_id=verified.message_id,
                      detail={"kind": verified.kind, "sender": verified.sender, "sha256": verified.sha256,
                              "from_state": state, "to_state": new_state, "receipt": receipt_id})
    return ReceiveOutcome(OUTCOME_ACCEPTED, verified.message_id, verified.kind, verified.referral_id,
                          receipt_message_id=receipt_id)


def _reject(ctx: NodeContext, repo: NodeRepository, raw: bytes, envelope: Mapping, rule: str,
            detail: str, now: datetime) -> ReceiveOutcome:
    sha = message_sha256(raw)
    try:
        with repo.session.begin_nested():
            _store_inbound(repo, raw, envelope, now, status=REJECTED, body=None,
                           sealed=envelope.get("body_encoding") == "sealed", rule=rule, detail=detail)
            receipt_id = _answer(ctx, repo, envelope, sha, now, RECEIPT_REJECTED, [rule], detail)
    except ComposeError as error:
        # We cannot even answer (e.g. the sender is not a configured agency): keep it aside.
        return quarantine(repo, raw, rule, f"{detail} (not answered: {error.detail})", now, envelope=envelope)
    repo.add_inbox_entry(InboxEntry(message_id=envelope["message_id"], sha256=sha, received_at=now,
                                    outcome=REJECTED, receipt_message_id=receipt_id))
    repo.append_audit(now, "message.rejected", referral_id=envelope["referral_id"],
                      message_id=envelope["message_id"],
                      detail={"kind": envelope["kind"], "sender": envelope["sender"], "sha256": sha,
                              "rule": rule, "detail": detail, "receipt": receipt_id})
    return ReceiveOutcome(OUTCOME_REJECTED, envelope["message_id"], envelope["kind"], envelope["referral_id"],
                          rule=rule, detail=detail, receipt_message_id=receipt_id)


def _answer(ctx: NodeContext, repo: NodeRepository, envelope: Mapping, sha: str, now: datetime,
            status: str, reason_codes: list[str], detail: str | None) -> str:
    body = {"status": status, "message_sha256": sha, "received_at": now, "reason_codes": reason_codes}
    if detail:
        body["detail"] = detail[:20_000]
    receipt = ctx.composer.compose(RECEIPT, envelope["sender"], body, referral_id=envelope["referral_id"],
                                   in_reply_to=envelope["message_id"], sent_at=now, seal=ctx.seal)
    store_outbound(repo, receipt, now, needs_receipt=False)
    return receipt.message_id


def _record_receipt(repo: NodeRepository, verified: VerifiedMessage, now: datetime) -> ReceiveOutcome:
    original = repo.message(verified.in_reply_to) if verified.in_reply_to else None
    problem = None
    if original is None or original.direction != OUTBOUND:
        problem = ("receipt.unknown_message", f"receipt answers {verified.in_reply_to}, which this node did not send")
    elif original.recipient != verified.sender:
        problem = ("receipt.wrong_sender", f"receipt from {verified.sender} for a message sent to {original.recipient}")
    elif original.referral_id != verified.referral_id:
        problem = (ReferralMismatch.rule, "receipt names another referral than the message it answers")
    elif verified.body["message_sha256"] != original.sha256:
        problem = ("receipt.hash_mismatch", "receipt is bound to other bytes than the message sent")
    if problem:
        outcome = quarantine(repo, verified.raw, problem[0], problem[1], now, envelope=verified.envelope)
        repo.add_inbox_entry(InboxEntry(message_id=verified.message_id, sha256=verified.sha256,
                                        received_at=now, outcome=REJECTED))
        return outcome

    _store_inbound(repo, verified.raw, verified.envelope, now, status=ACCEPTED,
                   body=verified.plain_body, sealed=verified.sealed)
    entry = repo.outbox_entry(original.message_id)
    if entry is not None and entry.state != RECEIPTED:
        entry.state = RECEIPTED
        entry.receipted_at = now
        entry.receipt_message_id = verified.message_id
    original.status = verified.body["status"]
    original.reason_codes = verified.body["reason_codes"]
    original.detail = verified.body.get("detail")
    repo.add_inbox_entry(InboxEntry(message_id=verified.message_id, sha256=verified.sha256,
                                    received_at=now, outcome=ACCEPTED))
    repo.append_audit(now, "receipt.received", referral_id=verified.referral_id,
                      message_id=original.message_id,
                      detail={"receipt": verified.message_id, "status": verified.body["status"],
                              "reason_codes": verified.body["reason_codes"], "sender": verified.sender})
    return ReceiveOutcome(OUTCOME_RECEIPT, verified.message_id, RECEIPT, verified.referral_id,
                          rule=(verified.body["reason_codes"] or [None])[0])


def _duplicate(repo: NodeRepository, message_id: str, sha: str, raw: bytes, now: datetime) -> ReceiveOutcome | None:
    entry = repo.inbox_entry(message_id)
    if entry is None:
        if repo.message(message_id) is not None:  # e.g. our own outbound message played back to us
            return quarantine(repo, raw, "message.id_reused",
                              f"message id {message_id} is already used by a message this node sent", now)
        return None
    entry.deliveries += 1
    if entry.sha256 != sha:
        return quarantine(repo, raw, "message.id_reused",
                          f"message id {message_id} arrived before with other bytes", now)
    if entry.receipt_message_id:
        # Answer a redelivery with the very same receipt, published again.
        outbox = repo.outbox_entry(entry.receipt_message_id)
        if outbox is not None:
            outbox.state = PENDING
            outbox.attempts = 0
            outbox.next_attempt_at = now
    repo.append_audit(now, "message.duplicate", message_id=message_id,
                      detail={"deliveries": entry.deliveries, "receipt": entry.receipt_message_id})
    return ReceiveOutcome(OUTCOME_DUPLICATE, message_id, receipt_message_id=entry.receipt_message_id)


def quarantine(repo: NodeRepository, raw: bytes, rule: str, detail: str, now: datetime, *,
               envelope: Mapping | None = None, keep_bytes: int = 1024 * 1024) -> ReceiveOutcome:
    raw = as_stored_bytes(raw)
    claims = envelope or _claimed(raw, keep_bytes)
    message_id = claims.get("message_id") if isinstance(claims.get("message_id"), str) else None
    sender = claims.get("sender") if isinstance(claims.get("sender"), str) else None
    repo.add_quarantine(QuarantineEntry(
        received_at=now, rule=rule, detail=detail, sha256=message_sha256(raw), size=len(raw),
        raw=raw[:keep_bytes], truncated=len(raw) > keep_bytes,
        claimed_message_id=message_id[:64] if message_id else None,
        claimed_sender=sender[:64] if sender else None))
    repo.append_audit(now, "message.quarantined", message_id=None,
                      detail={"rule": rule, "detail": detail, "sha256": message_sha256(raw),
                              "size": len(raw), "claimed_message_id": message_id, "claimed_sender": sender})
    return ReceiveOutcome(OUTCOME_QUARANTINED, message_id, rule=rule, detail=detail)


def as_stored_bytes(value) -> bytes:
    """What to keep of something that was not even bytes (it is kept for the record only)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return repr(value).encode("utf-8", "replace")


def _claimed(raw: bytes, limit: int) -> dict:
    """What an unauthenticated message claims about itself, for the record only."""
    if len(raw) > limit:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _store_inbound(repo: NodeRepository, raw: bytes, envelope: Mapping, now: datetime, *, status: str,
                   body: dict | None, sealed: bool, rule: str | None = None, detail: str | None = None) -> None:
    repo.add_message(Message(
        message_id=envelope["message_id"], direction=INBOUND, kind=envelope["kind"],
        schema_version=envelope["schema_version"], sender=envelope["sender"],
        recipient=envelope["recipient"], referral_id=envelope["referral_id"],
        in_reply_to=envelope["in_reply_to"], sent_at=parse_timestamp(envelope["sent_at"]),
        stored_at=now, sha256=message_sha256(raw), sealed=sealed, raw=raw, body=body, status=status,
        reason_codes=[rule] if rule else None, detail=detail))
