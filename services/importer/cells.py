"""A cell's value as what its column means: text, money in fen (exactly, via Decimal, never a
float), a date, a time (UTC), an attached file. A CSV gives text; a workbook gives numbers and
datetimes too. Each refusal is a CellInvalid saying what was wrong and what is accepted."""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from services.protocol import rules

from .errors import CellInvalid

MAX_FEN = 2**53 - 1  # the schema's money range (a JSON integer both ends can hold)
_YUAN = re.compile(r"^(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?$")
_FEN = re.compile(r"^[0-9]+$")
_DATE_FORMS = (re.compile(r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$"), re.compile(r"^([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})$"),
               re.compile(r"^([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日$"))
_LOCAL_TIME = re.compile(r"^([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?$")


def _invalid(detail: str) -> CellInvalid:
    return CellInvalid(rules.IMPORT_CELL_INVALID, detail)


def text(value: Any) -> str | None:
    """The cell as text, spaces around it dropped; None when blank. A whole number a workbook
    stored as a float (a record number typed as 20260301) is written without ``.0``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (dt.datetime, dt.date)):
        value = value.isoformat()
    result = str(value).strip()
    return result or None


def identity_number(value: Any) -> str | None:
    """An ID or code number: a workbook cell stored as a number has lost digits or zeros
    (Excel keeps 15 significant digits of an 18-digit resident ID), so it is refused."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _invalid(f"{value!r} is stored as a number, which loses digits of an ID number: format the column "
                       f"as text and type it again")
    return text(value)


def yuan_to_fen(value: Any) -> int:
    """Yuan as written (``12,345.67``, ``12345.67``, ``¥12345``, ``12345.6元``) to whole fen."""
    if isinstance(value, bool):
        raise _invalid(f"{value!r} is not an amount")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        # A workbook's number: its shortest repr is the decimal the clerk typed (12345.67).
        amount = Decimal(repr(value))
    else:
        written = text(value) or ""
        shown = written
        written = written.lstrip("¥￥").rstrip("元").strip()
        if not _YUAN.match(written):
            raise _invalid(f"{shown!r} is not an amount in yuan (e.g. 12,345.67 or 12345.67; no minus sign)")
        amount = Decimal(written.replace(",", ""))
    return _fen(amount, value)


def _fen(amount: Decimal, shown: Any) -> int:
    if amount < 0:
        raise _invalid(f"{shown!r} is negative")
    try:
        fen = amount * 100
        if fen != fen.to_integral_value():
            raise _invalid(f"{shown!r} has more than two decimal places (a fen is the smallest unit)")
    except InvalidOperation:
        raise _invalid(f"{shown!r} is not an amount") from None
    if fen > MAX_FEN:
        raise _invalid(f"{shown!r} is too large")
    return int(fen)


def fen(value: Any) -> int:
    """Whole fen: an integer, nothing else."""
    if isinstance(value, bool):
        raise _invalid(f"{value!r} is not an amount in fen")
    if isinstance(value, float):
        if not value.is_integer():
            raise _invalid(f"{value!r} is not a whole number of fen")
        value = int(value)
    if not isinstance(value, int):
        written = text(value) or ""
        if not _FEN.match(written):
            raise _invalid(f"{written!r} is not a whole number of fen (digits only)")
        value = int(written)
    if value < 0:
        raise _invalid(f"{value!r} is negative")
    if value > MAX_FEN:
        raise _invalid(f"{value!r} is too large")
    return value


def date(value: Any) -> dt.date:
    """``2026-06-01``, ``2026/6/1`` (Excel on Chinese Windows), ``2026年6月1日`` or a workbook date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    written = text(value) or ""
    for form in _DATE_FORMS:
        match = form.match(written)
        if match:
            try:
                return dt.date(*(int(part) for part in match.groups()))
            except ValueError:
                break
    raise _invalid(f"{written!r} is not a date (e.g. 2026-06-01 or 2026/6/1)")


def timestamp(value: Any, zone: ZoneInfo) -> dt.datetime:
    """A moment, in UTC: a time with its offset (``2026-11-16T02:30:00Z``), or a local time of
    ``zone`` (``2026-11-16 10:30``, or a workbook's date and time). A date alone is refused:
    the legal time limits count from the hour."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=zone)
        return moment.astimezone(dt.timezone.utc)
    if isinstance(value, dt.date):
        raise _invalid(f"{value.isoformat()} has no time of day (e.g. 2026-11-16 10:30)")
    written = text(value) or ""
    match = _LOCAL_TIME.match(written)
    try:
        if match:
            parts = [int(p) if p else 0 for p in match.groups()]
            return dt.datetime(*parts, tzinfo=zone).astimezone(dt.timezone.utc)
        if re.search(r"T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})$", written):
            moment = dt.datetime.fromisoformat(written.replace("Z", "+00:00"))
            return moment.astimezone(dt.timezone.utc)
    except ValueError:
        pass
    if any(form.match(written) for form in _DATE_FORMS):
        raise _invalid(f"{written!r} has no time of day (e.g. 2026-11-16 10:30)")
    raise _invalid(f"{written!r} is not a time (e.g. 2026-11-16 10:30, Beijing time, or 2026-11-16T02:30:00Z)")


class Attachments:
    """Attached documents named by path (relative to ``base``): read once each, described by
    name, media type, size and SHA-256 (the documents travel outside the bus)."""

    def __init__(self, base: Path):
        self.base = base
        self._seen: dict[Path, dict] = {}

    def describe(self, written: str, category: str) -> dict:
        path = Path(written)
        path = path if path.is_absolute() else self.base / path
        if path not in self._seen:
            try:
                digest, size = hashlib.sha256(), 0
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                        size += len(block)
            except IsADirectoryError:
                raise _invalid(f"{written!r} is a directory, not a file") from None
            except OSError as exc:
                raise _invalid(f"cannot read the file {written!r} (in {self.base}): {exc.strerror}") from None
            media_type = (mimetypes.guess_type(path.name)[0] or "application/octet-stream").lower()
            self._seen[path] = {"name": path.name, "media_type": media_type, "size": size,
                                "sha256": digest.hexdigest()}
        return {**self._seen[path], "category": category}
