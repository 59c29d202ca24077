"""What a clerk does: start a referral, answer a message, follow a referral up.

Each call stages its messages in one transaction (sending.staged) and, given a request id,
happens once: a repeat returns the first call's result (handlers/requests.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from schemas.registry import CLUE_TRANSFER, COPY_NOTICE
from services.domain.exceptions import UnknownMessage, UnknownReferral
from services.protocol.compose import SignedMessage

from .context import NodeContext
from .requests import Request, Sent
from .sending import Call, OutgoingBatch, Refused, staged, staged_many

SUSPECTED_CRIME = "suspected_crime"
PROCURATORATE = "procuratorate"


def start(ctx: NodeContext, kind: str, recipient: str, body: Mapping, *, seal: bool = False,
          referral_id: str | None = None, request: Request | None = None) -> Sent:
    """Open a referral with its first message."""
    def stage(batch: OutgoingBatch) -> None:
        batch.stage(kind, recipient, body, seal=seal)
    return staged(ctx, referral_id, stage, request)


def refer_clue(ctx: NodeContext, body: Mapping, recipient: str, *, seal: bool = False,
               copy_to: str | None = PROCURATORATE, referral_id: str | None = None,
               request: Request | None = None) -> Sent:
    """Transfer a clue; a suspected-crime clue is copied to the procuratorate in the same
    transaction (抄送同级人民检察院), so there is never a transfer without its copy."""
    def stage(batch: OutgoingBatch) -> None:
        transfer = batch.stage(CLUE_TRANSFER, recipient, body, seal=seal)
        if body.get("category") == SUSPECTED_CRIME and copy_to:
            batch.stage(COPY_NOTICE, copy_to, copy_notice_body(transfer, recipient), seal=seal)
    return staged(ctx, referral_id, stage, request)


@dataclass(frozen=True)
class ClueItem:
    """One clue of a batch: its body, its recipient, and the caller's request id (a row key
    of an import, say), so that sending the batch again sends nothing twice."""

    body: Mapping
    recipient: str
    request: Request | None = None


def refer_clues(ctx: NodeContext, items: list[ClueItem], *, seal: bool = False,
                copy_to: str | None = PROCURATORATE) -> list[Sent | Refused]:
    """Many clue transfers (each its own referral, with its copy) in one transaction; a clue
    refused (its body, its route) is left out alone, with its rule."""
    def stage_for(item: ClueItem):
        def stage(batch: OutgoingBatch) -> None:
            transfer = batch.stage(CLUE_TRANSFER, item.recipient, item.body, seal=seal)
            if item.body.get("category") == SUSPECTED_CRIME and copy_to:
                batch.stage(COPY_NOTICE, copy_to, copy_notice_body(transfer, item.recipient), seal=seal)
        return stage
    return staged_many(ctx, [Call(stage_for(item), None, item.request) for item in items])


def copy_notice_body(transfer: SignedMessage, recipient: str) -> dict:
    body = transfer.plain_body
    return {
        "transfer_message_id": transfer.message_id,
        "transfer_message_sha256": transfer.sha256,
        "transferred_to": recipient,
        "clue_no": body["clue_no"],
        "category": body["category"],
        "title": body["title"],
        "amount_involved_fen": body["amount_involved_fen"],
    }


def reply(ctx: NodeContext, message_id: str, kind: str, body: Mapping, *,
          recipients: Iterable[str] | None = None, seal: bool = False,
          request: Request | None = None) -> Sent:
    """Answer a message this node holds: to its other party, in its referral."""
    with ctx.store.transaction() as repo:
        message = repo.message(message_id)
        if message is None:
            raise UnknownMessage(f"{ctx.agency} holds no message {message_id}")
        referral_id = message.referral_id
        counterpart = message.sender if message.sender != ctx.agency else message.recipient

    def stage(batch: OutgoingBatch) -> None:
        for recipient in recipients or [counterpart]:
            batch.stage(kind, recipient, body, in_reply_to=message_id, seal=seal)
    return staged(ctx, referral_id, stage, request)


def follow_up(ctx: NodeContext, referral_id: str, kind: str, body: Mapping, recipients: Iterable[str], *,
              in_reply_to: str | None = None, seal: bool = False, request: Request | None = None) -> Sent:
    """Send one message of a known referral to one or more agencies, in one transaction."""
    recipients = list(recipients)

    def stage(batch: OutgoingBatch) -> None:
        if batch.referral is None:
            raise UnknownReferral(f"{ctx.agency} has no referral {referral_id}")
        for recipient in recipients:
            batch.stage(kind, recipient, body, in_reply_to=in_reply_to, seal=seal)
    return staged(ctx, referral_id, stage, request)
