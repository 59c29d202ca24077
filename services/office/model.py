"""What the office knows: observed messages (metadata only) and the deadline steps they open
and close. Plain data; the office never keeps personal data from bodies.

An ObservedMessage holds the envelope's signed metadata plus, when the body was readable
(not sealed), a few NON-PERSONAL facts listed in ``FACT_FIELDS`` (a decision, an outcome,
amounts of money). Sealed bodies give no facts: the office still tracks every deadline,
but cannot tell, say, "filed" from "not filed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

# Non-personal body fields the office may keep, per kind.
FACT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "clue_transfer": ("clue_no", "category", "amount_involved_fen", "team_reported_at", "approved_at"),
    "filing_decision": ("decision",),
    "reconsideration_decision": ("outcome",),
    "case_transfer": ("direction", "amount_involved_fen"),
    "prosecution_decision": ("decision",),
    "judgment": ("effective", "amount_to_recover_fen", "fine_fen"),
    "handling_result": ("result", "amount_recovered_fen", "fine_fen"),
    "receipt": ("status",),
    "closure": ("outcome", "amount_recovered_fen"),
    "reward_payment": ("reward_fen",),
    "urge": ("step", "level"),
    "supervision_notice": ("subject",),
}


def facts_of(kind: str, body: Mapping | None) -> dict:
    if not body:
        return {}
    return {name: body[name] for name in FACT_FIELDS.get(kind, ()) if name in body}


@dataclass(frozen=True)
class ObservedMessage:
    message_id: str
    kind: str
    sender: str
    recipient: str
    referral_id: str
    in_reply_to: str | None
    sent_at: datetime
    observed_at: datetime
    sealed: bool
    facts: dict = field(default_factory=dict)


# Step states.
OPEN = "open"
CLOSED = "closed"


@dataclass
class Step:
    """One deadline: opened by a message, closed by the answer it calls for."""

    step_id: str              # f"{rule}:{start_message_id}"
    rule: str
    referral_id: str
    start_message_id: str
    started_at: datetime
    due_at: datetime
    late_agency: str          # who must act
    counterpart: str          # who waits for it
    state: str = OPEN
    closed_at: datetime | None = None
    closing_message_id: str | None = None

    def overdue_at(self, now: datetime) -> bool:
        return (self.closed_at or now) > self.due_at

    def lateness_seconds(self, now: datetime) -> int:
        end = self.closed_at or now
        return max(0, int((end - self.due_at).total_seconds()))

    def on_time(self) -> bool | None:
        """True/False once closed; None while open."""
        if self.closed_at is None:
            return None
        return self.closed_at <= self.due_at
