"""Errors of the crypto adapter. Each names the rule it enforces in ``rule``."""

from __future__ import annotations


class CryptoError(Exception):
    rule = "crypto.error"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


# Canonical JSON (RFC 8785 / I-JSON input rules)
class MalformedJson(CryptoError):
    rule = "json.malformed"


class DuplicateKey(CryptoError):
    rule = "json.duplicate_key"


class FloatNotAllowed(CryptoError):
    rule = "json.float"


class IntegerOutOfRange(CryptoError):
    rule = "json.integer_range"


# Signatures
class MalformedSignature(CryptoError):
    rule = "signature.malformed"


class InvalidSignature(CryptoError):
    rule = "signature.invalid"


# Keys
class UnknownKey(CryptoError):
    rule = "key.unknown"


class KeyAgencyMismatch(CryptoError):
    rule = "key.agency_mismatch"


class KeyPurposeMismatch(CryptoError):
    rule = "key.purpose_mismatch"


class KeyRevoked(CryptoError):
    rule = "key.revoked"


class KeyExpired(CryptoError):
    rule = "key.expired"


class KeyNotYetValid(CryptoError):
    rule = "key.not_yet_valid"


class KeyStoreError(CryptoError):
    """Key files missing, unreadable, malformed or too widely readable."""
    rule = "keystore.error"


# Sealed bodies
class SealError(CryptoError):
    rule = "body.sealed"
