"""Errors of the domain layer. Each names the rule it enforces in ``rule``."""

from __future__ import annotations

from services.protocol import rules


class DomainError(Exception):
    """Base of the domain's errors; never raised itself: each subclass names its rule."""

    rule: str

    def __init__(self, detail: str):
        super().__init__(f"[{self.rule}] {detail}")
        self.detail = detail


class LifecycleViolation(DomainError):
    """The message does not fit the referral's current state."""
    rule = rules.LIFECYCLE_TRANSITION


class UnknownReferral(DomainError):
    rule = rules.REFERRAL_UNKNOWN


class ReferralMismatch(DomainError):
    """A reply names a message of another referral."""
    rule = rules.REFERRAL_MISMATCH


class UnknownMessage(DomainError):
    rule = rules.MESSAGE_UNKNOWN
