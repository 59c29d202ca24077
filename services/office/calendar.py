"""Legal deadlines counted the way Chinese law counts periods (期间的计算).

Plain Python (standard library + PyYAML); no Nameko. The rules, as the Criminal Procedure Law
states them (刑事诉讼法 art. 105: periods are counted in hours, days and months, and the hour or
day in which a period starts is not counted) and ``shared/DOMAIN.md`` summarises them:

* **hours** (``unit="hours"``): with ``count_from="next_hour"`` (the law's rule, the default)
  the starting hour is not counted: counting starts at the next whole hour of local time, so 24
  hours from 16:25 end at 17:00 the next day (and 24 hours from 16:00:00 sharp end at 17:00
  too: the event happened in the hour 16:00-17:00, which is not counted). With
  ``count_from="exact"`` the period is exactly ``start + N hours``. Either way it is elapsed
  time (computed in UTC, so daylight-saving jumps cannot shift it) and a period counted in hours
  is never extended for rest days; it needs no calendar data.
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
  it when the starting day is not a working day.
* **months** (``unit="months"``): the period ends on the day of the later month with the same
  day number as the starting day, or on that month's last day when it has no such day
  (31 January + 1 month = 28 or 29 February), at 24:00 local; then moved as a period in days
  is when that day is not a working day (the Civil Code art. 202 reading, which the courts
  apply to procedural periods in months).

Deadlines are returned as aware datetimes in UTC.

**The calendar knows its limits.** It speaks only for the years it covers (``covered_years``:
the file's ``years``, or else the years its dates fall in). Deciding whether a day of any other
year is a working day raises ``CalendarMissing`` (with the year): a count that needs such a
day is never guessed from weekends alone. The office marks such a step "calendar missing"
and leaves its due time unknown (``tracking.py``).

The calendar is configuration: ``holidays_cn.yaml`` beside this module is the shipped default
(``Calendar.from_yaml(None)``); the office's ``CALENDAR_FILE`` setting may name another file of the
same form.

Not modelled here (the caller decides which rule applies): the law's exception that a period of
custody (在押期间) ends on its last day even when that is a holiday.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from services.protocol.rules import CALENDAR_INVALID, CALENDAR_MISSING

DAYS = "days"
HOURS = "hours"
MONTHS = "months"
UNITS = (HOURS, DAYS, MONTHS)
# How a period in hours starts (CPL art. 105: the starting hour is not counted).
NEXT_HOUR = "next_hour"
EXACT = "exact"
COUNT_FROM = (NEXT_HOUR, EXACT)
DEFAULT_TIMEZONE = "Asia/Shanghai"
UTC = timezone.utc
DEFAULT_FILE = Path(__file__).with_name("holidays_cn.yaml")
KEYS = ("timezone", "years", "holidays", "workdays")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SATURDAY = 5


class CalendarError(Exception):
    """A bad calendar file or bad arguments (naive datetime, unknown unit, negative limit...)."""

    rule = CALENDAR_INVALID


class CalendarMissing(CalendarError):
    """A count needs a day of a year the calendar does not cover: whether that day is a working
    day is unknown, and it is not guessed."""

    rule = CALENDAR_MISSING

    def __init__(self, year: int, covered: Iterable[int]):
        self.year = year
        self.covered = tuple(sorted(covered))
        have = ", ".join(str(y) for y in self.covered) or "no year"
        super().__init__(f"the working-day calendar has no data for {year} (it covers {have}): add the "
                         f"State Council's holiday notice for {year} to the calendar file")


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
                 timezone: str = DEFAULT_TIMEZONE, years: Iterable[int] | None = None):
        """``years``: the years this data speaks for, every day of them (a year may have no
        listed day); None: the years its dates fall in."""
        self.holidays = _dates(holidays, "holidays")
        self.workdays = _dates(workdays, "workdays")
        both = sorted(self.holidays & self.workdays)
        if both:
            raise CalendarError("a day cannot be both a holiday and a make-up workday: "
                                + ", ".join(day.isoformat() for day in both))
        listed = frozenset(day.year for day in self.holidays | self.workdays)
        if years is None:
            self._years = listed
        else:
            self._years = _years(years)
            outside = sorted(listed - self._years)
            if outside:
                raise CalendarError(f"dates listed for years not in `years`: {', '.join(map(str, outside))}")
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
        """The years the data speaks for: the file's ``years``, or else the years of its dates."""
        return self._years

    def with_timezone(self, zone: str) -> "Calendar":
        """The same days (and covered years) counted in another time zone."""
        return Calendar(self.holidays, self.workdays, zone, years=self._years)

    def missing_years(self, years: Iterable[int]) -> list[int]:
        """Which of ``years`` the calendar does not cover."""
        return sorted(set(years) - self._years)

    # -- working days ---------------------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        """Monday-Friday and not a holiday, or a listed make-up workday (调休上班).

        Raises CalendarMissing for a day of a year the calendar does not cover."""
        day = _as_date(day, "day")
        if day.year not in self._years:
            raise CalendarMissing(day.year, self._years)
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

    def next_whole_hour(self, instant: datetime) -> datetime:
        """The first whole hour of local time after the hour ``instant`` falls in (UTC): the
        starting hour is not counted. Computed on elapsed time, so a zone whose offset is not a
        whole number of hours (e.g. +05:30) gets its own local whole hours."""
        _check_aware(instant)
        local = instant.astimezone(self.tz)
        into_hour = timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
        return instant.astimezone(UTC) - into_hour + timedelta(hours=1)

    def deadline(self, start: datetime, limit: int, unit: str, *, count_from: str = NEXT_HOUR) -> datetime:
        """When a period of ``limit`` ``unit`` that starts at ``start`` ends (aware, UTC).

        ``unit`` is "hours" (from the next whole local hour with ``count_from="next_hour"``, from
        the instant itself with "exact"; never moved), "days" (start day not counted; ends at
        24:00 local of the last day, moved to the end of the first working day after it when that
        day is not a working day) or "months" (the same day number of the later month, or its
        last day; then moved as for days). See the module docstring. Raises CalendarMissing when
        the count needs a day of a year the calendar does not cover.
        """
        _check_aware(start)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise CalendarError(f"limit must be a whole number, not {limit!r}")
        if limit < 0:
            raise CalendarError(f"limit must not be negative, got {limit}")
        if unit not in UNITS:
            raise CalendarError(f"unknown unit {unit!r}: expected one of {', '.join(UNITS)}")
        if count_from not in COUNT_FROM:
            raise CalendarError(f"unknown count_from {count_from!r}: expected one of {', '.join(COUNT_FROM)}")
        try:
            if unit == HOURS:
                begin = start.astimezone(UTC)
                if count_from == NEXT_HOUR:
                    begin = self.next_whole_hour(start)
                return begin + timedelta(hours=limit)
            if unit == MONTHS:
                nominal = add_months(self.local_date(start), limit)
            else:
                nominal = self.local_date(start) + timedelta(days=limit)
            last = self.next_working_day(nominal)
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
                   timezone=DEFAULT_TIMEZONE if zone is None else zone, years=data.get("years"))

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


def _years(values) -> frozenset[int]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise CalendarError("years must be a list of years (e.g. [2025, 2026])")
    years = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 9999:
            raise CalendarError(f"years: {value!r} is not a year")
        years.append(value)
    return frozenset(years)


def add_months(day: date, months: int) -> date:
    """The day with ``day``'s day number ``months`` months later, or that month's last day
    when it has none (31 January + 1 = 28/29 February)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    if year > 9999:
        raise OverflowError("beyond 9999")
    return date(year, month + 1, min(day.day, _days_in_month(year, month + 1)))


def _days_in_month(year: int, month: int) -> int:
    following = date(year + (month == 12), month % 12 + 1, 1) if (year, month) != (9999, 12) else None
    return 31 if following is None else (following - timedelta(days=1)).day


def _check_aware(moment) -> None:
    if not isinstance(moment, datetime):
        raise CalendarError(f"expected an aware datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CalendarError(f"naive datetime {moment.isoformat()}: give a time zone (e.g. UTC)")
