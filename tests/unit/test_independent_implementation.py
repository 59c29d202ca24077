"""An independent implementation written from docs/protocol.md agrees with the test vectors.

tests/independent/cluebus_ref.py shares no code with cluebus. If it and our code both agree
with docs/protocol-vectors.json, the document is precise enough to implement the protocol from.
"""

from __future__ import annotations

import ast
import json
import random
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.crypto.canonical import canonical_bytes, strict_loads
from adapters.crypto.exceptions import CryptoError
from services.protocol.exceptions import Rejection
from tests.independent import cluebus_ref as ref
from tests.unit.test_vectors import verify_vector as our_verify

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((ROOT / "docs" / "protocol-vectors.json").read_text(encoding="utf-8"))
VALID = DOCUMENT["valid"]
INVALID = DOCUMENT["invalid"]
KEYS = {entry["agency"]: entry for entry in DOCUMENT["keys"]}

# Rules the reference implementation does not check (it has no body schemas).
NOT_CHECKED_BY_REF = {"body.invalid"}
# Rules it must check at the least.
MUST_CHECK = {"signature.invalid", "signature.malformed", "body.hash_mismatch", "key.unknown",
              "key.revoked", "key.expired", "key.not_yet_valid", "key.agency_mismatch",
              "key.purpose_mismatch", "json.duplicate_key", "json.float", "body.sealed",
              "message.empty", "body.facts_mismatch", "transport.content_type",
              "transport.sender_mismatch"}


def ref_verifier(vector: dict) -> ref.RefVerifier:
    receiver = KEYS[vector["receiver"]]
    settings = DOCUMENT["verifier"]
    return ref.RefVerifier(
        keyring=ref.RefKeyring(vector.get("keyring", DOCUMENT["keyring"])),
        agencies=ref.agencies_of(settings["agencies"]),
        receiver=receiver["agency"],
        box_secret=bytes.fromhex(receiver["box_secret_hex"]),
        max_message_bytes=vector.get("max_message_bytes", settings["max_message_bytes"]),
        clock_skew=timedelta(seconds=settings["clock_skew_seconds"]))


def ref_transport(vector: dict) -> ref.Transport | None:
    """Section 17: a vector with ``transport`` is verified with steps 1a and 5a."""
    if "transport" not in vector:
        return None
    return ref.Transport(vector["transport"]["content_type"], vector["transport"]["publisher"])


def ref_verify(vector: dict, raw: bytes) -> ref.Accepted:
    return ref_verifier(vector).verify(raw, ref.parse_timestamp(vector["verify_at"]),
                                       expected_recipient=vector.get("expected_recipient"),
                                       transport=ref_transport(vector))


def input_bytes(vector: dict) -> bytes:
    if "input_text" in vector:
        return vector["input_text"].encode("utf-8")
    return bytes.fromhex(vector["input_hex"])


def seed_of(key_id: str) -> bytes:
    for entry in KEYS.values():
        if entry["signing_key_id"] == key_id:
            return bytes.fromhex(entry["signing_seed_hex"])
    raise LookupError(key_id)


# -- the reference is independent -------------------------------------------------------------

def test_reference_imports_nothing_of_ours():
    tree = ast.parse((ROOT / "tests" / "independent" / "cluebus_ref.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add(node.module.split(".")[0])
    assert not imported & {"services", "schemas", "adapters", "tests", "rfc8785", "json",
                           "marshmallow"}
    assert imported <= {"__future__", "base64", "binascii", "hashlib", "re", "dataclasses",
                        "datetime", "typing", "nacl"}


# -- keys ----------------------------------------------------------------------------------

@pytest.mark.parametrize("agency", sorted(KEYS))
def test_reference_derives_keys_and_key_ids(agency):
    entry = KEYS[agency]
    signing_public = ref.ed25519_public(bytes.fromhex(entry["signing_seed_hex"]))
    box_public = ref.x25519_public(bytes.fromhex(entry["box_secret_hex"]))
    assert signing_public.hex() == entry["signing_public_hex"]
    assert ref.b64encode(signing_public) == entry["signing_public_b64"]
    assert box_public.hex() == entry["box_public_hex"]
    assert ref.b64encode(box_public) == entry["box_public_b64"]
    assert ref.key_id(agency, "ed25519", signing_public) == entry["signing_key_id"]
    assert ref.key_id(agency, "x25519", box_public) == entry["box_key_id"]


def test_reference_loads_the_keyrings():
    ring = ref.RefKeyring(DOCUMENT["keyring"])
    configured = [entry for entry in KEYS.values() if entry["configured"]]
    assert set(ring.records) == ({e["signing_key_id"] for e in configured}
                                 | {e["box_key_id"] for e in configured})
    for vector in INVALID:
        if "keyring" in vector:
            ref.RefKeyring(vector["keyring"])


# -- valid vectors ---------------------------------------------------------------------------

@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_reference_reproduces_the_bytes(vector):
    envelope = vector["envelope"]
    assert ref.jcs(ref.unsigned(envelope)).hex() == vector["unsigned_canonical_hex"]
    assert ref.signing_prefix(envelope).hex() == vector["signing_prefix_hex"]
    assert ref.signing_input(envelope).hex() == vector["signing_input_hex"]
    assert ref.body_sha256(envelope["body"]) == vector["body_sha256"] == envelope["body_sha256"]
    assert ref.sign(seed_of(envelope["sender_key_id"]), envelope) == vector["signature"]
    assert ref.b64decode_canonical(vector["signature"]).hex() == vector["signature_hex"]
    wire = bytes.fromhex(vector["wire_hex"])
    assert (ref.jcs(envelope) == wire) is vector["wire_is_canonical"]
    assert ref.parse_json(wire) == envelope
    assert ref.sha256_hex(wire) == vector["message_sha256"]


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_reference_accepts_valid_vectors(vector):
    accepted = ref_verify(vector, bytes.fromhex(vector["wire_hex"]))
    assert accepted.envelope == vector["envelope"]
    assert accepted.message_sha256 == vector["message_sha256"]
    if "sealed" in vector:
        sealed = vector["sealed"]
        assert accepted.plaintext.hex() == sealed["plain_body_canonical_hex"]
        assert accepted.body == sealed["plain_body"]
        assert ref.jcs(sealed["plain_body"]).hex() == sealed["plain_body_canonical_hex"]
        assert accepted.facts == ref.facts_of(vector["envelope"]["kind"], sealed["plain_body"])
        if "facts" in sealed:
            assert sealed["facts"] == vector["envelope"]["body"]["facts"] == accepted.facts
    else:
        assert accepted.body == vector["envelope"]["body"]


SEALED_VALID = [v for v in VALID if "sealed" in v]


def test_there_are_sealed_vectors_with_and_without_facts():
    assert {"facts" in v["envelope"]["body"] for v in SEALED_VALID} == {True, False}


@pytest.mark.parametrize("vector", SEALED_VALID, ids=[v["name"] for v in SEALED_VALID])
def test_reference_reproduces_the_sealed_body(vector):
    sealed, envelope = vector["sealed"], vector["envelope"]
    sender, recipient = KEYS[envelope["sender"]], KEYS[envelope["recipient"]]
    ciphertext = ref.seal(bytes.fromhex(sealed["plain_body_canonical_hex"]),
                          bytes.fromhex(sealed["nonce_hex"]),
                          bytes.fromhex(sender["box_secret_hex"]),
                          bytes.fromhex(recipient["box_public_hex"]))
    assert ciphertext.hex() == sealed["ciphertext_hex"]
    assert len(ciphertext) == len(bytes.fromhex(sealed["plain_body_canonical_hex"])) + 16
    assert envelope["body"]["ciphertext"] == ref.b64encode(ciphertext)
    assert envelope["body"]["nonce"] == ref.b64encode(bytes.fromhex(sealed["nonce_hex"]))
    assert envelope["body"]["sender_box_key_id"] == sender["box_key_id"]
    assert envelope["body"]["recipient_box_key_id"] == recipient["box_key_id"]


    if "facts" in sealed:
        assert envelope["body"]["facts"] == sealed["facts"] == ref.facts_of(
            envelope["kind"], sealed["plain_body"])


@pytest.mark.parametrize("vector", SEALED_VALID, ids=[v["name"] for v in SEALED_VALID])
def test_a_sealed_message_for_someone_else_is_checked_but_not_opened(vector):
    observer = dict(vector, receiver="medical_security")
    accepted = ref_verify(observer, bytes.fromhex(vector["wire_hex"]))
    assert accepted.body is None
    # An observer reads the facts the sealed object carries, and learns none without them.
    assert accepted.facts == vector["sealed"].get("facts")


@pytest.mark.parametrize("vector", [v for v in VALID + INVALID if "transport" in v],
                         ids=[v["name"] for v in VALID + INVALID if "transport" in v])
def test_reference_skips_steps_1a_and_5a_without_a_transport(vector):
    raw = bytes.fromhex(vector["wire_hex"]) if "wire_hex" in vector else input_bytes(vector)
    ref_verify({k: v for k, v in vector.items() if k != "transport"}, raw)


# -- invalid vectors ---------------------------------------------------------------------------

def test_reference_checks_the_rules_it_must():
    assert MUST_CHECK <= {v["expected_rule"] for v in INVALID} - NOT_CHECKED_BY_REF


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_reference_rejects_invalid_vectors(vector):
    raw = input_bytes(vector)
    if vector["expected_rule"] in NOT_CHECKED_BY_REF:
        ref_verify(vector, raw)
        return
    with pytest.raises(ref.RefRejection) as caught:
        ref_verify(vector, raw)
    assert caught.value.rule == vector["expected_rule"], caught.value.detail
    assert caught.value.authenticated is vector["authenticated"]


# -- both implementations agree ----------------------------------------------------------------

@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_both_implementations_accept_every_valid_vector(vector):
    raw = bytes.fromhex(vector["wire_hex"])
    ours, theirs = our_verify(vector, raw), ref_verify(vector, raw)
    assert ours.envelope == theirs.envelope == vector["envelope"]
    assert ours.sha256 == theirs.message_sha256 == vector["message_sha256"]
    assert ours.plain_body == theirs.body
    assert ours.facts == theirs.facts


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_both_implementations_agree_on_every_invalid_vector(vector):
    raw = input_bytes(vector)
    with pytest.raises(Rejection) as ours:
        our_verify(vector, raw)
    if vector["expected_rule"] in NOT_CHECKED_BY_REF:
        ref_verify(vector, raw)  # it cannot tell; it must not fail for another reason
        assert ours.value.rule == vector["expected_rule"]
        return
    with pytest.raises(ref.RefRejection) as theirs:
        ref_verify(vector, raw)
    assert (ours.value.rule, ours.value.authenticated) == \
        (theirs.value.rule, theirs.value.authenticated) == \
        (vector["expected_rule"], vector["authenticated"]), (ours.value.detail, theirs.value.detail)


# -- JCS and the strict parser against ours, on random values -----------------------------------

ALPHABETS = [
    "abcxyzABC_-",
    "\u0000\u0001\u0008\t\n\u000b\u000c\r\u001f \"\\/\u007f\u0080",
    "\u00e9\u4e2d\u6587\u2028\u2029\ufeff\uffff\ufffd",
    "\U0001f600\U00020bb7\U0010ffff\U00010000",
]


def random_string(rng: random.Random, longest: int = 8) -> str:
    return "".join(rng.choice(rng.choice(ALPHABETS)) for _ in range(rng.randint(0, longest)))


def random_value(rng: random.Random, depth: int = 0):
    choice = rng.randint(0, 9 if depth < 4 else 5)
    if choice == 0:
        return rng.choice([True, False, None])
    if choice in (1, 2):
        return rng.choice([0, -1, 1, 2**53 - 1, -(2**53 - 1), rng.randint(-10**6, 10**6),
                           rng.randint(-(2**53 - 1), 2**53 - 1)])
    if choice in (3, 4, 5):
        return random_string(rng)
    if choice in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {random_string(rng, 4): random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def random_values(seed: int, count: int):
    rng = random.Random(seed)
    return [random_value(rng) for _ in range(count)]


def test_reference_jcs_matches_ours_on_random_values():
    for value in random_values(20261124, 600):
        assert ref.jcs(value) == canonical_bytes(value), value


def test_reference_jcs_sorts_by_utf16_code_units():
    value = {"\uffff": 1, "\U0001f600": 2, "a": 3, "": 4, "ab": 5, "\u00e9": 6}
    assert ref.jcs(value) == canonical_bytes(value)
    assert ref.jcs(value).decode("utf-8") == '{"":4,"a":3,"ab":5,"é":6,"😀":2,"\uffff":1}'


def test_reference_parser_matches_ours_on_random_texts():
    rng = random.Random(7)
    for value in random_values(11, 300):
        text = json.dumps(value, ensure_ascii=rng.choice([True, False]),
                          indent=rng.choice([None, 0, 2]),
                          separators=rng.choice([None, (",", ":"), (" , ", " : ")]))
        data = text.encode("utf-8")
        assert ref.parse_json(data) == strict_loads(data) == value


MALFORMED = [
    b"", b" ", b"{", b"{}x", b"{}{}", b"[1,]", b"{\"a\":1,}", b"{'a':1}", b"01", b"[01]", b"+1",
    b"[1 2]", b"tru", b"nul", b"\"\x01\"", b"\"\\x\"", b"\"\\u12\"", b"\"abc", b"{\"a\" 1}",
    b"\xef\xbb\xbf{}", b"\xff", b"\"\xed\xa0\x80\"", b"\"\\ud800\"", b"{\"\\udfff\":1}",
    b"\"\\ud800\\u0041\"", b"// comment\n{}", b"[1]\x00",
    b"1.0", b"-0.0", b"1e2", b"1E+2", b"[0.5]", b"NaN", b"Infinity", b"-Infinity",
    b"{\"a\":1,\"a\":1}", b"{\"a\":1,\"\\u0061\":2}", b"[{\"x\":[],\"x\":{}}]",
    b"9007199254740992", b"-9007199254740992", b"[123456789012345678901234567890]",
]


@pytest.mark.parametrize("data", MALFORMED, ids=[repr(d) for d in MALFORMED])
def test_reference_parser_rejects_like_ours(data):
    with pytest.raises(CryptoError) as ours:
        strict_loads(data)
    with pytest.raises(ref.RefRejection) as theirs:
        ref.parse_json(data)
    assert theirs.value.rule == ours.value.rule


@pytest.mark.parametrize("data", [b"-0", b"[9007199254740991,-9007199254740991]",
                                  b" \t\r\n{ \"a\" : [ ] } \n", b"\"\\ud842\\udfb7\\/\"",
                                  b"{\"\":null}"])
def test_reference_parser_accepts_like_ours(data):
    assert ref.parse_json(data) == strict_loads(data)


# -- section 20: reconciliation ------------------------------------------------------------------
def test_reference_computes_the_reconciliation_hashes_of_the_vectors():
    vector = DOCUMENT["reconciliation"]
    assert ref.reconciliation_ids_sha256(vector["ids"]) == vector["ids_sha256"]
    assert ref.reconciliation_ids_sha256(vector["held_ids"]) == vector["held_ids_sha256"]
    assert ref.reconciliation_ids_sha256([]) == vector["empty_ids_sha256"]
    assert "".join(f"{i}\n" for i in vector["ids"]) == vector["ids_text"]
    valid = {v["name"]: v for v in VALID}
    summary = valid["reconciliation_summary"]["envelope"]["body"]
    answer = valid["reconciliation_answer"]["envelope"]["body"]
    assert summary == vector["summary_body"] and answer == vector["answer_body"]
    assert summary["ids_sha256"] == ref.reconciliation_ids_sha256(vector["ids"])
    assert answer["ids_sha256"] == ref.reconciliation_ids_sha256(answer["held_ids"])
    assert [i for i in vector["ids"] if i not in answer["held_ids"]] == vector["missing_ids"]


def test_reference_orders_by_sent_at_as_an_instant_then_by_message_id():
    a, b, c = (f"00000000-0000-4000-8000-00000000000{x}" for x in "abc")
    # .5Z and .500000Z are one instant; an earlier instant first whatever its id
    assert ref.reconciliation_order([("2026-11-24T09:00:00.5Z", c), ("2026-11-24T09:00:00.500000Z", b),
                                     ("2026-11-24T09:00:00Z", a)]) == [a, b, c]
