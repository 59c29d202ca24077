"""Store a history of N past referrals in a sender's and a receiver's databases before a
benchmark (flat-with-history: the cost per transfer must not grow with the tables).

The rows are what the nodes themselves store for a clue transfer and its receipt (messages,
outbox, inbox, referral, audit entries chained with the real hash), with realistic sizes;
their bytes are not re-verified by anything the benchmark does.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select, update

from adapters.storage.repository import (AUDIT, AUDIT_HEAD, GENESIS_HASH, INBOX, MESSAGES, OUTBOX, REFERRALS,
                                         audit_hash)
from adapters.storage.store import Store
from services import config as c

CHUNK = 2000


def _rows(n: int, sender: str, receiver: str, start: datetime):
    for index in range(n):
        at = start + timedelta(seconds=index)
        referral, clue, receipt = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        yield index, at, referral, clue, receipt


def _message(message_id, direction, kind, sender, recipient, referral, reply, at, status, size):
    return {"message_id": message_id, "direction": direction, "kind": kind, "schema_version": 1, "sender": sender,
            "recipient": recipient, "referral_id": referral, "in_reply_to": reply, "sent_at": at, "stored_at": at,
            "sha256": os.urandom(32).hex(), "sealed": True, "raw": os.urandom(size), "body": None,
            "status": status, "reason_codes": [] if kind == "receipt" else None, "detail": None}


def populate(config, sender: str, receiver: str, n: int) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=60)
    stores = {agency: Store(c.database_url(config, agency)) for agency in (sender, receiver)}
    for store in stores.values():
        store.create_schema()
    heads = {agency: (0, GENESIS_HASH) for agency in stores}
    try:
        batch = {agency: {"messages": [], "outbox": [], "inbox": [], "referrals": [], "audit": []} for agency in stores}
        for index, at, referral, clue, receipt in _rows(n, sender, receiver, start):
            s, r = batch[sender], batch[receiver]
            s["messages"] += [_message(clue, "out", "clue_transfer", sender, receiver, referral, None, at, "accepted", 2600),
                              _message(receipt, "in", "receipt", receiver, sender, referral, clue, at, "accepted", 900)]
            s["outbox"].append({"message_id": clue, "routing_key": f"{receiver}.clue_transfer", "needs_receipt": True,
                                "state": "receipted", "attempts": 1, "next_attempt_at": at, "last_published_at": at,
                                "receipted_at": at, "receipt_message_id": receipt})
            s["inbox"].append({"message_id": receipt, "sha256": "0" * 64, "received_at": at, "outcome": "accepted",
                               "receipt_message_id": None, "deliveries": 1})
            r["messages"] += [_message(clue, "in", "clue_transfer", sender, receiver, referral, None, at, "accepted", 2600),
                              _message(receipt, "out", "receipt", receiver, sender, referral, clue, at, "done", 900)]
            r["outbox"].append({"message_id": receipt, "routing_key": f"{sender}.receipt", "needs_receipt": False,
                                "state": "done", "attempts": 1, "next_attempt_at": at, "last_published_at": at,
                                "receipted_at": None, "receipt_message_id": None})
            r["inbox"].append({"message_id": clue, "sha256": "0" * 64, "received_at": at, "outcome": "accepted",
                               "receipt_message_id": receipt, "deliveries": 1})
            for agency, opened_by in ((sender, sender), (receiver, sender)):
                batch[agency]["referrals"].append({
                    "referral_id": referral, "state": "transferred", "opened_at": at, "updated_at": at,
                    "opened_by": opened_by, "first_kind": "clue_transfer", "reference": f"YB-H{index:07d}",
                    "last_message_id": clue, "close_reason": None})
            s["audit"] += [("message.sent", referral, clue, {"kind": "clue_transfer"}),
                           ("receipt.received", referral, clue, {"receipt": receipt})]
            r["audit"].append(("message.accepted", referral, clue, {"kind": "clue_transfer", "receipt": receipt}))
            if (index + 1) % CHUNK == 0 or index + 1 == n:
                for agency, rows in batch.items():
                    heads[agency] = _write(stores[agency], rows, heads[agency], at)
                    for key in rows:
                        rows[key] = []
    finally:
        for store in stores.values():
            store.dispose()


def _write(store: Store, rows: dict, head: tuple[int, str], at: datetime) -> tuple[int, str]:
    seq, previous = head
    audit = []
    for event, referral, message, detail in rows["audit"]:
        seq += 1
        digest = audit_hash(seq, at, event, referral, message, detail, previous)
        audit.append({"seq": seq, "at": at, "event": event, "referral_id": referral, "message_id": message,
                      "detail": detail, "prev_hash": previous, "hash": digest})
        previous = digest
    with store.transaction() as repo:
        run = repo.session.execute
        run(insert(MESSAGES), rows["messages"])
        run(insert(OUTBOX), rows["outbox"])
        run(insert(INBOX), rows["inbox"])
        run(insert(REFERRALS), rows["referrals"])
        run(insert(AUDIT), audit)
        if run(select(AUDIT_HEAD.c.id)).first() is None:
            run(insert(AUDIT_HEAD).values(id=1, seq=seq, hash=previous))
        else:
            run(update(AUDIT_HEAD).values(seq=seq, hash=previous))
    return seq, previous
