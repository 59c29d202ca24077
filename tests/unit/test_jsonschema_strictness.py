"""The exported JSON Schemas are no looser than the node (and no stricter) on the same inputs.

Every check runs the node's marshmallow schema and a standard validator (the Python
``jsonschema`` package, Draft 2020-12, which evaluates ``pattern`` with Python's ``re`` and
treats ``format`` as an annotation) on the same value and asserts both outcomes.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import json

import jsonschema
import pytest
from marshmallow import ValidationError

from schemas import fields as cf
from schemas.envelope import EnvelopeSchema
from schemas.jsonschema import check_portable, export_all
from schemas.registry import BODY_SCHEMAS, KINDS, body_schema
from tests.fixtures.bodies import sample_body

# Unicode White_Space, as written in docs/protocol.md 12.4.
W = ([chr(c) for c in range(0x0009, 0x000D + 1)] + ["\u0020", "\u0085", "\u00a0", "\u1680"]
     + [chr(c) for c in range(0x2000, 0x200A + 1)] + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"])

# Zero of several decimal-digit scripts (Unicode category Nd): \d matches them in Python's re.
ZEROS = {
    "arabic-indic": 0x0660, "extended arabic-indic": 0x06F0, "devanagari": 0x0966,
    "bengali": 0x09E6, "thai": 0x0E50, "myanmar": 0x1040, "fullwidth": 0xFF10,
    "mathematical bold": 0x1D7CE,
}


def in_script(text: str, zero: int) -> str:
    return "".join(chr(zero + int(c)) if c.isascii() and c.isdigit() else c for c in text)


# -- both sides ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    directory = tmp_path_factory.mktemp("schemas")
    written = export_all(directory)  # what `cluebus schemas export DIR` runs
    documents = {path.name: json.loads(path.read_text(encoding="utf-8")) for path in written}
    for document in documents.values():
        jsonschema.Draft202012Validator.check_schema(document)
    return documents


@pytest.fixture(scope="module")
def validators(documents):
    return {name: jsonschema.Draft202012Validator(document) for name, document in documents.items()}


def node_accepts_body(kind: str, body) -> bool:
    try:
        body_schema(kind, 1).load(copy.deepcopy(body))
    except ValidationError:
        return False
    return True


def node_accepts_envelope(envelope) -> bool:
    try:
        EnvelopeSchema().load(copy.deepcopy(envelope))
    except ValidationError:
        return False
    return True


class Sides:
    def __init__(self, validators):
        self.validators = validators

    def body(self, kind: str, body) -> tuple[bool, bool]:
        schema = self.validators[f"{kind}.v1.schema.json"].is_valid(body)
        return node_accepts_body(kind, body), schema

    def envelope(self, envelope) -> tuple[bool, bool]:
        return node_accepts_envelope(envelope), self.validators["envelope.schema.json"].is_valid(envelope)


@pytest.fixture(scope="module")
def sides(validators):
    return Sides(validators)


def assert_both(outcome: tuple[bool, bool], expected: bool, value) -> None:
    node, schema = outcome
    assert node is expected, f"node {'accepts' if node else 'rejects'} {value!r}"
    assert schema is expected, f"exported schema {'accepts' if schema else 'rejects'} {value!r}"


def with_field(kind: str, field: str, value) -> dict:
    body = sample_body(kind)
    body[field] = value
    return body


def with_issued_on(value) -> dict:
    body = sample_body("invoice_verification_request")
    body["invoices"][0]["issued_on"] = value
    return body


def envelope(**changes) -> dict:
    value = {
        "protocol": "cluebus/1",
        "message_id": "0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5",
        "kind": "clue_transfer",
        "schema_version": 1,
        "sender": "medical_security",
        "recipient": "public_security",
        "referral_id": "5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70",
        "in_reply_to": None,
        "sent_at": "2026-11-24T09:00:00Z",
        "sender_key_id": "medical_security:ed25519:10ba682c8ad13513971e8b56881aab8b",
        "body_encoding": "plain",
        "body": {"anything": 1},
        "body_sha256": "0" * 64,
        "signature": "A" * 86 + "==",
    }
    value.update(changes)
    return value


SEALED_BODY = {
    "alg": "x25519-xsalsa20poly1305",
    "sender_box_key_id": "medical_security:x25519:913c39a8064707cf93ed36424268cfda",
    "recipient_box_key_id": "public_security:x25519:00112233445566778899aabbccddeeff",
    "nonce": "A" * 32,
    "ciphertext": "QUJD",
}


# -- samples -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_every_sample_is_accepted_by_both(sides, kind):
    assert_both(sides.body(kind, sample_body(kind)), True, kind)


def test_the_sample_envelopes_are_accepted_by_both(sides):
    assert_both(sides.envelope(envelope()), True, "plain envelope")
    assert_both(sides.envelope(envelope(body_encoding="sealed", body=dict(SEALED_BODY))), True, "sealed")


# -- non-ASCII digits --------------------------------------------------------------------------
TIMESTAMP = "2024-02-29T12:34:56.789012Z"
DATE = "2024-02-29"


@pytest.mark.parametrize("script", ZEROS)
def test_non_ascii_digits_in_timestamps(sides, script):
    zero = ZEROS[script]
    whole = in_script(TIMESTAMP, zero)
    digit_positions = [i for i, c in enumerate(TIMESTAMP) if c.isdigit()]
    one_digit = [TIMESTAMP[:i] + in_script(TIMESTAMP[i], zero) + TIMESTAMP[i + 1:] for i in digit_positions]
    for value in [whole, *one_digit]:
        assert_both(sides.body("reward_payment", with_field("reward_payment", "paid_at", value)), False, value)
        assert_both(sides.envelope(envelope(sent_at=value)), False, value)


@pytest.mark.parametrize("script", ZEROS)
def test_non_ascii_digits_in_dates(sides, script):
    zero = ZEROS[script]
    values = [in_script(DATE, zero)] + [DATE[:i] + in_script(DATE[i], zero) + DATE[i + 1:]
                                         for i, c in enumerate(DATE) if c.isdigit()]
    for value in values:
        assert_both(sides.body("invoice_verification_request", with_issued_on(value)), False, value)


@pytest.mark.parametrize("script", ZEROS)
def test_non_ascii_digits_in_patterned_strings(sides, script):
    zero = ZEROS[script]
    uuid = "0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5"
    key_id = "medical_security:ed25519:10ba682c8ad13513971e8b56881aab8b"
    assert_both(sides.envelope(envelope(message_id=in_script(uuid, zero))), False, uuid)
    assert_both(sides.envelope(envelope(sender_key_id=in_script(key_id, zero))), False, key_id)
    assert_both(sides.envelope(envelope(body_sha256=in_script("0" * 64, zero))), False, "sha256")


# -- calendar ----------------------------------------------------------------------------------
def real_date(year: int, month: int, day: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("value, expected", [
    ("2024-02-29", True), ("2000-02-29", True), ("1600-02-29", True), ("0004-02-29", True),
    ("0400-02-29", True), ("9996-02-29", True),
    ("1900-02-29", False), ("2100-02-29", False), ("2023-02-29", False), ("0100-02-29", False),
    ("2024-02-30", False), ("2024-02-31", False), ("2024-04-31", False), ("2024-06-31", False),
    ("2024-09-31", False), ("2024-11-31", False), ("2024-13-01", False), ("2024-00-10", False),
    ("2024-01-00", False), ("2024-01-32", False), ("0000-01-01", False), ("0000-02-29", False),
    ("0001-01-01", True), ("9999-12-31", True), ("2024-12-31", True), ("2024-1-01", False),
    ("20240-01-01", False), ("2024-01-01\n", False), (" 2024-01-01", False), ("2024/01/01", False),
    ("2024-01-01T00:00:00Z", False), ("", False), (20240101, False), (None, False),
])
def test_dates(sides, value, expected):
    assert_both(sides.body("invoice_verification_request", with_issued_on(value)), expected, value)


@pytest.mark.parametrize("value, expected", [
    ("2024-02-29T00:00:00Z", True), ("2000-02-29T23:59:59.999999Z", True),
    ("1900-02-29T00:00:00Z", False), ("2100-02-29T00:00:00Z", False), ("2023-02-29T00:00:00Z", False),
    ("2024-02-30T00:00:00Z", False), ("2024-04-31T00:00:00Z", False),
    ("2016-12-31T23:59:60Z", False), ("2024-01-01T23:59:60.5Z", False),    # leap seconds
    ("2024-01-01T24:00:00Z", False), ("2024-01-01T23:60:00Z", False), ("2024-13-01T00:00:00Z", False),
    ("0000-01-01T00:00:00Z", False), ("0001-01-01T00:00:00Z", True), ("9999-12-31T23:59:59Z", True),
    ("2024-01-01T00:00:00.5Z", True), ("2024-01-01T00:00:00.000000Z", True),
    ("2024-01-01T00:00:00.1234567Z", False), ("2024-01-01T00:00:00.Z", False),
    ("2024-01-01T00:00:00z", False), ("2024-01-01t00:00:00Z", False), ("2024-01-01 00:00:00Z", False),
    ("2024-01-01T00:00:00+00:00", False), ("2024-01-01T00:00:00-00:00", False),
    ("2024-01-01T00:00Z", False), ("2024-01-01T00:00:00", False), ("2024-01-01T00:00:00Z\n", False),
    ("2024-01-01T0:00:00Z", False), (" 2024-01-01T00:00:00Z", False), ("2024-01-01", False),
])
def test_timestamps(sides, value, expected):
    assert_both(sides.body("reward_payment", with_field("reward_payment", "paid_at", value)), expected, value)
    assert_both(sides.envelope(envelope(sent_at=value)), expected, value)


@pytest.mark.parametrize("year", [1, 4, 100, 400, 1900, 2000, 2023, 2024, 2100, 9999])
def test_every_day_and_every_impossible_day_of_whole_years(sides, year):
    """Every real day of the year, and day 00, 29-32 of each month and months 00 and 13."""
    for month in range(0, 14):
        for day in range(0, 33):
            expected = real_date(year, month, day)
            date = f"{year:04d}-{month:02d}-{day:02d}"
            assert_both(sides.body("invoice_verification_request", with_issued_on(date)), expected, date)
            stamp = f"{date}T23:59:59Z"
            assert_both(sides.body("reward_payment", with_field("reward_payment", "paid_at", stamp)),
                        expected, stamp)


def test_leap_days_and_new_years_of_every_year(validators):
    """Year 0000-9999, field by field: 29 February exists exactly in the leap years from 0001."""
    date_schema = jsonschema.Draft202012Validator(
        validators["invoice_verification_request.v1.schema.json"].schema
        ["properties"]["invoices"]["items"]["properties"]["issued_on"])
    stamp_schema = jsonschema.Draft202012Validator(
        validators["reward_payment.v1.schema.json"].schema["properties"]["paid_at"])
    date_field, stamp_field = cf.IsoDate(), cf.UtcTimestamp()

    def node(field, value):
        try:
            field.deserialize(value)
        except ValidationError:
            return False
        return True

    for year in range(0, 10000):
        for month, day in ((2, 29), (1, 1), (12, 31), (2, 28), (3, 1)):
            expected = year >= 1 and ((month, day) != (2, 29) or calendar.isleap(year))
            date = f"{year:04d}-{month:02d}-{day:02d}"
            assert (node(date_field, date), date_schema.is_valid(date)) == (expected, expected), date
            stamp = f"{date}T00:00:00Z"
            assert (node(stamp_field, stamp), stamp_schema.is_valid(stamp)) == (expected, expected), stamp


def test_every_time_of_day_shape(sides):
    for hour in range(0, 26):
        for minute in (0, 30, 59, 60, 99):
            for second in (0, 59, 60, 61):
                value = f"2024-06-30T{hour:02d}:{minute:02d}:{second:02d}Z"
                expected = hour < 24 and minute < 60 and second < 60
                assert_both(sides.body("reward_payment", with_field("reward_payment", "paid_at", value)),
                            expected, value)
    for fraction in ("", ".0", ".12", ".123", ".1234", ".12345", ".123456"):
        value = f"2024-06-30T23:59:59{fraction}Z"
        assert_both(sides.body("reward_payment", with_field("reward_payment", "paid_at", value)), True, value)


# -- blank strings -----------------------------------------------------------------------------
def test_w_is_the_constant_the_node_uses():
    assert cf.WHITE_SPACE == frozenset(W)
    assert len(W) == 25


@pytest.mark.parametrize("char", W, ids=[f"U+{ord(c):04X}" for c in W])
def test_blank_strings_of_each_white_space_code_point(sides, char):
    for value in (char, char * 3, " " + char + "\u3000"):
        assert_both(sides.body("reward_payment", with_field("reward_payment", "payment_ref", value)),
                    False, value)
        assert_both(sides.body("closure", with_field("closure", "reason", value)), False, value)
        # the same code point next to a visible one is not blank
        assert_both(sides.body("reward_payment", with_field("reward_payment", "payment_ref", char + "x" + char)),
                    True, value)


def test_blank_strings_made_of_all_of_w(sides):
    value = "".join(W)
    assert_both(sides.body("closure", with_field("closure", "reason", value)), False, value)
    assert_both(sides.body("closure", with_field("closure", "reason", value + "办结")), True, value)
    assert_both(sides.body("closure", with_field("closure", "reason", "\u3000\u3000")), False, "U+3000")


@pytest.mark.parametrize("char", ["\u001c", "\u001d", "\u001e", "\u001f", "\ufeff", "\u200b",
                                  "\u180e", "\u0000", "\u00ad", "\u2060"],
                         ids=lambda c: f"U+{ord(c):04X}")
def test_code_points_outside_w_are_not_blank(sides, char):
    """Decision: U+001C-U+001F (str.isspace), U+FEFF, U+200B and U+180E are not in W."""
    for value in (char, char * 2, " " + char + "\u3000"):
        assert_both(sides.body("reward_payment", with_field("reward_payment", "payment_ref", value)),
                    True, value)


def test_empty_strings_and_blank_nested_strings(sides):
    assert_both(sides.body("closure", with_field("closure", "reason", "")), False, "")
    body = sample_body("clue_transfer")
    body["subjects"][0]["name"] = "\u2003\u3000"
    assert_both(sides.body("clue_transfer", body), False, "nested blank")
    body = sample_body("clue_transfer")
    body["attachments"][0]["name"] = "\u2028"
    assert_both(sides.body("clue_transfer", body), False, "nested blank")
    body = sample_body("case_transfer")
    body["findings"] = ["事实一", "\u00a0"]
    assert_both(sides.body("case_transfer", body), False, "blank list item")


def test_lengths_count_code_points(sides):
    # 64 characters outside the BMP: 64 code points, 128 UTF-16 code units.
    assert_both(sides.body("reward_payment", with_field("reward_payment", "payment_ref", "𠮷" * 64)), True, 64)
    assert_both(sides.body("reward_payment", with_field("reward_payment", "payment_ref", "𠮷" * 65)), False, 65)


# -- other looseness ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    "medical_security\n", "0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5\n",
])
def test_a_final_newline_is_refused_after_anchored_patterns(sides, value):
    field = "sender" if value.startswith("medical") else "message_id"
    assert_both(sides.envelope(envelope(**{field: value})), False, value)
    body = with_field("copy_notice", "transferred_to", "public_security\n")
    assert_both(sides.body("copy_notice", body), False, "agency code")
    body = sample_body("receipt")
    body["reason_codes"] = ["route.forbidden\n"]
    body["status"] = "rejected"
    assert_both(sides.body("receipt", body), False, "reason code")


def test_a_sealed_body_is_checked_in_the_envelope(sides):
    assert_both(sides.envelope(envelope(body_encoding="sealed")), False, "plain body marked sealed")
    for member in SEALED_BODY:
        sealed = dict(SEALED_BODY)
        del sealed[member]
        assert_both(sides.envelope(envelope(body_encoding="sealed", body=sealed)), False, member)
    assert_both(sides.envelope(envelope(body_encoding="sealed", body={**SEALED_BODY, "extra": 1})),
                False, "extra")
    assert_both(sides.envelope(envelope(body_encoding="sealed", body={**SEALED_BODY, "nonce": " "})),
                False, "blank nonce")
    assert_both(sides.envelope(envelope(body_encoding="sealed", body={**SEALED_BODY, "alg": "aes"})),
                False, "alg")


@pytest.mark.parametrize("value, expected", [
    (0, True), (2**53 - 1, True), (2**53, False), (-1, False), (True, False), (False, False),
    ("1", False), (None, False),
])
def test_integer_bounds(sides, value, expected):
    assert_both(sides.body("reward_payment", with_field("reward_payment", "reward_fen", value)), expected, value)


@pytest.mark.parametrize("value, expected", [(1, True), (10_000, True), (0, False), (10_001, False)])
def test_schema_version_bounds(sides, value, expected):
    assert_both(sides.envelope(envelope(schema_version=value)), expected, value)


def test_item_quantity_bounds(sides):
    for value, expected in ((1, True), (10**9, True), (0, False), (10**9 + 1, False)):
        body = sample_body("materials_handover")
        body["items"][0]["quantity"] = value
        assert_both(sides.body("materials_handover", body), expected, value)


def test_unknown_members_are_refused_everywhere(sides):
    assert_both(sides.envelope(envelope(extra=1)), False, "envelope")
    for kind in KINDS:
        assert_both(sides.body(kind, {**sample_body(kind), "extra": 1}), False, kind)
    body = sample_body("clue_transfer")
    body["subjects"][0]["extra"] = "x"
    assert_both(sides.body("clue_transfer", body), False, "nested")


def test_every_exported_pattern_is_portable(documents):
    def patterns(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern":
                    yield value
                else:
                    yield from patterns(value)
        elif isinstance(node, list):
            for value in node:
                yield from patterns(value)

    found = [p for document in documents.values() for p in patterns(document)]
    assert found
    for pattern in found:
        assert check_portable(pattern) == pattern
        assert "\\d" not in pattern and "\\s" not in pattern and "\\w" not in pattern
        assert pattern.isascii(), pattern


@pytest.mark.parametrize("pattern", [r"^\d{4}$", r"^\w+$", r"\s", r"^a.b$", r"\bword"])
def test_non_portable_patterns_are_refused(pattern):
    with pytest.raises(ValueError):
        check_portable(pattern)


def test_every_kind_version_is_exported(documents):
    assert set(documents) == {"envelope.schema.json"} | {
        f"{kind}.v{version}.schema.json" for kind in KINDS for version in BODY_SCHEMAS[kind]}


def test_the_protocol_document_gives_the_same_w_and_pattern():
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert f"`{cf.NOT_BLANK_PATTERN}`" in text
    assert "isspace" not in text
    table = text[text.index("*W* is exactly"):text.index("Nothing else is in *W*")]
    listed = set()
    for low, high in re.findall(r"^\| U\+([0-9A-F]{4})(?:–U\+([0-9A-F]{4}))? \|", table, re.MULTILINE):
        listed.update(chr(c) for c in range(int(low, 16), int(high or low, 16) + 1))
    assert listed == cf.WHITE_SPACE
