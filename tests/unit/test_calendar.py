"""Legal deadlines and the working-day calendar (services/office/calendar.py).

Most tests use small explicit calendars in made-up years (2026-2031, declared as covered with
weekends only), so they do not depend on the shipped data; the later sections check the shipped
holidays_cn.yaml on dates of the State Council's notices for 2025 and 2026, and what happens
beyond the years a calendar covers (CalendarMissing, never a guess).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.office.calendar import DEFAULT_FILE, Calendar, CalendarError, CalendarMissing, add_months

SH = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc

# Weekends only: no public holidays, no make-up workdays, in years declared as covered.
TEST_YEARS = range(2026, 2032)
PLAIN = Calendar([], [], years=TEST_YEARS)

# A made-up week-long National Day in 2030: Tue 1 Oct - Mon 7 Oct off, with make-up workdays on
# Sunday 29 September and Saturday 12 October (2026-2031 covered, weekends only otherwise).
GOLDEN_WEEK = Calendar(
    holidays=[date(2030, 10, 1) + timedelta(days=i) for i in range(7)],
    workdays=[date(2030, 9, 29), date(2030, 10, 12)],
    years=TEST_YEARS,
)


def sh(year, month, day, hour=0, minute=0) -> datetime:
    """An instant given in Shanghai local time."""
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def end_of(year, month, day, tz=SH) -> datetime:
    """24:00 local of that day (00:00 of the next day), as an aware UTC datetime."""
    return (datetime(year, month, day, tzinfo=tz) + timedelta(days=1)).astimezone(UTC)


# -- hours vs days -------------------------------------------------------------------------------

def test_exact_hours_are_elapsed_time_from_the_start_instant():
    start = sh(2030, 3, 5, 10, 0)  # Tuesday
    assert PLAIN.deadline(start, 24, "hours", count_from="exact") == datetime(2030, 3, 6, 2, 0, tzinfo=UTC)
    assert PLAIN.deadline(start, 0, "hours", count_from="exact") == start
    assert PLAIN.deadline(start, 72, "hours", count_from="exact") == sh(2030, 3, 8, 10, 0)


# -- hours from the next whole hour (CPL art. 105: the starting hour is not counted) -----------

def test_24_hours_from_16_25_end_at_17_00_the_next_day():
    assert PLAIN.deadline(sh(2030, 3, 5, 16, 25), 24, "hours") == sh(2030, 3, 6, 17, 0)
    assert PLAIN.deadline(sh(2030, 3, 5, 16, 25), 24, "hours", count_from="next_hour") == sh(2030, 3, 6, 17, 0)


@pytest.mark.parametrize("minute, second, micro", [(0, 0, 0), (0, 0, 1), (0, 59, 0), (59, 59, 999_999)])
def test_any_instant_of_the_starting_hour_counts_from_the_next_hour(minute, second, micro):
    # 16:00:00 sharp happened in the hour 16:00-17:00, which is not counted either.
    start = datetime(2030, 3, 5, 16, minute, second, micro, tzinfo=SH)
    assert PLAIN.deadline(start, 24, "hours") == sh(2030, 3, 6, 17, 0)
    assert PLAIN.deadline(start, 0, "hours") == sh(2030, 3, 5, 17, 0)
    assert PLAIN.next_whole_hour(start) == sh(2030, 3, 5, 17, 0)


def test_hours_from_the_next_hour_across_midnight_and_the_year_end():
    assert PLAIN.deadline(sh(2030, 3, 5, 23, 30), 24, "hours") == sh(2030, 3, 7, 0, 0)
    assert PLAIN.deadline(sh(2030, 12, 31, 23, 59), 1, "hours") == sh(2031, 1, 1, 1, 0)


def test_hours_need_no_calendar_data():
    nothing = Calendar([], [])  # covers no year at all
    assert nothing.deadline(sh(2040, 1, 1, 9, 10), 24, "hours") == sh(2040, 1, 2, 10, 0)
    assert nothing.deadline(sh(2040, 1, 1, 9, 10), 24, "hours", count_from="exact") == sh(2040, 1, 2, 9, 10)


def test_next_whole_hour_is_local_in_a_half_hour_zone():
    india = Calendar([], [], timezone="Asia/Kolkata", years=TEST_YEARS)  # UTC+05:30
    start = datetime(2030, 3, 5, 10, 10, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert india.next_whole_hour(start) == datetime(2030, 3, 5, 11, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert india.deadline(start, 24, "hours") == datetime(2030, 3, 6, 5, 30, tzinfo=UTC)


def test_an_unknown_count_from_is_refused():
    with pytest.raises(CalendarError, match="count_from"):
        PLAIN.deadline(sh(2030, 3, 5, 10), 24, "hours", count_from="previous_hour")


def test_days_end_at_midnight_local_of_the_last_day():
    start = sh(2030, 3, 5, 10, 0)  # Tuesday
    assert PLAIN.deadline(start, 1, "days") == end_of(2030, 3, 6)
    assert end_of(2030, 3, 6) == datetime(2030, 3, 6, 16, 0, tzinfo=UTC)  # 24:00 Shanghai


def test_hours_are_never_extended_for_weekends_or_holidays():
    friday_noon = sh(2030, 3, 8, 12, 0)
    assert PLAIN.deadline(friday_noon, 24, "hours", count_from="exact") == sh(2030, 3, 9, 12, 0)  # a Saturday
    assert PLAIN.deadline(friday_noon, 24, "hours") == sh(2030, 3, 9, 13, 0)  # next hour, still Saturday
    before_holiday = sh(2030, 9, 30, 9, 0)
    assert GOLDEN_WEEK.deadline(before_holiday, 48, "hours", count_from="exact") == sh(2030, 10, 2, 9, 0)
    assert GOLDEN_WEEK.deadline(before_holiday, 48, "hours") == sh(2030, 10, 2, 10, 0)  # inside the holiday


def test_hours_across_a_daylight_saving_change_are_elapsed_hours():
    new_york = ZoneInfo("America/New_York")
    start = datetime(2030, 3, 9, 12, 0, tzinfo=new_york)  # EST; clocks go forward on 10 March
    due = PLAIN.deadline(start, 24, "hours", count_from="exact")
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
    leap_day_off = Calendar(holidays=[date(2028, 2, 29)], workdays=[], years=[2028])
    assert leap_day_off.deadline(sh(2028, 2, 28, 9), 1, "days") == end_of(2028, 3, 1)


def test_year_ends():
    assert PLAIN.deadline(sh(2030, 12, 30, 9), 2, "days") == end_of(2031, 1, 1)  # Wednesday
    new_year = Calendar(holidays=[date(2031, 1, 1)], workdays=[], years=[2030, 2031])
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
    in_utc = Calendar([], [], timezone="UTC", years=TEST_YEARS)
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
    for unit in ("days", "hours", "months"):
        expected = PLAIN.deadline(instant, 3, unit)
        assert PLAIN.deadline(plus_eight, 3, unit) == expected
        assert PLAIN.deadline(minus_five, 3, unit) == expected


def test_a_calendar_in_a_daylight_saving_zone_ends_days_at_local_midnight():
    new_york = ZoneInfo("America/New_York")
    cal = Calendar([], [], timezone="America/New_York", years=TEST_YEARS)
    start = datetime(2030, 3, 8, 12, 0, tzinfo=new_york)  # Friday, EST
    due = cal.deadline(start, 2, "days")  # Sunday 10 March (clocks go forward) -> Monday 11
    assert due == datetime(2030, 3, 12, 4, 0, tzinfo=UTC)  # 00:00 EDT (-04:00)
    assert due.astimezone(new_york).replace(tzinfo=None) == datetime(2030, 3, 12, 0, 0)


@pytest.mark.parametrize("unit", ["days", "hours", "months"])
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


@pytest.mark.parametrize("unit", ["weeks", "month", "Days", "day", "", None])
def test_an_unknown_unit_is_refused(unit):
    with pytest.raises(CalendarError, match="unit"):
        PLAIN.deadline(sh(2030, 3, 4), 1, unit)


@pytest.mark.parametrize("limit", [-1, -24])
def test_a_negative_limit_is_refused(limit):
    for unit in ("days", "hours", "months"):
        with pytest.raises(CalendarError, match="negative"):
            PLAIN.deadline(sh(2030, 3, 4), limit, unit)


@pytest.mark.parametrize("limit", [1.5, "3", True, None])
def test_a_limit_that_is_not_a_whole_number_is_refused(limit):
    with pytest.raises(CalendarError, match="whole number"):
        PLAIN.deadline(sh(2030, 3, 4), limit, "days")


def test_a_deadline_beyond_year_9999_is_a_calendar_error():
    last_years = Calendar([], [], years=[9999])
    with pytest.raises(CalendarError, match="9999"):
        last_years.deadline(sh(9999, 12, 1), 100, "days")
    with pytest.raises(CalendarError, match="9999"):
        last_years.deadline(sh(9999, 12, 1), 1, "months")


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
    assert cal.covered_years == {2030}  # no `years`: the years of its dates


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
    ("years: 2030\nholidays: []\nworkdays: []\n", "years"),
    ("years: [twenty]\nholidays: []\nworkdays: []\n", "not a year"),
    ("years: [2031]\nholidays: [2030-10-01]\nworkdays: []\n", "not in `years`"),
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
    assert "\nyears: [2025, 2026]\n" in DEFAULT_FILE.read_text(encoding="utf-8")


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
    assert shipped.deadline(start, 10, "hours", count_from="exact") == datetime(2026, 11, 21, 3, 30, tzinfo=UTC)
    assert shipped.deadline(start, 10, "hours") == datetime(2026, 11, 21, 4, 0, tzinfo=UTC)  # from 02:00


# -- periods in months ----------------------------------------------------------------------------

@pytest.mark.parametrize("start, months, end", [
    (date(2027, 1, 31), 1, date(2027, 2, 28)),   # no 31 February: the month's last day
    (date(2028, 1, 31), 1, date(2028, 2, 29)),   # a leap year
    (date(2030, 3, 31), 1, date(2030, 4, 30)),
    (date(2030, 1, 15), 1, date(2030, 2, 15)),   # the same day number
    (date(2030, 12, 15), 1, date(2031, 1, 15)),  # across the year end
    (date(2030, 11, 30), 3, date(2031, 2, 28)),
    (date(2028, 2, 29), 12, date(2029, 2, 28)),
    (date(2030, 1, 31), 13, date(2031, 2, 28)),
    (date(2030, 5, 20), 0, date(2030, 5, 20)),
])
def test_add_months_keeps_the_day_number_or_takes_the_months_last_day(start, months, end):
    assert add_months(start, months) == end


def test_a_month_ends_at_24_00_of_the_same_day_number_of_the_later_month():
    assert PLAIN.deadline(sh(2030, 1, 15, 9), 1, "months") == end_of(2030, 2, 15)  # Friday
    assert PLAIN.deadline(sh(2030, 1, 31, 9), 1, "months") == end_of(2030, 2, 28)  # Thursday
    assert PLAIN.deadline(sh(2031, 1, 31, 9), 1, "months") == end_of(2031, 2, 28)  # Friday
    assert PLAIN.deadline(sh(2028, 1, 31, 9), 1, "months") == end_of(2028, 2, 29)  # Tuesday
    # Not 30 days: 31 January + 30 days would be 2 March.
    assert PLAIN.deadline(sh(2030, 1, 31, 9), 1, "months") != PLAIN.deadline(sh(2030, 1, 31, 9), 30, "days")


def test_a_month_ending_on_a_rest_day_moves_to_the_next_working_day():
    assert PLAIN.deadline(sh(2030, 2, 16, 9), 1, "months") == end_of(2030, 3, 18)  # Sat 16 Mar -> Mon
    assert PLAIN.deadline(sh(2030, 10, 31, 9), 1, "months") == end_of(2030, 12, 2)  # Sat 30 Nov -> Mon 2 Dec
    # A holiday: the made-up week off of October 2030.
    assert GOLDEN_WEEK.deadline(sh(2030, 9, 3, 9), 1, "months") == end_of(2030, 10, 8)
    assert GOLDEN_WEEK.deadline(sh(2030, 9, 12, 9), 1, "months") == end_of(2030, 10, 12)  # make-up Saturday


def test_the_starting_day_of_a_month_period_is_its_local_date():
    start = datetime(2030, 1, 30, 16, 30, tzinfo=UTC)  # already 31 January in Shanghai
    assert PLAIN.deadline(start, 1, "months") == end_of(2030, 2, 28)
    assert Calendar([], [], timezone="UTC", years=TEST_YEARS).deadline(start, 1, "months") == \
        datetime(2030, 3, 1, 0, 0, tzinfo=UTC)  # 30 January in UTC: ends with 28 February (Thu), UTC


def test_shipped_months_across_holidays_and_make_up_days(shipped):
    # 1 September 2026 + 1 month = 1 October, National Day: the first working day after is 8 October.
    assert shipped.deadline(sh(2026, 9, 1, 10), 1, "months") == end_of(2026, 10, 8)
    # 28 January 2026 + 1 month = Saturday 28 February, a make-up working day: not moved.
    assert shipped.deadline(sh(2026, 1, 28, 10), 1, "months") == end_of(2026, 2, 28)
    # 31 January 2026 + 1 month = 28 February as well (no 31 February).
    assert shipped.deadline(sh(2026, 1, 31, 10), 1, "months") == end_of(2026, 2, 28)
    # 1 September 2025 + 1 month = 1 October 2025, inside 1-8 October: Thursday 9 October.
    assert shipped.deadline(sh(2025, 9, 1, 10), 1, "months") == end_of(2025, 10, 9)
    # 28 February 2026 + 1 month = Saturday 28 March: Monday 30 March.
    assert shipped.deadline(sh(2026, 2, 28, 10), 1, "months") == end_of(2026, 3, 30)


# -- the shipped calendar at every holiday of 2025 and 2026 -----------------------------------------

@pytest.mark.parametrize("start, limit, end", [
    # 2025 元旦 (1 January): a start in 2024 is fine when no day of 2024 has to be judged.
    (date(2024, 12, 30), 2, date(2025, 1, 2)),
    (date(2024, 12, 30), 3, date(2025, 1, 2)),
    # 2025 清明 4-6 April.
    (date(2025, 4, 1), 3, date(2025, 4, 7)),
    (date(2025, 4, 1), 6, date(2025, 4, 7)),
    (date(2025, 4, 3), 1, date(2025, 4, 7)),
    # 2025 劳动节 1-5 May, make-up Sunday 27 April.
    (date(2025, 4, 28), 3, date(2025, 5, 6)),
    (date(2025, 4, 24), 3, date(2025, 4, 27)),
    (date(2025, 4, 30), 5, date(2025, 5, 6)),
    # 2025 端午 31 May - 2 June.
    (date(2025, 5, 28), 3, date(2025, 6, 3)),
    # 2025 国庆、中秋 1-8 October, make-up Sunday 28 September and Saturday 11 October.
    (date(2025, 9, 25), 3, date(2025, 9, 28)),
    (date(2025, 9, 30), 1, date(2025, 10, 9)),
    (date(2025, 10, 8), 3, date(2025, 10, 11)),
    (date(2025, 10, 9), 3, date(2025, 10, 13)),
    # 2026 元旦 1-3 January, make-up Sunday 4 January: across the year end.
    (date(2025, 12, 29), 3, date(2026, 1, 4)),
    (date(2025, 12, 31), 2, date(2026, 1, 4)),
    (date(2026, 1, 2), 3, date(2026, 1, 5)),
    # 2026 春节 15-23 February, make-up Saturdays 14 and 28 February.
    (date(2026, 2, 11), 3, date(2026, 2, 14)),
    (date(2026, 2, 12), 3, date(2026, 2, 24)),
    (date(2026, 2, 23), 5, date(2026, 2, 28)),
    # 2026 清明 4-6 April.
    (date(2026, 4, 1), 3, date(2026, 4, 7)),
    # 2026 劳动节 1-5 May, make-up Saturday 9 May.
    (date(2026, 4, 28), 3, date(2026, 5, 6)),
    (date(2026, 5, 6), 3, date(2026, 5, 9)),
    # 2026 端午 19-21 June.
    (date(2026, 6, 16), 3, date(2026, 6, 22)),
    # 2026 中秋 25-27 September, make-up Sunday 20 September.
    (date(2026, 9, 22), 3, date(2026, 9, 28)),
    (date(2026, 9, 17), 3, date(2026, 9, 20)),
    # 2026 国庆 1-7 October, make-up Saturday 10 October.
    (date(2026, 10, 4), 3, date(2026, 10, 8)),
    (date(2026, 10, 7), 3, date(2026, 10, 10)),
    # The end of 2026, still inside the calendar.
    (date(2026, 12, 28), 3, date(2026, 12, 31)),
])
def test_shipped_holiday_boundaries(shipped, start, limit, end):
    assert shipped.deadline(sh(start.year, start.month, start.day, 10), limit, "days") == \
        end_of(end.year, end.month, end.day)


@pytest.mark.parametrize("start, limit, end", [
    (date(2025, 10, 5), 3, date(2025, 10, 9)),    # a Sunday inside National Day
    (date(2025, 10, 5), 1, date(2025, 10, 9)),
    (date(2025, 9, 27), 3, date(2025, 9, 30)),    # an ordinary Saturday
    (date(2026, 12, 26), 2, date(2026, 12, 28)),  # a Saturday, day 2 is Monday
    (date(2026, 2, 21), 0, date(2026, 2, 24)),    # limit 0 on a holiday: the next working day
])
def test_a_start_on_a_rest_day_counts_from_the_next_day(shipped, start, limit, end):
    assert shipped.deadline(sh(start.year, start.month, start.day, 10), limit, "days") == \
        end_of(end.year, end.month, end.day)


def test_make_up_working_days_are_working_days_in_the_shipped_calendar(shipped):
    for day in shipped.workdays:
        assert day.weekday() >= 5 and shipped.is_working_day(day)
        assert shipped.next_working_day(day) == day
    for day in shipped.holidays:
        assert not shipped.is_working_day(day)


# -- beyond the years a calendar covers: a visible condition, never a guess -----------------------

def test_counting_into_a_year_the_calendar_does_not_cover_raises_calendar_missing(shipped):
    # The example: 30 days from 2 December 2026 end with 1 January 2027, a year with no data.
    with pytest.raises(CalendarMissing) as caught:
        shipped.deadline(sh(2026, 12, 2, 10), 30, "days")
    assert caught.value.year == 2027 and caught.value.covered == (2025, 2026)
    assert caught.value.rule == "calendar.missing"
    assert isinstance(caught.value, CalendarError)
    assert "2027" in str(caught.value) and "2025, 2026" in str(caught.value)
    with pytest.raises(CalendarMissing, match="2027"):
        shipped.deadline(sh(2026, 12, 28, 10), 4, "days")    # 1 January 2027
    with pytest.raises(CalendarMissing, match="2027"):
        shipped.deadline(sh(2026, 12, 2, 10), 1, "months")   # 2 January 2027


def test_dates_before_the_calendar_are_missing_too(shipped):
    # 2024 had make-up days the weekends-only guess would get wrong (29 September 2024, a Sunday).
    with pytest.raises(CalendarMissing) as caught:
        shipped.deadline(sh(2024, 9, 26, 10), 3, "days")
    assert caught.value.year == 2024
    with pytest.raises(CalendarMissing, match="2024"):
        shipped.deadline(sh(2024, 12, 31, 10), 0, "days")    # the starting day itself is judged
    with pytest.raises(CalendarMissing, match="2024"):
        shipped.is_working_day(date(2024, 10, 8))


def test_moving_past_the_last_covered_day_is_missing():
    last_day_off = Calendar(holidays=[date(2030, 12, 31)], workdays=[], years=[2030])
    with pytest.raises(CalendarMissing) as caught:
        last_day_off.deadline(sh(2030, 12, 30, 9), 1, "days")  # moves to 1 January 2031
    assert caught.value.year == 2031


def test_a_calendar_without_data_covers_no_year():
    nothing = Calendar([], [])
    assert nothing.covered_years == frozenset()
    with pytest.raises(CalendarMissing, match="no year"):
        nothing.deadline(sh(2030, 3, 4), 1, "days")


def test_hours_beyond_the_calendar_are_counted(shipped):
    assert shipped.deadline(sh(2027, 1, 1, 16, 25), 24, "hours") == sh(2027, 1, 2, 17, 0)


def test_explicit_years_cover_a_year_without_listed_days_and_survive_a_new_time_zone():
    cal = Calendar.from_data({"years": [2030, 2031], "holidays": ["2030-10-01"], "workdays": []})
    assert cal.covered_years == {2030, 2031}
    assert cal.is_working_day(date(2031, 3, 4))
    assert cal.missing_years([2030, 2031, 2032]) == [2032]
    moved = cal.with_timezone("UTC")
    assert moved.timezone == "UTC" and moved.covered_years == {2030, 2031} and moved.holidays == cal.holidays
