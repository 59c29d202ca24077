"""Moving this node's view of a referral, shared by sending and receiving."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping

from adapters.storage.repository import NodeRepository
from adapters.storage.tables import Referral
from schemas.registry import CLOSURE, WITHDRAWAL

REFERENCE_FIELDS = ("clue_no", "case_no", "civil_case_no")


def reference_of(body: Mapping | None) -> str | None:
    for field in REFERENCE_FIELDS:
        if body and body.get(field):
            return str(body[field])
    return None


def advance_referral(repo: NodeRepository, referral: Referral | None, *, referral_id: str,
                     kind: str, body: Mapping | None, new_state: str, message_id: str,
                     opened_by: str, now: datetime) -> Referral:
    if referral is None:
        referral = Referral(referral_id=referral_id, state=new_state, opened_at=now, updated_at=now,
                            opened_by=opened_by, first_kind=kind, reference=reference_of(body),
                            last_message_id=message_id)
        repo.add_referral(referral)
        return referral
    referral.state = new_state
    referral.updated_at = now
    referral.last_message_id = message_id
    if referral.reference is None:
        referral.reference = reference_of(body)
    if kind in (CLOSURE, WITHDRAWAL) and body:
        referral.close_reason = body.get("reason")
    return referral
