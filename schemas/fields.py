"""Field types shared by every contract. Values stay JSON-native, except timestamps and
dates, which load as timezone-aware datetimes and dates and dump back to their wire form."""

from __future__ import annotations

import datetime as dt
import re

from marshmallow import ValidationError, fields, validate

from adapters.crypto.timestamps import format_timestamp, parse_timestamp

AGENCY_CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")

SHORT_TEXT = 256
LONG_TEXT = 20_000

# "Blank" (docs/protocol.md 12.4): a string is blank when every code point in it is in this
# set W, the Unicode White_Space property (PropList.txt), given as inclusive code point ranges.
# It is not Python's str.isspace, which also counts U+001C-U+001F; U+200B and U+FEFF are not
# white space either. The node's check and the exported JSON Schema pattern both come from here.
WHITE_SPACE_RANGES = (
    (0x0009, 0x000D), (0x0020, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0), (0x1680, 0x1680),
    (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
)
WHITE_SPACE = frozenset(chr(c) for low, high in WHITE_SPACE_RANGES for c in range(low, high + 1))


def is_blank(text: str) -> bool:
    """True when every code point of ``text`` is in WHITE_SPACE (so also for "")."""
    return all(char in WHITE_SPACE for char in text)


def _class_item(low: int, high: int) -> str:
    return f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}"


# At least one code point outside W. Written with \uXXXX escapes only, so that Python's re and
# ECMA-262 (JSON Schema's dialect) read the same class; not anchored: it only has to find one.
NOT_BLANK_PATTERN = "[^" + "".join(_class_item(low, high) for low, high in WHITE_SPACE_RANGES) + "]"

# Calendar dates YYYY-MM-DD of the proleptic Gregorian calendar, years 0001-9999, as a regular
# expression of ASCII digits only: exactly the dates datetime.date accepts (checked by
# tests/unit/test_jsonschema_strictness.py). A leap year is divisible by 4, except centuries
# not divisible by 400. Exported as the ``pattern`` of dates and timestamps.
_YEAR = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
              r"|(?:0[13-9]|1[0-2])-(?:29|30)"
              r"|(?:0[13578]|1[02])-31)")
DATE_REGEX = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
# HH:MM:SS with hour 00-23, no leap second, then 1 to 6 fraction digits (docs/protocol.md 4).
TIME_REGEX = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
DATE_PATTERN = rf"^{DATE_REGEX}$"
TIMESTAMP_PATTERN = rf"^{DATE_REGEX}T{TIME_REGEX}Z$"


class JsonObject(fields.Dict):
    """A JSON object: a mapping whose member names are strings, checked in one pass (a Dict
    with ``keys=String()`` runs a whole field per member: a third of an envelope's load)."""

    default_error_messages = {"member_name": "Member names must be strings."}

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if not all(type(name) is str for name in result):
            raise self.make_error("member_name")
        return result


class StrictString(fields.String):
    """A non-blank string of bounded length."""

    def __init__(self, *, max_length: int = SHORT_TEXT, **kwargs):
        kwargs.setdefault("validate", [])
        validators = list(kwargs["validate"]) if isinstance(kwargs["validate"], (list, tuple)) else [kwargs["validate"]]
        validators.insert(0, validate.Length(min=1, max=max_length))
        kwargs["validate"] = validators
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if is_blank(text):
            raise ValidationError("Must not be blank.")
        return text


class FullMatch(validate.Validator):
    """The whole string must match (``re.match`` with ``$`` would let a trailing newline by)."""

    def __init__(self, pattern: re.Pattern, error: str):
        self.pattern = pattern
        self.error = error

    def __call__(self, value):
        if not isinstance(value, str) or self.pattern.fullmatch(value) is None:
            raise ValidationError(self.error)
        return value


class PatternString(fields.String):
    """A string matching one regular expression; ``pattern_name`` is shown in errors."""

    def __init__(self, pattern: re.Pattern, pattern_name: str, **kwargs):
        super().__init__(validate=FullMatch(pattern, f"Not a valid {pattern_name}."), **kwargs)
        self.pattern = pattern


def AgencyCode(**kwargs) -> PatternString:
    return PatternString(AGENCY_CODE, "agency code", **kwargs)


def Uuid(**kwargs) -> PatternString:
    """A UUID in lowercase 8-4-4-4-12 form, kept as text so canonical bytes never change."""
    return PatternString(UUID_TEXT, "lowercase UUID", **kwargs)


def Sha256Hex(**kwargs) -> PatternString:
    return PatternString(SHA256_HEX, "lowercase hex SHA-256", **kwargs)


def MediaType(**kwargs) -> PatternString:
    return PatternString(MEDIA_TYPE, "media type", **kwargs)


class Count(fields.Integer):
    """A non-negative JSON integer (never a string, float or boolean)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.Range(min=0, max=2**53 - 1))
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)


class MoneyFen(Count):
    """An amount of money in integer fen (1 yuan = 100 fen)."""


class UtcTimestamp(fields.Field):
    """RFC 3339 UTC timestamp ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` <-> aware datetime."""

    default_error_messages = {"invalid": "Not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)."}

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_timestamp(value)
        return format_timestamp(value)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_timestamp(value)
        except ValueError:
            raise self.make_error("invalid") from None


class IsoDate(fields.Field):
    """A calendar date ``YYYY-MM-DD`` <-> date."""

    default_error_messages = {"invalid": "Not a date (YYYY-MM-DD)."}
    _PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value if isinstance(value, str) else value.isoformat()

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not self._PATTERN.fullmatch(value):
            raise self.make_error("invalid")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None


class StrictBoolean(fields.Boolean):
    """Only JSON true or false."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean (true or false).")
        return value
