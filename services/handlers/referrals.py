"""Moving this node's view of a referral, shared by sending and receiving: the columns that
change, recorded into the transaction's writes."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping

from adapters.storage.writes import Writes
from schemas.registry import CLOSURE, WITHDRAWAL

REFERENCE_FIELDS = ("clue_no", "case_no", "civil_case_no")


def reference_of(body: Mapping | None) -> str | None:
    for field in REFERENCE_FIELDS:
        if body and body.get(field):
            return str(body[field])[:64]
    return None


class ReferralView:
    """This node's view of one referral within a transaction: its state as the batch moves it
    (so several messages of one referral in one batch are each checked against the state the
    one before left), and what to write."""

    def __init__(self, referral_id: str, row: Mapping | None):
        self.referral_id = referral_id
        self.known = row is not None
        self.state = row["state"] if row else None
        self.reference = row["reference"] if row else None

    def advance(self, writes: Writes, *, kind: str, body: Mapping | None, new_state: str, message_id: str,
                opened_by: str, now: datetime) -> None:
        values = {"state": new_state, "updated_at": now, "last_message_id": message_id}
        if self.reference is None and reference_of(body):
            self.reference = values["reference"] = reference_of(body)
        if kind in (CLOSURE, WITHDRAWAL) and body:
            values["close_reason"] = body.get("reason")
        if not self.known:
            values.update(opened_at=now, opened_by=opened_by, first_kind=kind)
            values.setdefault("reference", self.reference)
            writes.referral(self.referral_id, values, new=True)
            self.known = True
        else:
            writes.referral(self.referral_id, values, new=False)
        self.state = new_state
