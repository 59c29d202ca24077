"""What one transaction writes, gathered in memory and written with a few bulk statements
(SQLAlchemy Core executemany): the batched paths decide everything first, then write once.

Rows are plain dicts keyed by column name. Audit events are hashed into the chain in order
when written (NodeRepository.write), with one lock on the chain's head per transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    event: str
    referral_id: str | None = None
    message_id: str | None = None
    detail: dict = field(default_factory=dict)


@dataclass
class Writes:
    messages: list[dict] = field(default_factory=list)
    outbox: list[dict] = field(default_factory=list)
    inbox: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    control_requests: list[dict] = field(default_factory=list)
    referrals_new: dict[str, dict] = field(default_factory=dict)
    # referral_id -> the columns that changed (state, updated_at, last_message_id, ...)
    referrals_changed: dict[str, dict] = field(default_factory=dict)
    # Guarded updates: (message_id, expected state) -> new column values.
    outbox_updates: list[tuple[str, str, dict]] = field(default_factory=list)
    message_updates: dict[str, dict] = field(default_factory=dict)
    inbox_deliveries: dict[str, int] = field(default_factory=dict)   # message_id -> new count
    # Reconciliation rounds sent, and what answers found (summary_message_id -> columns).
    reconciliations: list[dict] = field(default_factory=list)
    reconciliation_updates: dict[str, dict] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)

    def audit_event(self, at: datetime, event: str, *, referral_id: str | None = None,
                    message_id: str | None = None, detail: dict | None = None) -> None:
        self.audit.append(AuditEvent(at, event, referral_id, message_id, detail or {}))

    def referral(self, referral_id: str, values: dict, *, new: bool) -> None:
        """Record a referral's new or changed columns (several changes merge, last wins)."""
        if new or referral_id in self.referrals_new:
            self.referrals_new.setdefault(referral_id, {"referral_id": referral_id}).update(values)
        else:
            self.referrals_changed.setdefault(referral_id, {}).update(values)

    def extend(self, other: "Writes") -> None:
        self.messages += other.messages
        self.outbox += other.outbox
        self.inbox += other.inbox
        self.quarantine += other.quarantine
        self.control_requests += other.control_requests
        for referral_id, values in other.referrals_new.items():
            self.referral(referral_id, values, new=True)
        for referral_id, values in other.referrals_changed.items():
            self.referral(referral_id, values, new=False)
        self.outbox_updates += other.outbox_updates
        for message_id, values in other.message_updates.items():
            self.message_updates.setdefault(message_id, {}).update(values)
        self.inbox_deliveries.update(other.inbox_deliveries)
        self.reconciliations += other.reconciliations
        for summary_id, values in other.reconciliation_updates.items():
            self.reconciliation_updates.setdefault(summary_id, {}).update(values)
        self.audit += other.audit
