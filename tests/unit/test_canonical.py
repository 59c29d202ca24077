"""Strict JSON input and RFC 8785 (JCS) canonical output (adapters/crypto/canonical.py)."""

from __future__ import annotations

import json

import pytest

from adapters.crypto.canonical import MAX_SAFE_INTEGER, canonical_bytes, canonical_bytes_with, strict_loads
from adapters.crypto.exceptions import (CryptoError, DuplicateKey, FloatNotAllowed, IntegerOutOfRange,
                                        MalformedJson)

# RFC 8785 §3.2.3, the sorting example: member names sorted by their UTF-16 code units.
RFC8785_SORTING_INPUT = r'''{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}'''
RFC8785_SORTED_VALUES = ["Carriage Return", "One", "Control", "Latin Small Letter O With Diaeresis",
                         "Euro Sign", "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh"]

# RFC 8785 §3.2.2 example without its "numbers" member (this profile admits no floats).
RFC8785_STRING_INPUT = r'''{
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}'''
RFC8785_STRING_OUTPUT = r'''{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}'''.encode("utf-8")


# -- RFC 8785 output ---------------------------------------------------------------------------
def test_rfc8785_sorting_example_utf16_code_unit_order():
    value = strict_loads(RFC8785_SORTING_INPUT.encode("utf-8"))
    output = canonical_bytes(value)
    assert list(json.loads(output).values()) == RFC8785_SORTED_VALUES
    expected = ('{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
                '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
                '"\U0001F600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}')
    assert output == expected.encode("utf-8")


def test_utf16_order_differs_from_code_point_order():
    # U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16, after it by code point.
    output = canonical_bytes({"\ufb33": 1, "\U0001F600": 2})
    assert output == '{"\U0001F600":2,"\ufb33":1}'.encode("utf-8")


def test_rfc8785_string_escaping_example():
    value = strict_loads(RFC8785_STRING_INPUT.encode("utf-8"))
    assert canonical_bytes(value) == RFC8785_STRING_OUTPUT


def test_rfc8785_numbers_example_is_refused_as_floats():
    numbers = b'{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001]}'
    with pytest.raises(FloatNotAllowed):
        strict_loads(numbers)


@pytest.mark.parametrize("text, expected", [
    ("\b\t\n\f\r", r'"\b\t\n\f\r"'),                        # the two-character escapes
    ("\x00\x01\x1f", r'"\u0000\u0001\u001f"'),             # other controls: \u00xx, lower case
    ("\x7f", '"\x7f"'),                                     # DEL is not a control in JSON
    ('"\\/', r'"\"\\/"'),                                   # quote and backslash escaped, solidus not
    ("医疗保障局 €", '"医疗保障局 €"'),                       # non-ASCII as raw UTF-8, never \u
    ("\U00020BB7", '"\U00020BB7"'),                         # non-BMP as 4-byte UTF-8
    ("\u2028\u2029", '"\u2028\u2029"'),
])
def test_string_escaping(text, expected):
    assert canonical_bytes(text) == expected.encode("utf-8")


def test_no_whitespace_and_nested_keys_sorted():
    value = {"b": [1, {"z": None, "a": True}, []], "a": {"d": "x y", "c": {}}, "": 0}
    assert canonical_bytes(value) == b'{"":0,"a":{"c":{},"d":"x y"},"b":[1,{"a":true,"z":null},[]]}'


def test_canonical_form_ignores_input_order_and_spacing():
    one = strict_loads(b'{ "b" : 2 ,\n "a" : [ 1 , 2 ] }')
    two = strict_loads(b'{"a":[1,2],"b":2}')
    assert canonical_bytes(one) == canonical_bytes(two) == b'{"a":[1,2],"b":2}'


@pytest.mark.parametrize("value", [
    0, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, "", "YB-2026-0001", True, None, [], {},
    {"amount_involved_fen": 128645000, "subjects": [{"name": "王某某"}]},
])
def test_round_trip_is_stable(value):
    once = canonical_bytes(value)
    assert strict_loads(once) == value
    assert canonical_bytes(strict_loads(once)) == once


def test_minus_zero_integer_is_zero():
    assert canonical_bytes(strict_loads(b"-0")) == b"0"


# -- strict input ------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    b'{"a":1,"a":1}', b'{"a":1,"b":{"c":1,"c":2}}', b'[{"x":1},{"y":1,"y":2}]',
    '{"é":1,"é":2}'.encode("utf-8"),
])
def test_duplicate_member_names(data):
    with pytest.raises(DuplicateKey) as info:
        strict_loads(data)
    assert info.value.rule == "json.duplicate_key"


def test_names_that_differ_only_in_normalisation_are_not_duplicates():
    # "é" precomposed and decomposed are different strings to JSON.
    value = strict_loads('{"\u00e9":1,"e\u0301":2}'.encode("utf-8"))
    assert len(value) == 2


@pytest.mark.parametrize("data", [b"1.0", b"-0.0", b"1e5", b"1E5", b"1e-5", b"1.5", b"[0.1]",
                                  b'{"a":{"b":2.5}}', b"NaN", b"Infinity", b"-Infinity", b"1E400"])
def test_floats_and_non_finite_numbers(data):
    with pytest.raises(FloatNotAllowed) as info:
        strict_loads(data)
    assert info.value.rule == "json.float"


@pytest.mark.parametrize("data", [str(2**53).encode(), str(-(2**53)).encode(), b"[18446744073709551616]",
                                  b'{"a":100000000000000000000}'])
def test_integers_outside_the_safe_range(data):
    with pytest.raises(IntegerOutOfRange) as info:
        strict_loads(data)
    assert info.value.rule == "json.integer_range"


@pytest.mark.parametrize("value", [2**53, -(2**53), {"a": [2**64]}])
def test_canonical_bytes_refuses_unsafe_integers(value):
    with pytest.raises(IntegerOutOfRange):
        canonical_bytes(value)


@pytest.mark.parametrize("value", [1.0, 0.5, float("nan"), float("inf"), {"a": [1.5]}])
def test_canonical_bytes_refuses_floats(value):
    with pytest.raises(FloatNotAllowed):
        canonical_bytes(value)


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf{}",                 # byte-order mark
    b'{"a":"\xff"}',                   # not UTF-8
    b'{"a":"\xc0\xaf"}',               # overlong encoding
    b'{"a":"\xed\xa0\x80"}',           # UTF-8-encoded surrogate
    '{}'.encode("utf-16"),
    b'{"a":"\\ud800"}',                # escaped lone high surrogate
    b'{"a":"\\udc00x"}',               # escaped lone low surrogate
    b'{"\\ud83d":1}',                  # lone surrogate in a member name
    b'{"a":1,}', b"{'a':1}", b"", b"{", b'{"a":"\x01"}',
    b"[" * 100_000 + b"]" * 100_000,   # nested too deeply
])
def test_malformed_input(data):
    with pytest.raises(MalformedJson) as info:
        strict_loads(data)
    assert info.value.rule == "json.malformed"


def test_escaped_surrogate_pair_is_fine():
    assert strict_loads(b'"\\ud83d\\ude00"') == "\U0001F600"


@pytest.mark.parametrize("value", ["\ud800", {"a": "x\udfff"}, {"\ud83d": 1}, ["ok", "\udc00"]])
def test_canonical_bytes_refuses_lone_surrogates(value):
    with pytest.raises(MalformedJson):
        canonical_bytes(value)


@pytest.mark.parametrize("value", [(1, 2), {1, 2}, b"bytes", object()])
def test_canonical_bytes_refuses_non_json_values(value):
    with pytest.raises(MalformedJson):
        canonical_bytes({"a": value})


@pytest.mark.parametrize("value", [{1: "a"}, {None: "a"}])
def test_canonical_bytes_refuses_non_string_member_names(value):
    with pytest.raises(MalformedJson):
        canonical_bytes(value)


def test_integer_literal_over_4300_digits_is_a_typed_error():
    with pytest.raises(CryptoError) as info:
        strict_loads(b"[" + b"1" * 5000 + b"]")
    assert info.value.rule in ("json.integer_range", "json.malformed")


# -- the fast path gives exactly the reference's bytes -------------------------------------------
_NASTY = ["", "\"", "\\", "/", "\b\f\n\r\t", "\x00\x01\x1f\x7f", "\u2028\u2029", "é", "全角　空格",
          "\U00020bb7", "\U0001f600", "\ue000", "\uffff", "\ufeff", "a\u0085b", "</script>", "0", "-0"]


def _random_value(rng, depth=0):
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return rng.choice([True, False, None])
    if choice == 1:
        return rng.choice([0, 1, -1, 2**53 - 1, -(2**53 - 1), rng.randrange(-10**12, 10**12)])
    if choice in (2, 3, 4, 5):
        return "".join(rng.choice(_NASTY) for _ in range(rng.randrange(4)))
    if choice in (6, 7):
        return {"".join(rng.choice(_NASTY + ["k", "K", "_"]) for _ in range(rng.randrange(1, 3))):
                _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_the_fast_canonical_path_is_byte_identical_to_the_reference():
    import random

    import rfc8785
    rng = random.Random(8785)
    fast_cases = 0
    for _ in range(3000):
        value = {"body": _random_value(rng), "kind": "clue_transfer"}
        assert canonical_bytes(value) == rfc8785.dumps(value), value
        from adapters.crypto.canonical import _plain_structure
        fast_cases += bool(_plain_structure(value))
    assert fast_cases > 1000  # most cases took the fast path, and some did not


def test_member_names_that_sort_differently_in_utf16_take_the_reference_path():
    value = {"\uffff": 1, "\U0001f600": 2, "a": 3}
    import rfc8785
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert list(json.loads(canonical_bytes(value))) == ["a", "\U0001f600", "\uffff"]


# -- a member given as bytes already (a message's body: serialised once) ---------------------------
_AROUND = {"protocol": "cluebus/1", "kind": "clue_transfer", "schema_version": 1, "in_reply_to": None,
           "sent_at": "2026-03-01T00:30:00Z", "signature": "c2ln"}


@pytest.mark.parametrize("around, body", [
    (_AROUND, {"reporter": "王五", "amount_fen": 120000, "items": [{"a": 1}, {"b": [True, None]}], "z": ""}),
    (_AROUND, {}),
    # strings that look like the member being replaced are escaped, never a second match
    ({**_AROUND, "note": '"body":null'}, {"text": '"body":null'}),
    # a nested member of the same name: the whole value is serialised instead
    ({**_AROUND, "nested": {"body": None}}, {"x": 1}),
    ({**_AROUND, "nested": [{"body": None}]}, {"body": None}),
    # names that sort by UTF-16 code units (the reference implementation's path)
    ({**_AROUND, "\U0001F600": 1, "\ufb01": 2}, {"\U0001F600": "x", "\ufb01": "y"}),
    ({"a": 1}, {"c": "\u2028"}),
])
def test_a_member_given_as_bytes_gives_the_bytes_of_the_whole(around, body):
    whole = canonical_bytes({**around, "body": body})
    assert canonical_bytes_with(around, "body", body, canonical_bytes(body)) == whole
    assert json.loads(whole)["body"] == body


def test_a_member_given_as_bytes_is_placed_in_sort_order():
    spliced = canonical_bytes_with({"a": 1, "c": 3}, "b", [2], b"[2]")
    assert spliced == b'{"a":1,"b":[2],"c":3}'
