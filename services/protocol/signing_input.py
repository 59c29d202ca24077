"""The exact bytes an envelope signature covers, and the body hash."""

from __future__ import annotations

import hashlib
from typing import Mapping

from adapters.crypto.canonical import canonical_bytes, canonical_bytes_with

SIGNATURE_DOMAIN = b"cluebus-envelope-signature"


def unsigned(envelope: Mapping) -> dict:
    return {key: value for key, value in envelope.items() if key != "signature"}


def signing_input(envelope: Mapping, body_bytes: bytes | None = None) -> bytes:
    """Domain-separation prefix, then the RFC 8785 bytes of the envelope minus its signature.

    The prefix names the protocol, kind and schema version, so a signature made for one of
    them can never be taken for another, nor for any other use of the same key.
    ``body_bytes``: the body's canonical bytes, when the caller has them already.
    """
    prefix = b"\x00".join([
        SIGNATURE_DOMAIN,
        str(envelope["protocol"]).encode("utf-8"),
        str(envelope["kind"]).encode("utf-8"),
        str(envelope["schema_version"]).encode("ascii"),
        b"",
    ])
    if body_bytes is None:
        return prefix + canonical_bytes(unsigned(envelope))
    around = {key: value for key, value in envelope.items() if key not in ("signature", "body")}
    return prefix + canonical_bytes_with(around, "body", envelope["body"], body_bytes)


def body_sha256(body: Mapping, body_bytes: bytes | None = None) -> str:
    """SHA-256 (lowercase hex) of the RFC 8785 bytes of the ``body`` member as sent
    (``body_bytes``, when the caller has them already)."""
    return hashlib.sha256(canonical_bytes(body) if body_bytes is None else body_bytes).hexdigest()


def message_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
