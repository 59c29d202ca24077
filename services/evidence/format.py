"""The bundle format ``cluebus-evidence/1`` (docs/evidence.md): its names, and the bytes the
manifest signature covers. Shared by the exporter and the verifier."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from adapters.crypto.canonical import canonical_bytes

FORMAT = "cluebus-evidence/1"
MANIFEST_DOMAIN = b"cluebus-evidence-manifest"
BUNDLE_MEMBERS = ("format", "manifest", "manifest_signature", "messages", "audit", "keys")
MANIFEST_MEMBERS = ("format", "bundle_id", "referral_id", "exporter", "exported_at", "signer_key_id",
                    "messages", "audit_sha256", "keys_sha256")
MESSAGE_MEMBERS = ("message_id", "direction", "raw")
MANIFEST_MESSAGE_MEMBERS = ("message_id", "direction", "sha256")
AUDIT_MEMBERS = ("head", "hashes", "entries")
HEAD_MEMBERS = ("seq", "hash")
ENTRY_MEMBERS = ("seq", "at", "event", "referral_id", "message_id", "detail", "prev_hash", "hash")
DIRECTIONS = ("in", "out")
GENESIS_HASH = "0" * 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def item_sha256(value: Any) -> str:
    """SHA-256 of the RFC 8785 form of a JSON value (the audit and keys sections)."""
    return sha256_hex(canonical_bytes(value))


def manifest_signing_input(manifest: Mapping) -> bytes:
    """``"cluebus-evidence-manifest" 0x00 "cluebus-evidence/1" 0x00 JCS(manifest)``."""
    return MANIFEST_DOMAIN + b"\x00" + FORMAT.encode("ascii") + b"\x00" + canonical_bytes(dict(manifest))
