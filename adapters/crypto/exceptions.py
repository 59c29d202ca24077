"""Errors of the crypto adapter. Each names the rule it enforces in ``rule``
(services/protocol/rules.py, a leaf module every layer may import)."""

from __future__ import annotations

from services.protocol import rules


class CryptoError(Exception):
    """Base of the crypto adapter's errors; never raised itself: each subclass names its rule."""

    rule: str

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


# Canonical JSON (RFC 8785 / I-JSON input rules)
class MalformedJson(CryptoError):
    rule = rules.JSON_MALFORMED


class DuplicateKey(CryptoError):
    rule = rules.JSON_DUPLICATE_KEY


class FloatNotAllowed(CryptoError):
    rule = rules.JSON_FLOAT


class IntegerOutOfRange(CryptoError):
    rule = rules.JSON_INTEGER_RANGE


# Signatures
class MalformedSignature(CryptoError):
    rule = rules.SIGNATURE_MALFORMED


class InvalidSignature(CryptoError):
    rule = rules.SIGNATURE_INVALID


# Keys
class UnknownKey(CryptoError):
    rule = rules.KEY_UNKNOWN


class KeyAgencyMismatch(CryptoError):
    rule = rules.KEY_AGENCY_MISMATCH


class KeyPurposeMismatch(CryptoError):
    rule = rules.KEY_PURPOSE_MISMATCH


class KeyRevoked(CryptoError):
    rule = rules.KEY_REVOKED


class KeyExpired(CryptoError):
    rule = rules.KEY_EXPIRED


class KeyNotYetValid(CryptoError):
    rule = rules.KEY_NOT_YET_VALID


class KeyStoreError(CryptoError):
    """Key files missing, unreadable, malformed or too widely readable."""
    rule = rules.KEYSTORE_ERROR


# Sealed bodies
class SealError(CryptoError):
    rule = rules.BODY_SEALED
