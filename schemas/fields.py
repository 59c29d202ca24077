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
        if not text.strip():
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
    _PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")

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
