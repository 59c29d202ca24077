"""Exporting the evidence bundle of one referral from a node's own database
(docs/evidence.md section 2). The manifest is signed with the node's Signer, the one its
Composer signs envelopes with: no private key is read here."""

from __future__ import annotations

import json
import uuid
from typing import Mapping

from sqlalchemy import select

from adapters.crypto.canonical import strict_loads
from adapters.crypto.encoding import b64encode
from adapters.crypto.keys import ED25519
from adapters.crypto.timestamps import format_timestamp
from adapters.storage.exceptions import AuditChainBroken
from adapters.storage.tables import AuditEntry, AuditHead
from services.domain.exceptions import UnknownReferral
from services.handlers.context import NodeContext

from .format import FORMAT, GENESIS_HASH, item_sha256, manifest_signing_input, sha256_hex


def export_bundle(ctx: NodeContext, referral_id: str) -> dict:
    """The bundle of ``referral_id`` as this node holds it, as a JSON value. Raises
    UnknownReferral when the node holds no message of it, AuditChainBroken when its own audit
    log does not verify (no bundle is made from a broken chain)."""
    with ctx.store.transaction() as repo:
        repo.verify_audit_chain()
        stored = list(repo.messages_for_referral(referral_id))
        if not stored:
            raise UnknownReferral(f"this node ({ctx.agency}) holds no message of referral {referral_id}")
        entries = list(repo.audit_entries(referral_id))
        hashes = list(repo.session.execute(select(AuditEntry.hash).order_by(AuditEntry.seq)).scalars())
        head = repo.session.get(AuditHead, 1)
        head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)
    if len(hashes) != head_seq or (hashes and hashes[-1] != head_hash):
        raise AuditChainBroken("the audit log changed while it was read; export again")
    messages = [{"message_id": m.message_id, "direction": m.direction, "raw": b64encode(m.raw)} for m in stored]
    audit = {"head": {"seq": head_seq, "hash": head_hash}, "hashes": hashes,
             "entries": [{"seq": e.seq, "at": format_timestamp(e.at), "event": e.event,
                          "referral_id": e.referral_id, "message_id": e.message_id, "detail": e.detail,
                          "prev_hash": e.prev_hash, "hash": e.hash} for e in entries]}
    signer = ctx.composer.signer
    keyring = ctx.verifier.keyring
    needed = {signer.key_id}
    for message in stored:
        envelope = strict_loads(message.raw)
        if isinstance(envelope, dict) and isinstance(envelope.get("sender_key_id"), str):
            needed.add(envelope["sender_key_id"])
    keys = [keyring.records[key_id].to_json() for key_id in sorted(needed) if key_id in keyring.records]
    exported_at = ctx.clock()
    # The exporter's own key must verify the manifest at exported_at (refused here, in one line).
    keyring.key_for(signer.key_id, agency=ctx.agency, algorithm=ED25519, at=exported_at)
    manifest = {
        "format": FORMAT,
        "bundle_id": str(uuid.uuid4()),
        "referral_id": referral_id,
        "exporter": ctx.agency,
        "exported_at": format_timestamp(exported_at),
        "signer_key_id": signer.key_id,
        "messages": [{"message_id": m.message_id, "direction": m.direction, "sha256": sha256_hex(m.raw)}
                     for m in stored],
        "audit_sha256": item_sha256(audit),
        "keys_sha256": item_sha256(keys),
    }
    return {"format": FORMAT, "manifest": manifest, "manifest_signature": signer.sign(manifest_signing_input(manifest)),
            "messages": messages, "audit": audit, "keys": keys}


def bundle_text(bundle: Mapping) -> str:
    """The file's text: indented UTF-8 JSON, readable with any JSON tool."""
    return json.dumps(bundle, ensure_ascii=False, indent=2) + "\n"

