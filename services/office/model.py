"""What the office knows: observed messages (metadata only) and the deadline steps they open
and close. Plain data; the office never keeps personal data from bodies.

An ObservedMessage holds the envelope's signed metadata plus, when the body was readable
(not sealed), or from the signed facts that a sealed body carries in the clear, the
NON-PERSONAL facts listed in ``FACT_FIELDS`` (a decision, an outcome, amounts of money).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

# The non-personal facts the office may keep are the protocol's (schemas/facts.py): read from
# a plain body, or from the signed facts a sealed body carries in the clear.
from schemas.facts import FACT_FIELDS, facts_of  # noqa: E402,F401  (re-exported)


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
    due_at: datetime | None   # None: "calendar missing", the limit is unknown
    late_agency: str          # who must act
    counterpart: str          # who waits for it
    state: str = OPEN
    closed_at: datetime | None = None
    closing_message_id: str | None = None
    # The first year the count needed that the working-day calendar does not cover (due_at is
    # then None); cleared when a later calendar covers it (Tracker.recount_calendar_missing).
    calendar_missing: int | None = None

    def overdue_at(self, now: datetime) -> bool:
        if self.due_at is None:
            return False
        return (self.closed_at or now) > self.due_at

    def lateness_seconds(self, now: datetime) -> int:
        if self.due_at is None:
            return 0
        end = self.closed_at or now
        return max(0, int((end - self.due_at).total_seconds()))

    def on_time(self) -> bool | None:
        """True/False once closed; None while open, or when the limit is unknown."""
        if self.closed_at is None or self.due_at is None:
            return None
        return self.closed_at <= self.due_at
