"""A developer's cross-check of the shipped working-day calendar (services/office/holidays_cn.yaml)
against independent data: the ``chinese-calendar`` package (PyPI ``chinesecalendar``, imported as
``chinese_calendar``), for every year both cover, day by day.

Not run without the package (CI does not install it): install the dev extra
``pip install -e '.[calendar-check]'`` and run ``pytest tests/unit/test_calendar_crosscheck.py``
whenever a year is added to holidays_cn.yaml. The package is a second reading of the same State
Council notices, not an authority over them: when the two disagree, check the notice itself.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.office.calendar import Calendar

chinese_calendar = pytest.importorskip("chinese_calendar")
from chinese_calendar import constants  # noqa: E402  (after the skip)

SHIPPED = Calendar.from_yaml(None)
PACKAGE_YEARS = frozenset(day.year for day in constants.holidays) & frozenset(day.year for day in constants.workdays)
BOTH = sorted(SHIPPED.covered_years & PACKAGE_YEARS)


def test_the_package_and_the_shipped_file_share_years():
    assert BOTH, f"no year in common: shipped {sorted(SHIPPED.covered_years)}, package {sorted(PACKAGE_YEARS)}"


@pytest.mark.parametrize("year", BOTH)
def test_every_day_of_the_year_is_a_working_day_in_both_or_in_neither(year):
    day, differences = date(year, 1, 1), []
    while day.year == year:
        ours, theirs = SHIPPED.is_working_day(day), chinese_calendar.is_workday(day)
        if ours != theirs:
            differences.append(f"{day} ({day:%a}): shipped {'working' if ours else 'off'}, "
                               f"chinese-calendar {'working' if theirs else 'off'}")
        day += timedelta(days=1)
    assert differences == []


@pytest.mark.parametrize("year", BOTH)
def test_the_listed_days_off_and_make_up_days_are_the_same(year):
    assert sorted(d for d in SHIPPED.holidays if d.year == year) == \
        sorted(d for d in constants.holidays if d.year == year)
    assert sorted(d for d in SHIPPED.workdays if d.year == year) == \
        sorted(d for d in constants.workdays if d.year == year)
