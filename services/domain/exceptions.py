"""Errors of the domain layer. Each names the rule it enforces in ``rule``."""

from __future__ import annotations


class DomainError(Exception):
    rule = "domain.error"

    def __init__(self, detail: str):
        super().__init__(f"[{self.rule}] {detail}")
        self.detail = detail


class LifecycleViolation(DomainError):
    """The message does not fit the referral's current state."""
    rule = "lifecycle.transition"


class UnknownReferral(DomainError):
    rule = "referral.unknown"


class ReferralMismatch(DomainError):
    """A reply names a message of another referral."""
    rule = "referral.mismatch"


class UnknownMessage(DomainError):
    rule = "message.unknown"


class DuplicateMessageId(DomainError):
    """The same message id arrived again with different bytes."""
    rule = "message.id_reused"


class ReceiptMismatch(DomainError):
    rule = "receipt.hash_mismatch"
