"""How times are shown to people: the command line's text and the office's dashboard.

Times are stored and exchanged as RFC 3339 UTC (``2026-12-02T07:04:05.123456Z``); people read
them in the office's local time zone (OFFICE.TIMEZONE, Asia/Shanghai by default), to the
minute. The command line marks each time with its UTC offset, so that a line copied or grepped
out of its output still says which zone it is in::

    2026-12-02 15:04+08:00      local (the default)
    2026-12-02T07:04:05Z        with `cluebus --utc`: ISO UTC, to the second

The dashboard's pages show the bare ``2026-12-02 15:04`` (the page says its zone, and each
time carries the UTC value as its title). Machine-readable outputs (``--json``, CSV and XLSX
exports, evidence files) never come through here: they keep the full UTC timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = "Asia/Shanghai"
_CHINA_STANDARD_TIME = timezone(timedelta(hours=8), DEFAULT_ZONE)  # no DST since 1991


class UnknownTimeZone(ValueError):
    pass


def time_zone(name: str | None = None) -> tzinfo:
    """The named IANA zone (default Asia/Shanghai). Without a tz database, Asia/Shanghai is
    still known (a fixed +08:00); another unknown name raises UnknownTimeZone."""
    name = name or DEFAULT_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == DEFAULT_ZONE:
            return _CHINA_STANDARD_TIME
        raise UnknownTimeZone(f"unknown time zone {name!r} (an IANA name such as {DEFAULT_ZONE})") from None


LOCAL_TZ: tzinfo = time_zone(DEFAULT_ZONE)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string or a datetime (naive: UTC) as an aware datetime; None if it is neither."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def local_time(value: Any, zone: tzinfo = LOCAL_TZ) -> str:
    """The dashboard's form: ``2025-03-01T02:00:00Z`` -> ``2025-03-01 10:00``. None: ``—``;
    unparseable: as given."""
    parsed = parse_time(value)
    if parsed is None:
        return "—" if value is None else str(value)
    return parsed.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def utc_offset(moment: datetime) -> str:
    """``+08:00``, ``-03:30``, ``+00:00``."""
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class TimeFormat:
    """The command line's times: local to the minute with the offset, or ``utc`` ISO to the
    second with ``Z``. Call it on a value; None is ``-``, an unparseable value is shown as given."""

    zone: tzinfo = LOCAL_TZ
    utc: bool = False

    @classmethod
    def named(cls, zone_name: str | None = None, *, utc: bool = False) -> "TimeFormat":
        return cls(time_zone(zone_name), utc)

    def __call__(self, value: Any) -> str:
        parsed = parse_time(value)
        if parsed is None:
            return "-" if value is None or value == "" else str(value)
        if self.utc:
            return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        local = parsed.astimezone(self.zone)
        return local.strftime("%Y-%m-%d %H:%M") + utc_offset(local)
