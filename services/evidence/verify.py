"""Verifying evidence bundles offline (docs/evidence.md section 3): nothing but the files: no
database, no broker, no configuration. Checks run in the document's order and the first
failure is raised as an EvidenceFailure naming the file and what failed.

The audit hash is reimplemented here from docs/evidence.md 3.7 (the same function as
adapters/storage/repository.audit_hash, which a test checks), not imported from the storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from marshmallow import ValidationError

from adapters.crypto.canonical import canonical_bytes, strict_loads
from adapters.crypto.encoding import b64decode_strict
from adapters.crypto.exceptions import CryptoError
from adapters.crypto.keys import ED25519, KEYRING_FORMAT, Keyring
from adapters.crypto.signing import verify_signature
from adapters.crypto.timestamps import parse_timestamp
from schemas.envelope import PROTOCOL, SEALED, EnvelopeSchema
from schemas.registry import RECEIPT, summarise_messages
from services.protocol.signing_input import body_sha256, signing_input

from .format import (AUDIT_MEMBERS, BUNDLE_MEMBERS, DIRECTIONS, ENTRY_MEMBERS, FORMAT, GENESIS_HASH,
                     HEAD_MEMBERS, MANIFEST_MEMBERS, MANIFEST_MESSAGE_MEMBERS, MESSAGE_MEMBERS, item_sha256,
                     manifest_signing_input, sha256_hex)

_ENVELOPE_SCHEMA = EnvelopeSchema()
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
_AGENCY = re.compile(r"[a-z][a-z0-9_]{1,63}", re.ASCII)


class EvidenceFailure(Exception):
    """The first check a bundle (or a set of bundles) fails: ``source`` names the file."""

    def __init__(self, source: str, detail: str):
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.detail = detail


def audit_hash(seq: int, at: str, event: str, referral_id: str | None, message_id: str | None,
               detail: Mapping, prev_hash: str) -> str:
    """docs/evidence.md 3.7: hex SHA-256 of JCS of the entry's seven members, ``at`` as written."""
    return sha256_hex(canonical_bytes({"seq": seq, "at": at, "event": event, "referral_id": referral_id,
                                       "message_id": message_id, "detail": dict(detail),
                                       "prev_hash": prev_hash}))


@dataclass(frozen=True)
class BundleMessage:
    message_id: str
    direction: str
    raw: bytes
    sha256: str
    envelope: dict
    sent_at: datetime

    @property
    def kind(self) -> str:
        return self.envelope["kind"]

    @property
    def receipt_status(self) -> str | None:
        """A receipt's status: from its plain body, or the facts of a sealed one."""
        if self.kind != RECEIPT:
            return None
        body = self.envelope["body"]
        if self.envelope["body_encoding"] == SEALED:
            return (body.get("facts") or {}).get("status")
        return body.get("status")


@dataclass
class Bundle:
    source: str
    manifest: dict
    messages: list[BundleMessage]
    head: dict
    entries: list[dict]
    notes: list[str] = field(default_factory=list)

    @property
    def exporter(self) -> str:
        return self.manifest["exporter"]

    @property
    def referral_id(self) -> str:
        return self.manifest["referral_id"]

    def by_id(self) -> dict[str, BundleMessage]:
        return {m.message_id: m for m in self.messages}


def _members(value: Any, names: Iterable[str], what: str, fail) -> dict:
    if not isinstance(value, dict):
        raise fail(f"{what} is not a JSON object")
    missing, unknown = set(names) - set(value), set(value) - set(names)
    if missing or unknown:
        raise fail(f"{what} must have exactly the members {', '.join(names)}"
                   f"{' (missing ' + ', '.join(sorted(missing)) + ')' if missing else ''}"
                   f"{' (unknown ' + ', '.join(sorted(unknown)) + ')' if unknown else ''}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any, pattern: re.Pattern | None = None) -> bool:
    return isinstance(value, str) and (pattern is None or pattern.fullmatch(value) is not None)


def load_bundle(data: bytes, source: str = "bundle") -> Bundle:
    """Every check of docs/evidence.md 3.1–3.7 on one bundle file's bytes."""

    def fail(detail: str) -> EvidenceFailure:
        return EvidenceFailure(source, detail)

    # 3.1 the file
    try:
        document = strict_loads(data)
    except CryptoError as exc:
        raise fail(f"the file is not JSON under protocol section 6: [{exc.rule}] {exc.detail}") from None
    _members(document, BUNDLE_MEMBERS, "the bundle", fail)
    if document["format"] != FORMAT:
        raise fail(f"format {document['format']!r} is not {FORMAT!r}")

    # 3.2 the keys
    if not isinstance(document["keys"], list):
        raise fail("keys is not an array")
    try:
        keyring = Keyring.from_json({"format": KEYRING_FORMAT, "keys": document["keys"]})
    except CryptoError as exc:
        raise fail(f"keys: [{exc.rule}] {exc.detail}") from None

    # 3.3 the manifest and its signature
    manifest = _members(document["manifest"], MANIFEST_MEMBERS, "the manifest", fail)
    if manifest["format"] != FORMAT:
        raise fail(f"manifest format {manifest['format']!r} is not {FORMAT!r}")
    for name, pattern in (("bundle_id", _UUID), ("referral_id", _UUID), ("exporter", _AGENCY),
                          ("signer_key_id", None), ("audit_sha256", _HEX64), ("keys_sha256", _HEX64)):
        if not _text(manifest[name], pattern):
            raise fail(f"manifest {name} is not valid")
    try:
        exported_at = parse_timestamp(manifest["exported_at"])
    except ValueError as exc:
        raise fail(f"manifest exported_at: {exc}") from None
    if not isinstance(manifest["messages"], list):
        raise fail("manifest messages is not an array")
    try:
        key = keyring.key_for(manifest["signer_key_id"], agency=manifest["exporter"], algorithm=ED25519,
                              at=exported_at)
        verify_signature(key.public_key, manifest_signing_input(manifest), document["manifest_signature"])
    except CryptoError as exc:
        raise fail(f"manifest signature of {manifest['exporter']}: [{exc.rule}] {exc.detail}") from None

    # 3.4 the items against the manifest
    if item_sha256(document["keys"]) != manifest["keys_sha256"]:
        raise fail("the keys section does not match the manifest's keys_sha256")
    if item_sha256(document["audit"]) != manifest["audit_sha256"]:
        raise fail("the audit section does not match the manifest's audit_sha256")
    if not isinstance(document["messages"], list):
        raise fail("messages is not an array")
    listed, held = manifest["messages"], document["messages"]
    if len(listed) != len(held):
        raise fail(f"the manifest lists {len(listed)} message(s), the bundle holds {len(held)}")
    raws: list[bytes] = []
    seen: set[str] = set()
    for index, (item, message) in enumerate(zip(listed, held), start=1):
        _members(item, MANIFEST_MESSAGE_MEMBERS, f"manifest message {index}", fail)
        _members(message, MESSAGE_MEMBERS, f"message {index}", fail)
        if item["message_id"] != message["message_id"] or item["direction"] != message["direction"]:
            raise fail(f"message {index} is not the manifest's message {index} ({item['message_id']})")
        if not _text(message["message_id"], _UUID) or message["message_id"] in seen:
            raise fail(f"message {index}: message_id is not a UUID, or appears twice")
        seen.add(message["message_id"])
        if message["direction"] not in DIRECTIONS:
            raise fail(f"message {index}: direction must be 'in' or 'out'")
        try:
            raw = b64decode_strict(message["raw"])
        except ValueError as exc:
            raise fail(f"message {index} ({message['message_id']}): raw is not canonical base64: {exc}") from None
        if sha256_hex(raw) != item["sha256"]:
            raise fail(f"message {index} ({message['message_id']}): its bytes do not match the manifest's sha256")
        raws.append(raw)

    # 3.5 every message's signature, at its sent_at
    messages = [_verify_message(index, message["message_id"], message["direction"], raw, keyring, manifest, fail)
                for index, (message, raw) in enumerate(zip(held, raws), start=1)]

    # 3.6 receipts bind to the bytes they answer
    bundle = Bundle(source, manifest, messages, {}, [])
    _check_receipts(bundle, bundle.by_id(), fail)

    # 3.7 the audit chain
    bundle.head, bundle.entries = _check_audit(document["audit"], manifest["referral_id"], fail)
    held = bundle.by_id()
    for entry in bundle.entries:
        if entry["message_id"] is not None and entry["message_id"] not in held:
            raise fail(f"audit entry {entry['seq']} ({entry['event']}) names message {entry['message_id']}, "
                       "which the bundle does not hold")
    return bundle


def _verify_message(index: int, message_id: str, direction: str, raw: bytes, keyring: Keyring,
                    manifest: Mapping, fail) -> BundleMessage:
    where = f"message {index} ({message_id})"
    if not raw:
        raise fail(f"{where}: no bytes")
    try:
        envelope = strict_loads(raw)
    except CryptoError as exc:
        raise fail(f"{where}: [{exc.rule}] {exc.detail}") from None
    if not isinstance(envelope, dict) or envelope.get("protocol") != PROTOCOL:
        raise fail(f"{where}: not a {PROTOCOL} envelope")
    try:
        loaded = _ENVELOPE_SCHEMA.load(envelope)
    except ValidationError as exc:
        raise fail(f"{where}: envelope is invalid: {summarise_messages(exc.messages)}") from None
    where = f"{where}, {envelope['kind']} from {envelope['sender']} to {envelope['recipient']}"
    sent_at = loaded["sent_at"]
    try:
        key = keyring.key_for(envelope["sender_key_id"], agency=envelope["sender"], algorithm=ED25519, at=sent_at)
        verify_signature(key.public_key, signing_input(envelope), envelope["signature"])
    except CryptoError as exc:
        raise fail(f"{where}: [{exc.rule}] {exc.detail}") from None
    if body_sha256(envelope["body"]) != envelope["body_sha256"]:
        raise fail(f"{where}: body_sha256 is not the hash of its body")
    if envelope["message_id"] != message_id:
        raise fail(f"{where}: the envelope's message_id is {envelope['message_id']}")
    if envelope["referral_id"] != manifest["referral_id"]:
        raise fail(f"{where}: it belongs to referral {envelope['referral_id']}")
    if (direction == "out") != (envelope["sender"] == manifest["exporter"]):
        raise fail(f"{where}: direction {direction!r} does not fit an export by {manifest['exporter']}")
    return BundleMessage(message_id, direction, raw, sha256_hex(raw), envelope, sent_at)


def _check_receipts(bundle: Bundle, answered_in: Mapping[str, BundleMessage], fail, *,
                    other: bool = False) -> None:
    """Each receipt of ``bundle`` whose answered message is in ``answered_in``: from that
    message's recipient, to its sender, with ``message_sha256`` the hash of its bytes."""
    for receipt in bundle.messages:
        if receipt.kind != RECEIPT:
            continue
        where = f"receipt {receipt.message_id} from {receipt.envelope['sender']}"
        answered = answered_in.get(receipt.envelope["in_reply_to"] or "")
        if answered is None:
            continue
        if (receipt.envelope["sender"], receipt.envelope["recipient"]) != \
                (answered.envelope["recipient"], answered.envelope["sender"]):
            raise fail(f"{where}: it answers {answered.message_id}, which {answered.envelope['sender']} sent to "
                       f"{answered.envelope['recipient']}")
        if receipt.kind == RECEIPT and receipt.envelope["body_encoding"] == SEALED:
            bundle.notes.append(f"receipt {receipt.message_id} is sealed: its message_sha256 is not checked")
            continue
        digest = receipt.envelope["body"].get("message_sha256")
        if digest != answered.sha256:
            whose = "the bytes of " + ("the other bundle's copy of " if other else "") + answered.message_id
            raise fail(f"{where}: message_sha256 is not the hash of {whose}")


def _check_audit(audit: Any, referral_id: str, fail) -> tuple[dict, list[dict]]:
    _members(audit, AUDIT_MEMBERS, "the audit section", fail)
    head = _members(audit["head"], HEAD_MEMBERS, "the audit head", fail)
    hashes, entries = audit["hashes"], audit["entries"]
    if not _is_int(head["seq"]) or head["seq"] < 0 or not _text(head["hash"], _HEX64):
        raise fail("the audit head is not a sequence number and a hash")
    if not isinstance(hashes, list) or not all(_text(h, _HEX64) for h in hashes):
        raise fail("audit hashes is not an array of hashes")
    if len(hashes) != head["seq"]:
        raise fail(f"the audit chain lists {len(hashes)} hash(es) for a head at seq {head['seq']}")
    if (hashes[-1] if hashes else GENESIS_HASH) != head["hash"]:
        raise fail("the last hash of the audit chain is not its head")
    if len(set(hashes)) != len(hashes):
        raise fail("the audit chain lists a hash twice")
    if not isinstance(entries, list):
        raise fail("audit entries is not an array")
    previous_seq = 0
    for entry in entries:
        _members(entry, ENTRY_MEMBERS, "an audit entry", fail)
        seq = entry["seq"]
        if not _is_int(seq) or not 1 <= seq <= head["seq"]:
            raise fail(f"audit entry seq {seq!r} is not within the chain (1..{head['seq']})")
        where = f"audit entry {seq} ({entry['event']})"
        if seq <= previous_seq:
            raise fail(f"{where}: entries are not in chain order (it follows entry {previous_seq})")
        previous_seq = seq
        if not (_text(entry["event"]) and _text(entry["at"]) and isinstance(entry["detail"], dict)
                and (entry["message_id"] is None or _text(entry["message_id"]))
                and _text(entry["prev_hash"], _HEX64) and _text(entry["hash"], _HEX64)):
            raise fail(f"{where}: a member has the wrong type")
        if entry["referral_id"] != referral_id:
            raise fail(f"{where}: it is not an entry of referral {referral_id}")
        if entry["prev_hash"] != (hashes[seq - 2] if seq > 1 else GENESIS_HASH):
            raise fail(f"{where}: prev_hash is not the hash of entry {seq - 1}")
        if entry["hash"] != hashes[seq - 1]:
            raise fail(f"{where}: its hash is not the chain's hash at seq {seq}")
        if audit_hash(seq, entry["at"], entry["event"], entry["referral_id"], entry["message_id"],
                      entry["detail"], entry["prev_hash"]) != entry["hash"]:
            raise fail(f"{where}: its hash is not the hash of its contents (altered)")
    return head, entries


# -- several bundles ---------------------------------------------------------------------------------
def verify_bundles(files: Iterable[tuple[str, bytes]]) -> list[Bundle]:
    """Each bundle verified (3.1–3.7), then together (3.8)."""
    bundles = [load_bundle(data, source) for source, data in files]
    if not bundles:
        raise EvidenceFailure("evidence", "no bundle given")
    first = bundles[0]
    by_exporter: dict[str, Bundle] = {}
    for bundle in bundles:
        if bundle.referral_id != first.referral_id:
            raise EvidenceFailure(bundle.source, f"referral {bundle.referral_id}, not {first.referral_id} "
                                                 f"as in {first.source}")
        by_exporter.setdefault(bundle.exporter, bundle)
    for a_index, a in enumerate(bundles):
        for b in bundles[a_index + 1:]:
            held = b.by_id()
            for message in a.messages:
                other = held.get(message.message_id)
                if other is not None and other.raw != message.raw:
                    raise EvidenceFailure(b.source, f"message {message.message_id} differs from its copy in "
                                                    f"{a.source}")
    for bundle in bundles:
        for receipt in bundle.messages:
            if receipt.kind != RECEIPT:
                continue
            side = by_exporter.get(receipt.envelope["recipient"])
            if side is None or side is bundle:
                continue
            answered = side.by_id().get(receipt.envelope["in_reply_to"] or "")
            if answered is None or answered.direction != "out":
                raise EvidenceFailure(bundle.source, f"receipt {receipt.message_id} answers "
                                                     f"{receipt.envelope['in_reply_to']}, which {side.exporter}'s "
                                                     f"bundle ({side.source}) does not hold as sent")
        for side in bundles:
            if side is not bundle:
                _check_receipts(bundle, side.by_id(), lambda d, s=bundle.source: EvidenceFailure(s, d), other=True)
    return bundles


def timeline(bundles: list[Bundle]) -> list[dict]:
    """One line per message across the bundles, in order of sending (receipts after what they
    answer when sent at the same instant)."""
    merged: dict[str, dict] = {}
    for bundle in bundles:
        for message in bundle.messages:
            step = merged.setdefault(message.message_id, {
                "sent_at": message.envelope["sent_at"], "instant": message.sent_at, "kind": message.kind,
                "sender": message.envelope["sender"], "recipient": message.envelope["recipient"],
                "message_id": message.message_id, "in_reply_to": message.envelope["in_reply_to"],
                "sha256": message.sha256, "sealed": message.envelope["body_encoding"] == SEALED,
                "receipt_status": message.receipt_status, "held_by": {}})
            step["held_by"][bundle.exporter] = message.direction
    steps = sorted(merged.values(), key=lambda s: (s["instant"], s["kind"] == RECEIPT, s["message_id"]))
    for step in steps:
        del step["instant"]
        answers = [s for s in steps if s["in_reply_to"] == step["message_id"] and s["kind"] == RECEIPT]
        step["answered"] = [a["receipt_status"] for a in answers]
    return steps
