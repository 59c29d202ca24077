"""Sending: the lifecycle check, the signed envelope and the outbox row commit together.

Each call stages its messages in memory (an OutgoingBatch per referral) and writes them with
a few bulk statements in one transaction; many calls can share one transaction
(``staged_many``: a batch of clue transfers, an import), each succeeding or failing alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Mapping

from adapters.storage.exceptions import DuplicateRequest
from adapters.storage.repository import NodeRepository
from adapters.storage.writes import Writes
from schemas.registry import RECEIPT, REWARD_PAYMENT
from services.domain import delivery as d
from services.domain.delivery import PENDING
from services.domain.exceptions import DomainError, ReferralMismatch, UnknownMessage
from services.domain.lifecycle import NEW, next_state
from services.domain.money import REWARD_KINDS, enforce_reward
from services.protocol.compose import SignedMessage
from services.protocol.exceptions import ComposeError
from services.protocol.ids import new_id
from services.protocol.rules import REWARD_RULE_BROKEN

from .context import NodeContext
from .records import OUTBOUND, message_row, outbox_row
from .referrals import ReferralView
from .requests import Request, RequestReused, Sent


class OutgoingBatch:
    """Messages of one referral, staged in one transaction."""

    def __init__(self, ctx: NodeContext, repo: NodeRepository, referral_id: str, row: Mapping | None,
                 writes: Writes):
        self.ctx = ctx
        self.repo = repo
        self.referral_id = referral_id
        self.view = ReferralView(referral_id, row)
        self.writes = writes
        self.sent: list[SignedMessage] = []
        # A kind sent to several agencies at once (a judgment to the bureau, the procuratorate
        # and the police) moves the referral once.
        self._fanned_out: dict[str, str] = {}

    @property
    def referral(self):
        """Whether this node knows the referral (before or through this batch)."""
        return self.view if self.view.known else None

    @property
    def state(self) -> str:
        return self.view.state or NEW

    def stage(self, kind: str, recipient: str, body: Mapping, *, in_reply_to: str | None = None,
              seal: bool = False) -> SignedMessage:
        if in_reply_to is not None:
            answered = self.repo.message_rows([in_reply_to]).get(in_reply_to)
            if answered is None:
                raise UnknownMessage(f"message {in_reply_to} is not known to {self.ctx.agency}")
            if answered["referral_id"] != self.referral_id:
                raise ReferralMismatch(
                    f"message {in_reply_to} belongs to referral {answered['referral_id']}, not {self.referral_id}")
        before = self.state
        if kind in self._fanned_out:
            new_state = self._fanned_out[kind]
        else:
            new_state = next_state(kind, before, body)
            self._fanned_out[kind] = new_state
        flagged = self._money_rules(kind, body, in_reply_to)
        now = self.ctx.clock()
        signed = self.ctx.composer.compose(kind, recipient, body, referral_id=self.referral_id,
                                           in_reply_to=in_reply_to, sent_at=now, seal=seal)
        record_outbound(self.writes, signed, now, needs_receipt=kind != RECEIPT, ctx=self.ctx)
        if kind != RECEIPT:
            self.view.advance(self.writes, kind=kind, body=body, new_state=new_state,
                              message_id=signed.message_id, opened_by=self.ctx.agency, now=now)
            self.writes.audit_event(now, "message.sent", referral_id=self.referral_id,
                                    message_id=signed.message_id,
                                    detail={"kind": kind, "recipient": recipient, "sha256": signed.sha256,
                                            "from_state": before, "to_state": new_state})
        if flagged is not None:
            self.writes.audit_event(now, "message.flagged", referral_id=self.referral_id,
                                    message_id=signed.message_id,
                                    detail={"kind": kind, "rule": REWARD_RULE_BROKEN, "detail": flagged.detail})
        self.sent.append(signed)
        return signed

    def _money_rules(self, kind: str, body: Mapping, in_reply_to: str | None):
        """A reward amount that breaks the jurisdiction's rule is refused (RewardRuleBroken);
        one the rule only flags is returned, to be audited."""
        if self.ctx.money_rules is None or kind not in REWARD_KINDS:
            return None
        request = None
        if kind == REWARD_PAYMENT and in_reply_to is not None:
            answered = self.repo.message(in_reply_to)  # the request this payment answers
            request = answered.body if answered is not None else None
        return enforce_reward(self.ctx.money_rules, kind, body, request)


def record_outbound(writes: Writes, signed: SignedMessage, now, *, needs_receipt: bool,
                    ctx: NodeContext | None = None) -> None:
    """The signed message and its outbox row, to be written with the transaction's writes:
    pending for the relay, or (a running node, ``ctx.publishes_at_once``) handed over, as the
    node publishes it right after the commit."""
    row = outbox_row(signed.envelope, needs_receipt=needs_receipt, now=now)
    status = PENDING
    if ctx is not None and ctx.publishes_at_once:
        step = d.transition(d.HANDED_OVER, d.PENDING, needs_receipt)
        attempts = int(step.publication)
        row.update(state=step.to, attempts=attempts, last_published_at=now,
                   next_attempt_at=ctx.policy.next_resend(now, attempts) if needs_receipt else now)
        status = d.message_status_after(d.HANDED_OVER, PENDING, needs_receipt=needs_receipt)
    writes.messages.append(message_row(signed.envelope, signed.raw, direction=OUTBOUND, stored_at=now,
                                       status=status, body=signed.plain_body, sha256=signed.sha256))
    writes.outbox.append(row)


def store_outbound(repo: NodeRepository, signed: SignedMessage, now, *, needs_receipt: bool) -> None:
    """Write one signed message and its outbox row now (the office's urges)."""
    writes = Writes()
    record_outbound(writes, signed, now, needs_receipt=needs_receipt)
    repo.session.flush()
    repo.write(writes)


Stage = Callable[[OutgoingBatch], None]


@dataclass(frozen=True)
class Call:
    """One state-changing call: what to stage, on which referral (None: a new one), once per
    request id."""

    stage: Stage
    referral_id: str | None = None
    request: Request | None = None


class Refused(Exception):
    """A call of a batch that was refused (its rule and detail); the others went through."""

    def __init__(self, error: DomainError | ComposeError):
        super().__init__(str(error))
        self.error = error
        self.rule = error.rule
        self.detail = error.detail


def staged(ctx: NodeContext, referral_id: str | None, stage: Stage, request: Request | None = None) -> Sent:
    """Run ``stage`` on one batch in one transaction; with a request id, once only: a repeat
    returns what the first call returned, and sends nothing."""
    [result] = staged_many(ctx, [Call(stage, referral_id, request)], refuse_alone=False)
    return result


def staged_many(ctx: NodeContext, calls: list[Call], *, refuse_alone: bool = True) -> list[Sent | Refused]:
    """Several calls in one transaction. With ``refuse_alone``, a call refused by the
    lifecycle, a schema or a route is left out (its entry is a Refused) and the others commit;
    otherwise its error is raised and nothing commits."""
    for attempt in (1, 2):
        try:
            return _staged_once(ctx, calls, refuse_alone)
        except DuplicateRequest:  # a concurrent call with one of these ids committed first
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _staged_once(ctx: NodeContext, calls: list[Call], refuse_alone: bool) -> list[Sent | Refused]:
    with ctx.store.transaction() as repo:
        return stage_calls(ctx, repo, calls, refuse_alone=refuse_alone)


def stage_calls(ctx: NodeContext, repo: NodeRepository, calls: list[Call], *,
                refuse_alone: bool = True) -> list[Sent | Refused]:
    """Stage and write ``calls`` in the caller's transaction (see staged_many); raises
    DuplicateRequest when a concurrent transaction stored one of their request ids first."""
    results: list[Sent | Refused | None] = [None] * len(calls)
    done = repo.control_request_rows([c.request.request_id for c in calls if c.request])
    referral_ids = [c.referral_id for c in calls if c.referral_id]
    rows = repo.referral_rows(referral_ids)
    writes = Writes()
    views: dict[str, OutgoingBatch] = {}
    for index, call in enumerate(calls):
        if call.request is not None and call.request.request_id in done:
            results[index] = _repeat(done[call.request.request_id], call.request)
            continue
        item = Writes()
        referral_id = call.referral_id or new_id()
        batch = OutgoingBatch(ctx, repo, referral_id, rows.get(referral_id), item)
        if referral_id in views:  # a later call on a referral this transaction moved
            batch.view = views[referral_id].view
        before = copy.copy(batch.view)
        try:
            call.stage(batch)
        except (DomainError, ComposeError) as error:
            if not refuse_alone:
                raise
            batch.view.__dict__.update(before.__dict__)  # as if the refused call never ran
            results[index] = Refused(error)
            continue
        views[referral_id] = batch
        sent = Sent.of(batch.sent, call.request)
        if call.request is not None:
            item.control_requests.append({"request_id": call.request.request_id, "action": call.request.action,
                                          "at": ctx.clock(), "result": sent.summary})
            done[call.request.request_id] = {"action": call.request.action, "result": sent.summary}
        writes.extend(item)
        results[index] = sent
    repo.write(writes)
    return results


def _repeat(done: Mapping, request: Request) -> Sent:
    if done["action"] != request.action:
        raise RequestReused(f"request id {request.request_id} was used for {done['action']}, not {request.action}")
    return Sent(dict(done["result"]), (), True, request.request_id)


def send(ctx: NodeContext, kind: str, recipient: str, body: Mapping, *, referral_id: str | None = None,
         in_reply_to: str | None = None, seal: bool = False) -> SignedMessage:
    """One message in its own transaction (tests and small tools)."""
    def stage(batch: OutgoingBatch) -> None:
        batch.stage(kind, recipient, body, in_reply_to=in_reply_to, seal=seal)
    return staged(ctx, referral_id, stage)[0]
