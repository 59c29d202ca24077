"""Composing outgoing envelopes: body through its schema, optional sealing, signature."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping

from adapters.crypto.canonical import canonical_bytes, canonical_bytes_with
from adapters.crypto.exceptions import CryptoError
from adapters.crypto.keys import X25519, Keyring
from adapters.crypto.sealing import BoxKey
from adapters.crypto.signing import Signer
from adapters.crypto.timestamps import format_timestamp
from schemas.envelope import PLAIN, PROTOCOL, SEAL_ALGORITHM, SEALED, EnvelopeSchema
from schemas.exceptions import SchemaError
from schemas.facts import facts_of
from schemas.registry import dump_body, latest_version, summarise_messages
from schemas.routes import RouteTable

from . import rules
from .exceptions import ComposeError
from .ids import new_id
from .signing_input import body_sha256, message_sha256, signing_input


_ENVELOPE_SCHEMA = EnvelopeSchema()


@dataclass(frozen=True)
class SignedMessage:
    """A composed message: the exact bytes to send and what they say."""

    raw: bytes
    envelope: dict
    plain_body: dict

    @property
    def message_id(self) -> str:
        return self.envelope["message_id"]

    @property
    def sha256(self) -> str:
        return message_sha256(self.raw)


def sign_envelope(unsigned_envelope: Mapping, signer: Signer, body_bytes: bytes | None = None) -> dict:
    """Add ``signature`` to an envelope that has every other field (``body_bytes``: its
    body's canonical bytes, when the caller has them already)."""
    envelope = dict(unsigned_envelope)
    envelope.pop("signature", None)
    envelope["signature"] = signer.sign(signing_input(envelope, body_bytes))
    return envelope


def encode(envelope: Mapping, body_bytes: bytes | None = None) -> bytes:
    """Wire bytes: the RFC 8785 form of the whole envelope (``body_bytes`` as above)."""
    if body_bytes is None:
        return canonical_bytes(dict(envelope))
    around = {key: value for key, value in envelope.items() if key != "body"}
    return canonical_bytes_with(around, "body", envelope["body"], body_bytes)


class Composer:
    """Builds signed envelopes for one agency. Holds a Signer, never a raw key."""

    def __init__(self, signer: Signer, routes: RouteTable, keyring: Keyring,
                 box_key: BoxKey | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.signer = signer
        self.routes = routes
        self.keyring = keyring
        self.box_key = box_key
        self.clock = clock

    @property
    def agency(self) -> str:
        return self.signer.agency

    def compose(self, kind: str, recipient: str, body: Mapping, *, referral_id: str,
                in_reply_to: str | None = None, message_id: str | None = None,
                sent_at: datetime | None = None, schema_version: int | None = None,
                seal: bool = False) -> SignedMessage:
        try:
            version = latest_version(kind) if schema_version is None else schema_version
            wire_body = dump_body(kind, version, body)
            self.routes.check(kind, self.agency, recipient)
        except SchemaError as exc:
            raise ComposeError(exc.rule, exc.detail, exc.messages) from None
        sent_at = sent_at or self.clock()
        signer = self.signer.at(sent_at)  # across a key rotation: the key valid at sent_at
        envelope = {
            "protocol": PROTOCOL,
            "message_id": message_id or new_id(),
            "kind": kind,
            "schema_version": version,
            "sender": self.agency,
            "recipient": recipient,
            "referral_id": referral_id,
            "in_reply_to": in_reply_to,
            "sent_at": format_timestamp(sent_at),
            "sender_key_id": signer.key_id,
            "body_encoding": SEALED if seal else PLAIN,
            "body": self._seal(kind, wire_body, recipient, sent_at) if seal else wire_body,
        }
        body_bytes = canonical_bytes(envelope["body"])  # once: for the hash, the signature and the wire
        envelope["body_sha256"] = body_sha256(envelope["body"], body_bytes)
        # Never sign what every receiver would refuse (a referral id that is not a UUID, ...).
        problems = _ENVELOPE_SCHEMA.validate({**envelope, "signature": ""})
        if problems:
            raise ComposeError(rules.ENVELOPE_INVALID, f"envelope is invalid: {summarise_messages(problems)}",
                               problems)
        envelope = sign_envelope(envelope, signer, body_bytes)
        return SignedMessage(encode(envelope, body_bytes), envelope, wire_body)

    def _seal(self, kind: str, wire_body: dict, recipient: str, at: datetime) -> dict:
        if self.box_key is None:
            raise ComposeError(rules.BODY_SEALED, f"{self.agency} has no box key to seal with")
        try:
            recipient_key_id = self.keyring.current_key_id(recipient, X25519, at)
            recipient_key = self.keyring.records[recipient_key_id].public_key
        except CryptoError as exc:
            raise ComposeError(exc.rule, exc.detail) from None
        box_key = self.box_key.at(at)
        nonce, ciphertext = box_key.seal(canonical_bytes(wire_body), recipient_key)
        return {
            "alg": SEAL_ALGORITHM,
            "sender_box_key_id": box_key.key_id,
            "recipient_box_key_id": recipient_key_id,
            "nonce": nonce,
            "ciphertext": ciphertext,
            # In the clear, signed: what the joint office needs, never personal data (§11.4).
            "facts": facts_of(kind, wire_body),
        }
