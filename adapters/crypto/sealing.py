"""Sealed bodies: NaCl public-key authenticated encryption (X25519, XSalsa20-Poly1305).

The sender seals the canonical bytes of a body with its own X25519 secret and the
recipient's X25519 public key; only the recipient can open it, and opening proves the
sender's X25519 key made it.
"""

from __future__ import annotations

from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.utils import random as random_bytes

from .encoding import b64decode_strict, b64encode
from .exceptions import SealError

NONCE_BYTES = Box.NONCE_SIZE  # 24


class BoxKey:
    """An agency's X25519 key pair for sealing and opening, without exposing the secret."""

    __slots__ = ("_secret", "key_id", "agency")

    def __init__(self, agency: str, key_id: str, secret: bytes):
        self._secret = PrivateKey(secret)
        self.key_id = key_id
        self.agency = agency

    def __repr__(self) -> str:
        return f"BoxKey(agency={self.agency!r}, key_id={self.key_id!r})"

    def seal(self, plaintext: bytes, recipient_public: bytes, nonce: bytes | None = None) -> tuple[str, str]:
        """Return (nonce, ciphertext), both base64."""
        nonce = random_bytes(NONCE_BYTES) if nonce is None else nonce
        encrypted = Box(self._secret, PublicKey(recipient_public)).encrypt(plaintext, nonce)
        return b64encode(encrypted.nonce), b64encode(encrypted.ciphertext)

    def open(self, nonce_b64: str, ciphertext_b64: str, sender_public: bytes) -> bytes:
        try:
            nonce = b64decode_strict(nonce_b64)
            ciphertext = b64decode_strict(ciphertext_b64)
        except ValueError as exc:
            raise SealError(f"sealed body is not canonical base64: {exc}") from None
        if len(nonce) != NONCE_BYTES:
            raise SealError(f"nonce is {len(nonce)} bytes, expected {NONCE_BYTES}")
        try:
            return Box(self._secret, PublicKey(sender_public)).decrypt(ciphertext, nonce)
        except NaclCryptoError:
            raise SealError("sealed body does not open with these keys (tampered or not for us)") from None
