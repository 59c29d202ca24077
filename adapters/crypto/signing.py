"""Ed25519 signing and verification.

A :class:`Signer` holds a signing key without exposing it: services receive a Signer,
never raw key bytes.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .encoding import b64decode_strict, b64encode
from .exceptions import InvalidSignature, MalformedSignature

SIGNATURE_BYTES = 64


class Signer:
    """Signs on behalf of one agency with one key id."""

    __slots__ = ("_key", "key_id", "agency")

    def __init__(self, agency: str, key_id: str, seed: bytes):
        self._key = SigningKey(seed)
        self.key_id = key_id
        self.agency = agency

    def __repr__(self) -> str:
        return f"Signer(agency={self.agency!r}, key_id={self.key_id!r})"

    def at(self, when) -> "Signer":
        """The signer for a message sent at ``when``: this one (adapters/crypto/keychain.py
        picks among an agency's keys across a rotation)."""
        return self

    def sign(self, message: bytes) -> str:
        """Detached signature of ``message``, base64."""
        return b64encode(self._key.sign(message).signature)


def decode_signature(text: object) -> bytes:
    if not isinstance(text, str):
        raise MalformedSignature("signature must be a base64 string")
    try:
        raw = b64decode_strict(text)
    except ValueError as exc:
        raise MalformedSignature(f"signature is not canonical base64: {exc}") from None
    if len(raw) != SIGNATURE_BYTES:
        raise MalformedSignature(f"signature is {len(raw)} bytes, expected {SIGNATURE_BYTES}")
    return raw


def verify_signature(public_key: bytes, message: bytes, signature: str) -> None:
    raw = decode_signature(signature)
    try:
        VerifyKey(public_key).verify(message, raw)
    except BadSignatureError:
        raise InvalidSignature("Ed25519 signature does not verify") from None
