"""docs/protocol-vectors.json is current, and our own verifier agrees with every vector."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.crypto.canonical import canonical_bytes
from adapters.crypto.keys import Keyring
from adapters.crypto.sealing import BoxKey
from adapters.crypto.timestamps import parse_timestamp
from schemas.facts import facts_of
from schemas.registry import load_body
from schemas.routes import RouteTable
from services.config import agency_codes, load_config
from services.protocol.compose import encode
from services.protocol.exceptions import Rejection
from services.protocol.signing_input import body_sha256, signing_input, unsigned
from services.protocol.transport import TransportFacts
from services.protocol.vectors import build_vectors, render_vectors
from services.protocol.verify import Verifier

VECTORS_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol-vectors.json"
DOCUMENT = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VALID = DOCUMENT["valid"]
INVALID = DOCUMENT["invalid"]

# What the brief for the vectors requires at the least; guards against losing a case.
REQUIRED_INVALID = {
    "body_byte_flipped": "signature.invalid",
    "metadata_byte_flipped": "signature.invalid",
    "wrong_key": "signature.invalid",
    "unknown_key_id": "key.unknown",
    "revoked_key": "key.revoked",
    "expired_key": "key.expired",
    "signature_truncated": "signature.malformed",
    "duplicate_member": "json.duplicate_key",
    "float_in_body": "json.float",
    "body_hash_mismatch": "body.hash_mismatch",
    "oversized": "message.oversized",
    "missing_field": "envelope.invalid",
    "unknown_field": "envelope.invalid",
    "unknown_kind": "kind.unknown",
    "unknown_version": "kind.version_unknown",
    "forbidden_route": "route.forbidden",
    "clock_skew": "clock.skew",
    "unsupported_protocol": "protocol.unsupported",
    "empty_message": "message.empty",
    "sealed_facts_mismatch": "body.facts_mismatch",
    "sealed_facts_left_out": "body.facts_mismatch",
    "sealed_facts_not_of_the_kind": "envelope.invalid",
    "sealed_facts_not_scalar": "envelope.invalid",
    "transport_content_type": "transport.content_type",
    "transport_no_content_type": "transport.content_type",
    "transport_sender_mismatch": "transport.sender_mismatch",
    "transport_no_publisher": "transport.sender_mismatch",
}
REQUIRED_VALID = {"plain_clue_transfer", "receipt_in_reply", "sealed_clue_transfer",
                  "plain_clue_transfer_reformatted", "sealed_clue_transfer_with_facts",
                  "plain_clue_transfer_from_the_bus"}


def input_bytes(vector: dict) -> bytes:
    if "input_text" in vector:
        return vector["input_text"].encode("utf-8")
    return bytes.fromhex(vector["input_hex"])


def transport_of(vector: dict) -> TransportFacts | None:
    """The vector's ``transport`` (section 17) as our Verifier takes it; None without one."""
    if "transport" not in vector:
        return None
    transport = vector["transport"]
    return TransportFacts(transport["content_type"], transport["publisher"], user_id=None)


def verify_vector(vector: dict, raw: bytes, **kwargs):
    """``raw`` verified as the vector says: its receiver, clock, limits and transport."""
    return make_verifier(vector).verify(raw, expected_recipient=vector.get("expected_recipient"),
                                        transport=transport_of(vector), **kwargs)


def make_verifier(vector: dict) -> Verifier:
    keys = {entry["agency"]: entry for entry in DOCUMENT["keys"]}
    receiver = keys[vector["receiver"]]
    box_key = BoxKey(receiver["agency"], receiver["box_key_id"],
                     bytes.fromhex(receiver["box_secret_hex"]))
    at = parse_timestamp(vector["verify_at"])
    settings = DOCUMENT["verifier"]
    return Verifier(
        Keyring.from_json(vector.get("keyring", DOCUMENT["keyring"])),
        RouteTable.load(),
        agency_codes(load_config(environ={})),
        max_message_bytes=vector.get("max_message_bytes", settings["max_message_bytes"]),
        clock_skew=timedelta(seconds=settings["clock_skew_seconds"]),
        box_key=box_key,
        clock=lambda: at)


def test_committed_vectors_are_current():
    assert VECTORS_PATH.read_text(encoding="utf-8") == render_vectors(build_vectors()), (
        "regenerate with: cluebus protocol vectors --out docs/protocol-vectors.json")


def test_vectors_use_the_configured_agencies_and_limits():
    assert DOCUMENT["verifier"]["agencies"] == agency_codes(load_config(environ={}))
    assert DOCUMENT["verifier"]["max_message_bytes"] == 1024 * 1024
    assert DOCUMENT["verifier"]["clock_skew_seconds"] == 300


def test_every_required_case_is_present():
    by_name = {vector["name"]: vector["expected_rule"] for vector in INVALID}
    assert {name: by_name.get(name) for name in REQUIRED_INVALID} == REQUIRED_INVALID
    assert len(by_name) == len(INVALID), "vector names are unique"
    valid_names = [vector["name"] for vector in VALID]
    assert REQUIRED_VALID <= set(valid_names)
    assert len(set(valid_names)) == len(valid_names), "vector names are unique"


def test_transport_members_have_the_documented_shape():
    # Section 17: {"content_type": string or null, "publisher": agency or null}.
    with_transport = [v for v in VALID + INVALID if "transport" in v]
    assert {v["name"] for v in with_transport} == {
        "plain_clue_transfer_from_the_bus", "transport_content_type",
        "transport_no_content_type", "transport_sender_mismatch", "transport_no_publisher"}
    for vector in with_transport:
        assert set(vector["transport"]) == {"content_type", "publisher"}, vector["name"]
        for value in vector["transport"].values():
            assert value is None or isinstance(value, str), vector["name"]


def test_sealed_vectors_give_their_facts():
    by_name = {vector["name"]: vector for vector in VALID}
    assert "facts" not in by_name["sealed_clue_transfer"]["envelope"]["body"]
    assert "facts" not in by_name["sealed_clue_transfer"]["sealed"]
    vector = by_name["sealed_clue_transfer_with_facts"]
    facts = vector["envelope"]["body"]["facts"]
    assert facts == vector["sealed"]["facts"] == facts_of("clue_transfer",
                                                          vector["sealed"]["plain_body"])
    assert set(facts) == {"clue_no", "category", "amount_involved_fen", "team_reported_at",
                          "approved_at"}
    assert vector["sealed"]["nonce_hex"] != by_name["sealed_clue_transfer"]["sealed"]["nonce_hex"]


def test_invalid_inputs_are_given_one_way():
    for vector in INVALID:
        assert ("input_text" in vector) != ("input_hex" in vector), vector["name"]


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_fields_match_our_code(vector):
    envelope = vector["envelope"]
    assert canonical_bytes(unsigned(envelope)).hex() == vector["unsigned_canonical_hex"]
    assert signing_input(envelope).hex() == vector["signing_input_hex"]
    assert vector["signing_input_hex"].startswith(vector["signing_prefix_hex"])
    assert body_sha256(envelope["body"]) == vector["body_sha256"] == envelope["body_sha256"]
    assert envelope["signature"] == vector["signature"]
    wire = bytes.fromhex(vector["wire_hex"])
    assert (encode(envelope) == wire) is vector["wire_is_canonical"]


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_our_verifier_accepts_valid_vectors(vector):
    wire = bytes.fromhex(vector["wire_hex"])
    message = verify_vector(vector, wire)
    assert message.envelope == vector["envelope"]
    assert message.sha256 == vector["message_sha256"]
    envelope = vector["envelope"]
    if "sealed" in vector:
        assert message.sealed
        assert message.body == load_body(envelope["kind"], envelope["schema_version"],
                                         vector["sealed"]["plain_body"])
        assert canonical_bytes(vector["sealed"]["plain_body"]).hex() == \
            vector["sealed"]["plain_body_canonical_hex"]
        assert message.plain_body == vector["sealed"]["plain_body"]
        assert message.facts == facts_of(envelope["kind"], vector["sealed"]["plain_body"])
    else:
        assert message.body == load_body(envelope["kind"], envelope["schema_version"],
                                         envelope["body"])


@pytest.mark.parametrize("vector", [v for v in VALID if "transport" in v],
                         ids=[v["name"] for v in VALID if "transport" in v])
def test_a_valid_vector_from_the_bus_is_valid_without_transport_too(vector):
    # Steps 1a and 5a are skipped for bytes that did not come from a transport (12.1).
    make_verifier(vector).verify(bytes.fromhex(vector["wire_hex"]))


@pytest.mark.parametrize("vector", [v for v in INVALID if "transport" in v],
                         ids=[v["name"] for v in INVALID if "transport" in v])
def test_a_transport_vector_fails_only_for_its_transport(vector):
    message = make_verifier(vector).verify(input_bytes(vector))
    assert message.sha256


def test_an_observer_reads_the_facts_of_a_sealed_message_for_someone_else():
    vector = next(v for v in VALID if v["name"] == "sealed_clue_transfer_with_facts")
    message = make_verifier(dict(vector, receiver="joint_office")).verify(
        bytes.fromhex(vector["wire_hex"]))
    assert message.body is None and message.plain_body is None
    assert message.facts == vector["sealed"]["facts"]


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_our_verifier_rejects_invalid_vectors(vector):
    with pytest.raises(Rejection) as caught:
        verify_vector(vector, input_bytes(vector))
    assert caught.value.rule == vector["expected_rule"], caught.value.detail
    assert caught.value.authenticated is vector["authenticated"]
