"""The office's statistics as CSV: one row per agency, then the total row.

The header names each column in English, with the Chinese term in parentheses where one is
natural. Counts and seconds are integers; medians are seconds (an integer, or ``.5`` for the
middle of two); rates (completion, on time) are decimal strings with four places (``0.7400``),
rounded half up from the exact fraction; money is yuan with two places (``1234.50``) computed
from integer fen without any float. An empty cell means "no value" (e.g. a median with no
closed step, a rate with nothing received).

Written to a path, the file is UTF-8 with a byte-order mark (so that spreadsheet programs show
the Chinese), with CRLF line ends as RFC 4180 has them. Written to an open text file, it is
written as is: open it with ``newline=""``.
"""

from __future__ import annotations

import csv
import os
from decimal import Decimal
from typing import IO, Union

from services.office.stats import RATES, AgencyStats, StatsReport

TEXT = "text"
COUNT = "count"
SECONDS = "seconds"
MEDIAN = "median"
RATE = "rate"
MONEY = "money"

# (AgencyStats field, header, kind), in column order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("agency", "agency (单位)", TEXT),
    ("transfers_sent", "transfers_sent (移送)", COUNT),
    ("transfers_received", "transfers_received (接收移送)", COUNT),
    ("receipts_on_time", "receipts_on_time (按时回执)", COUNT),
    ("receipts_late", "receipts_late (超时回执)", COUNT),
    ("receipts_ended", "receipts_ended (终止 回执)", COUNT),
    ("receipts_open", "receipts_open (未回执)", COUNT),
    ("decisions_on_time", "decisions_on_time (按时决定)", COUNT),
    ("decisions_late", "decisions_late (超时决定)", COUNT),
    ("decisions_ended", "decisions_ended (终止 决定)", COUNT),
    ("decisions_open", "decisions_open (未决定)", COUNT),
    ("feedback_on_time", "feedback_on_time (按时反馈)", COUNT),
    ("feedback_late", "feedback_late (超时反馈)", COUNT),
    ("feedback_ended", "feedback_ended (终止 反馈)", COUNT),
    ("feedback_open", "feedback_open (未反馈)", COUNT),
    ("transfer_steps_on_time", "transfer_steps_on_time (按时审批移送)", COUNT),
    ("transfer_steps_late", "transfer_steps_late (超时审批移送)", COUNT),
    ("transfer_steps_ended", "transfer_steps_ended (终止 审批移送)", COUNT),
    ("transfer_steps_open", "transfer_steps_open (未审批移送)", COUNT),
    ("steps_on_time", "steps_on_time (全部环节按时)", COUNT),
    ("steps_late", "steps_late (全部环节逾期办结)", COUNT),
    ("steps_ended", "steps_ended (全部环节终止)", COUNT),
    ("steps_open", "steps_open (全部环节未办)", COUNT),
    ("steps_ended_overdue", "steps_ended_overdue (超期后终止)", COUNT),
    ("steps_due", "steps_due (应办)", COUNT),
    ("on_time_rate", "on_time_rate (按时率)", RATE),
    ("open_overdue_steps", "open_overdue_steps (超期未办)", COUNT),
    ("max_overdue_seconds", "max_overdue_seconds (最长超期 秒)", SECONDS),
    ("total_overdue_seconds", "total_overdue_seconds (超期合计 秒)", SECONDS),
    ("median_seconds_late", "median_seconds_late (逾期办结 逾期中位数 秒)", MEDIAN),
    ("max_seconds_late", "max_seconds_late (逾期办结 最长逾期 秒)", SECONDS),
    ("total_seconds_late", "total_seconds_late (逾期办结 逾期合计 秒)", SECONDS),
    ("median_seconds_to_receipt", "median_seconds_to_receipt (回执用时中位数 秒)", MEDIAN),
    ("median_seconds_to_decision", "median_seconds_to_decision (决定用时中位数 秒)", MEDIAN),
    ("median_seconds_to_feedback", "median_seconds_to_feedback (反馈用时中位数 秒)", MEDIAN),
    ("cases_opened", "cases_opened (立案)", COUNT),
    ("cases_refused", "cases_refused (不予立案)", COUNT),
    ("cases_forwarded", "cases_forwarded (移送主管机关)", COUNT),
    ("cases_unknown", "cases_unknown (结果未知)", COUNT),
    ("referrals_received", "referrals_received (受理)", COUNT),
    ("referrals_completed", "referrals_completed (办结)", COUNT),
    ("referrals_ended", "referrals_ended (未办而终止)", COUNT),
    ("referrals_pending", "referrals_pending (在办)", COUNT),
    ("completion_rate", "completion_rate (办结率)", RATE),
    ("funds_recovered_fen", "funds_recovered_yuan (已追回资金 元)", MONEY),
    ("funds_to_recover_fen", "funds_to_recover_yuan (判决应追回 元)", MONEY),
    ("rewards_paid_fen", "rewards_paid_yuan (奖励发放 元)", MONEY),
)

HEADERS = tuple(header for _, header, _ in COLUMNS)

_CENT = Decimal("0.01")
_RATE_PLACES = 4


def fen_to_yuan(fen: int) -> Decimal:
    """Exact yuan with two places, from integer fen (never through a float)."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"money must be integer fen, not {fen!r}")
    return Decimal(fen_to_yuan_text(fen))


def fen_to_yuan_text(fen: int) -> str:
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"money must be integer fen, not {fen!r}")
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{cents:02d}"


def rate_decimal(numerator: int, denominator: int) -> Decimal | None:
    """``numerator / denominator`` rounded half up to four places, exactly; None for 0/0."""
    if denominator == 0:
        return None
    scale = 10 ** _RATE_PLACES
    quotient, remainder = divmod(numerator * scale, denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return Decimal(quotient).scaleb(-_RATE_PLACES).quantize(Decimal(1).scaleb(-_RATE_PLACES))


def median_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def cell_value(stats: AgencyStats, name: str, kind: str):
    """The typed value of one cell: str, int, float, Decimal or None."""
    if kind == RATE:
        numerator, denominator = RATES[name]
        return rate_decimal(getattr(stats, numerator), getattr(stats, denominator))
    value = getattr(stats, name)
    if kind == MONEY:
        return fen_to_yuan(value)
    return value


def cell_text(stats: AgencyStats, name: str, kind: str) -> str:
    if kind == MONEY:
        return fen_to_yuan_text(getattr(stats, name))
    if kind == MEDIAN:
        return median_text(getattr(stats, name))
    value = cell_value(stats, name, kind)
    return "" if value is None else str(value)


def rows(report: StatsReport) -> list[AgencyStats]:
    return [*report.agencies, report.totals]


def write_csv(report: StatsReport, path_or_file: Union[str, os.PathLike, IO[str]]) -> None:
    """One header row, one row per agency, then the total row."""
    if hasattr(path_or_file, "write"):
        _write(report, path_or_file)
        return
    with open(path_or_file, "w", encoding="utf-8-sig", newline="") as handle:
        _write(report, handle)


def _write(report: StatsReport, handle: IO[str]) -> None:
    writer = csv.writer(handle, lineterminator="\r\n")
    writer.writerow(HEADERS)
    for stats in rows(report):
        writer.writerow([cell_text(stats, name, kind) for name, _, kind in COLUMNS])
