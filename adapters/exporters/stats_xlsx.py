"""The office's statistics as an Excel workbook (openpyxl).

Sheets:

* ``统计 Statistics``: the same columns as the CSV (``stats_csv.COLUMNS``), one row per agency
  and the total row. Numbers are numbers: counts and seconds as integers, the completion rate
  as a fraction with four places shown as a percentage, money as yuan (a ``Decimal`` computed
  from integer fen, never through a float) shown ``#,##0.00``.
* ``超期 Overdue``: the steps passed in ``overdue_steps`` (``snapshot.StepAt``, e.g.
  ``stats.overdue_steps(snapshot)``) that are open and past due at their ``as_of``, most overdue
  first; others passed are left out. Date-times are written in the report's local time zone
  (Excel has no time zones), named in the header.
* ``趋势 Trend``: one row per local day of the period.
* ``按时率 On time``: the on-time rate of each rule per agency, and per rule in total.
* ``说明 About``: the period, ``as_of`` and the time zone of the report.

Every sheet has a bold, frozen header row and column widths fitted to the contents.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from decimal import Decimal
from typing import Sequence, Union

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from services.office.snapshot import StepAt
from services.office.stats import StatsReport, rfc3339, tz_name

from .stats_csv import COLUMNS, COUNT, MEDIAN, MONEY, RATE, SECONDS, cell_value, rows

STATISTICS_SHEET = "统计 Statistics"
OVERDUE_SHEET = "超期 Overdue"
ON_TIME_SHEET = "按时率 On time"
TREND_SHEET = "趋势 Trend"
ABOUT_SHEET = "说明 About"

MONEY_FORMAT = "#,##0.00"
COUNT_FORMAT = "#,##0"
RATE_FORMAT = "0.00%"
MEDIAN_FORMAT = "#,##0.0"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
DATE_FORMAT = "yyyy-mm-dd"
DAYS_FORMAT = "0.00"

_FORMATS = {COUNT: COUNT_FORMAT, SECONDS: COUNT_FORMAT, MEDIAN: MEDIAN_FORMAT, RATE: RATE_FORMAT,
            MONEY: MONEY_FORMAT}
_BOLD = Font(bold=True)
_MAX_WIDTH = 48


def write_xlsx(report: StatsReport, path: Union[str, os.PathLike], overdue_steps: Sequence[StepAt] = (),
               as_of: datetime | None = None) -> None:
    as_of = as_of or report.as_of
    workbook = Workbook()
    _statistics(workbook.active, report)
    _overdue(workbook.create_sheet(OVERDUE_SHEET), report, overdue_steps)
    _trend(workbook.create_sheet(TREND_SHEET), report)
    _on_time(workbook.create_sheet(ON_TIME_SHEET), report)
    _about(workbook.create_sheet(ABOUT_SHEET), report, as_of)
    workbook.properties.title = (f"cluebus statistics {rfc3339(report.period_from)} - "
                                 f"{rfc3339(report.period_to)}")
    workbook.save(os.fspath(path))


def _statistics(sheet, report: StatsReport) -> None:
    sheet.title = STATISTICS_SHEET
    _header(sheet, [header for _, header, _ in COLUMNS])
    all_rows = rows(report)
    for index, stats in enumerate(all_rows, start=2):
        for column, (name, _, kind) in enumerate(COLUMNS, start=1):
            cell = sheet.cell(row=index, column=column, value=cell_value(stats, name, kind))
            if kind in _FORMATS:
                cell.number_format = _FORMATS[kind]
            if stats is report.totals:
                cell.font = _BOLD
    _finish(sheet)


def _overdue(sheet, report: StatsReport, steps: Sequence[StepAt]) -> None:
    zone = tz_name(report.tz)
    _header(sheet, ["step_id", "rule (规则)", "referral_id (线索)", "late_agency (责任单位)",
                    "counterpart (等待单位)", f"started_at (开始 {zone})", f"due_at (期限 {zone})",
                    "overdue_seconds (超期 秒)", "overdue_days (超期 天)"])
    chosen = sorted((step for step in steps if step.open_overdue), key=lambda step: (step.due_at, step.step_id))
    for index, step in enumerate(chosen, start=2):
        seconds = step.overdue_seconds
        values = [step.step_id, step.rule, step.referral_id, step.late_agency, step.counterpart,
                  _local(step.started_at, report), _local(step.due_at, report), seconds,
                  round(seconds / 86400, 2)]
        for column, value in enumerate(values, start=1):
            cell = sheet.cell(row=index, column=column, value=value)
            if column in (6, 7):
                cell.number_format = DATETIME_FORMAT
            elif column == 8:
                cell.number_format = COUNT_FORMAT
            elif column == 9:
                cell.number_format = DAYS_FORMAT
    _finish(sheet)


ON_TIME_COLUMNS = (("rule", "rule (规则)", None), ("agency", "agency (责任单位)", None),
                   ("steps_due", "steps_due (应办)", COUNT_FORMAT), ("on_time", "on_time (按时办结)", COUNT_FORMAT),
                   ("late", "closed_late (逾期办结)", COUNT_FORMAT),
                   ("open_overdue", "open_overdue (超期未办)", COUNT_FORMAT),
                   ("ended_overdue", "ended_overdue (超期后终止)", COUNT_FORMAT),
                   ("on_time_rate", "on_time_rate (按时率)", RATE_FORMAT),
                   ("median_seconds_late", "median_seconds_late (逾期中位数 秒)", MEDIAN_FORMAT),
                   ("max_seconds_late", "max_seconds_late (最长逾期 秒)", COUNT_FORMAT),
                   ("steps", "steps (全部环节)", COUNT_FORMAT), ("open", "open (未办)", COUNT_FORMAT),
                   ("ended", "ended (终止)", COUNT_FORMAT))


def _on_time(sheet, report: StatsReport) -> None:
    _header(sheet, [header for _, header, _ in ON_TIME_COLUMNS])
    for index, entry in enumerate(report.on_time, start=2):
        for column, (name, _, number_format) in enumerate(ON_TIME_COLUMNS, start=1):
            value = getattr(entry, name)
            if name == "on_time_rate" and value is not None:
                value = round(value, 4)
            cell = sheet.cell(row=index, column=column, value=value)
            if number_format:
                cell.number_format = number_format
            if entry.agency == "total":
                cell.font = _BOLD
    _finish(sheet)


TREND_COLUMNS = (("transfers", "transfers (移送)"), ("steps_due", "steps_due (当日到期环节)"),
                 ("steps_on_time", "steps_on_time (按时办结)"), ("steps_closed_late", "steps_closed_late (逾期办结)"),
                 ("steps_ended_overdue", "steps_ended_overdue (超期后终止)"),
                 ("steps_open_overdue", "steps_open_overdue (超期未办)"))


def _trend(sheet, report: StatsReport) -> None:
    _header(sheet, ["day (日期)", *(header for _, header in TREND_COLUMNS)])
    for index, entry in enumerate(report.trend, start=2):
        day = sheet.cell(row=index, column=1, value=date.fromisoformat(entry["day"]))
        day.number_format = DATE_FORMAT
        for column, (key, _) in enumerate(TREND_COLUMNS, start=2):
            sheet.cell(row=index, column=column, value=entry[key]).number_format = COUNT_FORMAT
    _finish(sheet)


def _about(sheet, report: StatsReport, as_of: datetime) -> None:
    _header(sheet, ["item (项目)", "value (值)"])
    entries = [
        ("period_from (统计起始, UTC)", rfc3339(report.period_from)),
        ("period_to (统计截止 不含, UTC)", rfc3339(report.period_to)),
        ("as_of (数据截至, UTC)", rfc3339(report.as_of)),
        ("overdue as_of (超期计算时点, UTC)", rfc3339(as_of)),
        ("timezone (日期时区)", tz_name(report.tz)),
        ("definitions (口径)", "docs/office.md §7, services/office/stats.py"),
    ]
    for index, (key, value) in enumerate(entries, start=2):
        sheet.cell(row=index, column=1, value=key)
        sheet.cell(row=index, column=2, value=value)
    _finish(sheet)


def _local(moment: datetime, report: StatsReport) -> datetime:
    return moment.astimezone(report.tz).replace(tzinfo=None)


def _header(sheet, headers: Sequence[str]) -> None:
    for column, text in enumerate(headers, start=1):
        cell = sheet.cell(row=1, column=column, value=text)
        cell.font = _BOLD
        cell.alignment = Alignment(vertical="center")
    sheet.freeze_panes = "A2"


def _finish(sheet) -> None:
    for column_cells in sheet.iter_cols(min_row=1, max_row=sheet.max_row):
        width = max((_display_width(cell) for cell in column_cells), default=8)
        letter = get_column_letter(column_cells[0].column)
        sheet.column_dimensions[letter].width = min(_MAX_WIDTH, max(8, width + 2))


def _display_width(cell) -> int:
    value = cell.value
    if value is None:
        return 0
    if isinstance(value, datetime):
        return 19
    if isinstance(value, date):
        return 10
    if isinstance(value, (int, float, Decimal)):
        return len(f"{value:,}") + 1
    # East Asian characters take two columns.
    return sum(2 if ord(char) > 0x2E80 else 1 for char in str(value))
