"""Legal deadlines and the working-day calendar (services/office/calendar.py).

Most tests use small explicit calendars in made-up years (2027-2031), so they do not depend on the
shipped data; the last section checks the shipped holidays_cn.yaml on dates of the State
Council's notices for 2025 and 2026.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.office.calendar import DEFAULT_FILE, Calendar, CalendarError

SH = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc

# Weekends only: no public holidays, no make-up workdays.
PLAIN = Calendar([], [])

# A made-up week-long National Day in 2030: Tue 1 Oct - Mon 7 Oct off, with make-up workdays on
# Sunday 29 September and Saturday 12 October.
GOLDEN_WEEK = Calendar(
    holidays=[date(2030, 10, 1) + timedelta(days=i) for i in range(7)],
    workdays=[date(2030, 9, 29), date(2030, 10, 12)],
)


def sh(year, month, day, hour=0, minute=0) -> datetime:
    """An instant given in Shanghai local time."""
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def end_of(year, month, day, tz=SH) -> datetime:
    """24:00 local of that day (00:00 of the next day), as an aware UTC datetime."""
    return (datetime(year, month, day, tzinfo=tz) + timedelta(days=1)).astimezone(UTC)


# -- hours vs days -------------------------------------------------------------------------------

def test_hours_are_elapsed_time_from_the_start_instant():
    start = sh(2030, 3, 5, 10, 0)  # Tuesday
    assert PLAIN.deadline(start, 24, "hours") == datetime(2030, 3, 6, 2, 0, tzinfo=UTC)
    assert PLAIN.deadline(start, 0, "hours") == start
    assert PLAIN.deadline(start, 72, "hours") == sh(2030, 3, 8, 10, 0)


def test_days_end_at_midnight_local_of_the_last_day():
    start = sh(2030, 3, 5, 10, 0)  # Tuesday
    assert PLAIN.deadline(start, 1, "days") == end_of(2030, 3, 6)
    assert end_of(2030, 3, 6) == datetime(2030, 3, 6, 16, 0, tzinfo=UTC)  # 24:00 Shanghai


def test_hours_are_never_extended_for_weekends_or_holidays():
    friday_noon = sh(2030, 3, 8, 12, 0)
    assert PLAIN.deadline(friday_noon, 24, "hours") == sh(2030, 3, 9, 12, 0)  # a Saturday
    before_holiday = sh(2030, 9, 30, 9, 0)
    assert GOLDEN_WEEK.deadline(before_holiday, 48, "hours") == sh(2030, 10, 2, 9, 0)


def test_hours_across_a_daylight_saving_change_are_elapsed_hours():
    new_york = ZoneInfo("America/New_York")
    start = datetime(2030, 3, 9, 12, 0, tzinfo=new_york)  # EST; clocks go forward on 10 March
    due = PLAIN.deadline(start, 24, "hours")
    assert due == datetime(2030, 3, 10, 17, 0, tzinfo=UTC)
    assert due.astimezone(new_york).hour == 13  # 24 real hours, 13:00 EDT


# -- the starting day is not counted -------------------------------------------------------------

@pytest.mark.parametrize("hour, minute", [(0, 0), (9, 30), (23, 59)])
def test_the_starting_day_is_not_counted_whatever_the_hour(hour, minute):
    start = sh(2030, 3, 4, hour, minute)  # Monday
    assert PLAIN.deadline(start, 3, "days") == end_of(2030, 3, 7)  # Thursday


def test_a_zero_day_limit_ends_at_the_end_of_the_starting_day():
    assert PLAIN.deadline(sh(2030, 3, 6, 8, 0), 0, "days") == end_of(2030, 3, 6)  # Wednesday


def test_a_zero_day_limit_starting_on_a_day_off_ends_on_the_next_working_day():
    assert PLAIN.deadline(sh(2030, 3, 9, 8, 0), 0, "days") == end_of(2030, 3, 11)  # Sat -> Mon
    assert GOLDEN_WEEK.deadline(sh(2030, 10, 3), 0, "days") == end_of(2030, 10, 8)


# -- weekends, holidays and make-up workdays -----------------------------------------------------

@pytest.mark.parametrize("limit", [3, 4])  # Saturday 9, Sunday 10 March
def test_a_deadline_on_a_weekend_moves_to_monday(limit):
    start = sh(2030, 3, 6, 15, 0)  # Wednesday
    assert PLAIN.deadline(start, limit, "days") == end_of(2030, 3, 11)


def test_holidays_inside_the_period_are_counted_only_the_last_day_moves():
    start = sh(2030, 9, 27, 10, 0)  # Friday
    # 27 Sep + 12 days = Wednesday 9 October: the week off inside the period changes nothing.
    assert GOLDEN_WEEK.deadline(start, 12, "days") == end_of(2030, 10, 9)


@pytest.mark.parametrize("limit", [4, 5, 7, 8, 10])  # 1, 2, 4, 5, 7 October
def test_a_deadline_inside_a_multi_day_holiday_moves_to_the_first_working_day_after(limit):
    start = sh(2030, 9, 27, 10, 0)  # Friday
    assert GOLDEN_WEEK.deadline(start, limit, "days") == end_of(2030, 10, 8)  # Tuesday


def test_a_deadline_on_a_make_up_workday_is_not_moved():
    assert GOLDEN_WEEK.is_working_day(date(2030, 10, 12))  # Saturday, 调休上班
    assert not GOLDEN_WEEK.is_working_day(date(2030, 10, 13))  # the Sunday after
    start = sh(2030, 10, 9, 10, 0)  # Wednesday
    assert GOLDEN_WEEK.deadline(start, 3, "days") == end_of(2030, 10, 12)
    # Sunday 29 September is a make-up workday too: a deadline there stays there.
    assert GOLDEN_WEEK.deadline(sh(2030, 9, 26), 3, "days") == end_of(2030, 9, 29)
    # ...but the same Sunday in the plain calendar moves to Monday.
    assert PLAIN.deadline(sh(2030, 9, 26), 3, "days") == end_of(2030, 9, 30)


def test_is_working_day_and_next_working_day():
    assert GOLDEN_WEEK.is_working_day(date(2030, 9, 30))  # Monday
    assert not GOLDEN_WEEK.is_working_day(date(2030, 10, 1))  # Tuesday, a holiday
    assert not GOLDEN_WEEK.is_working_day(date(2030, 9, 28))  # Saturday
    assert GOLDEN_WEEK.next_working_day(date(2030, 9, 30)) == date(2030, 9, 30)  # on or after
    assert GOLDEN_WEEK.next_working_day(date(2030, 10, 1)) == date(2030, 10, 8)
    assert GOLDEN_WEEK.next_working_day(date(2030, 9, 28)) == date(2030, 9, 29)  # make-up Sunday
    assert PLAIN.next_working_day(date(2030, 3, 9)) == date(2030, 3, 11)


# -- month ends, leap years, year ends -----------------------------------------------------------

def test_month_ends():
    assert PLAIN.deadline(sh(2031, 1, 31, 9), 3, "days") == end_of(2031, 2, 3)  # Fri -> Mon 3 Feb
    assert PLAIN.deadline(sh(2030, 1, 31, 9), 3, "days") == end_of(2030, 2, 4)  # Sun 3 -> Mon 4
    assert PLAIN.deadline(sh(2030, 4, 30, 9), 1, "days") == end_of(2030, 5, 1)
    assert PLAIN.deadline(sh(2030, 1, 31, 9), 30, "days") == end_of(2030, 3, 4)  # Sat 2 Mar -> Mon


def test_leap_years():
    assert PLAIN.deadline(sh(2028, 2, 28, 9), 1, "days") == end_of(2028, 2, 29)  # Tuesday
    assert PLAIN.deadline(sh(2028, 2, 28, 9), 2, "days") == end_of(2028, 3, 1)
    assert PLAIN.deadline(sh(2027, 2, 28, 9), 1, "days") == end_of(2027, 3, 1)  # no 29 Feb in 2027
    # An explicit calendar with 29 February 2028 off: the deadline moves to 1 March.
    leap_day_off = Calendar(holidays=[date(2028, 2, 29)], workdays=[])
    assert leap_day_off.deadline(sh(2028, 2, 28, 9), 1, "days") == end_of(2028, 3, 1)


def test_year_ends():
    assert PLAIN.deadline(sh(2030, 12, 30, 9), 2, "days") == end_of(2031, 1, 1)  # Wednesday
    new_year = Calendar(holidays=[date(2031, 1, 1)], workdays=[])
    assert new_year.deadline(sh(2030, 12, 30, 9), 2, "days") == end_of(2031, 1, 2)
    assert new_year.deadline(sh(2030, 12, 31, 23, 59), 1, "days") == end_of(2031, 1, 2)


# -- time zones ----------------------------------------------------------------------------------

def test_the_starting_day_is_the_local_date_in_the_calendars_time_zone():
    start = datetime(2026, 11, 20, 17, 30, tzinfo=UTC)  # already Saturday 21 Nov 01:30 in Shanghai
    assert PLAIN.local_date(start) == date(2026, 11, 21)
    # Day 1 is Sunday 22 November, not a working day: Monday 23rd, 24:00 Shanghai.
    assert PLAIN.deadline(start, 1, "days") == end_of(2026, 11, 23)
    assert PLAIN.deadline(start, 1, "days") == datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    # Counted in Shanghai the starting day is the 21st; counted in UTC it would be the 20th.
    assert PLAIN.deadline(start, 3, "days") == end_of(2026, 11, 24)
    in_utc = Calendar([], [], timezone="UTC")
    assert in_utc.deadline(start, 3, "days") == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def test_a_minute_either_side_of_shanghai_midnight():
    before = datetime(2030, 3, 4, 15, 59, tzinfo=UTC)  # Mon 23:59 Shanghai
    after = datetime(2030, 3, 4, 16, 0, tzinfo=UTC)  # Tue 00:00 Shanghai
    assert PLAIN.deadline(before, 1, "days") == end_of(2030, 3, 5)
    assert PLAIN.deadline(after, 1, "days") == end_of(2030, 3, 6)


def test_the_same_instant_in_any_offset_gives_the_same_deadline():
    instant = datetime(2030, 3, 4, 20, 0, tzinfo=UTC)
    plus_eight = instant.astimezone(timezone(timedelta(hours=8)))
    minus_five = instant.astimezone(ZoneInfo("America/New_York"))
    for unit in ("days", "hours"):
        expected = PLAIN.deadline(instant, 3, unit)
        assert PLAIN.deadline(plus_eight, 3, unit) == expected
        assert PLAIN.deadline(minus_five, 3, unit) == expected


def test_a_calendar_in_a_daylight_saving_zone_ends_days_at_local_midnight():
    new_york = ZoneInfo("America/New_York")
    cal = Calendar([], [], timezone="America/New_York")
    start = datetime(2030, 3, 8, 12, 0, tzinfo=new_york)  # Friday, EST
    due = cal.deadline(start, 2, "days")  # Sunday 10 March (clocks go forward) -> Monday 11
    assert due == datetime(2030, 3, 12, 4, 0, tzinfo=UTC)  # 00:00 EDT (-04:00)
    assert due.astimezone(new_york).replace(tzinfo=None) == datetime(2030, 3, 12, 0, 0)


@pytest.mark.parametrize("unit", ["days", "hours"])
def test_deadlines_are_aware_and_in_utc(unit):
    due = GOLDEN_WEEK.deadline(sh(2030, 9, 27, 10, 0), 5, unit)
    assert due.tzinfo is not None
    assert due.utcoffset() == timedelta(0)
    assert due.tzinfo == UTC


# -- errors --------------------------------------------------------------------------------------

def test_errors_carry_the_rule_name():
    assert CalendarError.rule == "calendar.invalid"
    assert issubclass(CalendarError, Exception)


def test_a_naive_start_is_refused():
    with pytest.raises(CalendarError, match="naive"):
        PLAIN.deadline(datetime(2030, 3, 4, 9, 0), 1, "days")
    with pytest.raises(CalendarError, match="naive"):
        PLAIN.deadline(datetime(2030, 3, 4, 9, 0), 1, "hours")
    with pytest.raises(CalendarError):
        PLAIN.deadline(date(2030, 3, 4), 1, "days")


@pytest.mark.parametrize("unit", ["weeks", "months", "Days", "day", "", None])
def test_an_unknown_unit_is_refused(unit):
    with pytest.raises(CalendarError, match="unit"):
        PLAIN.deadline(sh(2030, 3, 4), 1, unit)


@pytest.mark.parametrize("limit", [-1, -24])
def test_a_negative_limit_is_refused(limit):
    for unit in ("days", "hours"):
        with pytest.raises(CalendarError, match="negative"):
            PLAIN.deadline(sh(2030, 3, 4), limit, unit)


@pytest.mark.parametrize("limit", [1.5, "3", True, None])
def test_a_limit_that_is_not_a_whole_number_is_refused(limit):
    with pytest.raises(CalendarError, match="whole number"):
        PLAIN.deadline(sh(2030, 3, 4), limit, "days")


def test_a_deadline_beyond_year_9999_is_a_calendar_error():
    with pytest.raises(CalendarError, match="9999"):
        PLAIN.deadline(sh(9999, 12, 1), 100, "days")


@pytest.mark.parametrize("holidays, workdays, message", [
    ([date(2030, 10, 1)], [date(2030, 10, 1)], "both"),
    (["2030-02-30"], [], "not a date"),
    (["1 Oct 2030"], [], "not a date"),
    ([datetime(2030, 10, 1, 0, 0)], [], "date and time"),
    ("2030-10-01", [], "list"),
    ([], 5, "list"),
])
def test_bad_dates_are_refused(holidays, workdays, message):
    with pytest.raises(CalendarError, match=message):
        Calendar(holidays, workdays)


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(CalendarError, match="time zone"):
        Calendar([], [], timezone="Asia/Nowhere")
    with pytest.raises(CalendarError, match="time zone"):
        Calendar([], [], timezone="")


# -- loading -------------------------------------------------------------------------------------

def test_from_data_accepts_dates_and_iso_strings_and_defaults_the_time_zone():
    cal = Calendar.from_data({"holidays": ["2030-10-01", date(2030, 10, 2)],
                              "workdays": ["2030-10-12"]})
    assert cal.timezone == "Asia/Shanghai"
    assert cal.holidays == {date(2030, 10, 1), date(2030, 10, 2)}
    assert cal.workdays == {date(2030, 10, 12)}
    assert cal.covered_years == {2030}


def test_from_yaml_reads_a_calendar_file(tmp_path):
    path = tmp_path / "calendar.yaml"
    path.write_text("# a local calendar\n"
                    "timezone: Asia/Shanghai\n"
                    "holidays:\n  - 2030-10-01\n  - '2030-10-02'\n"
                    "workdays:\n  - 2030-10-12\n", encoding="utf-8")
    cal = Calendar.from_yaml(path)
    assert cal.holidays == {date(2030, 10, 1), date(2030, 10, 2)}
    assert cal.is_working_day(date(2030, 10, 12))
    assert Calendar.from_yaml(str(path)).holidays == cal.holidays  # a str path works too


def test_empty_lists_in_yaml_are_allowed(tmp_path):
    path = tmp_path / "calendar.yaml"
    path.write_text("timezone: UTC\nholidays:\n  # none yet\nworkdays: []\n", encoding="utf-8")
    cal = Calendar.from_yaml(path)
    assert cal.holidays == frozenset() and cal.workdays == frozenset()
    assert cal.timezone == "UTC"


@pytest.mark.parametrize("text, message", [
    ("holidays: [2030-10-01\nworkdays: []\n", "not valid YAML"),
    ("holidays:\n  - 2030-10-01\n - oops: [\n", "not valid YAML"),
    ("", "mapping"),
    ("- 2030-10-01\n", "mapping"),
    ("holidays: []\n", "workdays"),
    ("holidays: []\nworkdays: []\nholiday: [2030-10-01]\n", "unknown calendar keys"),
    ("holidays: [2030-13-01]\nworkdays: []\n", "impossible date"),
    ("holidays: [2030-02-30]\nworkdays: []\n", "impossible date"),
    ("holidays: ['2030-02-30']\nworkdays: []\n", "not a date"),
    ("holidays: [yesterday]\nworkdays: []\n", "not a date"),
    ("holidays: [2030-10-01 09:00:00]\nworkdays: []\n", "date and time"),
    ("holidays: {2030-10-01: National Day}\nworkdays: []\n", "list"),
    ("timezone: Mars/Olympus\nholidays: []\nworkdays: []\n", "time zone"),
    ("timezone: 8\nholidays: []\nworkdays: []\n", "time zone"),
])
def test_malformed_calendar_files_are_refused(tmp_path, text, message):
    path = tmp_path / "calendar.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarError, match=message) as caught:
        Calendar.from_yaml(path)
    assert str(path) in str(caught.value)
    assert caught.value.rule == "calendar.invalid"


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(CalendarError, match="cannot read"):
        Calendar.from_yaml(tmp_path / "absent.yaml")


def test_from_data_refuses_something_that_is_not_a_mapping():
    with pytest.raises(CalendarError, match="mapping"):
        Calendar.from_data(["2030-10-01"])


# -- the shipped default (holidays_cn.yaml) ------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    return Calendar.from_yaml(None)


def test_the_shipped_calendar_covers_2025_and_2026_in_shanghai(shipped):
    assert DEFAULT_FILE.name == "holidays_cn.yaml"
    assert shipped.timezone == "Asia/Shanghai"
    assert shipped.covered_years == {2025, 2026}


def test_the_shipped_days_off_match_the_notices(shipped):
    per_year = {year: sorted(day for day in shipped.holidays if day.year == year)
                for year in (2025, 2026)}
    # 2025: 元旦 1 + 春节 8 + 清明 3 + 劳动 5 + 端午 3 + 国庆、中秋 8.
    assert len(per_year[2025]) == 28
    # 2026: 元旦 3 + 春节 9 + 清明 3 + 劳动 5 + 端午 3 + 中秋 3 + 国庆 7.
    assert len(per_year[2026]) == 33
    # Every make-up workday is a Saturday or Sunday, as the notices say.
    assert all(day.weekday() >= 5 for day in shipped.workdays)
    assert sorted(shipped.workdays) == [
        date(2025, 1, 26), date(2025, 2, 8), date(2025, 4, 27), date(2025, 9, 28),
        date(2025, 10, 11), date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28),
        date(2026, 5, 9), date(2026, 9, 20), date(2026, 10, 10)]
    # The weekdays the notices give for the first and last day of a few holidays.
    assert date(2025, 1, 28).weekday() == 1 and date(2025, 2, 4).weekday() == 1  # 周二, 周二
    assert date(2026, 2, 15).weekday() == 6 and date(2026, 2, 23).weekday() == 0  # 周日, 周一
    assert date(2026, 10, 1).weekday() == 3 and date(2026, 10, 7).weekday() == 2  # 周四, 周三
    spring_2026 = {date(2026, 2, 15) + timedelta(days=i) for i in range(9)}
    assert spring_2026 <= shipped.holidays
    assert date(2026, 2, 24) not in shipped.holidays


def test_shipped_spring_festival_2025(shipped):
    # Start Monday 27 January 2025; day 2 is the 29th (春节): first working day after is 5 Feb.
    assert shipped.deadline(sh(2025, 1, 27, 10), 2, "days") == end_of(2025, 2, 5)
    due = shipped.deadline(sh(2025, 1, 27, 10), 2, "days")
    assert due == datetime(2025, 2, 5, 16, 0, tzinfo=UTC)
    # Sunday 26 January 2025 was a make-up workday.
    assert shipped.deadline(sh(2025, 1, 23, 10), 3, "days") == end_of(2025, 1, 26)


def test_shipped_spring_festival_2026_and_its_make_up_saturdays(shipped):
    assert shipped.is_working_day(date(2026, 2, 14))  # Saturday, 上班
    assert not shipped.is_working_day(date(2026, 2, 16))  # Monday, 春节
    assert shipped.deadline(sh(2026, 2, 13, 10), 1, "days") == end_of(2026, 2, 14)  # not moved
    assert shipped.deadline(sh(2026, 2, 13, 10), 2, "days") == end_of(2026, 2, 24)  # after 春节
    assert shipped.deadline(sh(2026, 2, 25, 10), 3, "days") == end_of(2026, 2, 28)  # Saturday 上班


def test_shipped_national_day_2026(shipped):
    assert shipped.deadline(sh(2026, 9, 29, 10), 3, "days") == end_of(2026, 10, 8)  # Thursday
    assert shipped.deadline(sh(2026, 9, 17, 10), 3, "days") == end_of(2026, 9, 20)  # Sunday 上班
    assert shipped.deadline(sh(2026, 10, 7, 10), 3, "days") == end_of(2026, 10, 10)  # Saturday 上班


def test_shipped_new_year_2026_make_up_sunday(shipped):
    assert shipped.deadline(sh(2025, 12, 31, 10), 1, "days") == end_of(2026, 1, 4)  # 1-3 Jan off
    assert shipped.deadline(sh(2025, 12, 31, 10), 4, "days") == end_of(2026, 1, 4)


def test_shipped_calendar_with_a_utc_start_near_shanghai_midnight(shipped):
    start = datetime(2026, 11, 20, 17, 30, tzinfo=UTC)  # 21 Nov 01:30 in Shanghai
    assert shipped.deadline(start, 1, "days") == datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    assert shipped.deadline(start, 10, "hours") == datetime(2026, 11, 21, 3, 30, tzinfo=UTC)
