"""Test vectors for protocol cluebus/1 (docs/protocol-vectors.json).

:func:`build_vectors` produces the whole vector document deterministically: fixed key seeds,
message ids, referral ids, timestamps and nonce. Valid vectors come from our own composer
and signing code; invalid ones are hand-crafted from them, each with exactly one defect and
the rule code a receiver must reject it with. ``cluebus protocol vectors`` writes the document.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from adapters.crypto.canonical import canonical_bytes
from adapters.crypto.encoding import b64encode
from adapters.crypto.keys import AgencyKeyMaterial, Keyring
from adapters.crypto.sealing import BoxKey
from adapters.crypto.signing import Signer
from adapters.crypto.timestamps import format_timestamp, parse_timestamp
from schemas.envelope import PROTOCOL, SEAL_ALGORITHM, SEALED
from schemas.facts import facts_of
from schemas.registry import (CLUE_TRANSFER, RECEIPT, RECONCILIATION_ANSWER, RECONCILIATION_SUMMARY,
                              dump_body)
from services.domain.reconciliation import ids_sha256
from schemas.routes import RouteTable

from . import rules
from .compose import Composer, encode, sign_envelope
from .signing_input import SIGNATURE_DOMAIN, body_sha256, message_sha256, signing_input, unsigned
from .transport import CONTENT_TYPE
from .verify import DEFAULT_CLOCK_SKEW, DEFAULT_MAX_MESSAGE_BYTES

VECTORS_FORMAT = "cluebus-protocol-vectors/1"

# The agencies of the shipped configuration, in its order, with the digit that makes their
# seeds: the Ed25519 seed is 32 bytes of 0x<d>1, the X25519 secret 32 bytes of 0x<d>2.
AGENCY_DIGITS = (
    ("medical_security", 1),
    ("public_security", 2),
    ("procuratorate", 3),
    ("court", 4),
    ("health", 5),
    ("finance", 6),
    ("joint_office", 7),
)
# An agency that has keys (in one keyring variant) but is not a configured agency.
UNCONFIGURED_AGENCY = ("market_regulation", 8)

KEYS_VALID_FROM = "2026-01-01T00:00:00Z"
KEYS_VALID_UNTIL = "2028-01-01T00:00:00Z"

# Fixed ids. Referral ids and message ids are lowercase UUID text (version 4 layout).
REFERRAL_PLAIN = "5f0c2d1e-8a3b-4c6d-9e7f-102132435461"
REFERRAL_SEALED = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41"
MSG_CLUE = "0b9f3c52-6a4e-4f1d-8c2b-7e5a9d310001"
MSG_RECEIPT = "0b9f3c52-6a4e-4f1d-8c2b-7e5a9d310002"
MSG_SEALED = "0b9f3c52-6a4e-4f1d-8c2b-7e5a9d310003"
MSG_SEALED_FACTS = "0b9f3c52-6a4e-4f1d-8c2b-7e5a9d310004"
MSG_BAD = "0b9f3c52-6a4e-4f1d-8c2b-7e5a9d3100ff"  # used by hand-crafted invalid messages
# Reconciliation (protocol §20): a second clue id the summary counts, the summary and its answer
# (each its own referral: referral_id = message_id).
MSG_OTHER_CLUE = "0b9f3c52-6a4e-4f1d-8c2b-7e5a9d310005"
MSG_RECON_SUMMARY = "0b9f3c52-6a4e-4f1d-8c2b-7e5a9d310006"
MSG_RECON_ANSWER = "0b9f3c52-6a4e-4f1d-8c2b-7e5a9d310007"
SENT_OTHER_CLUE = "2026-11-24T09:10:00Z"
SENT_RECON_SUMMARY = "2026-11-24T11:00:00Z"
SENT_RECON_ANSWER = "2026-11-24T11:00:02Z"
RECON_WINDOW_UNTIL = "2026-11-24T10:59:00Z"

SENT_CLUE = "2026-11-24T09:00:00Z"
SENT_RECEIPT = "2026-11-24T09:00:05.250000Z"
SENT_SEALED = "2026-11-24T09:30:00Z"
SENT_SEALED_FACTS = "2026-11-24T09:45:00Z"
SEAL_NONCE = bytes(range(0x40, 0x40 + 24))
SEAL_NONCE_FACTS = bytes(range(0x60, 0x60 + 24))  # another fixed nonce: never reuse one

# What the bus said about a delivery (protocol §17, §19): the content type, and the agency
# whose bus account published it (None: no user_id, or one that is no agency's bus account).
def _transport(content_type: str | None = CONTENT_TYPE,
               publisher: str | None = "medical_security") -> dict:
    return {"content_type": content_type, "publisher": publisher}


# The size limit used by the "oversized" vector (instead of building 1 MiB of data).
OVERSIZED_LIMIT_SLACK = 1


def _seed(digit: int, suffix: int) -> bytes:
    return bytes.fromhex(f"{digit}{suffix}" * 32)


def _ts(text: str) -> datetime:
    return parse_timestamp(text)


def _plus(text: str, seconds: float) -> str:
    return format_timestamp(_ts(text) + timedelta(seconds=seconds))


def _doc_sha(label: str) -> str:
    """A stand-in attachment hash: SHA-256 of a fixed label."""
    return hashlib.sha256(label.encode("utf-8")).hexdigest()


@dataclass
class _Agency:
    material: AgencyKeyMaterial

    @property
    def code(self) -> str:
        return self.material.agency

    @property
    def signer(self) -> Signer:
        m = self.material
        return Signer(m.agency, m.signing_key_id, m.signing_seed)

    @property
    def box_key(self) -> BoxKey:
        m = self.material
        return BoxKey(m.agency, m.box_key_id, m.box_secret)

    def key_json(self, *, configured: bool = True) -> dict:
        m = self.material
        return {
            "agency": m.agency,
            "configured": configured,
            "signing_seed_hex": m.signing_seed.hex(),
            "signing_public_hex": m.signing_public.hex(),
            "signing_public_b64": b64encode(m.signing_public),
            "signing_key_id": m.signing_key_id,
            "box_secret_hex": m.box_secret.hex(),
            "box_public_hex": m.box_public.hex(),
            "box_public_b64": b64encode(m.box_public),
            "box_key_id": m.box_key_id,
        }


def _agency(code: str, digit: int) -> _Agency:
    return _Agency(AgencyKeyMaterial.from_seeds(code, _seed(digit, 1), _seed(digit, 2)))


def _keyring(agencies: list[_Agency]) -> Keyring:
    ring = Keyring()
    for agency in agencies:
        for record in agency.material.public_records(_ts(KEYS_VALID_FROM), _ts(KEYS_VALID_UNTIL)):
            ring.add(record)
    return ring


# -- bodies ------------------------------------------------------------------------------

def _clue_body() -> dict:
    """A suspected-crime clue with Chinese text, a non-BMP character and a line break."""
    return {
        "clue_no": "YB-2026-0001",
        "category": "suspected_crime",
        "title": "某民营医院虚构住院骗取医保基金",
        "summary": ("经大数据筛查和现场检查，发现该院2026年1月至6月间虚构住院病历312份，"
                    "串换药品、“挂床住院”。\n涉嫌诈骗罪，依法移送。"),
        "subjects": [
            {"role": "institution", "name": "某某民营医院",
             "id_type": "unified_social_credit_code", "id_number": "91420100MA4K0X0X0X"},
            {"role": "doctor", "name": "𠮷某某"},
        ],
        "amount_involved_fen": 123456789,
        "legal_basis": "《中华人民共和国刑法》第二百六十六条；《医疗保障基金使用监督管理条例》第四十条",
        "team_reported_at": "2026-11-20T02:00:00Z",
        "approved_by": "局长 张三",
        "approved_at": "2026-11-23T08:15:30.500000Z",
        "attachments": [
            {"name": "移送书.pdf", "category": "transfer_letter", "media_type": "application/pdf",
             "size": 182734, "sha256": _doc_sha("transfer letter YB-2026-0001")},
            {"name": "调查报告.pdf", "category": "investigation_report",
             "media_type": "application/pdf", "size": 2048576,
             "sha256": _doc_sha("investigation report YB-2026-0001")},
        ],
    }


def _sealed_clue_body() -> dict:
    return {
        "clue_no": "WJ-2026-0042",
        "category": "suspected_crime",
        "title": "某诊所医师伪造处方套取医保基金",
        "summary": "卫生健康委检查中发现医师李四伪造处方87张，涉嫌诈骗，移送公安机关。",
        "subjects": [{"role": "doctor", "name": "李四", "id_type": "resident_id",
                      "id_number": "420102198001010000"}],
        "amount_involved_fen": 4567800,
        "legal_basis": "《中华人民共和国刑法》第二百六十六条",
        "team_reported_at": "2026-11-21T01:00:00Z",
        "approved_by": "主任 王五",
        "approved_at": "2026-11-24T01:00:00Z",
        "attachments": [
            {"name": "移送书.pdf", "category": "transfer_letter", "media_type": "application/pdf",
             "size": 90211, "sha256": _doc_sha("transfer letter WJ-2026-0042")},
            {"name": "调查报告.pdf", "category": "investigation_report",
             "media_type": "application/pdf", "size": 310442,
             "sha256": _doc_sha("investigation report WJ-2026-0042")},
        ],
    }


# -- byte surgery for hand-crafted messages ------------------------------------------------

def _flip_low_bit(raw: bytes, marker: bytes, offset: int) -> bytes:
    """Flip the lowest bit of the byte ``offset`` bytes after the (unique) ``marker``."""
    assert raw.count(marker) == 1, marker
    index = raw.index(marker) + offset
    return raw[:index] + bytes([raw[index] ^ 0x01]) + raw[index + 1:]


def _replace_once(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1, old
    return raw.replace(old, new)


def _replace_signature(raw: bytes, envelope: Mapping, new_signature: str) -> bytes:
    old = json.dumps(envelope["signature"]).encode("ascii")
    return _replace_once(raw, old, json.dumps(new_signature).encode("ascii"))


def _non_canonical_base64(text: str) -> str:
    """The same bytes with non-zero unused bits in the last data character (not canonical)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    data_end = len(text.rstrip("="))
    last = alphabet.index(text[data_end - 1])
    changed = alphabet[last | 0x01] if not last & 0x01 else alphabet[last | 0x02]
    result = text[:data_end - 1] + changed + text[data_end:]
    assert base64.b64decode(result) == base64.b64decode(text) and result != text
    return result


def _text_or_none(raw: bytes) -> str | None:
    """``raw`` as text when it is UTF-8 without a BOM and has no control characters."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) < 0xa0 for c in text):
        return None
    return text


# -- the document ---------------------------------------------------------------------------

class _Builder:
    def __init__(self):
        self.agencies = {code: _agency(code, digit) for code, digit in AGENCY_DIGITS}
        self.outsider = _agency(*UNCONFIGURED_AGENCY)
        self.keyring = _keyring(list(self.agencies.values()))
        self.routes = RouteTable.load()
        self.valid: list[dict] = []
        self.invalid: list[dict] = []

    def a(self, code: str) -> _Agency:
        return self.agencies[code]

    def composer(self, code: str) -> Composer:
        agency = self.a(code)
        return Composer(agency.signer, self.routes, self.keyring, agency.box_key)

    # valid -----------------------------------------------------------------------------
    def build_valid(self) -> None:
        clue = self.composer("medical_security").compose(
            CLUE_TRANSFER, "public_security", _clue_body(), referral_id=REFERRAL_PLAIN,
            message_id=MSG_CLUE, sent_at=_ts(SENT_CLUE))
        self.clue_envelope, self.clue_raw = clue.envelope, clue.raw
        self.valid.append(self._valid_entry(
            "plain_clue_transfer",
            "A plain clue_transfer from medical_security to public_security. The body has Chinese "
            "text, a character outside the BMP (U+20BB7 in a subject's name), a line break and "
            "curly quotes; timestamps with and without fractional seconds.",
            clue.envelope, clue.raw, receiver="public_security", verify_at=_plus(SENT_CLUE, 42)))

        receipt_body = {
            "status": "accepted",
            "message_sha256": message_sha256(clue.raw),
            "received_at": "2026-11-24T09:00:01.5Z",
            "reason_codes": [],
        }
        receipt = self.composer("public_security").compose(
            RECEIPT, "medical_security", receipt_body, referral_id=REFERRAL_PLAIN,
            in_reply_to=MSG_CLUE, message_id=MSG_RECEIPT, sent_at=_ts(SENT_RECEIPT))
        self.valid.append(self._valid_entry(
            "receipt_in_reply",
            "public_security's receipt for plain_clue_transfer: in_reply_to is the clue's message "
            "id and message_sha256 the SHA-256 of the clue's exact wire bytes. receipt is a reply "
            "kind: it may go from any configured agency to any other. sent_at has fractional "
            "seconds; the "
            "body's received_at was given as .5Z and is sent in its normal form .500000Z. "
            "verify_at lies exactly clock_skew_seconds after sent_at (still accepted).",
            receipt.envelope, receipt.raw, receiver="medical_security",
            verify_at=_plus(SENT_RECEIPT, DEFAULT_CLOCK_SKEW.total_seconds())))

        self._build_sealed()
        self._build_sealed_with_facts()
        self._build_reconciliation()

        # Any JSON text is acceptable on the wire: the same signed envelope, pretty-printed,
        # members in reverse order and every non-ASCII character as a \u escape.
        pretty = json.dumps(dict(reversed(list(clue.envelope.items()))), indent=2,
                            ensure_ascii=True).encode("ascii") + b"\n"
        self.valid.append(self._valid_entry(
            "plain_clue_transfer_reformatted",
            "The signed envelope of plain_clue_transfer sent as different JSON text: indented, "
            "members in reverse order, non-ASCII characters as \\u escapes (surrogate pairs "
            "outside the BMP), trailing newline. Receivers must accept it: the signature covers "
            "the canonical form, not the bytes received. Its message_sha256 differs.",
            clue.envelope, pretty, receiver="public_security", verify_at=SENT_CLUE))

        entry = self._valid_entry(
            "plain_clue_transfer_from_the_bus",
            "plain_clue_transfer as delivered by the bus: with content type "
            f"{CONTENT_TYPE} and published by medical_security's bus account, its sender "
            "(steps 1a and 5a pass).",
            clue.envelope, clue.raw, receiver="public_security", verify_at=_plus(SENT_CLUE, 42))
        entry["transport"] = _transport()
        self.valid.append(entry)

    def _build_sealed(self) -> None:
        sender, recipient = self.a("health"), self.a("public_security")
        plain = dump_body(CLUE_TRANSFER, 1, _sealed_clue_body())
        plaintext = canonical_bytes(plain)
        nonce_b64, ciphertext_b64 = sender.box_key.seal(plaintext, recipient.material.box_public,
                                                        nonce=SEAL_NONCE)
        sealed_body = {
            "alg": SEAL_ALGORITHM,
            "sender_box_key_id": sender.material.box_key_id,
            "recipient_box_key_id": recipient.material.box_key_id,
            "nonce": nonce_b64,
            "ciphertext": ciphertext_b64,
        }
        envelope = {
            "protocol": PROTOCOL, "message_id": MSG_SEALED, "kind": CLUE_TRANSFER,
            "schema_version": 1, "sender": sender.code, "recipient": recipient.code,
            "referral_id": REFERRAL_SEALED, "in_reply_to": None, "sent_at": SENT_SEALED,
            "sender_key_id": sender.material.signing_key_id, "body_encoding": SEALED,
            "body": sealed_body, "body_sha256": body_sha256(sealed_body),
        }
        envelope = sign_envelope(envelope, sender.signer)
        raw = encode(envelope)
        self.sealed_envelope, self.sealed_raw, self.sealed_plain = envelope, raw, plain
        entry = self._valid_entry(
            "sealed_clue_transfer",
            "A clue_transfer from health to public_security with a sealed body (NaCl crypto_box). "
            "body_sha256 and the signature cover the sealed object; the plaintext is the "
            "canonical form of the plain body. The nonce is fixed here only to make the vector "
            "reproducible: real senders must use a fresh random nonce for every message.",
            envelope, raw, receiver="public_security", verify_at=_plus(SENT_SEALED, -120))
        entry["sealed"] = {
            "sender_box_key_id": sender.material.box_key_id,
            "recipient_box_key_id": recipient.material.box_key_id,
            "nonce_hex": SEAL_NONCE.hex(),
            "ciphertext_hex": base64.b64decode(ciphertext_b64).hex(),
            "plain_body": plain,
            "plain_body_canonical_hex": plaintext.hex(),
        }
        self.valid.append(entry)

    def _build_sealed_with_facts(self) -> None:
        sender, recipient = self.a("health"), self.a("public_security")
        plain = dump_body(CLUE_TRANSFER, 1, _sealed_clue_body())
        plaintext = canonical_bytes(plain)
        facts = facts_of(CLUE_TRANSFER, plain)
        nonce_b64, ciphertext_b64 = sender.box_key.seal(plaintext, recipient.material.box_public,
                                                        nonce=SEAL_NONCE_FACTS)
        sealed_body = {
            "alg": SEAL_ALGORITHM,
            "sender_box_key_id": sender.material.box_key_id,
            "recipient_box_key_id": recipient.material.box_key_id,
            "nonce": nonce_b64,
            "ciphertext": ciphertext_b64,
            "facts": facts,
        }
        envelope = {
            "protocol": PROTOCOL, "message_id": MSG_SEALED_FACTS, "kind": CLUE_TRANSFER,
            "schema_version": 1, "sender": sender.code, "recipient": recipient.code,
            "referral_id": REFERRAL_SEALED, "in_reply_to": None, "sent_at": SENT_SEALED_FACTS,
            "sender_key_id": sender.material.signing_key_id, "body_encoding": SEALED,
            "body": sealed_body, "body_sha256": body_sha256(sealed_body),
        }
        envelope = sign_envelope(envelope, sender.signer)
        raw = encode(envelope)
        self.sealed_facts_envelope = envelope
        entry = self._valid_entry(
            "sealed_clue_transfer_with_facts",
            "The body of sealed_clue_transfer, sealed from health to public_security with "
            "another fixed nonce, whose sealed object also carries facts: the members of the "
            "plain body listed for clue_transfer (clue_no, category, amount_involved_fen, "
            "team_reported_at, approved_at), with the same values, in the clear. body_sha256 and "
            "the signature cover them. The recipient opens the body and checks that the facts "
            "are exactly the body's (step 18); an observer reads only the facts.",
            envelope, raw, receiver="public_security", verify_at=_plus(SENT_SEALED_FACTS, 60))
        entry["sealed"] = {
            "sender_box_key_id": sender.material.box_key_id,
            "recipient_box_key_id": recipient.material.box_key_id,
            "nonce_hex": SEAL_NONCE_FACTS.hex(),
            "ciphertext_hex": base64.b64decode(ciphertext_b64).hex(),
            "plain_body": plain,
            "plain_body_canonical_hex": plaintext.hex(),
            "facts": facts,
        }
        self.valid.append(entry)

    def _build_reconciliation(self) -> None:
        """Protocol §20: medical_security's summary of the two clues it sent public_security
        (MSG_CLUE at SENT_CLUE, MSG_OTHER_CLUE at SENT_OTHER_CLUE), and public_security's answer:
        it holds only the first."""
        sent = [MSG_CLUE, MSG_OTHER_CLUE]  # in order: ascending sent_at, then message_id
        summary_body = {"window_from": None, "window_until": RECON_WINDOW_UNTIL, "count": len(sent),
                        "ids_sha256": ids_sha256(sent)}
        summary = self.composer("medical_security").compose(
            RECONCILIATION_SUMMARY, "public_security", summary_body, referral_id=MSG_RECON_SUMMARY,
            message_id=MSG_RECON_SUMMARY, sent_at=_ts(SENT_RECON_SUMMARY))
        self.valid.append(self._valid_entry(
            "reconciliation_summary",
            "medical_security's reconciliation summary (section 20) to public_security: from the "
            "beginning (window_from null) until window_until it sent two counted messages, "
            "plain_clue_transfer and another clue; ids_sha256 is the SHA-256 of the two ids in "
            "order, each followed by a line feed (the reconciliation.ids vector). "
            "reconciliation_summary is a peer kind: it may go from any configured agency to any "
            "other. It is its own referral: referral_id = message_id.",
            summary.envelope, summary.raw, receiver="public_security", verify_at=_plus(SENT_RECON_SUMMARY, 1)))
        held = [MSG_CLUE]
        answer_body = {"summary_message_id": MSG_RECON_SUMMARY, "count": len(held),
                       "ids_sha256": ids_sha256(held), "match": False, "held_ids": held, "truncated": False}
        answer = self.composer("public_security").compose(
            RECONCILIATION_ANSWER, "medical_security", answer_body, referral_id=MSG_RECON_ANSWER,
            message_id=MSG_RECON_ANSWER, in_reply_to=MSG_RECON_SUMMARY, sent_at=_ts(SENT_RECON_ANSWER))
        self.valid.append(self._valid_entry(
            "reconciliation_answer",
            "public_security's answer to reconciliation_summary: in the same window it holds only "
            "plain_clue_transfer from medical_security, so count and ids_sha256 differ from the "
            "summary's, match is false and held_ids lists what it holds. medical_security then "
            "sends the other clue again, the same bytes.",
            answer.envelope, answer.raw, receiver="medical_security", verify_at=_plus(SENT_RECON_ANSWER, 1)))
        self.reconciliation = {
            "description": (
                "Section 20's hash: ids_sha256 is the lowercase hex SHA-256 of ids_text, the "
                "message ids in order (ascending sent_at, then message_id), each followed by a "
                "line feed (0x0a). The empty list hashes no bytes."),
            "ids": sent,
            "ids_text": "".join(f"{i}\n" for i in sent),
            "ids_sha256": ids_sha256(sent),
            "held_ids": held,
            "held_ids_sha256": ids_sha256(held),
            "missing_ids": [i for i in sent if i not in held],
            "empty_ids_sha256": ids_sha256([]),
            "summary_body": summary.plain_body,
            "answer_body": answer.plain_body,
        }

    def _valid_entry(self, name: str, description: str, envelope: dict, raw: bytes, *,
                     receiver: str, verify_at: str) -> dict:
        prefix = signing_input(envelope)[:-len(canonical_bytes(unsigned(envelope)))]
        return {
            "name": name,
            "description": description,
            "receiver": receiver,
            "verify_at": verify_at,
            "envelope": envelope,
            "unsigned_canonical_hex": canonical_bytes(unsigned(envelope)).hex(),
            "signing_prefix_hex": prefix.hex(),
            "signing_input_hex": signing_input(envelope).hex(),
            "body_sha256": body_sha256(envelope["body"]),
            "signature": envelope["signature"],
            "signature_hex": base64.b64decode(envelope["signature"]).hex(),
            "wire_hex": raw.hex(),
            "wire_is_canonical": raw == canonical_bytes(envelope),
            "message_sha256": message_sha256(raw),
        }

    # invalid ---------------------------------------------------------------------------
    def bad(self, name: str, description: str, raw: bytes, rule: str, *, authenticated: bool,
            receiver: str = "public_security", verify_at: str = SENT_CLUE, **extra: Any) -> None:
        entry = {"name": name, "description": description, "receiver": receiver,
                 "verify_at": verify_at, "expected_rule": rule, "authenticated": authenticated}
        entry.update(extra)
        text = _text_or_none(raw)
        if text is not None:
            entry["input_text"] = text
        else:
            entry["input_hex"] = raw.hex()
        self.invalid.append(entry)

    def resign(self, changes: Mapping[str, Any] | None = None, *, drop: tuple[str, ...] = (),
               signer: Signer | None = None, rehash: bool = True,
               base: Mapping | None = None) -> bytes:
        """The plain clue envelope with ``changes`` applied, re-hashed and re-signed."""
        envelope = dict(base or self.clue_envelope)
        envelope.pop("signature")
        envelope.update(changes or {})
        for name in drop:
            envelope.pop(name)
        if rehash and "body" in envelope:
            envelope["body_sha256"] = body_sha256(envelope["body"])
        return encode(sign_envelope(envelope, signer or self.a("medical_security").signer))

    def build_invalid(self) -> None:  # noqa: C901 - one flat list of cases
        clue, raw = self.clue_envelope, self.clue_raw
        ms, ps = self.a("medical_security"), self.a("public_security")

        # Limits and JSON text (before authentication).
        self.bad("empty_message", "No bytes at all (an empty delivery).",
                 b"", rules.MESSAGE_EMPTY, authenticated=False)
        limit = len(raw) - OVERSIZED_LIMIT_SLACK
        self.bad("oversized",
                 f"plain_clue_transfer's wire bytes ({len(raw)} bytes), received with a limit of "
                 f"{limit} bytes instead of 1 MiB: rejected on the raw length before parsing.",
                 raw, rules.MESSAGE_OVERSIZED, authenticated=False, max_message_bytes=limit)
        self.bad("transport_content_type",
                 "plain_clue_transfer delivered by the bus with content type text/plain "
                 "(published by medical_security's bus account).",
                 raw, rules.TRANSPORT_CONTENT_TYPE, authenticated=False,
                 transport=_transport(content_type="text/plain"))
        self.bad("transport_no_content_type",
                 "plain_clue_transfer delivered by the bus without a content type (published by "
                 "medical_security's bus account).",
                 raw, rules.TRANSPORT_CONTENT_TYPE, authenticated=False,
                 transport=_transport(content_type=None))
        self.bad("byte_order_mark", "plain_clue_transfer preceded by a UTF-8 byte-order mark.",
                 b"\xef\xbb\xbf" + raw, rules.JSON_MALFORMED, authenticated=False)
        title = clue["body"]["title"].encode("utf-8")
        self.bad("invalid_utf8",
                 "The first byte of the title's first character replaced by 0xff (not UTF-8).",
                 _replace_once(raw, title, b"\xff" + title[1:]), rules.JSON_MALFORMED,
                 authenticated=False)
        self.bad("lone_surrogate",
                 "The title starts with the escape \\ud800, a lone surrogate.",
                 _replace_once(raw, title, b"\\ud800" + title), rules.JSON_MALFORMED,
                 authenticated=False)
        self.bad("trailing_garbage", "plain_clue_transfer followed by a second JSON value.",
                 raw + b"{}", rules.JSON_MALFORMED, authenticated=False)
        self.bad("duplicate_member",
                 "The member \"kind\" appears twice in the envelope (with the same value).",
                 _replace_once(raw, b'{"body"', b'{"kind":"clue_transfer","body"'),
                 rules.JSON_DUPLICATE_KEY, authenticated=False)
        amount = b'"amount_involved_fen":123456789'
        self.bad("float_in_body", "amount_involved_fen written 123456789.0.",
                 _replace_once(raw, amount, amount + b".0"), rules.JSON_FLOAT, authenticated=False)
        self.bad("exponent_in_body", "amount_involved_fen written 123456789E0.",
                 _replace_once(raw, amount, amount + b"E0"), rules.JSON_FLOAT, authenticated=False)
        self.bad("nan_in_body", "amount_involved_fen written NaN (not JSON at all).",
                 _replace_once(raw, amount, b'"amount_involved_fen":NaN'), rules.JSON_FLOAT,
                 authenticated=False)
        self.bad("integer_out_of_range", "amount_involved_fen is 2^53 = 9007199254740992.",
                 _replace_once(raw, amount, b'"amount_involved_fen":9007199254740992'),
                 rules.JSON_INTEGER_RANGE, authenticated=False)
        self.bad("not_an_object", "plain_clue_transfer wrapped in a JSON array.",
                 b"[" + raw + b"]", rules.ENVELOPE_INVALID, authenticated=False)

        # Protocol and envelope shape (before authentication).
        self.bad("unsupported_protocol", "protocol is \"cluebus/2\" (validly signed).",
                 self.resign({"protocol": "cluebus/2"}), rules.PROTOCOL_UNSUPPORTED,
                 authenticated=False)
        self.bad("protocol_missing",
                 "plain_clue_transfer without its protocol member: reported as "
                 "protocol.unsupported, since the protocol is checked before the other envelope "
                 "fields.",
                 encode({k: v for k, v in clue.items() if k != "protocol"}),
                 rules.PROTOCOL_UNSUPPORTED, authenticated=False)
        self.bad("missing_field",
                 "No in_reply_to member (validly signed). It is required even though it may be "
                 "null.", self.resign(drop=("in_reply_to",)), rules.ENVELOPE_INVALID,
                 authenticated=False)
        self.bad("unknown_field", "An extra envelope member \"priority\": 1 (validly signed).",
                 self.resign({"priority": 1}), rules.ENVELOPE_INVALID, authenticated=False)
        self.bad("uppercase_message_id", "message_id in uppercase (validly signed).",
                 self.resign({"message_id": MSG_BAD.upper()}), rules.ENVELOPE_INVALID,
                 authenticated=False)
        self.bad("timestamp_with_offset",
                 "sent_at written 2026-11-24T17:00:00+08:00, the same instant as the valid "
                 "vector but not in the UTC Z form (validly signed).",
                 self.resign({"sent_at": "2026-11-24T17:00:00+08:00"}), rules.ENVELOPE_INVALID,
                 authenticated=False)
        self.bad("schema_version_as_string", "schema_version is the string \"1\" (validly signed).",
                 self.resign({"schema_version": "1"}), rules.ENVELOPE_INVALID, authenticated=False)
        self.bad("sender_equals_recipient",
                 "medical_security addresses a message to itself (validly signed).",
                 self.resign({"recipient": "medical_security"}), rules.ENVELOPE_INVALID,
                 authenticated=False, receiver="medical_security")

        # What the bus says about who published it (before authentication).
        self.bad("transport_sender_mismatch",
                 "plain_clue_transfer (sender medical_security, validly signed) published on the "
                 "bus by procuratorate's bus account: a copy replayed by someone who received it.",
                 raw, rules.TRANSPORT_SENDER_MISMATCH, authenticated=False,
                 transport=_transport(publisher="procuratorate"))
        self.bad("transport_no_publisher",
                 "plain_clue_transfer delivered by the bus without a user_id naming an agency's "
                 "bus account (publisher null).",
                 raw, rules.TRANSPORT_SENDER_MISMATCH, authenticated=False,
                 transport=_transport(publisher=None))

        # Keys and signature (before authentication).
        self.bad("body_byte_flipped",
                 "plain_clue_transfer with one bit flipped in the body (clue_no YB-2026-0001 "
                 "becomes YB-2026-0000).",
                 _flip_low_bit(raw, b'"YB-2026-0001"', len('"YB-2026-000')),
                 rules.SIGNATURE_INVALID, authenticated=False)
        self.bad("metadata_byte_flipped",
                 "plain_clue_transfer with one bit flipped in referral_id (its last hex digit 1 "
                 "becomes 0).",
                 _flip_low_bit(raw, REFERRAL_PLAIN.encode(), len(REFERRAL_PLAIN) - 1),
                 rules.SIGNATURE_INVALID, authenticated=False)
        self.bad("wrong_key",
                 "Names medical_security's Ed25519 key but is signed with public_security's.",
                 self.resign(signer=Signer(ms.code, ms.material.signing_key_id,
                                           ps.material.signing_seed)),
                 rules.SIGNATURE_INVALID, authenticated=False)
        self.bad("signed_without_prefix",
                 "Signed over the canonical bytes alone, without the domain-separation prefix.",
                 self._signed_over(lambda env: canonical_bytes(env)),
                 rules.SIGNATURE_INVALID, authenticated=False)
        self.bad("signed_over_non_canonical_json",
                 "Signed over the prefix and sorted but indented JSON instead of RFC 8785 bytes.",
                 self._signed_over(lambda env: signing_input(env)[:-len(canonical_bytes(env))]
                                   + json.dumps(env, sort_keys=True, indent=1,
                                                ensure_ascii=False).encode("utf-8")),
                 rules.SIGNATURE_INVALID, authenticated=False)
        unknown_key_id = "medical_security:ed25519:" + "00" * 16
        self.bad("unknown_key_id", f"sender_key_id {unknown_key_id} is not in the keyring.",
                 self.resign({"sender_key_id": unknown_key_id}), rules.KEY_UNKNOWN,
                 authenticated=False)
        self.bad("key_of_other_agency",
                 "sender is medical_security, sender_key_id is public_security's Ed25519 key "
                 "(and the message is signed with it).",
                 self.resign({"sender_key_id": ps.material.signing_key_id}, signer=ps.signer),
                 rules.KEY_AGENCY_MISMATCH, authenticated=False)
        self.bad("key_of_wrong_algorithm",
                 "sender_key_id is medical_security's X25519 key, not its Ed25519 key.",
                 self.resign({"sender_key_id": ms.material.box_key_id}), rules.KEY_PURPOSE_MISMATCH,
                 authenticated=False)
        revoked = Keyring(dict(self.keyring.records))
        revoked.revoke(ms.material.signing_key_id)
        self.bad("revoked_key",
                 "plain_clue_transfer verified against a keyring in which medical_security's "
                 "Ed25519 key is revoked.",
                 raw, rules.KEY_REVOKED, authenticated=False, keyring=revoked.to_json(),
                 verify_at=SENT_CLUE)
        self.bad("expired_key",
                 f"sent_at is {KEYS_VALID_UNTIL}, exactly the key's valid_until (validly "
                 "signed; valid_until is exclusive).",
                 self.resign({"sent_at": KEYS_VALID_UNTIL}), rules.KEY_EXPIRED,
                 authenticated=False, verify_at=KEYS_VALID_UNTIL)
        early = _plus(KEYS_VALID_FROM, -1)
        self.bad("key_not_yet_valid",
                 f"sent_at is {early}, one second before the key's valid_from (validly signed).",
                 self.resign({"sent_at": early}), rules.KEY_NOT_YET_VALID, authenticated=False,
                 verify_at=early)
        signature = clue["signature"]
        self.bad("signature_truncated",
                 "The signature's last 4 base64 characters removed (63 bytes remain).",
                 _replace_signature(raw, clue, signature[:-4]), rules.SIGNATURE_MALFORMED,
                 authenticated=False)
        self.bad("signature_non_canonical_base64",
                 "The signature with non-zero unused bits in its last base64 character: it "
                 "decodes to the same 64 bytes but is not canonical base64.",
                 _replace_signature(raw, clue, _non_canonical_base64(signature)),
                 rules.SIGNATURE_MALFORMED, authenticated=False)
        self.bad("signature_base64url",
                 "The signature in the URL-safe base64 alphabet without padding.",
                 _replace_signature(raw, clue, base64.urlsafe_b64encode(
                     base64.b64decode(signature)).decode("ascii").rstrip("=")),
                 rules.SIGNATURE_MALFORMED, authenticated=False)

        # After authentication: answered with a rejection receipt.
        self.bad("body_hash_mismatch",
                 "Validly signed, but body_sha256 is the hash of a different body (the amount "
                 "changed).",
                 self.resign({"body_sha256": body_sha256(
                     dict(clue["body"], amount_involved_fen=123456780))}, rehash=False),
                 rules.BODY_HASH_MISMATCH, authenticated=True)
        outsider = self.outsider
        with_outsider = Keyring(dict(self.keyring.records))
        for record in outsider.material.public_records(_ts(KEYS_VALID_FROM), _ts(KEYS_VALID_UNTIL)):
            with_outsider.add(record)
        self.bad("unconfigured_agency",
                 f"Validly signed by {outsider.code}, whose key is in this keyring variant but "
                 "which is not a configured agency.",
                 self.resign({"sender": outsider.code,
                              "sender_key_id": outsider.material.signing_key_id},
                             signer=outsider.signer),
                 rules.AGENCY_UNKNOWN, authenticated=True, keyring=with_outsider.to_json())
        self.bad("unknown_kind", "kind is \"tip_off\", which no schema defines (validly signed).",
                 self.resign({"kind": "tip_off"}), rules.KIND_UNKNOWN, authenticated=True)
        self.bad("unknown_version", "clue_transfer with schema_version 2 (validly signed).",
                 self.resign({"schema_version": 2}), rules.KIND_VERSION_UNKNOWN, authenticated=True)
        self.bad("forbidden_route",
                 "A clue_transfer from medical_security to court, which the route table does not "
                 "allow (validly signed).",
                 self.resign({"recipient": "court"}), rules.ROUTE_FORBIDDEN, authenticated=True,
                 receiver="court")
        self.bad("recipient_mismatch",
                 "plain_clue_transfer (addressed to public_security) received by health, which "
                 "expects messages addressed to itself.",
                 raw, rules.RECIPIENT_MISMATCH, authenticated=True, receiver="health",
                 expected_recipient="health")
        self.bad("clock_skew",
                 "plain_clue_transfer verified 301 s after its sent_at (the limit is 300 s).",
                 raw, rules.CLOCK_SKEW, authenticated=True, verify_at=_plus(SENT_CLUE, 301))
        self.bad("clock_skew_future",
                 "plain_clue_transfer verified 301 s before its sent_at.",
                 raw, rules.CLOCK_SKEW, authenticated=True, verify_at=_plus(SENT_CLUE, -301))
        body = dict(clue["body"])
        del body["approved_by"]
        self.bad("body_invalid",
                 "Validly signed clue_transfer whose body lacks the required approved_by.",
                 self.resign({"body": body}), rules.BODY_INVALID, authenticated=True)
        self._sealed_invalid()

    def _signed_over(self, make_input: Callable[[dict], bytes]) -> bytes:
        envelope = unsigned(self.clue_envelope)
        envelope["signature"] = self.a("medical_security").signer.sign(make_input(envelope))
        return encode(envelope)

    def _sealed_invalid(self) -> None:
        sender, recipient = self.a("health"), self.a("public_security")
        base = self.sealed_envelope
        ciphertext = bytearray(base64.b64decode(base["body"]["ciphertext"]))
        ciphertext[40] ^= 0x01
        tampered = dict(base["body"], ciphertext=b64encode(bytes(ciphertext)))
        self.bad("sealed_ciphertext_tampered",
                 "sealed_clue_transfer with one bit of the ciphertext flipped, then re-hashed and "
                 "validly re-signed: the box does not open.",
                 self.resign({"body": tampered}, signer=sender.signer, base=base),
                 rules.BODY_SEALED, authenticated=True, verify_at=SENT_SEALED)

        pretty = json.dumps(self.sealed_plain, ensure_ascii=False, indent=1).encode("utf-8")
        nonce_b64, ciphertext_b64 = sender.box_key.seal(pretty, recipient.material.box_public,
                                                        nonce=SEAL_NONCE[::-1])
        self.bad("sealed_plaintext_not_canonical",
                 "A validly signed sealed body whose plaintext is indented JSON rather than the "
                 "canonical form (the nonce is reversed from sealed_clue_transfer's).",
                 self.resign({"body": dict(base["body"], nonce=nonce_b64,
                                           ciphertext=ciphertext_b64)},
                             signer=sender.signer, base=base),
                 rules.BODY_SEALED, authenticated=True, verify_at=SENT_SEALED)
        self.bad("sealed_wrong_sender_box_key",
                 "sender_box_key_id names public_security's X25519 key, not the sender's "
                 "(validly signed).",
                 self.resign({"body": dict(base["body"],
                                           sender_box_key_id=recipient.material.box_key_id)},
                             signer=sender.signer, base=base),
                 rules.KEY_AGENCY_MISMATCH, authenticated=True, verify_at=SENT_SEALED)
        self._sealed_facts_invalid()

    def _sealed_facts_invalid(self) -> None:
        sender = self.a("health")
        base = self.sealed_facts_envelope
        facts = base["body"]["facts"]

        def with_facts(new_facts: dict) -> bytes:
            return self.resign({"body": dict(base["body"], facts=new_facts)},
                               signer=sender.signer, base=base)

        amount = facts["amount_involved_fen"]
        self.bad("sealed_facts_mismatch",
                 "sealed_clue_transfer_with_facts whose facts give amount_involved_fen "
                 f"{amount // 10} while the sealed body says {amount} (re-hashed and validly "
                 "re-signed): the recipient finds it on opening the body.",
                 with_facts(dict(facts, amount_involved_fen=amount // 10)),
                 rules.BODY_FACTS_MISMATCH, authenticated=True, verify_at=SENT_SEALED_FACTS)
        self.bad("sealed_facts_left_out",
                 "sealed_clue_transfer_with_facts whose facts leave out approved_at, which the "
                 "sealed body has (re-hashed and validly re-signed).",
                 with_facts({k: v for k, v in facts.items() if k != "approved_at"}),
                 rules.BODY_FACTS_MISMATCH, authenticated=True, verify_at=SENT_SEALED_FACTS)
        self.bad("sealed_facts_not_of_the_kind",
                 "sealed_clue_transfer_with_facts whose facts also carry the body's title, which "
                 "is not a fact of clue_transfer (re-hashed and validly re-signed).",
                 with_facts(dict(facts, title=_sealed_clue_body()["title"])),
                 rules.ENVELOPE_INVALID, authenticated=False, verify_at=SENT_SEALED_FACTS)
        self.bad("sealed_facts_not_scalar",
                 "sealed_clue_transfer_with_facts whose fact category is a list "
                 "[\"suspected_crime\"], not a string (re-hashed and validly re-signed).",
                 with_facts(dict(facts, category=[facts["category"]])),
                 rules.ENVELOPE_INVALID, authenticated=False, verify_at=SENT_SEALED_FACTS)

    def document(self) -> dict:
        self.build_valid()
        self.build_invalid()
        return {
            "format": VECTORS_FORMAT,
            "protocol": PROTOCOL,
            "description": (
                "Test vectors for protocol cluebus/1 (docs/protocol.md). Every value is "
                "deterministic: regenerate with `cluebus protocol vectors --out "
                "docs/protocol-vectors.json`. Key seeds are public test values: never use them."),
            "signature_domain": SIGNATURE_DOMAIN.decode("ascii"),
            "verifier": {
                "agencies": [code for code, _ in AGENCY_DIGITS],
                "max_message_bytes": DEFAULT_MAX_MESSAGE_BYTES,
                "clock_skew_seconds": int(DEFAULT_CLOCK_SKEW.total_seconds()),
                "routes": "schemas/routes.yaml (the table in docs/protocol.md)",
                "notes": (
                    "Verify each vector's input as the agency named by `receiver` (whose X25519 "
                    "secret opens sealed bodies), with the clock at `verify_at`, the keyring "
                    "`keyring` (or the vector's own `keyring` variant), the configured "
                    "agencies and limits above (or the vector's own `max_message_bytes`), "
                    "checking that the message is addressed to `expected_recipient` when a "
                    "vector gives one."),
            },
            "keys": [agency.key_json() for agency in self.agencies.values()]
                    + [self.outsider.key_json(configured=False)],
            "keyring": self.keyring.to_json(),
            "valid": self.valid,
            "invalid": self.invalid,
            "reconciliation": self.reconciliation,
        }


def build_vectors() -> dict:
    """The whole vector document; the same on every call."""
    return _Builder().document()


def render_vectors(document: Mapping) -> str:
    """The document as written to docs/protocol-vectors.json."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
