"""Verifying a received message, in the order docs/protocol.md specifies.

Nothing acts on a message until this returns: each failed check raises a
:class:`~services.protocol.exceptions.Rejection` naming its rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from marshmallow import ValidationError

from adapters.crypto.canonical import canonical_bytes, strict_loads
from adapters.crypto.exceptions import CryptoError, SealError
from adapters.crypto.keys import ED25519, X25519, Keyring
from adapters.crypto.sealing import BoxKey
from adapters.crypto.signing import verify_signature
from schemas.envelope import PROTOCOL, SEALED, EnvelopeSchema
from schemas.exceptions import SchemaError
from schemas.facts import facts_of
from schemas.registry import body_schema, load_body, summarise_messages
from schemas.routes import RouteTable

from . import rules
from .exceptions import Rejection
from .signing_input import body_sha256, message_sha256, signing_input
from .transport import CONTENT_TYPE, TransportFacts

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
_ENVELOPE_SCHEMA = EnvelopeSchema()  # schemas are costly to build and safe to share
DEFAULT_CLOCK_SKEW = timedelta(seconds=300)


@dataclass(frozen=True)
class VerifiedMessage:
    raw: bytes
    sha256: str
    envelope: dict          # as parsed, wire values
    sent_at: datetime
    body: dict | None       # loaded through its schema; None when sealed for someone else
    sealed: bool
    plain_body: dict | None  # the body's wire form (opened when sealed for us); None if unreadable
    # The kind's non-personal facts: from the readable body, or (sealed for someone else) the
    # signed facts the sealed object carries in the clear.
    facts: dict | None = None

    def __getattr__(self, name):
        # Envelope metadata read as attributes: message.kind, message.sender, ...
        envelope = object.__getattribute__(self, "envelope")
        if name in envelope:
            return envelope[name]
        raise AttributeError(name)


class Verifier:
    def __init__(self, keyring: Keyring, routes: RouteTable, agencies: Iterable[str], *,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
                 max_age: timedelta | None = None,
                 box_key: BoxKey | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.keyring = keyring
        self.routes = routes
        self.agencies = frozenset(agencies)
        self.max_message_bytes = max_message_bytes
        self.clock_skew = clock_skew
        # How old a message may be when it arrives. By default the same as the skew; a node
        # whose messages wait in durable queues allows more (a receiver down for an hour must
        # still accept what was sent meanwhile; replays are caught by the inbox, by message id).
        self.max_age = clock_skew if max_age is None else max(max_age, clock_skew)
        self.box_key = box_key
        self.clock = clock

    def verify(self, raw: bytes, *, expected_recipient: str | None = None,
               check_freshness: bool = True, now: datetime | None = None,
               transport: TransportFacts | None = None) -> VerifiedMessage:
        """``transport``: what the bus said about the delivery (content type, the agency whose
        account published it); None for bytes that did not come off the bus (a stored
        message re-verified, a test vector)."""
        raw = _as_bytes(raw)
        envelope, sent_at = self._parse(raw, transport)
        body_bytes = self._authenticate(envelope, sent_at)
        # From here on the sender is authenticated: a rejection carries the envelope so the
        # receiver can answer it with a signed rejection receipt.
        try:
            self._check_metadata(envelope, expected_recipient, body_bytes)
            if check_freshness:
                self._check_freshness(sent_at, now or self.clock())
            plain_body, body = self._load_body(envelope, sent_at)
        except Rejection as rejection:
            rejection.envelope = envelope
            raise
        sealed = envelope["body_encoding"] == SEALED
        facts = facts_of(envelope["kind"], plain_body) if plain_body is not None else \
            dict(envelope["body"].get("facts") or {}) if sealed else {}
        return VerifiedMessage(raw, message_sha256(raw), envelope, sent_at, body, sealed, plain_body, facts)

    # -- before authentication -------------------------------------------------
    def _parse(self, raw: bytes, transport: TransportFacts | None) -> tuple[dict, datetime]:
        """The envelope as sent (wire values, which the signature covers) and its sent_at."""
        if not raw:
            raise Rejection(rules.MESSAGE_EMPTY, "the message has no bytes", authenticated=False)
        if len(raw) > self.max_message_bytes:
            raise Rejection(rules.MESSAGE_OVERSIZED,
                            f"message is {len(raw)} bytes; the limit is {self.max_message_bytes}",
                            authenticated=False)
        if transport is not None and transport.content_type != CONTENT_TYPE:
            raise Rejection(rules.TRANSPORT_CONTENT_TYPE,
                            f"content type {transport.content_type!r} is not {CONTENT_TYPE!r}",
                            authenticated=False)
        try:
            envelope = strict_loads(raw)
        except CryptoError as exc:
            raise Rejection.from_error(exc, authenticated=False) from None
        if not isinstance(envelope, dict):
            raise Rejection(rules.ENVELOPE_INVALID, "a message must be a JSON object", authenticated=False)
        if envelope.get("protocol") != PROTOCOL:
            raise Rejection(rules.PROTOCOL_UNSUPPORTED,
                            f"protocol {envelope.get('protocol')!r} is not supported (expected {PROTOCOL!r})",
                            authenticated=False)
        try:
            loaded = _ENVELOPE_SCHEMA.load(envelope)
        except ValidationError as exc:
            raise Rejection(rules.ENVELOPE_INVALID, f"envelope is invalid: {summarise_messages(exc.messages)}",
                            authenticated=False, messages=exc.messages) from None
        if transport is not None and transport.publisher != envelope["sender"]:
            # The broker checked who published it (AMQP user_id); a signature alone could be a
            # copy of another agency's message, replayed by whoever holds it.
            by = f"{transport.user_id!r}" if transport.user_id else "no user_id"
            raise Rejection(rules.TRANSPORT_SENDER_MISMATCH,
                            f"sender {envelope['sender']} but published by {by}"
                            f"{'' if transport.publisher is None else ' (' + transport.publisher + ')'}",
                            authenticated=False)
        return envelope, loaded["sent_at"]

    def _authenticate(self, envelope: dict, sent_at: datetime) -> bytes:
        """Check the signature; the body's canonical bytes (serialised once, for the signature
        and then the body hash)."""
        try:
            key = self.keyring.key_for(envelope["sender_key_id"], agency=envelope["sender"],
                                       algorithm=ED25519, at=sent_at)
            body_bytes = canonical_bytes(envelope["body"])
            verify_signature(key.public_key, signing_input(envelope, body_bytes), envelope["signature"])
        except CryptoError as exc:
            raise Rejection.from_error(exc, authenticated=False) from None
        return body_bytes

    # -- after authentication ----------------------------------------------------
    def _check_metadata(self, envelope: dict, expected_recipient: str | None, body_bytes: bytes) -> None:
        def reject(rule, detail, messages=None):
            return Rejection(rule, detail, authenticated=True, messages=messages)

        if body_sha256(envelope["body"], body_bytes) != envelope["body_sha256"]:
            raise reject(rules.BODY_HASH_MISMATCH, "body_sha256 does not match the body")
        for role in ("sender", "recipient"):
            if envelope[role] not in self.agencies:
                raise reject(rules.AGENCY_UNKNOWN, f"{role} {envelope[role]!r} is not a configured agency")
        try:
            body_schema(envelope["kind"], envelope["schema_version"])
            self.routes.check(envelope["kind"], envelope["sender"], envelope["recipient"])
        except SchemaError as exc:
            raise reject(exc.rule, exc.detail) from None
        if expected_recipient is not None and envelope["recipient"] != expected_recipient:
            raise reject(rules.RECIPIENT_MISMATCH,
                         f"message is addressed to {envelope['recipient']}, not {expected_recipient}")

    def _check_freshness(self, sent_at: datetime, now: datetime) -> None:
        offset = (sent_at - now).total_seconds()
        if offset > self.clock_skew.total_seconds():
            raise Rejection(rules.CLOCK_SKEW,
                            f"sent_at is {int(offset)} s ahead of the receiver's clock; "
                            f"at most {int(self.clock_skew.total_seconds())} s allowed",
                            authenticated=True)
        if -offset > self.max_age.total_seconds():
            raise Rejection(rules.CLOCK_SKEW,
                            f"sent_at is {int(-offset)} s behind the receiver's clock; "
                            f"at most {int(self.max_age.total_seconds())} s allowed",
                            authenticated=True)

    def _load_body(self, envelope: dict, sent_at: datetime) -> tuple[dict | None, dict | None]:
        """(wire form, loaded form) of the body; (None, None) when sealed for someone else."""
        body = envelope["body"]
        if envelope["body_encoding"] == SEALED:
            if self.box_key is None or envelope["recipient"] != self.box_key.agency:
                return None, None  # sealed for someone else: metadata only
            body = self._open(envelope, sent_at)
        try:
            loaded = load_body(envelope["kind"], envelope["schema_version"], body)
        except SchemaError as exc:
            raise Rejection.from_error(exc, authenticated=True) from None
        if envelope["body_encoding"] == SEALED and "facts" in envelope["body"]:
            expected = facts_of(envelope["kind"], body)
            # Compared as JSON values (true is not 1): by their canonical bytes.
            if canonical_bytes(envelope["body"]["facts"]) != canonical_bytes(expected):
                raise Rejection(rules.BODY_FACTS_MISMATCH,
                                f"the sealed body's facts {envelope['body']['facts']} are not the body's "
                                f"{expected}", authenticated=True)
        return body, loaded

    def _open(self, envelope: dict, sent_at: datetime) -> dict:
        sealed = envelope["body"]
        try:
            # Our own key too must have been valid (not revoked, not expired) when it was used.
            self.keyring.key_for(sealed["recipient_box_key_id"], agency=envelope["recipient"],
                                 algorithm=X25519, at=sent_at)
            box_key = self.box_key.for_key_id(sealed["recipient_box_key_id"])
            if box_key is None:
                raise SealError(f"sealed for key {sealed['recipient_box_key_id']}, which is not one of ours")
            sender_key = self.keyring.key_for(sealed["sender_box_key_id"], agency=envelope["sender"],
                                              algorithm=X25519, at=sent_at)
            plaintext = box_key.open(sealed["nonce"], sealed["ciphertext"], sender_key.public_key)
            body = strict_loads(plaintext)
            if not isinstance(body, dict) or canonical_bytes(body) != plaintext:
                raise SealError("sealed plaintext is not the canonical JSON of an object")
        except CryptoError as exc:
            raise Rejection.from_error(exc, authenticated=True) from None
        return body


def _as_bytes(raw) -> bytes:
    """Every byte string gets a typed answer: bytes-like values are taken as their bytes;
    anything else is no message at all."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, (bytearray, memoryview)):
        return bytes(raw)
    raise Rejection(rules.MESSAGE_NOT_BYTES, f"a message is bytes, not {type(raw).__name__}",
                    authenticated=False)
