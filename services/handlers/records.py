"""The rows a node writes for a message, built in one place from a composed or a verified
envelope (never copied field by field elsewhere)."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping

from adapters.crypto.timestamps import parse_timestamp
from services.domain.delivery import PENDING
from services.protocol.signing_input import message_sha256

INBOUND = "in"
OUTBOUND = "out"


def routing_key(recipient: str, kind: str) -> str:
    return f"{recipient}.{kind}"


def message_row(envelope: Mapping, raw: bytes, *, direction: str, stored_at: datetime, status: str,
                body: Mapping | None, sha256: str | None = None, rule: str | None = None,
                detail: str | None = None) -> dict:
    return {
        "message_id": envelope["message_id"], "direction": direction, "kind": envelope["kind"],
        "schema_version": envelope["schema_version"], "sender": envelope["sender"],
        "recipient": envelope["recipient"], "referral_id": envelope["referral_id"],
        "in_reply_to": envelope["in_reply_to"], "sent_at": parse_timestamp(envelope["sent_at"]),
        "stored_at": stored_at, "sha256": sha256 or message_sha256(raw),
        "sealed": envelope.get("body_encoding") == "sealed", "raw": raw,
        "body": dict(body) if body is not None else None, "status": status,
        "reason_codes": [rule] if rule else None, "detail": detail,
    }


def outbox_row(envelope: Mapping, *, needs_receipt: bool, now: datetime) -> dict:
    return {"message_id": envelope["message_id"],
            "routing_key": routing_key(envelope["recipient"], envelope["kind"]),
            "needs_receipt": needs_receipt, "state": PENDING, "attempts": 0, "next_attempt_at": now}


def inbox_row(message_id: str, sha256: str, received_at: datetime, outcome: str,
              receipt_message_id: str | None = None) -> dict:
    return {"message_id": message_id, "sha256": sha256, "received_at": received_at, "outcome": outcome,
            "receipt_message_id": receipt_message_id, "deliveries": 1}
