"""Strict JSON parsing and RFC 8785 canonical bytes.

Inputs are held to the I-JSON subset that JCS can canonicalise without loss: UTF-8 only,
no duplicate member names, no floating-point numbers (money is integer fen or a decimal
string), integers within +/-(2**53 - 1), no lone surrogates.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import rfc8785

from .exceptions import DuplicateKey, FloatNotAllowed, IntegerOutOfRange, MalformedJson

MAX_SAFE_INTEGER = 2**53 - 1
# A surrogate can only enter decoded text through an escape (the bytes are valid UTF-8).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(f"member name {key!r} appears more than once in one object")
        result[key] = value
    return result


def _reject_float(token: str) -> Any:
    raise FloatNotAllowed(
        f"floating-point number {token} is not allowed; use integer fen or a decimal string")


def _parse_int(token: str) -> int:
    # Refuse before int() does the work: Python itself refuses literals over 4300 digits.
    if len(token.lstrip("-")) > 16:
        raise IntegerOutOfRange(f"integer {token[:20]}... is outside +/-(2**53 - 1)")
    return int(token)


def _reject_constant(token: str) -> Any:
    raise FloatNotAllowed(f"non-finite number {token} is not allowed")


def _check_values(value: Any, path: str = "$") -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise IntegerOutOfRange(f"integer at {path} is outside +/-(2**53 - 1)")
    elif isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedJson(f"member name {key!r} at {path} is not a string")
            _check_text(key, path)
            _check_values(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, f"{path}[{index}]")
    elif isinstance(value, float):
        raise FloatNotAllowed(f"floating-point number at {path} is not allowed")
    else:
        raise MalformedJson(f"value at {path} of type {type(value).__name__} is not JSON")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedJson(f"string at {path} contains a lone surrogate") from exc


def strict_loads(data: bytes) -> Any:
    """Parse ``data`` as strict JSON, raising a typed error naming the rule it breaks."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise MalformedJson("a byte-order mark is not allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"not valid UTF-8 at byte {exc.start}") from exc
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicates, parse_int=_parse_int,
                           parse_float=_reject_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise MalformedJson("JSON nested too deeply") from exc
    if _plain_structure(value) is None or _SURROGATE_ESCAPE.search(text):
        _check_values(value)  # the precise check names the rule (a lone surrogate, ...) and where
    return value


_JSON_NATIVE = (str, int, bool, type(None))


def _plain_structure(value: Any) -> bool | None:
    """A fast walk over ``value``: True when it is JSON of the strict subset whose member
    names are all below U+E000 (then code-point order is UTF-16 order, and the C encoder
    gives the JCS bytes), False when a member name forces the general JCS path, None when
    something breaks a rule (the slow, precise check then says which)."""
    plain = True
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return None
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return None
                if not key.isascii() and max(key) >= "\ue000":
                    plain = False
            extend(item.values())
            continue
        if kind is list:
            extend(item)
            continue
        return None  # floats, subclasses and anything else: the precise check decides
    return plain


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 bytes of ``value``, after the same strict checks.

    For the strict subset (no floats, integers within ±(2**53 − 1), no lone surrogates) JCS
    is exactly what the C JSON encoder writes with sorted keys, no spaces and no ASCII
    escaping, as long as member names sort the same by code point as by UTF-16 code unit
    (true below U+E000); otherwise, and for anything that breaks a rule, the reference
    implementation (rfc8785) and the precise checks are used. tests/unit/test_canonical.py
    holds both paths to the same bytes."""
    plain = _plain_structure(value)
    if plain:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: the precise check below names it
    _check_values(value)
    return rfc8785.dumps(value)


@functools.lru_cache(maxsize=16)
def _null_member(name: str) -> bytes:
    return canonical_bytes(name) + b":null"


def canonical_bytes_with(value: dict, name: str, member: Any, member_bytes: bytes) -> bytes:
    """``canonical_bytes({**value, name: member})``, given ``member_bytes`` =
    ``canonical_bytes(member)`` already: a message's body is serialised once for its hash,
    its signature and the wire, and only the small envelope around it each time.

    JCS writes a member's value the same wherever it stands, so the bytes are those of the
    envelope with a null in the body's place and the body's bytes put there. The null is
    found by its member name: quotes inside strings are escaped, so ``"name":null`` can only
    be a member; when it is not found exactly once (a nested member of the same name), the
    whole value is serialised instead."""
    placeholder = canonical_bytes({**value, name: None})
    marker = _null_member(name)
    at = placeholder.find(marker)
    if at < 0 or placeholder.find(marker, at + 1) >= 0:
        return canonical_bytes({**value, name: member})
    value_at = at + len(marker) - len(b"null")
    return placeholder[:value_at] + member_bytes + placeholder[at + len(marker):]
