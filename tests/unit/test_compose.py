"""Composing outgoing envelopes (services/protocol/compose.py) and their round trip through
the recipient's verifier."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone

import pytest

from adapters.crypto.canonical import canonical_bytes, strict_loads
from adapters.crypto.exceptions import InvalidSignature
from adapters.crypto.keys import Keyring
from adapters.crypto.signing import verify_signature
from schemas.envelope import ENVELOPE_FIELDS, PROTOCOL, SEAL_ALGORITHM
from schemas.registry import KINDS, load_body
from services.protocol.compose import Composer, encode, sign_envelope
from services.protocol.exceptions import ComposeError
from services.protocol.signing_input import SIGNATURE_DOMAIN, body_sha256, signing_input, unsigned
from tests.fixtures.bodies import REFERRAL_ID, ROUTE_FOR_KIND, sample_body, sample_message
from tests.fixtures.keys import FIXED_NOW

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")  # services/protocol/ids.py


@pytest.fixture
def agents(make_agent):
    cache = {}

    def get(agency):
        if agency not in cache:
            cache[agency] = make_agent(agency)
        return cache[agency]
    return get


# -- every kind, end to end --------------------------------------------------------------------
@pytest.mark.parametrize("seal", [False, True], ids=["plain", "sealed"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_composes_and_verifies(agents, kind, seal):
    sender, recipient = ROUTE_FOR_KIND[kind]
    message = sample_message(agents(sender), kind, recipient, seal=seal)
    verified = agents(recipient).verifier.verify(message.raw, expected_recipient=recipient)
    assert (verified.kind, verified.sender, verified.recipient) == (kind, sender, recipient)
    assert verified.sealed is seal
    assert verified.body == load_body(kind, 1, sample_body(kind))
    assert message.plain_body == sample_body(kind)


def test_envelope_shape(medical):
    message = sample_message(medical, "clue_transfer", "public_security")
    envelope = message.envelope
    assert tuple(sorted(envelope)) == tuple(sorted(ENVELOPE_FIELDS))
    assert envelope["protocol"] == PROTOCOL == "cluebus/1"
    assert envelope["sender"] == "medical_security" and envelope["recipient"] == "public_security"
    assert envelope["referral_id"] == REFERRAL_ID and envelope["in_reply_to"] is None
    assert envelope["sent_at"] == "2026-11-24T09:00:00Z"
    assert envelope["sender_key_id"] == medical.material.signing_key_id
    assert envelope["body_encoding"] == "plain" and envelope["body"] == sample_body("clue_transfer")
    assert envelope["schema_version"] == 1
    assert UUID7.match(envelope["message_id"]) and message.message_id == envelope["message_id"]


def test_wire_bytes_are_the_canonical_envelope(medical):
    message = sample_message(medical, "clue_transfer", "public_security")
    assert message.raw == canonical_bytes(message.envelope) == encode(message.envelope)
    assert strict_loads(message.raw) == message.envelope
    assert message.sha256 == hashlib.sha256(message.raw).hexdigest()


def test_body_hash_and_signature(medical):
    message = sample_message(medical, "clue_transfer", "public_security")
    envelope = message.envelope
    assert envelope["body_sha256"] == hashlib.sha256(canonical_bytes(envelope["body"])).hexdigest()
    verify_signature(medical.material.signing_public, signing_input(envelope), envelope["signature"])


def test_signing_input_is_domain_separated(medical):
    envelope = sample_message(medical, "clue_transfer", "public_security").envelope
    prefix = b"cluebus-envelope-signature\x00cluebus/1\x00clue_transfer\x001\x00"
    assert SIGNATURE_DOMAIN == b"cluebus-envelope-signature"
    assert signing_input(envelope) == prefix + canonical_bytes(unsigned(envelope))
    # The signature is over the prefixed bytes only: not over the bare canonical envelope.
    with pytest.raises(InvalidSignature):
        verify_signature(medical.material.signing_public, canonical_bytes(unsigned(envelope)),
                         envelope["signature"])


def test_sign_envelope_replaces_an_existing_signature(medical):
    envelope = sample_message(medical, "clue_transfer", "public_security").envelope
    again = sign_envelope(dict(envelope, signature="stale"), medical.composer.signer)
    assert again == envelope  # Ed25519 is deterministic
    assert "signature" not in unsigned(again)


def test_same_inputs_give_the_same_bytes(medical):
    kwargs = dict(message_id="11111111-2222-4333-8444-555555555555", sent_at=FIXED_NOW)
    one = sample_message(medical, "clue_transfer", "public_security", **kwargs)
    two = sample_message(medical, "clue_transfer", "public_security", **kwargs)
    assert one.raw == two.raw


def test_explicit_metadata(medical, police):
    sent_at = FIXED_NOW - timedelta(seconds=30)
    reply_to = "0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5"
    message = sample_message(police, "filing_decision", "medical_security", in_reply_to=reply_to,
                             sent_at=sent_at, schema_version=1,
                             message_id="7c6b5a49-3827-4161-9e0d-1c2b3a495867")
    assert message.envelope["in_reply_to"] == reply_to
    assert message.envelope["sent_at"] == "2026-11-24T08:59:30Z"
    verified = medical.verifier.verify(message.raw)
    assert verified.in_reply_to == reply_to and verified.sent_at == sent_at


def test_sent_at_with_microseconds_and_other_time_zones(medical, police):
    beijing = timezone(timedelta(hours=8))
    sent_at = datetime(2026, 11, 24, 17, 0, 0, 250_000, tzinfo=beijing)
    message = sample_message(medical, "clue_transfer", "public_security", sent_at=sent_at)
    assert message.envelope["sent_at"] == "2026-11-24T09:00:00.250000Z"
    assert police.verifier.verify(message.raw).sent_at == sent_at


def test_composer_uses_its_clock(medical, clock):
    clock.advance(minutes=7)
    message = sample_message(medical, "clue_transfer", "public_security")
    assert message.envelope["sent_at"] == "2026-11-24T09:07:00Z"


def test_compose_does_not_change_the_callers_body(medical):
    body = sample_body("clue_transfer")
    sample_message(medical, "clue_transfer", "public_security", body=body)
    assert body == sample_body("clue_transfer")


def test_typed_values_are_dumped_to_wire_form(medical, police):
    body = sample_body("clue_transfer")
    body["approved_at"] = datetime(2026, 11, 21, 8, 15, tzinfo=timezone.utc)
    message = sample_message(medical, "clue_transfer", "public_security", body=body)
    assert message.plain_body["approved_at"] == "2026-11-21T08:15:00Z"
    police.verifier.verify(message.raw)


# -- sealing -----------------------------------------------------------------------------------
def test_sealed_body_shape(medical, police):
    message = sample_message(medical, "clue_transfer", "public_security", seal=True)
    body = message.envelope["body"]
    assert message.envelope["body_encoding"] == "sealed"
    assert set(body) == {"alg", "sender_box_key_id", "recipient_box_key_id", "nonce", "ciphertext", "facts"}
    plain = sample_body("clue_transfer")
    # The kind's non-personal facts travel in the clear, signed; nothing personal does.
    assert body["facts"] == {name: plain[name] for name in
                             ("clue_no", "category", "amount_involved_fen", "team_reported_at", "approved_at")}
    assert body["alg"] == SEAL_ALGORITHM
    assert body["sender_box_key_id"] == medical.material.box_key_id
    assert body["recipient_box_key_id"] == police.material.box_key_id
    assert message.envelope["body_sha256"] == body_sha256(body)
    assert "明德康复医院" not in message.raw.decode("utf-8")
    assert message.plain_body == sample_body("clue_transfer")


def test_sealing_uses_a_fresh_nonce(medical):
    one = sample_message(medical, "clue_transfer", "public_security", seal=True)
    two = sample_message(medical, "clue_transfer", "public_security", seal=True)
    assert one.envelope["body"]["nonce"] != two.envelope["body"]["nonce"]
    assert one.envelope["body"]["ciphertext"] != two.envelope["body"]["ciphertext"]


def test_sealing_without_a_box_key(medical, routes, keyring, clock):
    composer = Composer(medical.composer.signer, routes, keyring, box_key=None, clock=clock)
    with pytest.raises(ComposeError) as info:
        composer.compose("clue_transfer", "public_security", sample_body("clue_transfer"),
                         referral_id=REFERRAL_ID, seal=True)
    assert info.value.rule == "body.sealed"


def test_sealing_for_a_recipient_without_a_valid_box_key(medical, routes, keyring, clock):
    without_police = Keyring({k: r for k, r in keyring.records.items()
                              if not (r.agency == "public_security" and r.algorithm == "x25519")})
    composer = Composer(medical.composer.signer, routes, without_police, medical.composer.box_key,
                        clock=clock)
    with pytest.raises(ComposeError) as info:
        composer.compose("clue_transfer", "public_security", sample_body("clue_transfer"),
                         referral_id=REFERRAL_ID, seal=True)
    assert info.value.rule == "key.unknown"


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, recipient, rule", [
    ("judgment", "court", "route.forbidden"),
    ("clue_transfer", "court", "route.forbidden"),
    ("clue_transfer", "medical_security", "route.forbidden"),
    ("fraud_report", "public_security", "kind.unknown"),
])
def test_compose_refusals(medical, kind, recipient, rule):
    with pytest.raises(ComposeError) as info:
        body = sample_body(kind if kind in KINDS else "clue_transfer")
        medical.composer.compose(kind, recipient, body, referral_id=REFERRAL_ID)
    assert info.value.rule == rule


def test_compose_refuses_an_unknown_schema_version(medical):
    with pytest.raises(ComposeError) as info:
        sample_message(medical, "clue_transfer", "public_security", schema_version=2)
    assert info.value.rule == "kind.version_unknown"


@pytest.mark.parametrize("field, value", [
    ("clue_no", ...), ("category", "fraud"), ("subjects", []), ("approved_at", "2026-11-19T00:00:00Z"),
    ("attachments", []), ("amount_involved_fen", -1),
])
def test_compose_refuses_an_invalid_body(medical, field, value):
    body = sample_body("clue_transfer")
    if value is ...:
        del body[field]
    else:
        body[field] = value
    with pytest.raises(ComposeError) as info:
        sample_message(medical, "clue_transfer", "public_security", body=body)
    assert info.value.rule == "body.invalid"
    assert field in info.value.messages


def test_compose_refuses_a_boolean_given_as_1(medical):
    body = dict(sample_body("reward_request"), insider=1)
    with pytest.raises(ComposeError) as info:
        sample_message(medical, "reward_request", "finance", body=body)
    assert info.value.rule == "body.invalid"


# -- production bugs -------------------------------------------------------------------------
@pytest.mark.parametrize("path", [("remarks",), ("subjects", 0, "phone")])
def test_compose_refuses_unknown_body_fields(medical, path):
    body = sample_body("clue_transfer")
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "x"
    with pytest.raises(ComposeError) as info:
        sample_message(medical, "clue_transfer", "public_security", body=body)
    assert info.value.rule == "body.invalid"


@pytest.mark.parametrize("amount", ["128645000", 128645000.0, 1286450.5])
def test_compose_refuses_money_that_is_not_an_integer(medical, amount):
    body = dict(sample_body("clue_transfer"), amount_involved_fen=amount)
    with pytest.raises(ComposeError) as info:
        sample_message(medical, "clue_transfer", "public_security", body=body)
    assert info.value.rule == "body.invalid"


@pytest.mark.parametrize("value", ["2026-13-21T08:15:00Z", "yesterday", datetime(2026, 11, 21, 8, 15)],
                         ids=["month_13", "not_a_timestamp", "naive_datetime"])
def test_compose_refuses_a_malformed_timestamp(medical, value):
    body = dict(sample_body("clue_transfer"), approved_at=value)
    with pytest.raises(ComposeError) as info:
        sample_message(medical, "clue_transfer", "public_security", body=body)
    assert info.value.rule == "body.invalid"


@pytest.mark.parametrize("field, value", [
    ("referral_id", "YB-2026-0001"), ("in_reply_to", "not-a-uuid"),
    ("message_id", "3B1F5C2A-9D8E-4F70-8A6B-5C4D3E2F1A0B"),
])
def test_compose_refuses_envelope_values_the_verifier_would_reject(medical, field, value):
    with pytest.raises(ComposeError) as info:
        sample_message(medical, "clue_transfer", "public_security", **{field: value})
    assert info.value.rule == "envelope.invalid"
