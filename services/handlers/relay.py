"""The outbox relay: publish what is committed, resend what has no receipt, give up loudly.

Publishing happens outside any transaction. A crash after publishing and before recording it
only means the message is published again, which the recipient's inbox absorbs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from adapters.storage.tables import DONE, FAILED, PENDING, PUBLISHED

from .context import NodeContext

log = logging.getLogger(__name__)

Publish = Callable[[bytes, str], None]


class PublishFailed(Exception):
    """The broker did not take the message (unroutable, not confirmed, unreachable)."""

    def __init__(self, rule: str, detail: str):
        super().__init__(f"[{rule}] {detail}")
        self.rule = rule
        self.detail = detail


@dataclass
class RelayReport:
    published: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Due:
    message_id: str
    routing_key: str
    raw: bytes
    state: str
    attempts: int
    needs_receipt: bool
    referral_id: str


def relay_due(ctx: NodeContext, publish: Publish, *, limit: int = 100) -> RelayReport:
    report = RelayReport()
    now = ctx.clock()
    with ctx.store.transaction() as repo:
        due = []
        for entry in repo.due_outbox(now, limit):
            message = repo.message(entry.message_id)
            if entry.state == PUBLISHED and entry.attempts >= ctx.policy.max_attempts:
                entry.state = FAILED
                entry.last_error = f"no receipt after {entry.attempts} attempts"
                message.status = FAILED
                repo.append_audit(now, "delivery.failed", referral_id=message.referral_id,
                                  message_id=message.message_id,
                                  detail={"attempts": entry.attempts, "recipient": message.recipient})
                log.error("%s: giving up on %s %s to %s after %d attempts without a receipt",
                          ctx.agency, message.kind, message.message_id, message.recipient, entry.attempts)
                report.failed.append(message.message_id)
                continue
            due.append(_Due(entry.message_id, entry.routing_key, message.raw, entry.state,
                            entry.attempts, entry.needs_receipt, message.referral_id))

    for item in due:
        try:
            publish(item.raw, item.routing_key)
        except PublishFailed as error:
            _record_failure(ctx, item, error)
            report.errors[item.message_id] = str(error)
            continue
        _record_publish(ctx, item)
        (report.resent if item.state == PUBLISHED else report.published).append(item.message_id)
    return report


def _record_publish(ctx: NodeContext, item: _Due) -> None:
    now = ctx.clock()
    with ctx.store.transaction() as repo:
        entry = repo.outbox_entry(item.message_id)
        if entry.state not in (PENDING, PUBLISHED):
            return  # a receipt arrived meanwhile
        entry.attempts += 1
        entry.last_published_at = now
        entry.last_error = None
        if entry.needs_receipt:
            entry.state = PUBLISHED
            entry.next_attempt_at = ctx.policy.next_resend(now, entry.attempts)
        else:
            entry.state = DONE
        message = repo.message(item.message_id)
        if message.status == PENDING:
            message.status = PUBLISHED if entry.needs_receipt else DONE
        if entry.attempts > 1 and entry.needs_receipt:
            repo.append_audit(now, "delivery.resent", referral_id=item.referral_id,
                              message_id=item.message_id, detail={"attempt": entry.attempts})


def _record_failure(ctx: NodeContext, item: _Due, error: PublishFailed) -> None:
    now = ctx.clock()
    log.warning("%s: publishing %s failed: %s", ctx.agency, item.message_id, error)
    with ctx.store.transaction() as repo:
        # The broker did not take it: nothing was delivered, so this is no attempt. It stays
        # in the outbox and is tried again, for as long as it takes.
        entry = repo.outbox_entry(item.message_id)
        entry.last_error = str(error)[:2000]
        entry.next_attempt_at = now + ctx.policy.publish_retry


class NotRetryable(Exception):
    rule = "outbox.not_retryable"

    def __init__(self, detail: str):
        super().__init__(f"[{self.rule}] {detail}")
        self.detail = detail


def retry_failed(ctx: NodeContext, message_id: str) -> None:
    """Give a message marked failed a fresh set of attempts (an operator's decision, audited):
    the same bytes are published again at the next relay."""
    now = ctx.clock()
    with ctx.store.transaction() as repo:
        entry = repo.outbox_entry(message_id)
        if entry is None:
            raise NotRetryable(f"{ctx.agency} has no outbox entry {message_id}")
        if entry.state != FAILED:
            raise NotRetryable(f"{message_id} is {entry.state}, not failed")
        message = repo.message(message_id)
        entry.state, entry.attempts, entry.next_attempt_at = PENDING, 0, now
        message.status = PENDING
        repo.append_audit(now, "delivery.retried", referral_id=message.referral_id, message_id=message_id,
                          detail={"previous_error": entry.last_error})
