"""Receiving: verify, deduplicate, check the lifecycle, store, apply and answer, for a batch
of deliveries in one transaction keyed by message_id. The caller acks the broker only after
this returns.

Each delivery is decided in order against what the database held and what the messages
before it in the batch did (a redelivery within the batch is a duplicate; two messages of
one referral are each checked against the state the one before left); then everything is
written with a few bulk statements and one lock of the audit chain. Delivery states of our
own sent messages change only through services/domain/delivery.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping

from adapters.storage.repository import NodeRepository
from adapters.storage.writes import Writes
from schemas.bodies.receipts import ACCEPTED as RECEIPT_ACCEPTED
from schemas.bodies.receipts import REJECTED as RECEIPT_REJECTED
from schemas.registry import RECEIPT, RECONCILIATION_ANSWER, RECONCILIATION_KINDS, REWARD_PAYMENT
from services.domain import delivery as d
from services.domain.exceptions import DomainError, ReferralMismatch
from services.domain.lifecycle import NEW, next_state
from services.domain.money import REWARD_KINDS, enforce_reward
from services.protocol import rules
from services.protocol.exceptions import ComposeError, Rejection
from services.protocol.signing_input import message_sha256
from services.protocol.transport import TransportFacts
from services.protocol.verify import VerifiedMessage

from . import reconciliation
from .context import NodeContext
from .records import INBOUND, OUTBOUND, inbox_row, message_row
from .referrals import ReferralView
from .relay import committed_row
from .sending import record_outbound

# Outcomes.
OUTCOME_ACCEPTED = "accepted"
OUTCOME_REJECTED = "rejected"
OUTCOME_DUPLICATE = "duplicate"
OUTCOME_QUARANTINED = "quarantined"
OUTCOME_RECEIPT = "receipt"

# Inbound statuses.
ACCEPTED = "accepted"
REJECTED = "rejected"

KEEP_BYTES = 1024 * 1024


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
    """Receive one delivery from the bus (checked against its transport facts too), or bytes
    handed over in process (a test, a replay from a node's own records)."""
    return receive_batch(ctx, [message])[0]


def receive_batch(ctx: NodeContext, messages: list[bytes | Delivery], *,
                  answers: list | None = None, receipt_seconds: list | None = None) -> list[ReceiveOutcome]:
    """Receive several deliveries in one transaction; the outcomes in the same order. The new
    receipts it committed are appended to ``answers`` (as relay.committed_row rows), to be
    published at once without reading them back; to ``receipt_seconds``, the seconds from
    publication to receipt of each of our messages it recorded a receipt for (for the metrics,
    without reading them back either)."""
    return commit_checked(ctx, check_batch(ctx, messages)).results(answers=answers, receipt_seconds=receipt_seconds)


@dataclass(frozen=True)
class CheckedBatch:
    """Deliveries verified (outside any transaction), with the moment the batch began."""
    now: datetime
    checked: list


def check_batch(ctx: NodeContext, messages: list[bytes | Delivery]) -> CheckedBatch:
    now = ctx.clock()
    return CheckedBatch(now, [_check(ctx, message, now) for message in messages])


def commit_checked(ctx: NodeContext, batch: CheckedBatch) -> "_Batch":
    """A checked batch decided and committed in a transaction of its own."""
    with ctx.store.transaction() as repo:
        return decide_batch(ctx, repo, batch)


def decide_batch(ctx: NodeContext, repo: NodeRepository, batch: CheckedBatch) -> "_Batch":
    """Decide and write a checked batch in the caller's transaction (receive_batch's own, or
    one shared with the node's waiting calls: services/handlers/together.py). What the
    outcomes report holds once that transaction has committed."""
    decided = _Batch(ctx, repo, batch.now, batch.checked)
    decided.outcomes = [decided.decide(raw, result) for raw, result in batch.checked]
    repo.write(decided.writes)
    return decided


def receipts_to_publish(outcomes: Iterable[ReceiveOutcome]) -> list[str]:
    """The receipts a batch queued (new ones, and the same ones again for duplicates)."""
    return [o.receipt_message_id for o in outcomes if o.receipt_message_id]


def receipts_again(outcomes: Iterable[ReceiveOutcome]) -> list[str]:
    """The earlier receipts a batch queued again, for the duplicates it met."""
    return [o.receipt_message_id for o in outcomes if o.status == OUTCOME_DUPLICATE and o.receipt_message_id]


def _check(ctx: NodeContext, message, now: datetime) -> tuple[bytes, VerifiedMessage | Rejection]:
    if isinstance(message, Delivery):
        raw, transport = message.raw, message.transport
    else:
        raw, transport = message, None
    try:
        return raw, ctx.verifier.verify(raw, expected_recipient=ctx.agency, now=now, transport=transport)
    except Rejection as rejection:
        return raw, rejection


class _Batch:
    """What the database held for a batch, and what the batch decides to write."""

    def __init__(self, ctx: NodeContext, repo: NodeRepository, now: datetime, checked: list):
        self.ctx, self.repo, self.now = ctx, repo, now
        self.writes = Writes()
        self.unanswerable = ""
        self.receipts = []      # the receipts this batch composes, in order
        self.outgoing = []      # other messages it composes (reconciliation answers), in order
        self.receipt_seconds: list[float] = []  # publication to receipt, of what it settles
        envelopes = [result.envelope for _, result in checked if result.envelope is not None]
        ids = [e["message_id"] for e in envelopes]
        replies = [e["in_reply_to"] for e in envelopes if e.get("in_reply_to")]
        self.inbox, self.messages = repo.inbox_and_message_rows(ids, ids + replies)
        receipts = [row["receipt_message_id"] for row in self.inbox.values() if row["receipt_message_id"]]
        originals = [e["in_reply_to"] for e in envelopes if e["kind"] == RECEIPT and e.get("in_reply_to")]
        wanted = [e["referral_id"] for e in envelopes if e["kind"] != RECEIPT]
        # Locked, the outbox rows first (one lock order for every transaction).
        self.outbox, referrals = repo.outbox_and_referral_rows(receipts + originals, wanted)
        self.referrals: dict[str, ReferralView] = {referral_id: ReferralView(referral_id, row)
                                                   for referral_id, row in referrals.items()}
        self.new_inbox: dict[str, dict] = {}   # message_id -> the inbox row this batch adds
        self.outcomes: list[ReceiveOutcome] = []

    def results(self, *, answers: list | None = None, receipt_seconds: list | None = None) -> list[ReceiveOutcome]:
        """The outcomes, in delivery order, once committed; the new receipts and other
        messages it composed go to ``answers`` (relay.committed_row rows), the seconds from
        publication to receipt of what it settled to ``receipt_seconds``."""
        if receipt_seconds is not None:
            receipt_seconds.extend(self.receipt_seconds)
        if answers is not None:
            answers.extend(committed_row(receipt, needs_receipt=False) for receipt in self.receipts)
            answers.extend(committed_row(message, needs_receipt=True) for message in self.outgoing)
        return self.outcomes

    # -- deciding one delivery ---------------------------------------------------------------
    def decide(self, raw: bytes, result) -> ReceiveOutcome:
        if isinstance(result, Rejection):
            envelope = result.envelope
            if envelope is None or envelope.get("kind") == RECEIPT:
                # Unauthenticated senders are not answered; receipts are never answered.
                return self.quarantine(raw, result.rule, result.detail, envelope=envelope)
            duplicate = self.duplicate(envelope["message_id"], message_sha256(raw), raw)
            if duplicate:
                return duplicate
            return self.reject(raw, envelope, result.rule, result.detail)
        duplicate = self.duplicate(result.message_id, result.sha256, raw)
        if duplicate:
            if result.kind == RECEIPT and duplicate.status == OUTCOME_DUPLICATE:
                self.settle_again(result)
            return duplicate
        if result.kind == RECEIPT:
            return self.record_receipt(result)
        if result.kind in RECONCILIATION_KINDS:
            if result.kind == RECONCILIATION_ANSWER:
                return reconciliation.take_answer(self, result)
            return reconciliation.answer_summary(self, result)
        return self.accept(result)

    def accept(self, verified: VerifiedMessage) -> ReceiveOutcome:
        view = self.referrals.setdefault(verified.referral_id, ReferralView(verified.referral_id, None))
        state = view.state or NEW
        try:
            if verified.in_reply_to:
                answered = self.messages.get(verified.in_reply_to)
                if answered is not None and answered["referral_id"] != verified.referral_id:
                    raise ReferralMismatch(f"in_reply_to {verified.in_reply_to} belongs to referral "
                                           f"{answered['referral_id']}")
            new_state = next_state(verified.kind, state, verified.plain_body)
            flagged = self.money_rules(verified)
        except DomainError as error:
            return self.reject(verified.raw, verified.envelope, error.rule, error.detail)
        receipt = self.answer(verified.envelope, verified.sha256, RECEIPT_ACCEPTED, [], None)
        if receipt is None:  # pragma: no cover - an accepted sender is a configured agency
            return self.quarantine(verified.raw, rules.RECEIPT_UNADDRESSABLE, "no receipt can be composed",
                                   envelope=verified.envelope)
        self.store(verified.raw, verified.envelope, status=ACCEPTED, body=verified.plain_body,
                   sha256=verified.sha256)
        record_outbound(self.writes, receipt, self.now, needs_receipt=False, ctx=self.ctx)
        self.receipts.append(receipt)
        view.advance(self.writes, kind=verified.kind, body=verified.plain_body, new_state=new_state,
                     message_id=verified.message_id, opened_by=verified.sender, now=self.now)
        self.add_inbox(verified.message_id, verified.sha256, ACCEPTED, receipt.message_id)
        self.writes.audit_event(self.now, "message.accepted", referral_id=verified.referral_id,
                                message_id=verified.message_id,
                                detail={"kind": verified.kind, "sender": verified.sender, "sha256": verified.sha256,
                                        "from_state": state, "to_state": new_state, "receipt": receipt.message_id})
        if flagged is not None:
            self.writes.audit_event(self.now, "message.flagged", referral_id=verified.referral_id,
                                    message_id=verified.message_id,
                                    detail={"kind": verified.kind, "rule": rules.REWARD_RULE_BROKEN,
                                            "detail": flagged.detail})
        return ReceiveOutcome(OUTCOME_ACCEPTED, verified.message_id, verified.kind, verified.referral_id,
                              receipt_message_id=receipt.message_id)

    def accept_apart(self, verified: VerifiedMessage) -> ReceiveOutcome:
        """Accept a message that is part of no referral (reconciliation, its own referral):
        stored, receipted and audited like any other, but no referral row or lifecycle moves."""
        receipt = self.answer(verified.envelope, verified.sha256, RECEIPT_ACCEPTED, [], None)
        if receipt is None:  # pragma: no cover - an accepted sender is a configured agency
            return self.quarantine(verified.raw, rules.RECEIPT_UNADDRESSABLE, "no receipt can be composed",
                                   envelope=verified.envelope)
        self.store(verified.raw, verified.envelope, status=ACCEPTED, body=verified.plain_body,
                   sha256=verified.sha256)
        record_outbound(self.writes, receipt, self.now, needs_receipt=False, ctx=self.ctx)
        self.receipts.append(receipt)
        self.add_inbox(verified.message_id, verified.sha256, ACCEPTED, receipt.message_id)
        self.writes.audit_event(self.now, "message.accepted", referral_id=verified.referral_id,
                                message_id=verified.message_id,
                                detail={"kind": verified.kind, "sender": verified.sender, "sha256": verified.sha256,
                                        "receipt": receipt.message_id})
        return ReceiveOutcome(OUTCOME_ACCEPTED, verified.message_id, verified.kind, verified.referral_id,
                              receipt_message_id=receipt.message_id)

    def money_rules(self, verified: VerifiedMessage):
        """A reward amount that breaks the jurisdiction's rule raises RewardRuleBroken (the
        message is rejected); one the rule only flags is returned, to be audited."""
        if self.ctx.money_rules is None or verified.kind not in REWARD_KINDS:
            return None
        request = None
        if verified.kind == REWARD_PAYMENT and verified.in_reply_to:
            answered = self.repo.message(verified.in_reply_to)  # our request: its amount and rule set
            request = answered.body if answered is not None and answered.direction == OUTBOUND else None
        return enforce_reward(self.ctx.money_rules, verified.kind, verified.plain_body, request)

    def reject(self, raw: bytes, envelope: Mapping, rule: str, detail: str) -> ReceiveOutcome:
        sha = message_sha256(raw)
        receipt = self.answer(envelope, sha, RECEIPT_REJECTED, [rule], detail)
        if receipt is None:
            # We cannot even answer (e.g. the sender is not a configured agency): keep it aside.
            return self.quarantine(raw, rule, f"{detail} (not answered: {self.unanswerable})", envelope=envelope)
        self.store(raw, envelope, status=REJECTED, body=None, sha256=sha, rule=rule, detail=detail)
        record_outbound(self.writes, receipt, self.now, needs_receipt=False, ctx=self.ctx)
        self.receipts.append(receipt)
        self.add_inbox(envelope["message_id"], sha, REJECTED, receipt.message_id)
        self.writes.audit_event(self.now, "message.rejected", referral_id=envelope["referral_id"],
                                message_id=envelope["message_id"],
                                detail={"kind": envelope["kind"], "sender": envelope["sender"], "sha256": sha,
                                        "rule": rule, "detail": detail, "receipt": receipt.message_id})
        return ReceiveOutcome(OUTCOME_REJECTED, envelope["message_id"], envelope["kind"], envelope["referral_id"],
                              rule=rule, detail=detail, receipt_message_id=receipt.message_id)

    def answer(self, envelope: Mapping, sha: str, status: str, reason_codes: list[str], detail: str | None):
        """Our signed receipt (the caller queues it after the message it answers); None when
        none can be composed."""
        body = {"status": status, "message_sha256": sha, "received_at": self.now, "reason_codes": reason_codes}
        if detail:
            body["detail"] = detail[:20_000]
        # An acceptance says nothing personal (a status, a hash, a time): it goes in the clear.
        # A rejection's detail may quote the message: sealed, when the node seals, unless the
        # sender has no usable box key (then in the clear: an answer is worth more).
        seal = self.ctx.seal and status == RECEIPT_REJECTED
        for sealing in ((True, False) if seal else (False,)):
            try:
                return self.ctx.composer.compose(RECEIPT, envelope["sender"], body,
                                                 referral_id=envelope["referral_id"],
                                                 in_reply_to=envelope["message_id"], sent_at=self.now, seal=sealing)
            except ComposeError as error:
                self.unanswerable = error.detail
        return None

    def receipt_problem(self, verified: VerifiedMessage) -> tuple[str, str] | None:
        """What is wrong with a receipt as an answer to a message of ours, if anything."""
        original = self.messages.get(verified.in_reply_to) if verified.in_reply_to else None
        problem = None
        if original is None or original["direction"] != OUTBOUND:
            problem = (rules.RECEIPT_UNKNOWN_MESSAGE,
                       f"receipt answers {verified.in_reply_to}, which this node did not send")
        elif original["kind"] == RECEIPT:  # receipts are never answered (protocol section 13)
            problem = (rules.RECEIPT_UNKNOWN_MESSAGE,
                       f"receipt answers {verified.in_reply_to}, a receipt of this node: receipts are not answered")
        elif original["recipient"] != verified.sender:
            problem = (rules.RECEIPT_WRONG_SENDER,
                       f"receipt from {verified.sender} for a message sent to {original['recipient']}")
        elif original["referral_id"] != verified.referral_id:
            problem = (ReferralMismatch.rule, "receipt names another referral than the message it answers")
        elif verified.body["message_sha256"] != original["sha256"]:
            problem = (rules.RECEIPT_HASH_MISMATCH, "receipt is bound to other bytes than the message sent")
        return problem

    def record_receipt(self, verified: VerifiedMessage) -> ReceiveOutcome:
        problem = self.receipt_problem(verified)
        original = self.messages.get(verified.in_reply_to) if verified.in_reply_to else None
        if problem:
            outcome = self.quarantine(verified.raw, problem[0], problem[1], envelope=verified.envelope)
            self.add_inbox(verified.message_id, verified.sha256, REJECTED, None)
            return outcome

        self.store(verified.raw, verified.envelope, status=ACCEPTED, body=verified.plain_body,
                   sha256=verified.sha256)
        original_id = original["message_id"]
        self.settle(original_id, verified)
        status = verified.body["status"]
        self.writes.message_updates[original_id] = {
            "status": d.message_status_after(d.RECEIPTED_EVENT, original["status"], needs_receipt=True,
                                             receipt_status=status),
            "reason_codes": verified.body["reason_codes"], "detail": verified.body.get("detail")}
        self.add_inbox(verified.message_id, verified.sha256, ACCEPTED, None)
        self.writes.audit_event(self.now, "receipt.received", referral_id=verified.referral_id,
                                message_id=original_id,
                                detail={"receipt": verified.message_id, "status": status,
                                        "reason_codes": verified.body["reason_codes"], "sender": verified.sender})
        return ReceiveOutcome(OUTCOME_RECEIPT, verified.message_id, RECEIPT, verified.referral_id,
                              rule=(verified.body["reason_codes"] or [None])[0])

    def settle(self, original_id: str, receipt: VerifiedMessage) -> bool:
        """Our outbox entry of ``original_id`` receipted by ``receipt``, if it was waiting."""
        entry = self.outbox.get(original_id)
        if entry is None:
            return False
        step = d.transition(d.RECEIPTED_EVENT, entry["state"], entry["needs_receipt"])
        if step is None:  # receipted already: nothing moves
            return False
        self.writes.outbox_updates.append((original_id, entry["state"], {
            "state": step.to, "receipted_at": self.now, "receipt_message_id": receipt.message_id}))
        entry["state"] = step.to
        published = entry.get("last_published_at")
        if published is not None:
            self.receipt_seconds.append((self.now - published).total_seconds())  # metrics clamp skew
        return True

    def settle_again(self, receipt: VerifiedMessage) -> None:
        """The same receipt again, for a message we published again meanwhile (reconciliation
        found the peer lacked it, yet it held it after all and answered with its first receipt):
        the entry is receipted again, so it is not resent until it fails. Anything else about a
        repeated receipt changes nothing."""
        if self.receipt_problem(receipt) is not None:
            return
        original_id = receipt.in_reply_to
        if self.settle(original_id, receipt):
            original = self.messages[original_id]
            self.writes.message_updates.setdefault(original_id, {})["status"] = d.message_status_after(
                d.RECEIPTED_EVENT, original["status"], needs_receipt=True, receipt_status=receipt.body["status"])

    def duplicate(self, message_id: str, sha: str, raw: bytes) -> ReceiveOutcome | None:
        entry = self.new_inbox.get(message_id) or self.inbox.get(message_id)
        if entry is None:
            known = self.messages.get(message_id)
            if known is not None and known["direction"] == OUTBOUND:  # e.g. our own message played back
                return self.quarantine(raw, rules.MESSAGE_ID_REUSED,
                                       f"message id {message_id} is already used by a message this node sent")
            return None
        entry["deliveries"] = entry.get("deliveries", 1) + 1
        if message_id in self.new_inbox:
            pass  # the row this batch inserts carries the count
        else:
            self.writes.inbox_deliveries[message_id] = entry["deliveries"]
        if entry["sha256"] != sha:
            return self.quarantine(raw, rules.MESSAGE_ID_REUSED,
                                   f"message id {message_id} arrived before with other bytes")
        receipt_id = entry["receipt_message_id"]
        if receipt_id and message_id not in self.new_inbox:
            # Answer a redelivery with the very same receipt, published again.
            queued = self.outbox.get(receipt_id)
            if queued is not None:
                step = d.transition(d.ANSWER_AGAIN, queued["state"], queued["needs_receipt"])
                if step is not None:
                    self.writes.outbox_updates.append((receipt_id, queued["state"], {
                        "state": step.to, "attempts": 0, "next_attempt_at": self.now}))
                    queued["state"] = step.to
        self.writes.audit_event(self.now, "message.duplicate", message_id=message_id,
                                detail={"deliveries": entry["deliveries"], "receipt": receipt_id})
        return ReceiveOutcome(OUTCOME_DUPLICATE, message_id, receipt_message_id=receipt_id)

    # -- writing -----------------------------------------------------------------------------
    def store(self, raw: bytes, envelope: Mapping, *, status: str, body, sha256: str, rule: str | None = None,
              detail: str | None = None) -> None:
        row = message_row(envelope, raw, direction=INBOUND, stored_at=self.now, status=status, body=body,
                          sha256=sha256, rule=rule, detail=detail)
        self.writes.messages.append(row)
        self.messages[envelope["message_id"]] = {**row, "direction": INBOUND}

    def add_inbox(self, message_id: str, sha256: str, outcome: str, receipt_message_id: str | None) -> None:
        row = inbox_row(message_id, sha256, self.now, outcome, receipt_message_id)
        self.writes.inbox.append(row)
        self.new_inbox[message_id] = row

    def quarantine(self, raw, rule: str, detail: str, *, envelope: Mapping | None = None) -> ReceiveOutcome:
        return quarantine_into(self.writes, raw, rule, detail, self.now, envelope=envelope)


def quarantine_into(writes: Writes, raw, rule: str, detail: str, now: datetime, *,
                    envelope: Mapping | None = None, keep_bytes: int = KEEP_BYTES) -> ReceiveOutcome:
    """Keep a message aside unanswered, with the rule it broke (and an audit event)."""
    raw = as_stored_bytes(raw)
    claims = envelope or _claimed(raw, keep_bytes)
    message_id = claims.get("message_id") if isinstance(claims.get("message_id"), str) else None
    sender = claims.get("sender") if isinstance(claims.get("sender"), str) else None
    sha = message_sha256(raw)
    writes.quarantine.append({
        "received_at": now, "rule": rule, "detail": detail, "sha256": sha, "size": len(raw),
        "raw": raw[:keep_bytes], "truncated": len(raw) > keep_bytes,
        "claimed_message_id": message_id[:64] if message_id else None,
        "claimed_sender": sender[:64] if sender else None})
    writes.audit_event(now, "message.quarantined", message_id=None,
                       detail={"rule": rule, "detail": detail, "sha256": sha, "size": len(raw),
                               "claimed_message_id": message_id, "claimed_sender": sender})
    return ReceiveOutcome(OUTCOME_QUARANTINED, message_id, rule=rule, detail=detail)


def quarantine(repo: NodeRepository, raw, rule: str, detail: str, now: datetime, *,
               envelope: Mapping | None = None) -> ReceiveOutcome:
    """Quarantine one message in ``repo``'s transaction now (the office's observer)."""
    writes = Writes()
    outcome = quarantine_into(writes, raw, rule, detail, now, envelope=envelope)
    repo.session.flush()
    repo.write(writes)
    return outcome


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
