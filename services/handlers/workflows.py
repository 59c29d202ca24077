"""What a clerk does: start a referral, answer a message, follow a referral up.

Each action is a ``sending.Call`` (what to stage, on which referral, once per request id).
``run`` stages one in its own transaction; a node hands many at once to its batcher
(services/nodes/batching.py), which stages them together with sending.staged_many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from schemas.registry import CLUE_TRANSFER, COPY_NOTICE
from services.domain.exceptions import UnknownMessage, UnknownReferral
from services.protocol.compose import SignedMessage

from .context import NodeContext
from .requests import Request, Sent
from .sending import Call, OutgoingBatch, Refused, staged_many

SUSPECTED_CRIME = "suspected_crime"


def run(ctx: NodeContext, call: Call) -> Sent:
    """One call in its own transaction; a refusal is raised as the error it is."""
    [result] = staged_many(ctx, [call])
    if isinstance(result, Refused):
        raise result.error
    return result


# -- the calls ------------------------------------------------------------------------------------
def start_call(kind: str, recipient: str, body: Mapping, *, seal: bool = False, referral_id: str | None = None,
               request: Request | None = None) -> Call:
    """Open a referral with its first message."""
    def stage(batch: OutgoingBatch) -> None:
        batch.stage(kind, recipient, body, seal=seal)
    return Call(stage, referral_id, request)


def refer_clue_call(body: Mapping, recipient: str, *, copy_to: str | None, seal: bool = False,
                    referral_id: str | None = None, request: Request | None = None) -> Call:
    """Transfer a clue; a suspected-crime clue is copied to ``copy_to`` (the agency's refer
    action's, ROLES_FILE: the procuratorate) in the same transaction (抄送同级人民检察院), so
    there is never a transfer without its copy. ``copy_to`` None: no copy."""
    def stage(batch: OutgoingBatch) -> None:
        transfer = batch.stage(CLUE_TRANSFER, recipient, body, seal=seal)
        if body.get("category") == SUSPECTED_CRIME and copy_to:
            batch.stage(COPY_NOTICE, copy_to, copy_notice_body(transfer, recipient), seal=seal)
    return Call(stage, referral_id, request)


def reply_call(ctx: NodeContext, message_id: str, kind: str, body: Mapping, *,
               recipients: Iterable[str] | None = None, seal: bool = False, request: Request | None = None) -> Call:
    """Answer a message this node holds: to its other party, in its referral."""
    with ctx.store.transaction() as repo:
        message = repo.message_rows([message_id]).get(message_id)
    if message is None:
        raise UnknownMessage(f"{ctx.agency} holds no message {message_id}")
    counterpart = message["sender"] if message["sender"] != ctx.agency else message["recipient"]
    recipients = list(recipients or [counterpart])

    def stage(batch: OutgoingBatch) -> None:
        for recipient in recipients:
            batch.stage(kind, recipient, body, in_reply_to=message_id, seal=seal)
    return Call(stage, message["referral_id"], request)


def follow_up_call(ctx: NodeContext, referral_id: str, kind: str, body: Mapping, recipients: Iterable[str], *,
                   in_reply_to: str | None = None, seal: bool = False, request: Request | None = None) -> Call:
    """One message of a known referral to one or more agencies, in one transaction."""
    recipients = list(recipients)

    def stage(batch: OutgoingBatch) -> None:
        if batch.referral is None:
            raise UnknownReferral(f"{ctx.agency} has no referral {referral_id}")
        for recipient in recipients:
            batch.stage(kind, recipient, body, in_reply_to=in_reply_to, seal=seal)
    return Call(stage, referral_id, request)


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


@dataclass(frozen=True)
class ClueItem:
    """One clue of a batch: its body, its recipient, and the caller's request id (a row key
    of an import, say), so that sending the batch again sends nothing twice."""

    body: Mapping
    recipient: str
    request: Request | None = None


def clue_calls(items: list[ClueItem], *, copy_to: str | None, seal: bool = False) -> list[Call]:
    return [refer_clue_call(item.body, item.recipient, seal=seal, copy_to=copy_to, request=item.request)
            for item in items]


# -- the same, each in its own transaction (the command line, tests) --------------------------------
def start(ctx: NodeContext, kind: str, recipient: str, body: Mapping, **options) -> Sent:
    return run(ctx, start_call(kind, recipient, body, **options))


def refer_clue(ctx: NodeContext, body: Mapping, recipient: str, **options) -> Sent:
    return run(ctx, refer_clue_call(body, recipient, **options))


def reply(ctx: NodeContext, message_id: str, kind: str, body: Mapping, **options) -> Sent:
    return run(ctx, reply_call(ctx, message_id, kind, body, **options))


def follow_up(ctx: NodeContext, referral_id: str, kind: str, body: Mapping, recipients: Iterable[str],
              **options) -> Sent:
    return run(ctx, follow_up_call(ctx, referral_id, kind, body, recipients, **options))


def refer_clues(ctx: NodeContext, items: list[ClueItem], **options) -> list[Sent | Refused]:
    """Many clue transfers (each its own referral, with its copy) in one transaction; a clue
    refused (its body, its route) is left out alone, with its rule."""
    return staged_many(ctx, clue_calls(items, **options))
