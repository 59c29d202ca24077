"""Rejections of the protocol layer.

A :class:`Rejection` names the rule a message broke (``rule``, e.g. ``signature.invalid``)
and says whether the sender had been authenticated when it was found: an authenticated
sender gets a signed rejection receipt; an unauthenticated message is quarantined unanswered.
"""

from __future__ import annotations


class Rejection(Exception):
    def __init__(self, rule: str, detail: str, *, authenticated: bool, messages: dict | None = None):
        super().__init__(f"[{rule}] {detail}")
        self.rule = rule
        self.detail = detail
        self.authenticated = authenticated
        self.messages = messages or {}
        # The verified envelope, set when the sender had been authenticated.
        self.envelope: dict | None = None

    @classmethod
    def from_error(cls, error: Exception, *, authenticated: bool) -> "Rejection":
        return cls(getattr(error, "rule"), getattr(error, "detail", str(error)),
                   authenticated=authenticated, messages=getattr(error, "messages", None))


class ComposeError(Exception):
    """An outgoing message could not be built (invalid body, forbidden route, no key)."""

    def __init__(self, rule: str, detail: str, messages: dict | None = None):
        super().__init__(f"[{rule}] {detail}")
        self.rule = rule
        self.detail = detail
        self.messages = messages or {}
