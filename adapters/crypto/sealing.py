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

    __slots__ = ("_secret", "_boxes", "key_id", "agency")

    # Boxes kept per peer key: a Box holds the X25519 shared key, computed once per peer.
    MAX_BOXES = 64

    def __init__(self, agency: str, key_id: str, secret: bytes):
        self._secret = PrivateKey(secret)
        self._boxes: dict[bytes, Box] = {}
        self.key_id = key_id
        self.agency = agency

    def _box(self, peer_public: bytes) -> Box:
        box = self._boxes.get(peer_public)
        if box is None:
            if len(self._boxes) >= self.MAX_BOXES:
                self._boxes.clear()
            box = self._boxes[peer_public] = Box(self._secret, PublicKey(peer_public))
        return box

    def __repr__(self) -> str:
        return f"BoxKey(agency={self.agency!r}, key_id={self.key_id!r})"

    def at(self, when) -> "BoxKey":
        """The key to seal with at ``when``: this one (see adapters/crypto/keychain.py)."""
        return self

    def for_key_id(self, key_id: str) -> "BoxKey | None":
        """The key that opens what was sealed for ``key_id``: this one, if it is that key."""
        return self if key_id == self.key_id else None

    def seal(self, plaintext: bytes, recipient_public: bytes, nonce: bytes | None = None) -> tuple[str, str]:
        """Return (nonce, ciphertext), both base64."""
        nonce = random_bytes(NONCE_BYTES) if nonce is None else nonce
        encrypted = self._box(recipient_public).encrypt(plaintext, nonce)
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
            return self._box(sender_public).decrypt(ciphertext, nonce)
        except NaclCryptoError:
            raise SealError("sealed body does not open with these keys (tampered or not for us)") from None
