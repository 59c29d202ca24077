"""Reconciliation between two agencies (docs/protocol.md §20): a node sends a peer a signed
summary of what it sent it since the last agreed point; the peer answers with what it holds;
what the peer lacks is sent again, byte for byte, through the outbox.

Both messages are ordinary signed envelopes with receipts, but part of no referral: each is its
own referral (referral_id = its own message_id), so no referral row, lifecycle or deadline ever
sees them. Sending a summary is one transaction (the summary, its outbox row, the round);
answering one, and acting on an answer, happen in the receiving transaction of the message
(services/handlers/receiving.py hands them here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

from adapters.crypto.timestamps import format_timestamp
from adapters.storage.writes import Writes
from schemas.bodies.reconciliation import MAX_WINDOW_IDS
from schemas.registry import RECONCILIATION_ANSWER, RECONCILIATION_SUMMARY
from services.domain import delivery as d
from services.domain import reconciliation as r
from services.domain.exceptions import DomainError
from services.protocol import rules
from services.protocol.compose import SignedMessage
from services.protocol.exceptions import ComposeError
from services.protocol.ids import new_id
from services.protocol.verify import VerifiedMessage

from .context import NodeContext
from .records import INBOUND, OUTBOUND
from .requests import Request, RequestReused
from .sending import record_outbound

DEFAULT_SETTLE = timedelta(seconds=60)
ACTION = "reconcile"


class PeerInvalid(DomainError):
    rule = rules.RECONCILIATION_PEER_INVALID


@dataclass(frozen=True)
class SummarySent:
    """A summary committed (None when the request id was done before) and what the caller is told."""

    signed: SignedMessage | None
    result: dict


# -- sending a summary (A) ----------------------------------------------------------------------
def send_summary(ctx: NodeContext, peer: str, *, settle: timedelta = DEFAULT_SETTLE,
                 request: Request | None = None) -> SummarySent:
    """Commit a summary to ``peer`` of what this node sent it since the last agreed point, up
    to ``settle`` before now; published by the relay (or at once by a running node)."""
    if not isinstance(peer, str) or peer == ctx.agency or peer not in ctx.verifier.agencies:
        raise PeerInvalid(f"{ctx.agency} cannot reconcile with {peer!r}: not another configured agency")
    now = ctx.clock()
    with ctx.store.transaction() as repo:
        if request is not None:
            done = repo.control_request_rows([request.request_id]).get(request.request_id)
            if done is not None:
                if done["action"] != request.action:
                    raise RequestReused(f"request id {request.request_id} was used for {done['action']}, "
                                        f"not {request.action}")
                return SummarySent(None, {**done["result"], "repeated": True})
        start = repo.agreed_until(peer)
        until = r.window_until(now, settle)
        if start is not None and until <= start:  # a clock set back: an empty window after the agreed point
            until = start + timedelta(microseconds=1)
        entries = repo.window_messages(direction=OUTBOUND, peer=peer, window_from=start, until=until,
                                       excluded_kinds=r.NOT_COUNTED, limit=MAX_WINDOW_IDS + 1)
        window, entries = r.capped(entries, r.Window(start, until))
        tally = r.Tally.of(r.in_order(entries))
        body = {"window_from": window.start, "window_until": window.until, "count": tally.count,
                "ids_sha256": tally.ids_sha256}
        message_id = new_id()
        try:
            signed = ctx.composer.compose(RECONCILIATION_SUMMARY, peer, body, referral_id=message_id,
                                          message_id=message_id, sent_at=now)
        except ComposeError as error:
            raise PeerInvalid(f"{ctx.agency} cannot send a reconciliation summary to {peer}: "
                              f"[{error.rule}] {error.detail}") from None
        writes = Writes()
        record_outbound(writes, signed, now, needs_receipt=True, ctx=ctx)
        writes.reconciliations.append({
            "summary_message_id": message_id, "peer": peer, "window_from": window.start,
            "window_until": window.until, "count": tally.count, "ids_sha256": tally.ids_sha256, "sent_at": now})
        result = summary_result(message_id, peer, window, tally)
        writes.audit_event(now, "reconciliation.summary_sent", referral_id=message_id, message_id=message_id,
                           detail={k: v for k, v in result.items() if k != "summary_message_id"})
        if request is not None:
            writes.control_requests.append({"request_id": request.request_id, "action": request.action,
                                            "at": now, "result": result})
        repo.write(writes)
    return SummarySent(signed, {**result, "repeated": False})


def summary_result(message_id: str, peer: str, window: r.Window, tally: r.Tally) -> dict:
    return {"summary_message_id": message_id, "peer": peer,
            "window_from": format_timestamp(window.start) if window.start else None,
            "window_until": format_timestamp(window.until), "count": tally.count, "ids_sha256": tally.ids_sha256}


def send_summaries(ctx: NodeContext, *, settle: timedelta = DEFAULT_SETTLE) -> list[SummarySent]:
    """The periodic round: a summary to every agency this node has sent a counted message to."""
    with ctx.store.transaction() as repo:
        peers = [p for p in repo.recipients_sent_to(r.NOT_COUNTED) if p != ctx.agency and p in ctx.verifier.agencies]
    return [send_summary(ctx, peer, settle=settle) for peer in peers]


# -- answering a summary (B), inside the receiving batch ---------------------------------------
def answer_summary(batch, verified: VerifiedMessage):
    """What this node holds from the summary's sender in its window, answered in the same
    transaction that stores the summary (``batch``: receiving._Batch)."""
    body = verified.body
    entries = batch.repo.window_messages(direction=INBOUND, peer=verified.sender, window_from=body["window_from"],
                                         until=body["window_until"], excluded_kinds=r.NOT_COUNTED)
    held = r.in_order(entries)
    tally = r.Tally.of(held)
    match = tally == r.Tally(body["count"], body["ids_sha256"])
    answer_body = {"summary_message_id": verified.message_id, "count": tally.count,
                   "ids_sha256": tally.ids_sha256, "match": match}
    if not match:
        answer_body.update(held_ids=held[:MAX_WINDOW_IDS], truncated=len(held) > MAX_WINDOW_IDS)
    answer_id = new_id()
    try:
        answer = batch.ctx.composer.compose(RECONCILIATION_ANSWER, verified.sender, answer_body,
                                            referral_id=answer_id, message_id=answer_id,
                                            in_reply_to=verified.message_id, sent_at=batch.now)
    except ComposeError as error:  # pragma: no cover - any configured agency may be answered
        return batch.reject(verified.raw, verified.envelope, error.rule, error.detail)
    outcome = batch.accept_apart(verified)
    record_outbound(batch.writes, answer, batch.now, needs_receipt=True, ctx=batch.ctx)
    batch.outgoing.append(answer)
    batch.writes.audit_event(batch.now, "reconciliation.answered", referral_id=verified.referral_id,
                             message_id=verified.message_id,
                             detail={"peer": verified.sender, "answer": answer_id, "match": match,
                                     "count": tally.count, "their_count": body["count"]})
    return outcome


# -- acting on an answer (A), inside the receiving batch ----------------------------------------
def take_answer(batch, verified: VerifiedMessage):
    """Check the answer against the round it answers; on agreement record the agreed point,
    else put what the peer lacks back to be sent again (the same bytes) and report what it
    holds that we did not send. Refusals are rejections with their rule."""
    body, summary_id = verified.body, verified.in_reply_to
    round_ = batch.repo.reconciliation_rows([summary_id] if summary_id else [], for_update=True).get(summary_id)
    problem = _answer_problem(verified, round_)
    if problem:
        return batch.reject(verified.raw, verified.envelope, *problem)
    now, writes, peer = batch.now, batch.writes, verified.sender
    update = {"answered_at": now, "answer_message_id": verified.message_id, "agreed": body["match"],
              "peer_count": body["count"]}
    if body["match"]:
        writes.audit_event(now, "reconciliation.agreed", referral_id=summary_id, message_id=verified.message_id,
                           detail={"peer": peer, "window_until": format_timestamp(round_["window_until"]),
                                   "count": round_["count"]})
    else:
        entries = batch.repo.window_messages(direction=OUTBOUND, peer=peer, window_from=round_["window_from"],
                                             until=round_["window_until"], excluded_kinds=r.NOT_COUNTED)
        found = r.compare(r.in_order(entries), body["held_ids"], truncated=body["truncated"])
        resent = _resend(batch, found.missing)
        update.update(missing=found.missing, resent=resent, unexpected=found.unexpected)
        if found.missing:
            writes.audit_event(now, "reconciliation.resent", referral_id=summary_id, message_id=verified.message_id,
                               detail={"peer": peer, "missing": found.missing, "resent": resent})
        if found.unexpected or body["truncated"]:
            writes.audit_event(now, "reconciliation.unexpected", referral_id=summary_id,
                               message_id=verified.message_id,
                               detail={"peer": peer, "unexpected": found.unexpected, "truncated": body["truncated"]})
    writes.reconciliation_updates.setdefault(summary_id, {}).update(update)
    return batch.accept_apart(verified)


def _answer_problem(verified: VerifiedMessage, round_: Mapping | None) -> tuple[str, str] | None:
    body, summary_id = verified.body, verified.in_reply_to
    if round_ is None or round_["peer"] != verified.sender:
        return (rules.RECONCILIATION_UNKNOWN_SUMMARY,
                f"the answer's in_reply_to {summary_id} is no reconciliation summary this node sent {verified.sender}")
    if round_["answered_at"] is not None:
        return (rules.RECONCILIATION_UNKNOWN_SUMMARY,
                f"summary {summary_id} was answered before (by {round_['answer_message_id']})")
    if body["summary_message_id"] != summary_id:
        return (rules.RECONCILIATION_SUMMARY_MISMATCH,
                f"summary_message_id {body['summary_message_id']} is not the in_reply_to {summary_id}")
    if not r.answer_is_consistent(r.Tally(round_["count"], round_["ids_sha256"]), body["count"], body["ids_sha256"],
                                  body["match"], body.get("held_ids"), bool(body.get("truncated"))):
        return (rules.RECONCILIATION_ANSWER_INCONSISTENT,
                "match does not say whether the answer's count and ids_sha256 are the summary's, "
                "or held_ids do not hash to ids_sha256")
    return None


def _resend(batch, missing: list[str]) -> list[str]:
    """Put each missing message's outbox entry back to be published again (the delivery state
    machine's RESEND_MISSING); one still on its way (pending, published) is left as it is."""
    entries = batch.repo.outbox_rows(missing)
    statuses = batch.repo.message_rows(missing)
    resent = []
    for message_id in missing:
        entry = entries.get(message_id)
        step = d.transition(d.RESEND_MISSING, entry["state"], entry["needs_receipt"]) if entry else None
        if step is None:
            continue
        batch.writes.outbox_updates.append((message_id, entry["state"], {
            "state": step.to, "attempts": 0, "next_attempt_at": batch.now, "last_error": None}))
        status = statuses[message_id]["status"]
        batch.writes.message_updates.setdefault(message_id, {})["status"] = d.message_status_after(
            d.RESEND_MISSING, status, needs_receipt=True)
        resent.append(message_id)
    return resent


# -- reading a round (the command line) ---------------------------------------------------------
def round_view(row) -> dict:
    """A round as the command line shows it (``row``: a tables.Reconciliation)."""
    return {"summary_message_id": row.summary_message_id, "peer": row.peer,
            "window_from": format_timestamp(row.window_from) if row.window_from else None,
            "window_until": format_timestamp(row.window_until), "count": row.count, "ids_sha256": row.ids_sha256,
            "sent_at": format_timestamp(row.sent_at),
            "answered_at": format_timestamp(row.answered_at) if row.answered_at else None,
            "answer_message_id": row.answer_message_id, "agreed": row.agreed, "peer_count": row.peer_count,
            "missing": list(row.missing or []), "resent": list(row.resent or []),
            "unexpected": list(row.unexpected or [])}


def round_of(ctx: NodeContext, summary_id: str) -> dict | None:
    with ctx.store.transaction() as repo:
        row = repo.reconciliation(summary_id)
        return round_view(row) if row is not None else None
