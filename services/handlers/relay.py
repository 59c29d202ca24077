"""The outbox relay: publish what is committed, resend what has no receipt, give up loudly.

Publishing happens outside any transaction, many messages at once (the broker confirms them
together); what happened is recorded in one transaction afterwards. A crash after publishing
and before recording it only means the same bytes are published again, which the recipient's
inbox absorbs. Delivery states change only through services/domain/delivery.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Mapping

from adapters.storage.writes import Writes
from services.domain import delivery as d
from services.protocol import rules

from .context import NodeContext

log = logging.getLogger(__name__)

# publish_many(items) with items (message_id, raw, routing_key): {message_id: PublishFailed}
# for those the broker did not take; the others were confirmed.
PublishMany = Callable[[list[tuple[str, bytes, str]]], Mapping[str, "PublishFailed"]]
Publish = Callable[[bytes, str], None]

DEFAULT_LIMIT = 500


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


def one_by_one(publish: Publish) -> PublishMany:
    """A PublishMany from a single-message ``publish(raw, routing_key)``."""
    def publish_many(items):
        failures = {}
        for message_id, raw, key in items:
            try:
                publish(raw, key)
            except PublishFailed as error:
                failures[message_id] = error
        return failures
    return publish_many


def _as_many(publisher) -> PublishMany:
    """``publisher``: an object with ``publish_many`` (an EnvelopePublisher), or a plain
    ``publish(raw, routing_key)`` callable."""
    many = getattr(publisher, "publish_many", None)
    return many if many is not None else one_by_one(publisher)


def relay_due(ctx: NodeContext, publisher, *, limit: int = DEFAULT_LIMIT, resends: bool = True,
              message_ids: Iterable[str] | None = None,
              busy: Callable[[str], bool] | None = None) -> RelayReport:
    """Publish what is due with ``publisher`` (see _as_many).

    ``resends=False`` publishes only what was never published: a node whose own queue is
    backed up must not take its unprocessed receipts for silence. ``busy(recipient)`` true
    holds resends to that recipient (its queue still holds messages: ours may be among them);
    neither counts as an attempt, nor brings a message nearer to failing. ``message_ids``
    limits it to those (what a transaction has just committed)."""
    publish_many = _as_many(publisher)
    report = RelayReport()
    now = ctx.clock()
    waiting: set[str] = set()
    if busy is not None:
        # Asked of the broker with no transaction open (on SQLite an open one holds every
        # other writer of the node); the rows are read again below.
        with ctx.store.transaction() as repo:
            recipients = {row["recipient"] for row in repo.due_rows(now, limit, resends=resends,
                                                                    message_ids=message_ids)
                          if row["state"] == d.PUBLISHED}
        waiting = {recipient for recipient in recipients if busy(recipient)}
    with ctx.store.transaction() as repo:
        due = repo.due_rows(now, limit, resends=resends, message_ids=message_ids)
        if waiting:
            held = [row for row in due if row["state"] == d.PUBLISHED and row["recipient"] in waiting]
            if held:
                # Not now, and not an attempt: look again after another receipt timeout.
                repo.publication_updates([{"b_message_id": row["message_id"], "b_expected": row["state"],
                                           "next_attempt_at": now + ctx.policy.receipt_timeout} for row in held])
                due = [row for row in due if row not in held]
        gave_up = [row for row in due if row["state"] == d.PUBLISHED and row["attempts"] >= ctx.policy.max_attempts]
        if gave_up:
            _give_up(ctx, repo, gave_up, now, report)
    due = [row for row in due if row not in gave_up]
    return _publish(ctx, publish_many, due, report)


def committed_row(signed, *, needs_receipt: bool) -> dict:
    """What the relay needs of a message a running node has just committed as handed over
    (sending.record_outbound): publishing it needs no read of the database."""
    envelope = signed.envelope
    step = d.transition(d.HANDED_OVER, d.PENDING, needs_receipt)
    return {"message_id": signed.message_id, "routing_key": f"{envelope['recipient']}.{envelope['kind']}",
            "state": step.to, "attempts": int(step.publication),
            "needs_receipt": needs_receipt, "raw": signed.raw, "referral_id": envelope["referral_id"],
            "kind": envelope["kind"], "recipient": envelope["recipient"]}


def publish_committed(ctx: NodeContext, publisher, rows: list[dict]) -> RelayReport:
    """Publish messages just committed as handed over (rows from ``committed_row``). Only what
    the broker did not take is written (NOT_TAKEN: pending again, retried by the relay); the
    rest was recorded by the committing transaction already."""
    report = RelayReport()
    if not rows:
        return report
    try:
        failures = _as_many(publisher)([(row["message_id"], row["raw"], row["routing_key"]) for row in rows])
    except Exception as error:  # the connection failed: none of them is known to be taken
        failures = {row["message_id"]: error for row in rows}
    report.published = [row["message_id"] for row in rows if row["message_id"] not in failures]
    if failures:
        report.errors.update({message_id: str(error) for message_id, error in failures.items()})
        log.warning("%s: the broker did not take %d message(s) just committed, e.g. %s", ctx.agency,
                    len(failures), next(iter(report.errors.values())))
        put_back(ctx, [row for row in rows if row["message_id"] in failures],
                 retry_at=ctx.clock() + ctx.policy.publish_retry, errors=report.errors)
    return report


def put_back(ctx: NodeContext, rows: list[dict], *, retry_at, errors: dict | None = None) -> None:
    """Messages committed as handed over that were not published after all (the broker did
    not take them, or this process is a standby without the relay lease): pending again,
    without an attempt counted, for the relay at ``retry_at``."""
    updates, statuses = [], {}
    for row in rows:
        error = (errors or {}).get(row["message_id"])
        updates.append({"b_message_id": row["message_id"], "b_expected": row["state"],
                        "state": d.next_delivery_state(d.NOT_TAKEN, row["state"], row["needs_receipt"]),
                        "attempts": 0, "last_published_at": None,
                        "last_error": str(error)[:2000] if error is not None else None,
                        "next_attempt_at": retry_at})
        handed = d.message_status_after(d.HANDED_OVER, d.PENDING, needs_receipt=row["needs_receipt"])
        statuses[row["message_id"]] = (handed, d.message_status_after(d.NOT_TAKEN, handed,
                                                                      needs_receipt=row["needs_receipt"]))
    if updates:
        with ctx.store.transaction() as repo:
            repo.publication_updates(updates)
            repo.message_statuses(statuses)


def _publish(ctx: NodeContext, publish_many: PublishMany, due: list[dict], report: RelayReport) -> RelayReport:
    if not due:
        return report
    failures = publish_many([(row["message_id"], row["raw"], row["routing_key"]) for row in due])
    _record(ctx, due, failures, report)
    return report


def _give_up(ctx: NodeContext, repo, rows: list[dict], now: datetime, report: RelayReport) -> None:
    updates, statuses, writes = [], {}, Writes()
    for row in rows:
        new = d.next_delivery_state(d.GAVE_UP, row["state"], row["needs_receipt"])
        updates.append({"b_message_id": row["message_id"], "b_expected": row["state"], "state": new,
                        "last_error": f"no receipt after {row['attempts']} attempts"})
        statuses[row["message_id"]] = (d.PUBLISHED, d.message_status_after(d.GAVE_UP, d.PUBLISHED,
                                                                            needs_receipt=True))
        writes.audit_event(now, "delivery.failed", referral_id=row["referral_id"], message_id=row["message_id"],
                           detail={"attempts": row["attempts"], "recipient": row["recipient"]})
        log.error("%s: giving up on %s %s to %s after %d attempts without a receipt",
                  ctx.agency, row["kind"], row["message_id"], row["recipient"], row["attempts"])
        report.failed.append(row["message_id"])
    repo.publication_updates(updates)
    repo.message_statuses(statuses)
    repo.write(writes)


def _record(ctx: NodeContext, due: list[dict], failures: Mapping[str, PublishFailed], report: RelayReport) -> None:
    now = ctx.clock()
    confirmed, refused, statuses, writes = [], [], {}, Writes()
    for row in due:
        message_id = row["message_id"]
        error = failures.get(message_id)
        if error is not None:
            # The broker did not take it: nothing was delivered, so this is no attempt. It stays
            # as it is and is tried again, for as long as it takes.
            refused.append({"b_message_id": message_id, "b_expected": row["state"], "state": row["state"],
                            "last_error": str(error)[:2000], "next_attempt_at": now + ctx.policy.publish_retry})
            report.errors[message_id] = str(error)
            continue
        step = d.transition(d.CONFIRMED, row["state"], row["needs_receipt"])
        if step is None:  # pragma: no cover - due rows are always pending or published
            continue
        attempts = row["attempts"] + int(step.publication)
        confirmed.append({"b_message_id": message_id, "b_expected": row["state"], "state": step.to,
                          "attempts": attempts, "last_published_at": now, "last_error": None,
                          "next_attempt_at": ctx.policy.next_resend(now, attempts) if row["needs_receipt"] else now})
        if row["state"] == d.PENDING:
            statuses[message_id] = (d.PENDING, d.message_status_after(d.CONFIRMED, d.PENDING,
                                                                       needs_receipt=row["needs_receipt"]))
        (report.resent if row["state"] == d.PUBLISHED else report.published).append(message_id)
    if refused:
        log.warning("%s: the broker did not take %d message(s), e.g. %s", ctx.agency, len(refused),
                    next(iter(report.errors.values())))
    resends = {row["message_id"]: row for row in due
               if row["message_id"] not in failures and row["attempts"] >= 1 and row["needs_receipt"]}
    with ctx.store.transaction() as repo:
        if resends:
            # A resend is audited only where it is recorded: a receipt that arrived while it was
            # being published has won (the guarded update below leaves that row alone). Locked,
            # so the state read stays true until the commit.
            held = repo.outbox_rows(resends, for_update=True)
            for message_id, row in resends.items():
                if held.get(message_id, {}).get("state") == row["state"]:
                    writes.audit_event(now, "delivery.resent", referral_id=row["referral_id"], message_id=message_id,
                                       detail={"attempt": row["attempts"] + 1})
        # Guarded by the state read before publishing: a receipt that arrived meanwhile wins.
        repo.publication_updates(confirmed)
        repo.publication_updates(refused)
        repo.message_statuses(statuses)
        repo.write(writes)


class NotRetryable(Exception):
    rule = rules.OUTBOX_NOT_RETRYABLE

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
        if entry.state != d.FAILED:
            raise NotRetryable(f"{message_id} is {entry.state}, not failed")
        message = repo.message(message_id)
        entry.state = d.next_delivery_state(d.RETRIED, entry.state, entry.needs_receipt)
        entry.attempts, entry.next_attempt_at = 0, now
        message.status = d.message_status_after(d.RETRIED, message.status, needs_receipt=entry.needs_receipt)
        repo.append_audit(now, "delivery.retried", referral_id=message.referral_id, message_id=message_id,
                          detail={"previous_error": entry.last_error})
