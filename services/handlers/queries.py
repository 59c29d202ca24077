"""Read-only views of a node's database: inbox, outbox, referrals and verified traces."""

from __future__ import annotations

from typing import Mapping

from adapters.crypto.timestamps import format_timestamp, parse_timestamp
from adapters.storage.exceptions import AuditChainBroken
from adapters.storage.tables import Message, OutboxEntry, QuarantineEntry
from services.protocol.exceptions import Rejection

from .context import NodeContext


def message_summary(message: Message, *, with_body: bool = False) -> dict:
    summary = {
        "message_id": message.message_id, "direction": message.direction, "kind": message.kind,
        "sender": message.sender, "recipient": message.recipient, "referral_id": message.referral_id,
        "in_reply_to": message.in_reply_to, "sent_at": format_timestamp(message.sent_at),
        "sha256": message.sha256, "status": message.status, "reason_codes": message.reason_codes or [],
        "sealed": message.sealed,
    }
    if message.detail:
        summary["detail"] = message.detail
    if with_body:
        summary["body"] = message.body
    return summary


def outbox_summary(entry: OutboxEntry, message: Message) -> dict:
    return {"message_id": entry.message_id, "kind": message.kind, "recipient": message.recipient,
            "referral_id": message.referral_id, "routing_key": entry.routing_key, "state": entry.state,
            "attempts": entry.attempts, "next_attempt_at": format_timestamp(entry.next_attempt_at),
            "receipt_message_id": entry.receipt_message_id, "status": message.status,
            "reason_codes": message.reason_codes or [], "last_error": entry.last_error}


def quarantine_summary(entry: QuarantineEntry) -> dict:
    return {"id": entry.id, "received_at": format_timestamp(entry.received_at), "rule": entry.rule,
            "detail": entry.detail, "sha256": entry.sha256, "size": entry.size,
            "claimed_message_id": entry.claimed_message_id, "claimed_sender": entry.claimed_sender}


def inbox(ctx: NodeContext, *, kind: str | None = None, status: str | None = None, limit: int = 50) -> list[dict]:
    with ctx.store.transaction() as repo:
        return [message_summary(m, with_body=True) for m in repo.inbound_messages(kind=kind, status=status, limit=limit)]


def outbox(ctx: NodeContext, states: list[str] | None = None) -> list[dict]:
    with ctx.store.transaction() as repo:
        return [outbox_summary(e, repo.message(e.message_id)) for e in repo.outbox_entries(states)]


def quarantined(ctx: NodeContext, limit: int = 50) -> list[dict]:
    with ctx.store.transaction() as repo:
        return [quarantine_summary(e) for e in repo.quarantined(limit)]


def referral(ctx: NodeContext, referral_id: str) -> dict | None:
    with ctx.store.transaction() as repo:
        record = repo.referral(referral_id)
        if record is None:
            return None
        return {"referral_id": record.referral_id, "state": record.state, "reference": record.reference,
                "opened_by": record.opened_by, "opened_at": format_timestamp(record.opened_at),
                "updated_at": format_timestamp(record.updated_at), "close_reason": record.close_reason}


def trace(ctx: NodeContext, referral_id: str) -> dict:
    """Every message of a referral held by this node, each re-verified from its stored bytes
    (signature, keys, schema; not freshness), and the audit chain checked end to end."""
    with ctx.store.transaction() as repo:
        messages = list(repo.messages_for_referral(referral_id))
        chain = _check_chain(repo)
        audit = [{"seq": e.seq, "at": format_timestamp(e.at), "event": e.event, "message_id": e.message_id,
                  "hash": e.hash} for e in repo.audit_entries(referral_id)]
        state = repo.referral(referral_id)
    steps = [verify_step(ctx, m) for m in messages]
    return {"node": ctx.agency, "referral_id": referral_id, "state": state.state if state else None,
            "steps": steps, "audit_chain": chain, "audit": audit}


def audit_chain(ctx: NodeContext) -> dict:
    """The node's whole audit log, every hash recomputed."""
    with ctx.store.transaction() as repo:
        return _check_chain(repo)


def _check_chain(repo) -> dict:
    try:
        return {"ok": True, "entries": repo.verify_audit_chain()}
    except AuditChainBroken as broken:
        return {"ok": False, "error": str(broken)}


def verify_step(ctx: NodeContext, message: Message) -> dict:
    step = message_summary(message)
    try:
        ctx.verifier.verify(message.raw, check_freshness=False)
        step["signature"] = {"ok": True}
    except Rejection as rejection:
        step["signature"] = {"ok": False, "rule": rejection.rule, "detail": rejection.detail,
                             "authenticated": rejection.authenticated}
    return step


def message_detail(ctx: NodeContext, message_id: str) -> dict | None:
    """One stored message, re-verified from its raw bytes (signature, keys, schema; not
    freshness), with its body: opened by this node when sealed for it; when this node sealed
    it for another, the body as it composed it (stored; not re-openable from the bytes). A
    message whose signature fails shows no body. None if this node holds no such message."""
    with ctx.store.transaction() as repo:
        message = repo.message(message_id)
        if message is None:
            return None
        entry = repo.outbox_entry(message_id)
    detail = message_summary(message)
    detail["schema_version"] = message.schema_version
    detail["stored_at"] = format_timestamp(message.stored_at)
    if entry is not None:
        detail["delivery"] = {"state": entry.state, "attempts": entry.attempts,
                              "last_published_at": _moment(entry.last_published_at),
                              "receipted_at": _moment(entry.receipted_at),
                              "receipt_message_id": entry.receipt_message_id, "last_error": entry.last_error}
    try:
        verified = ctx.verifier.verify(message.raw, check_freshness=False)
    except Rejection as rejection:
        detail["signature"] = {"ok": False, "rule": rejection.rule, "detail": rejection.detail,
                               "authenticated": rejection.authenticated}
        detail["body"], detail["body_source"] = None, "not shown: the message does not verify"
        return detail
    detail["signature"] = {"ok": True}
    if verified.plain_body is not None:
        detail["body"] = verified.plain_body
        detail["body_source"] = f"sealed for {message.recipient}, opened here" if verified.sealed else "plain"
    elif message.body is not None:
        detail["body"] = message.body
        detail["body_source"] = f"sealed for {message.recipient}; this node's copy as it composed it"
    else:
        detail["body"] = None
        detail["body_source"] = f"sealed for {message.recipient}: not readable here"
    return detail


def _moment(moment) -> str | None:
    return format_timestamp(moment) if moment is not None else None


def merge_traces(traces: list[Mapping]) -> list[dict]:
    """One timeline from several nodes' traces: each message once, in order of sending."""
    seen: dict[str, dict] = {}
    for node_trace in traces:
        for step in node_trace["steps"]:
            entry = seen.setdefault(step["message_id"], {**step, "seen_by": []})
            entry["seen_by"].append(node_trace["node"])
            if not step["signature"]["ok"]:
                entry["signature"] = step["signature"]
    return sorted(seen.values(), key=lambda s: (parse_timestamp(s["sent_at"]), s["kind"] == "receipt"))
