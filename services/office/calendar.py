"""Legal deadlines counted the way Chinese law counts periods (期间的计算).

Plain Python (standard library + PyYAML); no Nameko. The rules, as the Criminal Procedure Law
states them (刑事诉讼法 "期间" chapter) and ``shared/DOMAIN.md`` summarises them:

* **days** (``unit="days"``): the day on which the starting event happens is NOT counted
  (期间开始的日不算在期间以内). A limit of N days ends at the end (24:00, i.e. 00:00 of the next
  day) of the N-th day after the starting day, in the calendar's local time zone (default
  ``Asia/Shanghai``). The starting day is the local date of the start instant: an event at
  2026-11-20T17:30Z happened on 2026-11-21 in Shanghai, so day 1 is 2026-11-22.
  If that last day is not a working day (a public holiday, or a Saturday/Sunday that is not a
  make-up working day 调休上班日), the period ends at the end of the first working day after it
  (期间的最后一日为节假日的，以节假日后的第一日为期满日期).
  Days in between are calendar days: holidays inside the period are counted, only the last
  day is moved.
* **days, limit 0** (our choice; the law has no zero-day period): the period ends at the end of
  the starting day itself, moved in the same way to the end of the first working day on or after
  it when the starting day is not a working day. "Answer the same day" then means "by 24:00 of
  the day it arrived, or of the next working day when it arrived on a day off".
* **hours** (``unit="hours"``): the deadline is exactly ``start + N hours`` of elapsed time
  (computed in UTC, so daylight-saving jumps in other zones cannot shift it); a period counted in
  hours is never extended for holidays.

Deadlines are returned as aware datetimes in UTC.

The calendar is configuration: ``holidays_cn.yaml`` beside this module is the shipped default
(``Calendar.from_yaml(None)``); the office's ``CALENDAR_FILE`` setting may name another file of the
same form. Outside the years a file lists, every Monday-Friday is a working day and every
Saturday/Sunday is not: ``covered_years`` tells which years the data speaks for, so a caller can
warn when a deadline falls outside them.

Not modelled here (the caller decides which rule applies): the law's exception that a period of
custody (在押期间) ends on its last day even when that is a holiday, and the hour-rounding reading
of "the starting hour is not counted"; both would be options of the caller, not of this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from services.protocol.rules import CALENDAR_INVALID

DAYS = "days"
HOURS = "hours"
UNITS = (HOURS, DAYS)
DEFAULT_TIMEZONE = "Asia/Shanghai"
UTC = timezone.utc
DEFAULT_FILE = Path(__file__).with_name("holidays_cn.yaml")
KEYS = ("timezone", "holidays", "workdays")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SATURDAY = 5


class CalendarError(Exception):
    """A bad calendar file or bad arguments (naive datetime, unknown unit, negative limit...)."""

    rule = CALENDAR_INVALID


def _as_date(value, where: str) -> date:
    if isinstance(value, datetime):  # a datetime is a date too; refuse it, a time means a mistake
        raise CalendarError(f"{where}: {value!r} is a date and time, expected a date YYYY-MM-DD")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise CalendarError(f"{where}: {value!r} is not a date YYYY-MM-DD")


def _dates(values, where: str) -> frozenset[date]:
    if values is None:  # `holidays:` with every entry commented out
        return frozenset()
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise CalendarError(f"{where} must be a list of dates YYYY-MM-DD")
    return frozenset(_as_date(value, where) for value in values)


class Calendar:
    """Working days and deadlines in one local time zone."""

    def __init__(self, holidays: Iterable[date], workdays: Iterable[date],
                 timezone: str = DEFAULT_TIMEZONE):
        self.holidays = _dates(holidays, "holidays")
        self.workdays = _dates(workdays, "workdays")
        both = sorted(self.holidays & self.workdays)
        if both:
            raise CalendarError("a day cannot be both a holiday and a make-up workday: "
                                + ", ".join(day.isoformat() for day in both))
        if not isinstance(timezone, str) or not timezone:
            raise CalendarError(f"timezone must be an IANA time zone name, not {timezone!r}")
        try:
            self.tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarError(f"unknown time zone {timezone!r}: {exc}") from None
        self.timezone = timezone

    def __repr__(self) -> str:
        return (f"Calendar(timezone={self.timezone!r}, {len(self.holidays)} holidays, "
                f"{len(self.workdays)} workdays, years={sorted(self.covered_years)})")

    @property
    def covered_years(self) -> frozenset[int]:
        """The years for which the data lists at least one holiday or make-up workday."""
        return frozenset(day.year for day in self.holidays | self.workdays)

    # -- working days ---------------------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        """Monday-Friday and not a holiday, or a listed make-up workday (调休上班)."""
        day = _as_date(day, "day")
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < _SATURDAY

    def next_working_day(self, day: date) -> date:
        """The first working day on or after ``day``."""
        day = _as_date(day, "day")
        try:
            # Ends: at most len(holidays) holidays in a row, plus a weekend on either side.
            while not self.is_working_day(day):
                day += timedelta(days=1)
        except OverflowError:
            raise CalendarError("no working day before 9999-12-31, the last date") from None
        return day

    # -- deadlines ------------------------------------------------------------------------------

    def local_date(self, instant: datetime) -> date:
        """The date, in this calendar's time zone, on which the aware ``instant`` falls."""
        _check_aware(instant)
        return instant.astimezone(self.tz).date()

    def deadline(self, start: datetime, limit: int, unit: str) -> datetime:
        """When a period of ``limit`` ``unit`` that starts at ``start`` ends (aware, UTC).

        ``unit`` is "days" (start day not counted; ends at 24:00 local of the last day, moved to
        the end of the first working day after it when that day is not a working day) or "hours"
        (exactly start + limit hours, never moved). See the module docstring.
        """
        _check_aware(start)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise CalendarError(f"limit must be a whole number, not {limit!r}")
        if limit < 0:
            raise CalendarError(f"limit must not be negative, got {limit}")
        if unit not in UNITS:
            raise CalendarError(f"unknown unit {unit!r}: expected one of {', '.join(UNITS)}")
        try:
            if unit == HOURS:
                return start.astimezone(UTC) + timedelta(hours=limit)
            last = self.next_working_day(self.local_date(start) + timedelta(days=limit))
            # 24:00 of the last day is 00:00 of the day after, local time. In a zone whose
            # clocks jump at midnight, ZoneInfo maps a non-existent 00:00 (fold=0) to the first
            # instant of that day, which is still the end of the last day.
            end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=self.tz)
            return end.astimezone(UTC)
        except OverflowError:
            raise CalendarError(f"a period of {limit} {unit} from {start.isoformat()} ends "
                                "beyond the year 9999") from None

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_data(cls, data: dict) -> "Calendar":
        """From a mapping ``{timezone?, holidays, workdays}`` (dates as date or "YYYY-MM-DD")."""
        if not isinstance(data, Mapping):
            raise CalendarError("a calendar must be a mapping with keys "
                                f"{', '.join(KEYS)}, not {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in KEYS)
        if unknown:
            raise CalendarError(f"unknown calendar keys: {', '.join(unknown)} "
                                f"(expected {', '.join(KEYS)})")
        missing = [key for key in ("holidays", "workdays") if key not in data]
        if missing:
            raise CalendarError(f"a calendar needs the keys: {', '.join(missing)}")
        zone = data.get("timezone")
        return cls(data["holidays"], data["workdays"],
                   timezone=DEFAULT_TIMEZONE if zone is None else zone)

    @classmethod
    def from_yaml(cls, path_or_none) -> "Calendar":
        """From a YAML file; ``None`` loads the shipped default, ``holidays_cn.yaml``."""
        path = DEFAULT_FILE if path_or_none is None else Path(path_or_none)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CalendarError(f"cannot read calendar file {path}: {exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CalendarError(f"calendar file {path} is not valid YAML: {exc}") from None
        except ValueError as exc:  # PyYAML builds unquoted dates itself: 2026-02-30 fails here
            raise CalendarError(f"calendar file {path} holds an impossible date: {exc}") from None
        try:
            return cls.from_data(data)
        except CalendarError as exc:
            raise CalendarError(f"calendar file {path}: {exc}") from None


def _check_aware(moment) -> None:
    if not isinstance(moment, datetime):
        raise CalendarError(f"expected an aware datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CalendarError(f"naive datetime {moment.isoformat()}: give a time zone (e.g. UTC)")
