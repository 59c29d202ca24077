"""Sending: the lifecycle check, the signed envelope and the outbox row commit together."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

from adapters.storage.exceptions import DuplicateRequest
from adapters.storage.repository import NodeRepository
from adapters.storage.tables import OUTBOUND, PENDING, ControlRequest, Message, OutboxEntry
from schemas.registry import RECEIPT
from services.domain.exceptions import ReferralMismatch, UnknownMessage
from services.domain.lifecycle import NEW, next_state
from services.protocol.compose import SignedMessage

from .context import NodeContext
from .referrals import advance_referral
from .requests import Request, RequestReused, Sent


def routing_key(recipient: str, kind: str) -> str:
    return f"{recipient}.{kind}"


class OutgoingBatch:
    """Messages of one referral staged in one transaction."""

    def __init__(self, ctx: NodeContext, repo: NodeRepository, referral_id: str):
        self.ctx = ctx
        self.repo = repo
        self.referral_id = referral_id
        self.referral = repo.referral(referral_id, for_update=True)
        self.state = self.referral.state if self.referral else NEW
        self.sent: list[SignedMessage] = []
        # A kind sent to several agencies at once (a judgment to the bureau, the procuratorate
        # and the police) moves the referral once.
        self._fanned_out: dict[str, str] = {}

    def stage(self, kind: str, recipient: str, body: Mapping, *, in_reply_to: str | None = None,
              seal: bool = False) -> SignedMessage:
        if in_reply_to is not None:
            answered = self.repo.message(in_reply_to)
            if answered is None:
                raise UnknownMessage(f"message {in_reply_to} is not known to {self.ctx.agency}")
            if answered.referral_id != self.referral_id:
                raise ReferralMismatch(
                    f"message {in_reply_to} belongs to referral {answered.referral_id}, not {self.referral_id}")
        if kind in self._fanned_out:
            new_state = self._fanned_out[kind]
        else:
            new_state = next_state(kind, self.state, body)
            self._fanned_out[kind] = new_state
        now = self.ctx.clock()
        signed = self.ctx.composer.compose(kind, recipient, body, referral_id=self.referral_id,
                                           in_reply_to=in_reply_to, sent_at=now, seal=seal)
        store_outbound(self.repo, signed, now, needs_receipt=kind != RECEIPT)
        self._advance(kind, new_state, signed, body, now)
        self.sent.append(signed)
        return signed

    def _advance(self, kind: str, new_state: str, signed: SignedMessage, body: Mapping, now) -> None:
        if kind == RECEIPT:
            return
        self.referral = advance_referral(
            self.repo, self.referral, referral_id=self.referral_id, kind=kind, body=body,
            new_state=new_state, message_id=signed.message_id, opened_by=self.ctx.agency, now=now)
        self.repo.append_audit(now, "message.sent", referral_id=self.referral_id,
                               message_id=signed.message_id,
                               detail={"kind": kind, "recipient": signed.envelope["recipient"],
                                       "sha256": signed.sha256, "from_state": self.state,
                                       "to_state": new_state})
        self.state = new_state


@contextmanager
def outgoing(ctx: NodeContext, referral_id: str | None = None) -> Iterator[OutgoingBatch]:
    """Stage messages of one referral; all are committed with the state change, or none."""
    with ctx.store.transaction() as repo:
        yield OutgoingBatch(ctx, repo, referral_id or str(uuid.uuid4()))


def staged(ctx: NodeContext, referral_id: str | None, stage: Callable[[OutgoingBatch], None],
           request: Request | None = None) -> Sent:
    """Run ``stage`` on one batch in one transaction; with a request id, once only: a repeat
    returns what the first call returned, and sends nothing."""
    for attempt in (1, 2):
        try:
            with ctx.store.transaction() as repo:
                if request is not None:
                    done = repo.control_request(request.request_id)
                    if done is not None:
                        return _repeat(done, request)
                batch = OutgoingBatch(ctx, repo, referral_id or str(uuid.uuid4()))
                stage(batch)
                sent = Sent.of(batch.sent, request)
                if request is not None:
                    repo.add_control_request(ControlRequest(request_id=request.request_id, action=request.action,
                                                            at=ctx.clock(), result=sent.summary))
            return sent
        except DuplicateRequest:  # a concurrent call with this id committed first
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _repeat(done: ControlRequest, request: Request) -> Sent:
    if done.action != request.action:
        raise RequestReused(f"request id {request.request_id} was used for {done.action}, not {request.action}")
    return Sent(dict(done.result), (), True, request.request_id)


def send(ctx: NodeContext, kind: str, recipient: str, body: Mapping, *,
         referral_id: str | None = None, in_reply_to: str | None = None,
         seal: bool = False) -> SignedMessage:
    with outgoing(ctx, referral_id) as batch:
        return batch.stage(kind, recipient, body, in_reply_to=in_reply_to, seal=seal)


def store_outbound(repo: NodeRepository, signed: SignedMessage, now, *, needs_receipt: bool) -> None:
    envelope = signed.envelope
    repo.add_message(Message(
        message_id=signed.message_id, direction=OUTBOUND, kind=envelope["kind"],
        schema_version=envelope["schema_version"], sender=envelope["sender"],
        recipient=envelope["recipient"], referral_id=envelope["referral_id"],
        in_reply_to=envelope["in_reply_to"], sent_at=now, stored_at=now, sha256=signed.sha256,
        sealed=envelope["body_encoding"] == "sealed", raw=signed.raw, body=signed.plain_body,
        status=PENDING))
    repo.add_outbox_entry(OutboxEntry(
        message_id=signed.message_id, routing_key=routing_key(envelope["recipient"], envelope["kind"]),
        needs_receipt=needs_receipt, state=PENDING, attempts=0, next_attempt_at=now))

