"""RFC 3339 UTC timestamps as used on the wire: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


def parse_timestamp(text: str) -> datetime:
    if not isinstance(text, str) or not _TIMESTAMP.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)


def format_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    moment = moment.astimezone(timezone.utc)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
