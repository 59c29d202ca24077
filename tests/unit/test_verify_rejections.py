"""Every way a received message can be bad, and the rule the verifier names for it.

Each test asserts the Rejection's ``rule`` and whether the sender had been ``authenticated``
when the fault was found (services/protocol/verify.py: parsing and the signature check come
first and give authenticated=False; everything after a good signature gives True). Each also
checks that the verifier is pure: the same input is rejected the same way again, the keyring is
unchanged, and the untampered original message still verifies afterwards.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import timedelta

import pytest

from adapters.crypto.encoding import b64decode_strict, b64encode
from adapters.crypto.keys import ED25519, Keyring, key_id_for
from adapters.crypto.sealing import BoxKey
from adapters.crypto.signing import Signer
from schemas.envelope import ENVELOPE_FIELDS
from schemas.registry import load_body
from services.protocol.compose import encode
from services.protocol.exceptions import Rejection
from services.protocol.transport import CONTENT_TYPE, TransportFacts
from services.protocol.verify import DEFAULT_MAX_MESSAGE_BYTES, Verifier
from tests.fixtures.bodies import REFERRAL_ID, resign, sample_body, sample_message, signer_of
from tests.fixtures.keys import FIXED_NOW

MESSAGE_ID = "3b1f5c2a-9d8e-4f70-8a6b-5c4d3e2f1a0b"


# -- helpers --------------------------------------------------------------------------------
@pytest.fixture
def msg(medical):
    """A plain clue transfer from the medical security bureau to the police."""
    return sample_message(medical, "clue_transfer", "public_security", message_id=MESSAGE_ID)


def assert_rejected(verifier: Verifier, raw: bytes, rule: str, *, authenticated: bool,
                    original: bytes | None, **verify_kw) -> Rejection:
    """``raw`` is rejected for ``rule``; the verifier is left exactly as it was."""
    keyring_before = copy.deepcopy(verifier.keyring.to_json())
    with pytest.raises(Rejection) as info:
        verifier.verify(raw, **verify_kw)
    rejection = info.value
    assert (rejection.rule, rejection.authenticated) == (rule, authenticated), str(rejection)
    assert str(rejection).startswith(f"[{rule}] ")
    # An authenticated sender can be answered: the rejection carries the verified envelope.
    if authenticated:
        assert rejection.envelope == json.loads(raw)
    else:
        assert rejection.envelope is None
    # Pure: the same verdict again, nothing learnt or changed, and good messages still pass.
    with pytest.raises(Rejection) as again:
        verifier.verify(raw, **verify_kw)
    assert (again.value.rule, again.value.authenticated) == (rule, authenticated)
    assert verifier.keyring.to_json() == keyring_before
    if original is not None:
        verified = verifier.verify(original)
        assert verified.raw == original
    return rejection


def replace_once(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1, f"{old!r} occurs {raw.count(old)} times"
    return raw.replace(old, new)


def _sibling(byte: int) -> int:
    """Another byte of the same class, so that only the value (not the syntax) changes."""
    for alphabet in (b"0123456789abcdef", b"ghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
        if byte in alphabet:
            return alphabet[(alphabet.index(byte) + 1) % len(alphabet)]
    if byte in b"+/":
        return b"/+"[b"+/".index(byte)]
    return byte ^ 0x01  # e.g. the last byte of a UTF-8 sequence: stays valid UTF-8


def flip(raw: bytes, anchor: bytes, offset: int) -> bytes:
    """Change the one byte ``offset`` bytes after ``anchor``."""
    position = raw.index(anchor) + len(anchor) + offset
    flipped = bytearray(raw)
    flipped[position] = _sibling(raw[position])
    assert bytes(flipped) != raw
    return bytes(flipped)


def box_key_of(agent) -> BoxKey:
    return BoxKey(agent.agency, agent.material.box_key_id, agent.material.box_secret)


def verifier_like(agent, keyring=None, agencies=None, **options) -> Verifier:
    base = agent.verifier
    return Verifier(keyring or base.keyring, base.routes, agencies or base.agencies,
                    box_key=base.box_key, clock=base.clock, **options)


def copy_of(keyring: Keyring) -> Keyring:
    return Keyring(dict(keyring.records))


# -- the good case every test starts from ----------------------------------------------------
def test_untampered_message_verifies(msg, police):
    verified = police.verifier.verify(msg.raw, expected_recipient="public_security")
    assert (verified.kind, verified.sender, verified.recipient) == (
        "clue_transfer", "medical_security", "public_security")
    assert verified.message_id == MESSAGE_ID and verified.referral_id == REFERRAL_ID
    assert verified.sent_at == FIXED_NOW and verified.sealed is False
    assert verified.body["clue_no"] == "YB-2026-0001"
    assert verified.body["amount_involved_fen"] == 128_645_000


# -- tampering in transit --------------------------------------------------------------------
_ZHANG = len("市医疗保障局 张".encode("utf-8")) - 1  # last UTF-8 byte of 张 in approved_by


@pytest.mark.parametrize("anchor, offset, rule", [
    # the body: an ASCII digit, an amount, a byte inside a Chinese character
    (b'"clue_no":"', 11, "signature.invalid"),
    (b'"amount_involved_fen":', 8, "signature.invalid"),
    (b'"approved_by":"', _ZHANG, "signature.invalid"),
    (b'"subjects":[{"id_number":"', 0, "signature.invalid"),
    # metadata
    (b'"sender":"', 15, "key.agency_mismatch"),       # medical_securitz does not own the key
    (b'"recipient":"', 0, "signature.invalid"),
    (b'"sent_at":"', 18, "signature.invalid"),        # ...09:00:01Z
    (b'"referral_id":"', 7, "signature.invalid"),
    (b'"message_id":"', 0, "signature.invalid"),
    (b'"kind":"', 12, "signature.invalid"),           # clue_transfes
    (b'"schema_version":', 0, "signature.invalid"),   # 1 -> 2
    (b'"body_sha256":"', 0, "signature.invalid"),
    (b'"sender_key_id":"', 30, "key.unknown"),
    (b'"body_encoding":"', 0, "envelope.invalid"),    # qlain
    (b'"protocol":"', 8, "protocol.unsupported"),     # cluebus/2
    # the signature: a middle character, and the last one (whose low bits must be zero)
    (b'"signature":"', 0, "signature.invalid"),
    (b'"signature":"', 40, "signature.invalid"),
    (b'"signature":"', 85, "signature.malformed"),
], ids=lambda v: v.decode().strip('":{[') if isinstance(v, bytes) else str(v))
def test_flipped_byte_is_rejected_unauthenticated(msg, police, anchor, offset, rule):
    tampered = flip(msg.raw, anchor, offset)
    assert_rejected(police.verifier, tampered, rule, authenticated=False, original=msg.raw)


def test_every_single_byte_flip_is_rejected_and_never_authenticated(msg, police):
    keyring_before = police.verifier.keyring.to_json()
    rules = set()
    for position in range(len(msg.raw)):
        tampered = bytearray(msg.raw)
        tampered[position] ^= 0x01
        with pytest.raises(Rejection) as info:
            police.verifier.verify(bytes(tampered))
        assert info.value.authenticated is False, (position, info.value)
        rules.add(info.value.rule)
    assert "signature.invalid" in rules and "json.malformed" in rules
    assert police.verifier.keyring.to_json() == keyring_before
    police.verifier.verify(msg.raw)


# -- keys ------------------------------------------------------------------------------------
def test_signed_with_another_agencys_key_but_claiming_the_senders_key_id(msg, police):
    forged = resign(msg.envelope, signer_of(police))  # sender_key_id still names medical's key
    assert json.loads(forged)["sender_key_id"] == msg.envelope["sender_key_id"]
    assert_rejected(police.verifier, forged, "signature.invalid", authenticated=False,
                    original=msg.raw)


def test_signed_with_an_unregistered_key_claiming_the_senders_key_id(msg, police):
    impostor = Signer("medical_security", msg.envelope["sender_key_id"], os.urandom(32))
    assert_rejected(police.verifier, resign(msg.envelope, impostor), "signature.invalid",
                    authenticated=False, original=msg.raw)


def test_unknown_key_id(msg, medical, police):
    envelope = dict(msg.envelope, sender_key_id="medical_security:ed25519:" + "0" * 32)
    assert_rejected(police.verifier, resign(envelope, signer_of(medical)), "key.unknown",
                    authenticated=False, original=msg.raw)


def test_key_id_of_another_agency(msg, police):
    # The police sign with their own, valid key but claim to be the medical security bureau.
    envelope = dict(msg.envelope, sender_key_id=police.material.signing_key_id)
    assert_rejected(police.verifier, resign(envelope, signer_of(police)), "key.agency_mismatch",
                    authenticated=False, original=msg.raw)


def test_box_key_id_used_as_signing_key_id(msg, medical, police):
    envelope = dict(msg.envelope, sender_key_id=medical.material.box_key_id)
    assert_rejected(police.verifier, resign(envelope, signer_of(medical)), "key.purpose_mismatch",
                    authenticated=False, original=msg.raw)


def test_revoked_key(msg, police, keyring):
    revoked = copy_of(keyring)
    revoked.revoke(msg.envelope["sender_key_id"])
    verifier = verifier_like(police, keyring=revoked)
    assert_rejected(verifier, msg.raw, "key.revoked", authenticated=False, original=None)
    assert keyring.records[msg.envelope["sender_key_id"]].revoked is False
    police.verifier.verify(msg.raw)  # the unrevoked keyring still accepts it


# The fixture keys are valid from FIXED_NOW - 1 day for 365 days: [FIXED_NOW - 1d, FIXED_NOW + 364d).
@pytest.mark.parametrize("shift, rule", [
    (timedelta(days=364), "key.expired"),              # valid_until itself is outside
    (timedelta(days=400), "key.expired"),
    (timedelta(days=-1, seconds=-1), "key.not_yet_valid"),
    (timedelta(days=-30), "key.not_yet_valid"),
])
def test_key_outside_its_validity_at_sent_at(medical, police, clock, shift, rule):
    clock.now = FIXED_NOW + shift  # sender and receiver agree on the time: only the key is wrong
    message = sample_message(medical, "clue_transfer", "public_security")
    assert_rejected(police.verifier, message.raw, rule, authenticated=False, original=None)
    clock.now = FIXED_NOW
    police.verifier.verify(sample_message(medical, "clue_transfer", "public_security").raw)


@pytest.mark.parametrize("shift", [timedelta(days=364, seconds=-1), timedelta(days=-1)])
def test_key_at_the_edges_of_its_validity(medical, police, clock, shift):
    clock.now = FIXED_NOW + shift
    police.verifier.verify(sample_message(medical, "clue_transfer", "public_security").raw)


# -- the signature field ---------------------------------------------------------------------
def _signature_variants(signature: str) -> dict[str, str]:
    raw = b64decode_strict(signature)
    return {
        "truncated_to_63_bytes": b64encode(raw[:63]),
        "truncated_text": signature[:-4],
        "last_char_cut": signature[:-1],
        "empty": "",
    }


@pytest.mark.parametrize("variant", ["truncated_to_63_bytes", "truncated_text", "last_char_cut", "empty"])
def test_truncated_signature(msg, police, variant):
    envelope = dict(msg.envelope, signature=_signature_variants(msg.envelope["signature"])[variant])
    assert_rejected(police.verifier, encode(envelope), "signature.malformed", authenticated=False,
                    original=msg.raw)


@pytest.mark.parametrize("make_signature", [
    pytest.param(lambda s: "not base64 at all!", id="non_base64"),
    pytest.param(lambda s: s.replace("=", ""), id="padding_missing"),
    pytest.param(lambda s: s[:44] + "\n" + s[44:], id="embedded_newline"),
    pytest.param(lambda s: s.replace("+", "-").replace("/", "_") if ("+" in s or "/" in s)
                 else "-" + s[1:], id="urlsafe_alphabet"),
    pytest.param(lambda s: b64encode(os.urandom(32)), id="32_bytes"),
    pytest.param(lambda s: b64encode(b64decode_strict(s) + b"\x00"), id="65_bytes"),
    pytest.param(lambda s: b64encode(b64decode_strict(s) * 2), id="128_bytes"),
    pytest.param(lambda s: b64decode_strict(s).hex(), id="hex_instead_of_base64"),
])
def test_malformed_signature(msg, police, make_signature):
    envelope = dict(msg.envelope, signature=make_signature(msg.envelope["signature"]))
    assert_rejected(police.verifier, encode(envelope), "signature.malformed", authenticated=False,
                    original=msg.raw)


def test_signature_that_is_not_a_string(msg, police):
    envelope = dict(msg.envelope, signature=12345)
    rejection = assert_rejected(police.verifier, encode(envelope), "envelope.invalid",
                                authenticated=False, original=msg.raw)
    assert "signature" in rejection.messages


# -- strict JSON -----------------------------------------------------------------------------
@pytest.mark.parametrize("where, insert_after, member", [
    ("top_level", b"{", b'"sender":"medical_security",'),
    ("top_level_signature", b"{", b'"signature":"AAAA",'),
    ("in_body", b'"body":{', b'"clue_no":"YB-2026-0002",'),
    ("in_body_same_value", b'"body":{', b'"clue_no":"YB-2026-0001",'),
    ("in_body_nested_object", b'"subjects":[{', b'"name":"someone else",'),
])
def test_duplicate_member_names(msg, police, where, insert_after, member):
    position = msg.raw.index(insert_after) + len(insert_after)
    tampered = msg.raw[:position] + member + msg.raw[position:]
    assert_rejected(police.verifier, tampered, "json.duplicate_key", authenticated=False,
                    original=msg.raw)


_AMOUNT = b'"amount_involved_fen":128645000'
_VERSION = b'"schema_version":1,'


@pytest.mark.parametrize("old, new", [
    pytest.param(_AMOUNT, _AMOUNT + b".0", id="body_128645000.0"),
    pytest.param(_AMOUNT, b'"amount_involved_fen":1286450.5', id="body_1286450.5"),
    pytest.param(_AMOUNT, b'"amount_involved_fen":1e5', id="body_1e5"),
    pytest.param(_AMOUNT, b'"amount_involved_fen":1E5', id="body_1E5"),
    pytest.param(_AMOUNT, b'"amount_involved_fen":1e+5', id="body_1e+5"),
    pytest.param(_AMOUNT, b'"amount_involved_fen":-0.0', id="body_-0.0"),
    pytest.param(_AMOUNT, b'"amount_involved_fen":NaN', id="body_NaN"),
    pytest.param(_AMOUNT, b'"amount_involved_fen":Infinity', id="body_Infinity"),
    pytest.param(_AMOUNT, b'"amount_involved_fen":-Infinity', id="body_-Infinity"),
    pytest.param(_VERSION, b'"schema_version":1.0,', id="envelope_1.0"),
    pytest.param(_VERSION, b'"schema_version":1e0,', id="envelope_1e0"),
    pytest.param(_VERSION, b'"schema_version":NaN,', id="envelope_NaN"),
])
def test_floats_and_non_finite_numbers(msg, police, old, new):
    assert_rejected(police.verifier, replace_once(msg.raw, old, new), "json.float",
                    authenticated=False, original=msg.raw)


@pytest.mark.parametrize("old, new", [
    (_AMOUNT, b'"amount_involved_fen":9007199254740992'),
    (_AMOUNT, b'"amount_involved_fen":-9007199254740992'),
    (_AMOUNT, b'"amount_involved_fen":' + str(10**30).encode()),
    (_VERSION, b'"schema_version":18446744073709551617,'),
], ids=["2**53", "-2**53", "10**30", "2**64+1_in_envelope"])
def test_integers_beyond_2_53_minus_1(msg, police, old, new):
    assert_rejected(police.verifier, replace_once(msg.raw, old, new), "json.integer_range",
                    authenticated=False, original=msg.raw)


def test_integer_2_53_minus_1_is_still_accepted(medical, police):
    body = dict(sample_body("clue_transfer"), amount_involved_fen=2**53 - 1)
    message = sample_message(medical, "clue_transfer", "public_security", body=body)
    assert police.verifier.verify(message.raw).body["amount_involved_fen"] == 2**53 - 1


def test_integer_literal_with_thousands_of_digits(msg, police):
    huge = b"9" * 5000  # well under the size limit
    tampered = replace_once(msg.raw, b'"amount_involved_fen":128645000', b'"amount_involved_fen":' + huge)
    assert_rejected(police.verifier, tampered, "json.integer_range", authenticated=False,
                    original=msg.raw)


@pytest.mark.parametrize("make_raw", [
    pytest.param(lambda raw: b"\xef\xbb\xbf" + raw, id="bom"),
    pytest.param(lambda raw: raw.replace("张".encode(), b"\xe5\xbc\xff", 1), id="invalid_continuation_byte"),
    pytest.param(lambda raw: raw.replace("张".encode(), b"\xe5\xbc", 1), id="truncated_sequence"),
    pytest.param(lambda raw: raw.replace(b"YB-2026-0001", b"YB-2026-0001\xc0\xaf", 1), id="overlong_slash"),
    pytest.param(lambda raw: raw.replace(b"YB-2026-0001", b"YB-2026-0001\xed\xa0\x80", 1),
                 id="utf8_encoded_surrogate"),
    pytest.param(lambda raw: raw.replace(b"YB-2026-0001", b"YB-2026-0001\\ud800", 1), id="escaped_lone_surrogate"),
    pytest.param(lambda raw: raw.decode("utf-8").encode("utf-16"), id="utf16"),
    pytest.param(lambda raw: raw.decode("utf-8").encode("gb18030"), id="gb18030"),
    pytest.param(lambda raw: raw[:-1], id="truncated_json"),
    pytest.param(lambda raw: b"[" * 200_000 + b"]" * 200_000, id="nested_too_deeply"),
])
def test_invalid_utf8_bom_and_malformed_json(msg, police, make_raw):
    assert_rejected(police.verifier, make_raw(msg.raw), "json.malformed", authenticated=False,
                    original=msg.raw)


def test_empty_message_has_a_rule_of_its_own(msg, police):
    assert_rejected(police.verifier, b"", "message.empty", authenticated=False, original=msg.raw)


@pytest.mark.parametrize("value", [bytearray(b""), memoryview(b"")], ids=["bytearray", "memoryview"])
def test_empty_bytes_like_values_are_empty_messages(msg, police, value):
    assert_rejected(police.verifier, value, "message.empty", authenticated=False, original=msg.raw)


def test_bytes_like_values_are_read_as_their_bytes(msg, police):
    assert police.verifier.verify(memoryview(msg.raw), expected_recipient="public_security").message_id \
        == msg.message_id
    assert police.verifier.verify(bytearray(msg.raw)).sha256 == msg.sha256


@pytest.mark.parametrize("value", ["", "{}", None, 42, ["a"]], ids=["empty_str", "str", "none", "int", "list"])
def test_what_is_not_bytes_is_no_message(msg, police, value):
    assert_rejected(police.verifier, value, "message.not_bytes", authenticated=False, original=msg.raw)


# -- transport facts (protocol §19) ---------------------------------------------------------------
def test_the_transport_must_say_the_envelope_content_type(msg, police):
    for content_type in ("text/plain", "application/octet-stream", "application/json", None):
        transport = TransportFacts(content_type, publisher="medical_security", user_id="cluebus.medical_security")
        with pytest.raises(Rejection) as info:
            police.verifier.verify(msg.raw, transport=transport)
        assert (info.value.rule, info.value.authenticated) == ("transport.content_type", False)


@pytest.mark.parametrize("publisher, user_id", [("procuratorate", "cluebus.procuratorate"), (None, None),
                                                (None, "guest")])
def test_the_publisher_must_be_the_sender(msg, police, publisher, user_id):
    transport = TransportFacts(CONTENT_TYPE, publisher=publisher, user_id=user_id)
    with pytest.raises(Rejection) as info:
        police.verifier.verify(msg.raw, transport=transport)
    assert (info.value.rule, info.value.authenticated) == ("transport.sender_mismatch", False)
    assert info.value.envelope is None  # unauthenticated: quarantined, never answered


def test_a_message_published_by_its_sender_passes_the_transport_checks(msg, police):
    transport = TransportFacts(CONTENT_TYPE, publisher="medical_security", user_id="cluebus.medical_security")
    assert police.verifier.verify(msg.raw, transport=transport).message_id == msg.message_id


@pytest.mark.parametrize("raw", [b"[]", b"null", b"true", b"1", b'"cluebus/1"', b"[{}]"])
def test_non_object_json(msg, police, raw):
    assert_rejected(police.verifier, raw, "envelope.invalid", authenticated=False, original=msg.raw)


def test_envelope_wrapped_in_an_array(msg, police):
    assert_rejected(police.verifier, b"[" + msg.raw + b"]", "envelope.invalid",
                    authenticated=False, original=msg.raw)


# -- size --------------------------------------------------------------------------------------
def test_oversized_message_is_rejected_before_parsing(msg, police):
    assert police.verifier.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 1024 * 1024
    garbage = b"\xff" * (DEFAULT_MAX_MESSAGE_BYTES + 1)  # not even UTF-8: never parsed
    rejection = assert_rejected(police.verifier, garbage, "message.oversized", authenticated=False,
                                original=msg.raw)
    assert str(DEFAULT_MAX_MESSAGE_BYTES) in rejection.detail


def test_message_of_exactly_the_limit_is_parsed(msg, police):
    garbage = b"\xff" * DEFAULT_MAX_MESSAGE_BYTES
    assert_rejected(police.verifier, garbage, "json.malformed", authenticated=False, original=msg.raw)


def test_oversized_valid_message(msg, medical, police):
    body = dict(sample_body("clue_transfer"), summary="虚" * 20_000)
    big = sample_message(medical, "clue_transfer", "public_security", body=body)
    verifier = verifier_like(police, max_message_bytes=len(big.raw) - 1)
    assert_rejected(verifier, big.raw, "message.oversized", authenticated=False, original=msg.raw)


@pytest.mark.parametrize("limit_delta, passes", [(-1, False), (0, True)])
def test_custom_size_limit(msg, police, limit_delta, passes):
    verifier = verifier_like(police, max_message_bytes=len(msg.raw) + limit_delta)
    if passes:
        verifier.verify(msg.raw)
    else:
        assert_rejected(verifier, msg.raw, "message.oversized", authenticated=False, original=None)
        assert_rejected(verifier, b"{" * (len(msg.raw) + 1), "message.oversized",
                        authenticated=False, original=None)
        police.verifier.verify(msg.raw)


# -- the envelope ------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ENVELOPE_FIELDS)
def test_missing_envelope_field(msg, police, field):
    envelope = {key: value for key, value in msg.envelope.items() if key != field}
    expected = "protocol.unsupported" if field == "protocol" else "envelope.invalid"
    rejection = assert_rejected(police.verifier, encode(envelope), expected, authenticated=False,
                                original=msg.raw)
    if field != "protocol":
        assert field in rejection.messages


@pytest.mark.parametrize("extra", [
    {"priority": "urgent"}, {"Signature": "AAAA"}, {"body_sha512": "00"}, {"x_trace_id": None},
])
def test_unknown_envelope_field(msg, medical, police, extra):
    forged = resign(dict(msg.envelope, **extra), signer_of(medical))  # validly signed
    rejection = assert_rejected(police.verifier, forged, "envelope.invalid", authenticated=False,
                                original=msg.raw)
    assert set(extra) <= set(rejection.messages)


@pytest.mark.parametrize("protocol", ["cluebus/2", "cluebus/0", "CLUEBUS/1", "cluebus/1 ", "", None, 1])
def test_unsupported_protocol(msg, medical, police, protocol):
    forged = resign(dict(msg.envelope, protocol=protocol), signer_of(medical))
    assert_rejected(police.verifier, forged, "protocol.unsupported", authenticated=False,
                    original=msg.raw)


@pytest.mark.parametrize("field, value", [
    ("message_id", "3B1F5C2A-9D8E-4F70-8A6B-5C4D3E2F1A0B"),   # upper case
    ("referral_id", "YB-2026-0001"),
    ("in_reply_to", ""),
    ("sent_at", "2026-11-24T17:00:00+08:00"),
    ("sent_at", "2026-11-24 09:00:00Z"),
    ("sender", "Medical Security"),
    ("kind", "Clue_Transfer"),
    ("schema_version", 0),
    ("schema_version", "1"),
    ("schema_version", True),
    ("body_encoding", "gzip"),
    ("body", ["not", "an", "object"]),
    ("body_sha256", "ABC"),
    ("recipient", "medical_security"),   # sender and recipient must differ
])
def test_ill_formed_envelope_field(msg, medical, police, field, value):
    envelope = dict(msg.envelope, **{field: value})
    try:  # validly signed where signing is possible
        forged = resign(envelope, signer_of(medical), rehash=field not in ("body", "body_sha256"))
    except Exception:
        forged = encode(envelope)
    rejection = assert_rejected(police.verifier, forged, "envelope.invalid", authenticated=False,
                                original=msg.raw)
    assert field in rejection.messages


# -- after authentication: metadata ------------------------------------------------------------
def test_body_hash_mismatch_in_a_validly_signed_envelope(msg, medical, police):
    forged = resign(dict(msg.envelope, body_sha256="0" * 64), signer_of(medical), rehash=False)
    assert_rejected(police.verifier, forged, "body.hash_mismatch", authenticated=True, original=msg.raw)


def test_body_changed_after_hashing_but_signed(msg, medical, police):
    body = dict(msg.envelope["body"], amount_involved_fen=1)
    forged = resign(dict(msg.envelope, body=body), signer_of(medical), rehash=False)
    assert_rejected(police.verifier, forged, "body.hash_mismatch", authenticated=True, original=msg.raw)


@pytest.mark.parametrize("role", ["recipient", "sender"])
def test_unknown_agency(msg, medical, police, agencies, role):
    if role == "recipient":  # addressed to an agency that is not on this bus
        forged = resign(dict(msg.envelope, recipient="customs"), signer_of(medical))
        verifier = police.verifier
    else:  # a sender with a valid key whose agency this node does not configure
        forged = msg.raw
        verifier = verifier_like(police, agencies=[a for a in agencies if a != "medical_security"])
    rejection = assert_rejected(verifier, forged, "agency.unknown", authenticated=True, original=None)
    assert role in rejection.detail
    police.verifier.verify(msg.raw)


@pytest.mark.parametrize("sender, kind, recipient", [
    ("medical", "clue_transfer", "court"),          # the court takes no clue transfers
    ("medical", "judgment", "procuratorate"),       # only the court sends judgments
    ("medical", "urge", "public_security"),         # only the joint office urges
    ("police", "clue_transfer", "medical_security"),  # the police do not refer clues back
    ("police", "filing_decision", "procuratorate"),  # decisions go back to the referrer
])
def test_forbidden_route_in_a_validly_signed_message(msg, request, police, sender, kind, recipient):
    agent = request.getfixturevalue(sender)
    envelope = dict(msg.envelope, kind=kind, sender=agent.agency, recipient=recipient,
                    sender_key_id=agent.material.signing_key_id, body=sample_body(kind))
    forged = resign(envelope, signer_of(agent))
    rejection = assert_rejected(police.verifier, forged, "route.forbidden", authenticated=True,
                                original=msg.raw)
    assert kind in rejection.detail and recipient in rejection.detail


def test_unknown_kind(msg, medical, police):
    forged = resign(dict(msg.envelope, kind="fraud_report"), signer_of(medical))
    assert_rejected(police.verifier, forged, "kind.unknown", authenticated=True, original=msg.raw)


@pytest.mark.parametrize("version", [2, 99, 10_000])
def test_unknown_schema_version(msg, medical, police, version):
    forged = resign(dict(msg.envelope, schema_version=version), signer_of(medical))
    assert_rejected(police.verifier, forged, "kind.version_unknown", authenticated=True,
                    original=msg.raw)


@pytest.mark.parametrize("expected", ["procuratorate", "medical_security", "customs"])
def test_wrong_recipient(msg, police, expected):
    assert_rejected(police.verifier, msg.raw, "recipient.mismatch", authenticated=True,
                    original=msg.raw, expected_recipient=expected)


# -- freshness -------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [301, -301, 3600, -86_400])
def test_sent_at_outside_the_clock_skew(msg, police, clock, seconds):
    clock.advance(seconds=seconds)  # positive: the message is old; negative: from the future
    rejection = assert_rejected(police.verifier, msg.raw, "clock.skew", authenticated=True,
                                original=None)
    assert "300" in rejection.detail
    police.verifier.verify(msg.raw, check_freshness=False)
    clock.now = FIXED_NOW
    police.verifier.verify(msg.raw)


@pytest.mark.parametrize("seconds", [300, -300, 299, 0])
def test_sent_at_within_the_clock_skew(msg, police, clock, seconds):
    clock.advance(seconds=seconds)
    police.verifier.verify(msg.raw)


@pytest.mark.parametrize("seconds, passes", [(300, True), (301, False), (-301, False)])
def test_receivers_time_passed_explicitly(msg, police, seconds, passes):
    now = FIXED_NOW + timedelta(seconds=seconds)
    if passes:
        police.verifier.verify(msg.raw, now=now)
    else:
        assert_rejected(police.verifier, msg.raw, "clock.skew", authenticated=True,
                        original=msg.raw, now=now)


def test_custom_clock_skew(msg, police, clock):
    verifier = verifier_like(police, clock_skew=timedelta(seconds=30))
    clock.advance(seconds=30)
    verifier.verify(msg.raw)
    clock.advance(seconds=1)
    assert_rejected(verifier, msg.raw, "clock.skew", authenticated=True, original=None)
    police.verifier.verify(msg.raw)  # the default skew of 300 s still admits it


# -- bodies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["clue_no", "subjects", "attachments", "approved_at", "amount_involved_fen"])
def test_missing_body_field(msg, medical, police, field):
    body = {key: value for key, value in msg.envelope["body"].items() if key != field}
    forged = resign(dict(msg.envelope, body=body), signer_of(medical))
    rejection = assert_rejected(police.verifier, forged, "body.invalid", authenticated=True,
                                original=msg.raw)
    assert field in rejection.messages


@pytest.mark.parametrize("path, value", [
    (("hospital_grade",), "二级"),
    (("subjects", 0, "phone"), "13800000000"),
    (("attachments", 1, "url"), "https://example.invalid/report.pdf"),
])
def test_unknown_body_field(msg, medical, police, path, value):
    body = copy.deepcopy(msg.envelope["body"])
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    forged = resign(dict(msg.envelope, body=body), signer_of(medical))
    rejection = assert_rejected(police.verifier, forged, "body.invalid", authenticated=True,
                                original=msg.raw)
    assert path[0] in rejection.messages


@pytest.mark.parametrize("field, value", [
    ("amount_involved_fen", "128645000"), ("amount_involved_fen", True), ("amount_involved_fen", -1),
    ("approved_at", "2026-11-21 08:15:00"), ("category", "fraud"), ("clue_no", "   "),
])
def test_ill_typed_body_field(msg, medical, police, field, value):
    forged = resign(dict(msg.envelope, body=dict(msg.envelope["body"], **{field: value})),
                    signer_of(medical))
    rejection = assert_rejected(police.verifier, forged, "body.invalid", authenticated=True,
                                original=msg.raw)
    assert field in rejection.messages


# -- sealed bodies ---------------------------------------------------------------------------
@pytest.fixture
def sealed(medical):
    return sample_message(medical, "clue_transfer", "public_security", message_id=MESSAGE_ID, seal=True)


def _resealed(envelope: dict, **body_changes) -> dict:
    return dict(envelope, body=dict(envelope["body"], **body_changes))


def test_sealed_body_opened_by_the_right_recipient(sealed, police):
    assert sealed.envelope["body_encoding"] == "sealed"
    wire = sealed.raw.decode("utf-8")
    for personal in ("王某某", "320102197805061234", "明德康复医院", "李某"):
        assert personal not in wire
    assert sealed.envelope["body"]["facts"]["clue_no"] == "YB-2026-0001"  # a fact, signed and readable
    verified = police.verifier.verify(sealed.raw, expected_recipient="public_security")
    assert verified.sealed is True
    assert verified.body == load_body("clue_transfer", 1, sample_body("clue_transfer"))
    assert verified.body["clue_no"] == "YB-2026-0001"


@pytest.mark.parametrize("observer", ["procuratorate", "no_box_key"])
def test_observer_without_the_key_gets_metadata_but_no_body(sealed, make_agent, police, observer):
    if observer == "no_box_key":
        verifier = Verifier(police.verifier.keyring, police.verifier.routes, police.verifier.agencies,
                            clock=police.verifier.clock)
    else:
        verifier = make_agent(observer).verifier
    verified = verifier.verify(sealed.raw)
    assert verified.body is None and verified.sealed is True
    assert (verified.kind, verified.sender, verified.recipient) == (
        "clue_transfer", "medical_security", "public_security")


def test_observer_reads_the_signed_facts_of_a_sealed_body(sealed, make_agent):
    verified = make_agent("joint_office").verifier.verify(sealed.raw)
    assert verified.body is None
    assert verified.facts == {"clue_no": "YB-2026-0001", "category": "suspected_crime",
                              "amount_involved_fen": sample_body("clue_transfer")["amount_involved_fen"],
                              "team_reported_at": sample_body("clue_transfer")["team_reported_at"],
                              "approved_at": sample_body("clue_transfer")["approved_at"]}


def test_the_recipient_gets_the_same_facts_from_the_body(sealed, police):
    assert police.verifier.verify(sealed.raw).facts == sealed.envelope["body"]["facts"]


@pytest.mark.parametrize("facts", [
    pytest.param({"clue_no": "YB-2026-9999"}, id="a_fact_differs"),
    pytest.param({}, id="facts_left_out"),
    pytest.param({"clue_no": "YB-2026-0001", "category": "suspected_crime"}, id="some_facts_left_out"),
])
def test_sealed_facts_must_be_the_bodys_facts(sealed, medical, police, facts):
    forged = resign(_resealed(sealed.envelope, facts=facts), signer_of(medical))
    assert_rejected(police.verifier, forged, "body.facts_mismatch", authenticated=True, original=sealed.raw)


@pytest.mark.parametrize("facts", [
    pytest.param({"clue_no": "YB-2026-0001", "subjects": "王某某"}, id="not_a_fact_of_the_kind"),
    pytest.param({"clue_no": ["YB-2026-0001"]}, id="not_a_scalar"),
])
def test_sealed_facts_carry_only_the_kinds_facts(sealed, medical, police, facts):
    forged = resign(_resealed(sealed.envelope, facts=facts), signer_of(medical))
    assert_rejected(police.verifier, forged, "envelope.invalid", authenticated=False, original=sealed.raw)


def test_a_sealed_body_without_facts_is_still_valid(sealed, medical, police, make_agent):
    # Protocol §11.4: facts are optional (sealed bodies of the first revision have none).
    envelope = dict(sealed.envelope, body={k: v for k, v in sealed.envelope["body"].items() if k != "facts"})
    raw = resign(envelope, signer_of(medical))
    assert police.verifier.verify(raw).facts == sealed.envelope["body"]["facts"]  # from the opened body
    assert make_agent("joint_office").verifier.verify(raw).facts == {}


def test_sealed_ciphertext_tampered_in_transit(sealed, police):
    ciphertext = sealed.envelope["body"]["ciphertext"]
    tampered = flip(sealed.raw, b'"ciphertext":"', len(ciphertext) // 2)
    assert_rejected(police.verifier, tampered, "signature.invalid", authenticated=False,
                    original=sealed.raw)


def test_sealed_ciphertext_tampered_then_signed(sealed, medical, police):
    raw = bytearray(b64decode_strict(sealed.envelope["body"]["ciphertext"]))
    raw[len(raw) // 2] ^= 0x01
    forged = resign(_resealed(sealed.envelope, ciphertext=b64encode(bytes(raw))), signer_of(medical))
    assert_rejected(police.verifier, forged, "body.sealed", authenticated=True, original=sealed.raw)


@pytest.mark.parametrize("nonce", [b64encode(b"\x00" * 23), b64encode(b"\x00" * 24), "***"])
def test_sealed_body_with_a_wrong_nonce(sealed, medical, police, nonce):
    forged = resign(_resealed(sealed.envelope, nonce=nonce), signer_of(medical))
    assert_rejected(police.verifier, forged, "body.sealed", authenticated=True, original=sealed.raw)


def test_sealed_for_another_agencys_key(medical, police, make_agent):
    # Sealed for the health commission's X25519 key, then addressed to the police.
    for_health = sample_message(medical, "clue_transfer", "health", seal=True)
    forged = resign(dict(for_health.envelope, recipient="public_security"), signer_of(medical))
    rejection = assert_rejected(police.verifier, forged, "key.agency_mismatch", authenticated=True,
                                original=sample_message(medical, "clue_transfer", "public_security").raw)
    assert "health" in rejection.detail
    # The health commission itself could open it, had it been addressed to it.
    assert make_agent("health").verifier.verify(for_health.raw).body["clue_no"] == "YB-2026-0001"


def test_sealed_for_another_key_but_naming_ours(medical, police):
    # The key id says "the police", but the ciphertext was made for the health commission.
    for_health = sample_message(medical, "clue_transfer", "health", seal=True)
    envelope = _resealed(dict(for_health.envelope, recipient="public_security"),
                         recipient_box_key_id=police.material.box_key_id)
    assert_rejected(police.verifier, resign(envelope, signer_of(medical)), "body.sealed",
                    authenticated=True,
                    original=sample_message(medical, "clue_transfer", "public_security", seal=True).raw)


def test_sealed_naming_a_box_key_of_another_sender(sealed, medical, police):
    envelope = _resealed(sealed.envelope, sender_box_key_id=police.material.box_key_id)
    assert_rejected(police.verifier, resign(envelope, signer_of(medical)), "key.agency_mismatch",
                    authenticated=True, original=sealed.raw)


@pytest.mark.parametrize("plaintext, rule", [
    (b'{"clue_no": "YB-2026-0001"}', "body.sealed"),        # not canonical (whitespace)
    (b'["YB-2026-0001"]', "body.sealed"),                   # not an object
    (b"\xff\xfe", "json.malformed"),                        # not UTF-8 JSON at all
    (b'{"clue_no":"YB-2026-0001"}', "body.invalid"),        # canonical object, wrong body
])
def test_sealed_plaintext_that_is_not_a_valid_body(sealed, medical, police, plaintext, rule):
    nonce, ciphertext = box_key_of(medical).seal(plaintext, police.material.box_public)
    forged = resign(_resealed(sealed.envelope, nonce=nonce, ciphertext=ciphertext), signer_of(medical))
    assert_rejected(police.verifier, forged, rule, authenticated=True, original=sealed.raw)


def test_sealed_body_missing_a_field_is_an_envelope_error(sealed, medical, police):
    body = {key: value for key, value in sealed.envelope["body"].items() if key != "nonce"}
    forged = resign(dict(sealed.envelope, body=body), signer_of(medical))
    assert_rejected(police.verifier, forged, "envelope.invalid", authenticated=False,
                    original=sealed.raw)


def test_signing_key_ids_are_the_ones_in_the_keyring(msg, keyring, medical):
    # Sanity check of the fixtures the tests above rely on.
    record = keyring.records[msg.envelope["sender_key_id"]]
    assert record.algorithm == ED25519 and record.agency == "medical_security"
    assert key_id_for("medical_security", ED25519, medical.material.signing_public) == record.key_id
