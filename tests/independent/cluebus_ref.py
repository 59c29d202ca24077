"""An independent reference implementation of protocol cluebus/1, written from docs/protocol.md.

It deliberately shares no code with cluebus: it imports nothing from ``services``, ``schemas``
or ``adapters``, does not use the ``rfc8785`` package and does not use the ``json`` module for
parsing. It has its own strict JSON parser (section 6), its own RFC 8785 serialiser for the
float-free subset (section 7), and uses PyNaCl only for the Ed25519 and crypto_box primitives.

Body schemas (section 15) are not implemented: a body that reaches step 17 is returned
unchecked, so ``body.invalid`` is the one rule this verifier cannot report. The facts of a
sealed body (section 11.4) are checked at step 5 and, once the body is opened, at step 18.
Bytes that came from a transport are verified with the transport's facts (steps 1a and 5a,
sections 17 and 19) by passing ``transport``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey

PROTOCOL = "cluebus/1"
SIGNATURE_DOMAIN = b"cluebus-envelope-signature"
MAX_SAFE_INTEGER = 2**53 - 1
SEAL_ALG = "x25519-xsalsa20poly1305"

ENVELOPE_MEMBERS = ("protocol", "message_id", "kind", "schema_version", "sender", "recipient",
                    "referral_id", "in_reply_to", "sent_at", "sender_key_id", "body_encoding",
                    "body", "body_sha256", "signature")
SEALED_MEMBERS = ("alg", "sender_box_key_id", "recipient_box_key_id", "nonce", "ciphertext")
SEALED_OPTIONAL_MEMBERS = ("facts",)  # section 11.2
CONTENT_TYPE = "application/vnd.cluebus.v1+json"  # sections 12.1 step 1a, 19.3

# Section 11.4: the members of a kind's body that are its facts. Any other kind has none.
FACTS = {
    "clue_transfer": ("clue_no", "category", "amount_involved_fen", "team_reported_at",
                      "approved_at"),
    "filing_decision": ("decision",),
    "reconsideration_decision": ("outcome",),
    "case_transfer": ("direction", "amount_involved_fen"),
    "prosecution_decision": ("decision",),
    "judgment": ("effective", "amount_to_recover_fen", "fine_fen"),
    "handling_result": ("result", "amount_recovered_fen", "fine_fen"),
    "receipt": ("status",),
    "closure": ("outcome", "amount_recovered_fen"),
    "reward_payment": ("reward_fen",),
    "urge": ("step", "level"),
    "supervision_notice": ("subject",),
}

AGENCY_RE = re.compile(r"[a-z][a-z0-9_]{1,63}", re.ASCII)
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
KIND_RE = AGENCY_RE
KEY_ID_RE = re.compile(r"[a-z][a-z0-9_]{1,63}:(ed25519|x25519):[0-9a-f]{32}", re.ASCII)
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?Z",
    re.ASCII)

# Section 15.1: every kind, with its known schema versions.
KINDS = {kind: (1,) for kind in (
    "clue_transfer", "copy_notice", "receipt", "filing_decision", "reconsideration_request",
    "reconsideration_decision", "supervision_request", "supervision_notice",
    "materials_handover", "case_transfer", "prosecution_decision", "judgment",
    "handling_result", "invoice_verification_request", "invoice_verification_result",
    "reward_request", "reward_payment", "finding_notice", "urge", "withdrawal", "closure",
    "reconciliation_summary", "reconciliation_answer")}

# Section 14: the route table. Reply kinds go from any configured agency to any other.
REPLY_KINDS = frozenset({"receipt"})
# Peer kinds (section 14, section 20) likewise go from any configured agency to any other.
PEER_KINDS = frozenset({"reconciliation_summary", "reconciliation_answer"})
_MS, _PS, _PR, _CO, _HE, _FI, _JO = ("medical_security", "public_security", "procuratorate",
                                      "court", "health", "finance", "joint_office")
ROUTES = {
    "clue_transfer": {(_MS, _PS), (_MS, _HE), (_HE, _MS), (_HE, _PS)},
    "copy_notice": {(_MS, _PR), (_HE, _PR)},
    "filing_decision": {(_PS, _MS), (_PS, _HE)},
    "reconsideration_request": {(_MS, _PS), (_HE, _PS)},
    "reconsideration_decision": {(_PS, _MS), (_PS, _HE)},
    "supervision_request": {(_MS, _PR), (_HE, _PR)},
    "supervision_notice": {(_PR, _PS), (_PR, _MS), (_PR, _HE), (_JO, _PR)},
    "materials_handover": {(_MS, _PS), (_HE, _PS)},
    "case_transfer": {(_PS, _PR), (_PS, _MS), (_PS, _HE)},
    "prosecution_decision": {(_PR, _CO), (_PR, _MS), (_PR, _PS)},
    "judgment": {(_CO, _MS), (_CO, _PR), (_CO, _PS)},
    "handling_result": {(_HE, _MS), (_MS, _HE)},
    "invoice_verification_request": {(_MS, _FI)},
    "invoice_verification_result": {(_FI, _MS)},
    "reward_request": {(_MS, _FI)},
    "reward_payment": {(_FI, _MS)},
    "finding_notice": {(_CO, _MS)},
    "urge": {(_JO, a) for a in (_MS, _PS, _PR, _CO, _HE, _FI)},
    "withdrawal": {(_MS, _PS), (_MS, _HE), (_HE, _MS), (_HE, _PS), (_PS, _PR)},
    "closure": {(_MS, _PS), (_MS, _HE), (_MS, _PR), (_MS, _FI), (_PS, _MS), (_HE, _MS),
                (_HE, _PS)},
}


class RefRejection(Exception):
    def __init__(self, rule: str, detail: str, authenticated: bool = False):
        super().__init__(f"[{rule}] {detail}")
        self.rule = rule
        self.detail = detail
        self.authenticated = authenticated


def _reject(rule: str, detail: str) -> RefRejection:
    return RefRejection(rule, detail)


# -- section 2: canonical base64 -------------------------------------------------------------

_B64_ALPHABET = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?",
                           re.ASCII)


def b64decode_canonical(text: Any) -> bytes:
    if not isinstance(text, str) or not _B64_ALPHABET.fullmatch(text):
        raise ValueError("not padded standard base64")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return data


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- section 6: strict JSON -----------------------------------------------------------------

class _Parser:
    WS = " \t\n\r"
    ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
               "t": "\t"}
    NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", re.ASCII)

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.depth = 0
        # Integer-range and surrogate problems are reported after the whole text is parsed,
        # so that syntax, float and duplicate problems (found while parsing) come first.
        self.late: list[RefRejection] = []

    def fail(self, what: str) -> RefRejection:
        return _reject("json.malformed", f"{what} at offset {self.pos}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in self.WS:
            self.pos += 1

    def parse(self) -> Any:
        self.skip_ws()
        value = self.value()
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.fail("text after the JSON value")
        if self.late:
            raise self.late[0]
        return value

    def value(self) -> Any:
        if self.pos >= len(self.text):
            raise self.fail("unexpected end")
        char = self.text[self.pos]
        if char == "{":
            return self.container(self.object)
        if char == "[":
            return self.container(self.array)
        if char == '"':
            return self.string()
        for literal, result in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(literal, self.pos):
                self.pos += len(literal)
                return result
        for token in ("NaN", "Infinity", "-Infinity"):
            if self.text.startswith(token, self.pos):
                raise _reject("json.float", f"{token} is not a JSON number")
        return self.number()

    def container(self, parse):
        self.depth += 1
        if self.depth > 1000:
            raise self.fail("nested too deeply")
        try:
            return parse()
        finally:
            self.depth -= 1

    def object(self) -> dict:
        self.pos += 1
        pairs: list[tuple[str, Any]] = []
        self.skip_ws()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return {}
        while True:
            self.skip_ws()
            if not self.text.startswith('"', self.pos):
                raise self.fail("expected a member name")
            name = self.string()
            self.skip_ws()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':'")
            self.pos += 1
            self.skip_ws()
            pairs.append((name, self.value()))
            self.skip_ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("}", self.pos):
                self.pos += 1
                break
            raise self.fail("expected ',' or '}'")
        result: dict = {}
        for name, item in pairs:
            if name in result:
                raise _reject("json.duplicate_key", f"member {name!r} appears twice")
            result[name] = item
        return result

    def array(self) -> list:
        self.pos += 1
        items: list = []
        self.skip_ws()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return items
        while True:
            self.skip_ws()
            items.append(self.value())
            self.skip_ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return items
            raise self.fail("expected ',' or ']'")

    def string(self) -> str:
        self.pos += 1
        units: list[int] = []  # UTF-16 code units, so escaped surrogate pairs combine
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated string")
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                break
            if ord(char) < 0x20:
                raise self.fail("control character in a string")
            if char == "\\":
                escape = self.text[self.pos + 1:self.pos + 2]
                if escape in self.ESCAPES:
                    units.append(ord(self.ESCAPES[escape]))
                    self.pos += 2
                elif escape == "u":
                    digits = self.text[self.pos + 2:self.pos + 6]
                    if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                        raise self.fail("bad \\u escape")
                    units.append(int(digits, 16))
                    self.pos += 6
                else:
                    raise self.fail("bad escape")
                continue
            code = ord(char)
            if code > 0xFFFF:
                code -= 0x10000
                units.extend((0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)))
            else:
                units.append(code)
            self.pos += 1
        chars = []
        i = 0
        while i < len(units):
            unit = units[i]
            if 0xD800 <= unit <= 0xDBFF and i + 1 < len(units) and 0xDC00 <= units[i + 1] <= 0xDFFF:
                chars.append(chr(0x10000 + ((unit - 0xD800) << 10) + (units[i + 1] - 0xDC00)))
                i += 2
                continue
            if 0xD800 <= unit <= 0xDFFF:
                self.late.append(_reject("json.malformed", "lone surrogate in a string"))
            chars.append(chr(unit))
            i += 1
        return "".join(chars)

    def number(self) -> int:
        match = self.NUMBER.match(self.text, self.pos)
        if not match:
            raise self.fail("not a JSON value")
        if match.group(1) or match.group(2):
            raise _reject("json.float", f"number {match.group(0)} has a fraction or exponent")
        token = match.group(0)
        self.pos = match.end()
        digits = token.lstrip("-")
        if len(digits) > 16 or abs(int(token)) > MAX_SAFE_INTEGER:
            self.late.append(_reject("json.integer_range", f"integer {token[:20]} out of range"))
            return 0
        return int(token)


def parse_json(data: bytes) -> Any:
    """Parse ``data`` under section 6, raising RefRejection with the rule it breaks."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise _reject("json.malformed", "byte-order mark")
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise _reject("json.malformed", f"not UTF-8 at byte {exc.start}") from None
    return _Parser(text).parse()


# -- section 7: RFC 8785 for the float-free subset -------------------------------------------

_SHORT_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n",
                  0x0C: "\\f", 0x0D: "\\r"}


def _jcs_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError("lone surrogate")
        if code in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[code])
        elif code < 0x20:
            out.append("\\u%04x" % code)
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _utf16_units(name: str) -> bytes:
    return name.encode("utf-16-be")  # byte order of UTF-16BE = order of its code units


def _jcs(value: Any, out: list[str]) -> None:
    if value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError("integer out of range")
        out.append(str(value))
    elif isinstance(value, str):
        out.append(_jcs_string(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _jcs(item, out)
        out.append("]")
    elif isinstance(value, Mapping):
        out.append("{")
        for index, name in enumerate(sorted(value, key=_utf16_units)):
            if index:
                out.append(",")
            out.append(_jcs_string(name))
            out.append(":")
            _jcs(value[name], out)
        out.append("}")
    else:
        raise ValueError(f"{type(value).__name__} is not in the float-free JSON subset")


def jcs(value: Any) -> bytes:
    out: list[str] = []
    _jcs(value, out)
    return "".join(out).encode("utf-8")


# -- sections 4, 5, 9: timestamps, keys, hashes, signing input --------------------------------

def parse_timestamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError("not a string")
    match = TIMESTAMP_RE.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not YYYY-MM-DDTHH:MM:SS[.f{{1,6}}]Z")
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "").ljust(6, "0"))
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                    micro, tzinfo=timezone.utc)


def key_id(agency: str, algorithm: str, public_key: bytes) -> str:
    return f"{agency}:{algorithm}:{hashlib.sha256(public_key).digest()[:16].hex()}"


def ed25519_public(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


def x25519_public(secret: bytes) -> bytes:
    return bytes(PrivateKey(secret).public_key)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def body_sha256(body: Mapping) -> str:
    return sha256_hex(jcs(body))


def unsigned(envelope: Mapping) -> dict:
    return {name: value for name, value in envelope.items() if name != "signature"}


def signing_prefix(envelope: Mapping) -> bytes:
    return b"".join([SIGNATURE_DOMAIN, b"\x00", envelope["protocol"].encode("utf-8"), b"\x00",
                     envelope["kind"].encode("utf-8"), b"\x00",
                     str(envelope["schema_version"]).encode("ascii"), b"\x00"])


def signing_input(envelope: Mapping) -> bytes:
    return signing_prefix(envelope) + jcs(unsigned(envelope))


def sign(seed: bytes, envelope: Mapping) -> str:
    return b64encode(SigningKey(seed).sign(signing_input(envelope)).signature)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    agency: str
    algorithm: str
    public_key: bytes
    valid_from: datetime
    valid_until: datetime | None
    revoked: bool
    revoked_at: datetime | None = None


class RefKeyring:
    def __init__(self, document: Mapping):
        if not isinstance(document, Mapping) or document.get("format") != "cluebus-keyring/1":
            raise ValueError("not a cluebus-keyring/1 document")
        self.records: dict[str, KeyRecord] = {}
        for entry in document["keys"]:
            public = b64decode_canonical(entry["public_key"])
            if entry["algorithm"] not in ("ed25519", "x25519") or len(public) != 32:
                raise ValueError(f"unsupported key {entry['key_id']}")
            if key_id(entry["agency"], entry["algorithm"], public) != entry["key_id"]:
                raise ValueError(f"key id {entry['key_id']} does not match its key")
            until = entry.get("valid_until")
            revoked = entry.get("revoked", False)
            if not isinstance(revoked, bool):
                raise ValueError("revoked must be a boolean")
            revoked_at = entry.get("revoked_at")
            if revoked_at is not None and not revoked:
                raise ValueError("revoked_at without revoked")
            self.records[entry["key_id"]] = KeyRecord(
                entry["key_id"], entry["agency"], entry["algorithm"], public,
                parse_timestamp(entry["valid_from"]),
                parse_timestamp(until) if until is not None else None, revoked,
                parse_timestamp(revoked_at) if revoked_at is not None else None)

    def key_for(self, kid: str, *, agency: str, algorithm: str, at: datetime) -> KeyRecord:
        """Section 5.3, checked in its order."""
        record = self.records.get(kid)
        if record is None:
            raise _reject("key.unknown", f"{kid} is not in the keyring")
        if record.algorithm != algorithm:
            raise _reject("key.purpose_mismatch", f"{kid} is not an {algorithm} key")
        if record.agency != agency:
            raise _reject("key.agency_mismatch", f"{kid} does not belong to {agency}")
        if record.revoked and (record.revoked_at is None or at >= record.revoked_at):
            raise _reject("key.revoked", f"{kid} is revoked")
        if at < record.valid_from:
            raise _reject("key.not_yet_valid", f"{kid} is not valid yet")
        if record.valid_until is not None and at >= record.valid_until:
            raise _reject("key.expired", f"{kid} has expired")
        return record


# -- section 8: the envelope ----------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_envelope(envelope: dict) -> None:
    def bad(detail: str) -> RefRejection:
        return _reject("envelope.invalid", detail)

    names = set(envelope)
    if names != set(ENVELOPE_MEMBERS):
        raise bad(f"missing {sorted(set(ENVELOPE_MEMBERS) - names)}, "
                  f"unknown {sorted(names - set(ENVELOPE_MEMBERS))}")

    def text(name: str, pattern: re.Pattern | None = None, *, nullable: bool = False) -> None:
        value = envelope[name]
        if value is None and nullable:
            return
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise bad(f"{name} is not valid")

    text("protocol")
    text("message_id", UUID_RE)
    text("kind", KIND_RE)
    if not _is_int(envelope["schema_version"]) or not 1 <= envelope["schema_version"] <= 10000:
        raise bad("schema_version is not an integer in 1..10000")
    text("sender", AGENCY_RE)
    text("recipient", AGENCY_RE)
    text("referral_id", UUID_RE)
    text("in_reply_to", UUID_RE, nullable=True)
    try:
        parse_timestamp(envelope["sent_at"])
    except ValueError as exc:
        raise bad(f"sent_at: {exc}") from None
    text("sender_key_id", KEY_ID_RE)
    if envelope["body_encoding"] not in ("plain", "sealed"):
        raise bad("body_encoding is not plain or sealed")
    if not isinstance(envelope["body"], dict):
        raise bad("body is not an object")
    text("body_sha256", SHA256_RE)
    text("signature")
    if envelope["sender"] == envelope["recipient"]:
        raise bad("sender and recipient are the same")
    if envelope["body_encoding"] == "sealed":
        sealed = envelope["body"]
        names = set(sealed)
        if not set(SEALED_MEMBERS) <= names <= set(SEALED_MEMBERS) | set(SEALED_OPTIONAL_MEMBERS):
            raise bad("the sealed body does not have exactly the members of 11.2")
        if sealed["alg"] != SEAL_ALG:
            raise bad("unknown seal algorithm")
        for name in ("sender_box_key_id", "recipient_box_key_id"):
            if not isinstance(sealed[name], str) or not KEY_ID_RE.fullmatch(sealed[name]):
                raise bad(f"body.{name} is not a key id")
        for name, longest in (("nonce", 64), ("ciphertext", 2 * 1024 * 1024)):
            if not isinstance(sealed[name], str) or not 1 <= len(sealed[name]) <= longest:
                raise bad(f"body.{name} is not a string of 1..{longest} characters")
        if "facts" in sealed:
            _check_facts(envelope["kind"], sealed["facts"])


def _check_facts(kind: str, facts: Any) -> None:
    """Section 11.4, the rule of step 5: an object of the kind's listed members, each a
    string, an integer, a boolean or null."""
    if not isinstance(facts, dict):
        raise _reject("envelope.invalid", "body.facts is not an object")
    listed = FACTS.get(kind, ())
    for name, value in facts.items():
        if name not in listed:
            raise _reject("envelope.invalid", f"body.facts.{name} is not a fact of {kind}")
        if not (value is None or isinstance(value, (str, bool)) or _is_int(value)):
            raise _reject("envelope.invalid", f"body.facts.{name} is not a string, integer, "
                          "boolean or null")


def facts_of(kind: str, body: Mapping) -> dict:
    """Section 11.4: exactly the listed members of ``body`` that it has, with their values."""
    return {name: body[name] for name in FACTS.get(kind, ()) if name in body}


# -- section 12: verification ---------------------------------------------------------------

@dataclass(frozen=True)
class Transport:
    """What the transport said about a delivery (sections 17, 19.5): its content type (None:
    none), and the agency whose bus account published it (None: no user_id, or one that names
    no agency's bus account)."""
    content_type: str | None
    publisher: str | None


@dataclass(frozen=True)
class Accepted:
    envelope: dict
    message_sha256: str
    sent_at: datetime
    body: dict | None   # plain, or opened; None when sealed for another agency
    plaintext: bytes | None
    # The kind's facts: of the readable body, or those a sealed object for another agency
    # carries; None when the body is sealed for another agency and carries none (11.4).
    facts: dict | None = None


@dataclass
class RefVerifier:
    keyring: RefKeyring
    agencies: frozenset[str]
    receiver: str
    box_secret: bytes | None = None
    max_message_bytes: int = 1024 * 1024
    clock_skew: timedelta = timedelta(seconds=300)

    def verify(self, raw: bytes, now: datetime, *, expected_recipient: str | None = None,
               transport: Transport | None = None) -> Accepted:
        """``transport``: given for bytes a transport delivered (steps 1a and 5a); None for
        bytes that did not come from one (they skip those steps)."""
        # Before authentication.
        if len(raw) == 0:
            raise _reject("message.empty", "no bytes")
        if len(raw) > self.max_message_bytes:
            raise _reject("message.oversized", f"{len(raw)} > {self.max_message_bytes} bytes")
        if transport is not None and transport.content_type != CONTENT_TYPE:
            raise _reject("transport.content_type", f"content type {transport.content_type!r}")
        envelope = parse_json(raw)
        if not isinstance(envelope, dict):
            raise _reject("envelope.invalid", "not a JSON object")
        if envelope.get("protocol") != PROTOCOL:
            raise _reject("protocol.unsupported", f"protocol {envelope.get('protocol')!r}")
        _check_envelope(envelope)
        if transport is not None and transport.publisher != envelope["sender"]:
            raise _reject("transport.sender_mismatch",
                          f"sender {envelope['sender']}, published by {transport.publisher!r}")
        sent_at = parse_timestamp(envelope["sent_at"])
        key = self.keyring.key_for(envelope["sender_key_id"], agency=envelope["sender"],
                                   algorithm="ed25519", at=sent_at)
        try:
            signature = b64decode_canonical(envelope["signature"])
        except ValueError as exc:
            raise _reject("signature.malformed", str(exc)) from None
        if len(signature) != 64:
            raise _reject("signature.malformed", f"{len(signature)} bytes")
        try:
            VerifyKey(key.public_key).verify(signing_input(envelope), signature)
        except BadSignatureError:
            raise _reject("signature.invalid", "Ed25519 verification failed") from None
        # After authentication.
        try:
            body, plaintext = self._after(envelope, sent_at, now, expected_recipient)
        except RefRejection as rejection:
            rejection.authenticated = True
            raise
        if body is not None:
            facts = facts_of(envelope["kind"], body)
        else:  # sealed for another agency: only what it says in the clear
            facts = envelope["body"].get("facts")
        return Accepted(envelope, sha256_hex(raw), sent_at, body, plaintext, facts)

    def _after(self, envelope: dict, sent_at: datetime, now: datetime,
               expected_recipient: str | None) -> tuple[dict | None, bytes | None]:
        if body_sha256(envelope["body"]) != envelope["body_sha256"]:
            raise _reject("body.hash_mismatch", "body_sha256 is not SHA-256(JCS(body))")
        for role in ("sender", "recipient"):
            if envelope[role] not in self.agencies:
                raise _reject("agency.unknown", f"{role} {envelope[role]} is not configured")
        kind, version = envelope["kind"], envelope["schema_version"]
        if kind not in KINDS:
            raise _reject("kind.unknown", kind)
        if version not in KINDS[kind]:
            raise _reject("kind.version_unknown", f"{kind} v{version}")
        sender, recipient = envelope["sender"], envelope["recipient"]
        allowed = ((sender != recipient) if kind in REPLY_KINDS | PEER_KINDS
                   else (sender, recipient) in ROUTES[kind])
        if not allowed:
            raise _reject("route.forbidden", f"{sender} -> {recipient} for {kind}")
        if expected_recipient is not None and recipient != expected_recipient:
            raise _reject("recipient.mismatch", f"addressed to {recipient}")
        if abs(now - sent_at) > self.clock_skew:
            raise _reject("clock.skew", f"sent_at is {(sent_at - now).total_seconds()} s off")
        if envelope["body_encoding"] == "plain":
            return envelope["body"], None
        if recipient != self.receiver or self.box_secret is None:
            return None, None
        body, plaintext = self._open(envelope, sent_at)
        # Step 17 (the body's schema) is not implemented here. Step 18 (11.4): facts, when the
        # sealed object carries them, are exactly the body's, compared as JSON values (so
        # through their canonical form: true is not 1).
        sealed = envelope["body"]
        if "facts" in sealed:
            expected = facts_of(kind, body)
            if jcs(sealed["facts"]) != jcs(expected):
                raise _reject("body.facts_mismatch",
                              f"facts {sealed['facts']!r} are not the body's {expected!r}")
        return body, plaintext

    def _open(self, envelope: dict, sent_at: datetime) -> tuple[dict, bytes]:
        """Section 11.3, steps 1 to 6."""
        sealed = envelope["body"]
        own_key_id = key_id(self.receiver, "x25519", x25519_public(self.box_secret))
        # Step 1: the recipient's key is checked as in 5.3, its own key included.
        self.keyring.key_for(sealed["recipient_box_key_id"], agency=envelope["recipient"],
                             algorithm="x25519", at=sent_at)
        if sealed["recipient_box_key_id"] != own_key_id:
            raise _reject("body.sealed", "sealed for another key")
        sender_key = self.keyring.key_for(sealed["sender_box_key_id"], agency=envelope["sender"],
                                          algorithm="x25519", at=sent_at)
        try:
            nonce = b64decode_canonical(sealed["nonce"])
            ciphertext = b64decode_canonical(sealed["ciphertext"])
        except ValueError as exc:
            raise _reject("body.sealed", str(exc)) from None
        if len(nonce) != 24:
            raise _reject("body.sealed", "nonce is not 24 bytes")
        try:
            plaintext = Box(PrivateKey(self.box_secret), PublicKey(sender_key.public_key)).decrypt(
                ciphertext, nonce)
        except CryptoError:
            raise _reject("body.sealed", "the box does not open") from None
        body = parse_json(plaintext)
        if not isinstance(body, dict) or jcs(body) != plaintext:
            raise _reject("body.sealed", "plaintext is not the canonical JSON of an object")
        return body, plaintext


def seal(plaintext: bytes, nonce: bytes, sender_secret: bytes, recipient_public: bytes) -> bytes:
    """Section 11.1: the ciphertext (tag first, without the nonce)."""
    return Box(PrivateKey(sender_secret), PublicKey(recipient_public)).encrypt(plaintext, nonce).ciphertext


def agencies_of(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


# -- docs/evidence.md: evidence bundles (cluebus-evidence/1) -----------------------------------

EVIDENCE_FORMAT = "cluebus-evidence/1"
EVIDENCE_GENESIS = "0" * 64


class RefEvidenceFailure(Exception):
    pass


def evidence_audit_hash(seq: int, at: str, event: str, referral_id: Any, message_id: Any,
                        detail: Any, prev_hash: str) -> str:
    """docs/evidence.md 3.7."""
    return sha256_hex(jcs({"seq": seq, "at": at, "event": event, "referral_id": referral_id,
                           "message_id": message_id, "detail": detail, "prev_hash": prev_hash}))


def _exactly(value: Any, names: tuple, what: str) -> dict:
    if not isinstance(value, dict) or set(value) != set(names):
        raise RefEvidenceFailure(f"{what} does not have exactly its members")
    return value


def _evidence_one(data: bytes) -> dict:
    """docs/evidence.md 3.1-3.7 on one file; its messages by id and its manifest."""
    try:
        doc = parse_json(data)
    except RefRejection as exc:
        raise RefEvidenceFailure(f"not JSON: {exc}") from None
    _exactly(doc, ("format", "manifest", "manifest_signature", "messages", "audit", "keys"), "bundle")
    if doc["format"] != EVIDENCE_FORMAT:
        raise RefEvidenceFailure("wrong format")
    try:
        ring = RefKeyring({"format": "cluebus-keyring/1", "keys": doc["keys"]})
    except (ValueError, KeyError, TypeError) as exc:
        raise RefEvidenceFailure(f"keys: {exc}") from None
    if len(ring.records) != len(doc["keys"]):
        raise RefEvidenceFailure("a key is listed twice")
    manifest = _exactly(doc["manifest"], ("format", "bundle_id", "referral_id", "exporter", "exported_at",
                                          "signer_key_id", "messages", "audit_sha256", "keys_sha256"),
                        "manifest")
    try:
        if manifest["format"] != EVIDENCE_FORMAT:
            raise RefEvidenceFailure("wrong manifest format")
        key = ring.key_for(manifest["signer_key_id"], agency=manifest["exporter"], algorithm="ed25519",
                           at=parse_timestamp(manifest["exported_at"]))
        signature = b64decode_canonical(doc["manifest_signature"])
        signed = b"cluebus-evidence-manifest\x00cluebus-evidence/1\x00" + jcs(manifest)
        VerifyKey(key.public_key).verify(signed, signature)
    except (RefRejection, ValueError, BadSignatureError) as exc:
        raise RefEvidenceFailure(f"manifest signature: {exc}") from None
    if sha256_hex(jcs(doc["keys"])) != manifest["keys_sha256"]:
        raise RefEvidenceFailure("keys do not match the manifest")
    if sha256_hex(jcs(doc["audit"])) != manifest["audit_sha256"]:
        raise RefEvidenceFailure("audit does not match the manifest")
    if len(doc["messages"]) != len(manifest["messages"]):
        raise RefEvidenceFailure("the manifest lists another number of messages")
    held: dict[str, dict] = {}
    verifier = RefVerifier(ring, frozenset(), receiver="")
    for item, message in zip(manifest["messages"], doc["messages"]):
        _exactly(message, ("message_id", "direction", "raw"), "message")
        _exactly(item, ("message_id", "direction", "sha256"), "manifest message")
        raw = b64decode_canonical(message["raw"])
        if (item["message_id"], item["direction"], item["sha256"]) != \
                (message["message_id"], message["direction"], sha256_hex(raw)):
            raise RefEvidenceFailure(f"message {message['message_id']} does not match the manifest")
        if message["message_id"] in held or message["direction"] not in ("in", "out"):
            raise RefEvidenceFailure("a message is listed twice or has no direction")
        try:
            # Section 12 steps 1-9 only: agencies, routes, clock and sealed bodies are not checked.
            accepted = verifier.verify(raw, parse_timestamp("0001-01-01T00:00:00Z"))
        except RefRejection as exc:
            if not exc.authenticated or exc.rule == "body.hash_mismatch":
                raise RefEvidenceFailure(f"message {message['message_id']}: {exc}") from None
            envelope = parse_json(raw)
        else:
            envelope = accepted.envelope
        if envelope["message_id"] != message["message_id"] or envelope["referral_id"] != manifest["referral_id"]:
            raise RefEvidenceFailure(f"message {message['message_id']}: wrong id or referral")
        if (message["direction"] == "out") != (envelope["sender"] == manifest["exporter"]):
            raise RefEvidenceFailure(f"message {message['message_id']}: wrong direction")
        held[message["message_id"]] = {"envelope": envelope, "sha256": sha256_hex(raw),
                                       "direction": message["direction"]}
    for mid, message in held.items():
        _ref_check_receipt(message["envelope"], held)
    audit = _exactly(doc["audit"], ("head", "hashes", "entries"), "audit")
    head, hashes = _exactly(audit["head"], ("seq", "hash"), "head"), audit["hashes"]
    if len(hashes) != head["seq"] or (hashes[-1] if hashes else EVIDENCE_GENESIS) != head["hash"] \
            or len(set(hashes)) != len(hashes):
        raise RefEvidenceFailure("the chain's hashes do not end at its head")
    last = 0
    for entry in audit["entries"]:
        _exactly(entry, ("seq", "at", "event", "referral_id", "message_id", "detail", "prev_hash", "hash"),
                 "entry")
        seq = entry["seq"]
        if not _is_int(seq) or not last < seq <= head["seq"]:
            raise RefEvidenceFailure(f"audit entry {seq} out of order or outside the chain")
        last = seq
        if entry["referral_id"] != manifest["referral_id"] \
                or entry["prev_hash"] != (hashes[seq - 2] if seq > 1 else EVIDENCE_GENESIS) \
                or entry["hash"] != hashes[seq - 1] \
                or evidence_audit_hash(seq, entry["at"], entry["event"], entry["referral_id"],
                                       entry["message_id"], entry["detail"], entry["prev_hash"]) != entry["hash"]:
            raise RefEvidenceFailure(f"audit entry {seq} is not linked into the chain")
        if entry["message_id"] is not None and entry["message_id"] not in held:
            raise RefEvidenceFailure(f"audit entry {seq} names a message the bundle does not hold")
    return {"manifest": manifest, "held": held}


def _ref_check_receipt(envelope: dict, answered_in: Mapping[str, dict]) -> None:
    """docs/evidence.md 3.6."""
    if envelope["kind"] != "receipt" or envelope["in_reply_to"] not in answered_in:
        return
    answered = answered_in[envelope["in_reply_to"]]
    if (envelope["sender"], envelope["recipient"]) != (answered["envelope"]["recipient"],
                                                       answered["envelope"]["sender"]):
        raise RefEvidenceFailure(f"receipt {envelope['message_id']} from the wrong agency")
    if envelope["body_encoding"] == "plain" and envelope["body"].get("message_sha256") != answered["sha256"]:
        raise RefEvidenceFailure(f"receipt {envelope['message_id']} does not bind to what it answers")


def verify_evidence(files: list[bytes]) -> list[dict]:
    """docs/evidence.md section 3 on one or more bundles of one referral: the merged timeline."""
    bundles = [_evidence_one(data) for data in files]
    if len({b["manifest"]["referral_id"] for b in bundles}) != 1:
        raise RefEvidenceFailure("bundles of different referrals")
    by_exporter = {}
    for bundle in bundles:
        by_exporter.setdefault(bundle["manifest"]["exporter"], bundle)
    for a in bundles:
        for b in bundles:
            if a is b:
                continue
            for mid, message in a["held"].items():
                if mid in b["held"] and b["held"][mid]["sha256"] != message["sha256"]:
                    raise RefEvidenceFailure(f"message {mid} differs between bundles")
                _ref_check_receipt(message["envelope"], b["held"])
                side = by_exporter.get(message["envelope"]["recipient"])
                if message["envelope"]["kind"] == "receipt" and side is b:
                    answered = b["held"].get(message["envelope"]["in_reply_to"])
                    if answered is None or answered["direction"] != "out":
                        raise RefEvidenceFailure(f"receipt {mid} answers nothing its recipient sent")
    steps: dict[str, dict] = {}
    for bundle in bundles:
        for mid, message in bundle["held"].items():
            envelope = message["envelope"]
            step = steps.setdefault(mid, {"message_id": mid, "kind": envelope["kind"],
                                          "sent_at": parse_timestamp(envelope["sent_at"]), "held_by": {}})
            step["held_by"][bundle["manifest"]["exporter"]] = message["direction"]
    return sorted(steps.values(), key=lambda s: (s["sent_at"], s["kind"] == "receipt", s["message_id"]))


# -- section 20: reconciliation ------------------------------------------------------------------
def reconciliation_order(entries: list[tuple[str, str]]) -> list[str]:
    """``(sent_at text, message_id)`` pairs to the ids in order: ascending sent_at (as an
    instant), then message_id (as text)."""
    return [mid for _, mid in sorted(entries, key=lambda e: (parse_timestamp(e[0]), e[1]))]


def reconciliation_ids_sha256(ids: list[str]) -> str:
    """Lowercase hex SHA-256 over the ids, each followed by a line feed."""
    return sha256_hex(b"".join(mid.encode("ascii") + b"\n" for mid in ids))
