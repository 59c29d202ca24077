"""The joint-meeting office's statistics (报表台账), computed from what the office observed.

Plain Python, no Nameko, no database: ``compute_stats`` takes the observed messages (signed
metadata plus non-personal facts, see ``model.py``) and the deadline steps, and returns a
``StatsReport`` with one row per agency and a total row. Figures must be consistent: nothing
left out and nothing counted twice (不漏报、不多报). Every figure is defined below; the
exporters (``adapters/exporters``) only format these numbers.

Snapshot
    A report is what the office knew **at ``as_of``**. Messages sent after ``as_of`` are
    ignored, steps started after ``as_of`` are ignored, and a step closed after ``as_of``
    counts as open. Re-running a report for the same period and ``as_of`` therefore gives the
    same figures, whatever happened later. ``as_of`` must not precede ``period_from``.
    Messages are deduplicated by ``message_id`` and steps by ``step_id`` (two different records
    under one id are an error).

Period
    The period is the half-open interval ``[period_from, period_to)``. Each item belongs to
    exactly one period, through ONE timestamp named per figure below, so that reports for
    consecutive periods add up.

Rows
    One row per agency in ``agencies`` (in that order, even when all zero); an agency that
    appears in a counted item but is not listed gets a row of its own, appended in code order,
    so that nothing counted is dropped. The total row (``agency="total"``) is the sum of the
    agency rows for every additive figure (all counts, all second totals and all money);
    ``max_overdue_seconds`` is the maximum over the rows; ``completion_rate`` is the total
    completed over the total received; medians are taken over all the steps of the group
    pooled together (never a median of medians).

Figures (each counted once, for one agency)
    transfers_sent / transfers_received
        ``clue_transfer`` and ``case_transfer`` messages whose ``sent_at`` is in the period:
        each counts once for its sender (sent) and once for its recipient (received), so the
        total of each column is the number of transfers. Copies to the procuratorate
        (``copy_notice``) are not transfers.
    steps (receipts_*, decisions_*, feedback_*, transfer_steps_*, steps_*)
        A step belongs to the period by its ``started_at`` and is counted once, for its
        ``late_agency`` (who must act). Groups by rule: receipts = ``receipt``; decisions =
        ``DECISION_RULES``; feedback = ``FEEDBACK_RULES``; transfer_steps = ``TRANSFER_RULES``
        (the interval rules: approval within 3 days, transfer within 24 hours of approval).
        ``steps_*`` count every step of every rule, including rules in no group, so
        ``steps_x`` = receipts_x + decisions_x + feedback_x + transfer_steps_x + (other rules).
        on_time = closed (by ``as_of``) at or before ``due_at``; late = closed after ``due_at``;
        open = not closed by ``as_of``. Every step is exactly one of the three.
    open_overdue_steps, max_overdue_seconds, total_overdue_seconds
        Steps of the period (any rule) that are open with ``due_at < as_of``; their lateness is
        ``as_of - due_at`` in whole seconds (floored). Max and total are over those steps only
        (0 when there are none). Lateness of steps that were closed late is not included here;
        it shows in the ``*_late`` counts and in the medians.
    median_seconds_to_receipt / _to_decision / _to_feedback
        Median of ``closed_at - started_at`` (whole seconds, floored) over the steps of the
        period of the respective group that were closed by ``as_of``; ``None`` when there are
        none. Open steps are not in the medians.
    cases_opened / cases_refused / cases_forwarded / cases_unknown
        Counted per (police agency, referral): the filing decisions (``filing_decision``) and
        reconsideration answers (``reconsideration_decision``) that one sender sent in one
        referral form one *case decision*. It belongs to the period of its FIRST such message
        and is counted once, for that sender. Its outcome is that of its LATEST message by
        ``as_of``: ``filed`` or a reconsideration ``reversed`` = opened (立案); ``not_filed`` or
        ``upheld`` = refused (不予立案); ``not_competent`` = forwarded (移送主管机关); a sealed
        body, or no known value = unknown. So a refusal later reversed counts once, as opened,
        and opened + refused + forwarded + unknown = case decisions.
    referrals_received / referrals_completed / completion_rate (办结率)
        A referral received by an agency is a pair (agency, ``referral_id``) for which the
        agency was the recipient of a ``clue_transfer`` or ``case_transfer``; it belongs to the
        period of the FIRST such transfer to that agency in that referral. It is completed
        (办结) when, at or after that first transfer and by ``as_of``, either the agency sent a
        closing answer in the referral (``CLOSING_ANSWER_KINDS``: filing_decision,
        handling_result, invoice_verification_result, prosecution_decision, judgment), or
        anyone sent a ``closure`` in the referral (it closes the whole referral), or a
        ``withdrawal`` in the referral was addressed to the agency (what was sent to it was
        withdrawn). Sealed messages count (only their kind is needed).
        completion_rate = referrals_completed / referrals_received (``None`` when nothing was
        received); a period's cohort may still complete after the period ends, up to ``as_of``.
    funds_recovered_fen (追回资金)
        ONE amount per referral, from its latest message (by ``as_of``) with a known amount, in
        this order of preference: a ``closure`` with ``amount_recovered_fen``; else a
        ``handling_result`` with ``amount_recovered_fen``; else a ``judgment`` with
        ``amount_to_recover_fen``. The amount is counted for the sender of that message and in
        the period of that message's ``sent_at``. So a judgment sent to three agencies counts
        once, and a closure after a judgment replaces the judgment's amount rather than adding
        to it. Sealed bodies give no amount (the figure is then a lower bound).
    rewards_paid_fen (奖励发放)
        The ``reward_fen`` of every ``reward_payment`` sent in the period, for its sender.
    Money is integer fen throughout; a non-integer amount is refused (``ValueError``).

Trend
    One entry per local calendar day (time zone ``tz``, default Asia/Shanghai) from the day of
    ``period_from`` to the day of the last instant before ``period_to``: ``transfers`` = the
    transfers above sent that day (so they add up to ``transfers_sent``); ``steps_due`` = the
    steps known at ``as_of`` (any rule) whose ``due_at`` falls that day, wherever they started:
    a trend entry is a day of deadlines, so here a step belongs to the day of its ``due_at``
    (each deadline is in exactly one day of one report; the step counts above, by
    ``started_at``, are a different cut and need not add up to the trend);
    ``steps_overdue`` = those of them that missed it (closed late, or open with ``due_at <
    as_of``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Iterable, Sequence

from .model import ObservedMessage, Step

try:  # the calendar's default zone; China has kept UTC+8 without daylight saving since 1991
    from zoneinfo import ZoneInfo

    LOCAL_TZ: tzinfo = ZoneInfo("Asia/Shanghai")
except Exception:  # pragma: no cover - no tz database on this machine
    LOCAL_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

TOTAL = "total"

RECEIPT_RULES = ("receipt",)
DECISION_RULES = ("filing_decision", "reconsideration_decision", "prosecution_decision")
FEEDBACK_RULES = ("handling_result", "invoice_verification", "materials_handover")
TRANSFER_RULES = ("approve_transfer", "transfer_after_approval")

# Rule -> the prefix of its on_time/late/open columns.
RULE_GROUPS = {
    **{rule: "receipts" for rule in RECEIPT_RULES},
    **{rule: "decisions" for rule in DECISION_RULES},
    **{rule: "feedback" for rule in FEEDBACK_RULES},
    **{rule: "transfer_steps" for rule in TRANSFER_RULES},
}
GROUPS = ("receipts", "decisions", "feedback", "transfer_steps")
STATUSES = ("on_time", "late", "open")

TRANSFER_KINDS = ("clue_transfer", "case_transfer")
CLOSING_ANSWER_KINDS = ("filing_decision", "handling_result", "invoice_verification_result",
                        "prosecution_decision", "judgment")
CLOSURE = "closure"
WITHDRAWAL = "withdrawal"

# Case decisions: (kind, fact name) and fact value -> outcome.
CASE_DECISION_KINDS = {"filing_decision": "decision", "reconsideration_decision": "outcome"}
CASE_OUTCOMES = {
    ("filing_decision", "filed"): "opened",
    ("filing_decision", "not_filed"): "refused",
    ("filing_decision", "not_competent"): "forwarded",
    ("reconsideration_decision", "reversed"): "opened",
    ("reconsideration_decision", "upheld"): "refused",
}

# Funds recovered: the sources of a referral's one amount, most preferred first.
FUNDS_SOURCES = (("closure", "amount_recovered_fen"),
                 ("handling_result", "amount_recovered_fen"),
                 ("judgment", "amount_to_recover_fen"))
REWARD_PAYMENT = ("reward_payment", "reward_fen")

_ONE_SECOND = timedelta(seconds=1)


@dataclass
class AgencyStats:
    agency: str
    transfers_sent: int = 0
    transfers_received: int = 0
    receipts_on_time: int = 0
    receipts_late: int = 0
    receipts_open: int = 0
    decisions_on_time: int = 0
    decisions_late: int = 0
    decisions_open: int = 0
    feedback_on_time: int = 0
    feedback_late: int = 0
    feedback_open: int = 0
    transfer_steps_on_time: int = 0
    transfer_steps_late: int = 0
    transfer_steps_open: int = 0
    steps_on_time: int = 0
    steps_late: int = 0
    steps_open: int = 0
    cases_opened: int = 0
    cases_refused: int = 0
    cases_forwarded: int = 0
    cases_unknown: int = 0
    referrals_received: int = 0
    referrals_completed: int = 0
    completion_rate: float | None = None
    open_overdue_steps: int = 0
    max_overdue_seconds: int = 0
    total_overdue_seconds: int = 0
    median_seconds_to_receipt: float | None = None
    median_seconds_to_decision: float | None = None
    median_seconds_to_feedback: float | None = None
    funds_recovered_fen: int = 0
    rewards_paid_fen: int = 0


# Figures whose total is the sum over the agencies (counts, second totals, money).
ADDITIVE_FIELDS = tuple(f.name for f in fields(AgencyStats)
                        if f.type in ("int", int) and f.name != "max_overdue_seconds")
MEDIAN_FIELDS = {"receipts": "median_seconds_to_receipt", "decisions": "median_seconds_to_decision",
                 "feedback": "median_seconds_to_feedback"}


@dataclass
class StatsReport:
    period_from: datetime
    period_to: datetime
    as_of: datetime
    agencies: list[AgencyStats]
    totals: AgencyStats
    trend: list[dict]
    tz: tzinfo = field(default=LOCAL_TZ)

    def row(self, agency: str) -> AgencyStats:
        if agency == TOTAL:
            return self.totals
        for row in self.agencies:
            if row.agency == agency:
                return row
        raise KeyError(agency)

    def to_json(self) -> dict:
        """JSON-native: datetimes as ``YYYY-MM-DDTHH:MM:SSZ``, money as integer fen."""
        return {
            "period_from": rfc3339(self.period_from),
            "period_to": rfc3339(self.period_to),
            "as_of": rfc3339(self.as_of),
            "timezone": tz_name(self.tz),
            "agencies": [asdict(row) for row in self.agencies],
            "totals": asdict(self.totals),
            "trend": [dict(entry) for entry in self.trend],
        }


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC to the second (fractions of a second are dropped)."""
    _check_aware(moment, "timestamp")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tz_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def compute_stats(messages: Sequence[ObservedMessage], steps: Sequence[Step], *,
                  period_from: datetime, period_to: datetime, as_of: datetime,
                  agencies: Sequence[str], tz: tzinfo = LOCAL_TZ) -> StatsReport:
    """The office's figures for ``[period_from, period_to)`` as known at ``as_of``.

    See the module docstring for the exact definition of every figure.
    """
    for name, value in (("period_from", period_from), ("period_to", period_to), ("as_of", as_of)):
        _check_aware(value, name)
    if period_to <= period_from:
        raise ValueError("period_to must be after period_from")
    if as_of < period_from:
        raise ValueError("as_of must not precede period_from (nothing of the period is known yet)")
    if TOTAL in agencies:
        raise ValueError(f"{TOTAL!r} is reserved for the total row")

    known = [m for m in _unique(messages, "message_id", "message") if m.sent_at <= as_of]
    step_list = [s for s in _unique(steps, "step_id", "step") if s.started_at <= as_of]

    def in_period(moment: datetime) -> bool:
        return period_from <= moment < period_to

    rows: dict[str, AgencyStats] = {code: AgencyStats(code) for code in agencies}

    def row(code: str) -> AgencyStats:
        if code not in rows:
            rows[code] = AgencyStats(code)
        return rows[code]

    days = _days(period_from, period_to, tz)
    trend = {day: {"day": day.isoformat(), "transfers": 0, "steps_due": 0, "steps_overdue": 0} for day in days}

    def local_day(moment: datetime) -> date:
        return moment.astimezone(tz).date()

    # Transfers.
    for message in known:
        if message.kind in TRANSFER_KINDS and in_period(message.sent_at):
            row(message.sender).transfers_sent += 1
            row(message.recipient).transfers_received += 1
            trend[local_day(message.sent_at)]["transfers"] += 1

    # Steps.
    durations: dict[tuple[str, str], list[int]] = defaultdict(list)   # (agency, group) -> seconds
    for step in step_list:
        if not in_period(step.started_at):
            continue
        stats = row(step.late_agency)
        closed = step.closed_at is not None and step.closed_at <= as_of
        if closed:
            status = "on_time" if step.closed_at <= step.due_at else "late"
        else:
            status = "open"
        group = RULE_GROUPS.get(step.rule)
        if group is not None:
            _add(stats, f"{group}_{status}", 1)
        _add(stats, f"steps_{status}", 1)
        if closed and group is not None:
            durations[(step.late_agency, group)].append((step.closed_at - step.started_at) // _ONE_SECOND)
        if status == "open" and step.due_at < as_of:
            lateness = (as_of - step.due_at) // _ONE_SECOND
            stats.open_overdue_steps += 1
            stats.total_overdue_seconds += lateness
            stats.max_overdue_seconds = max(stats.max_overdue_seconds, lateness)

    # Trend of deadlines: every known step, on the local day of its due_at.
    for step in step_list:
        entry = trend.get(local_day(step.due_at))
        if entry is not None:
            entry["steps_due"] += 1
            if _missed(step, as_of):
                entry["steps_overdue"] += 1

    by_referral: dict[str, list[ObservedMessage]] = defaultdict(list)
    for message in known:
        by_referral[message.referral_id].append(message)
    for referral_messages in by_referral.values():
        referral_messages.sort(key=_order)

    # Case decisions (立案 / 不予立案), one per (police agency, referral).
    decisions: dict[tuple[str, str], list[ObservedMessage]] = defaultdict(list)
    for message in known:
        if message.kind in CASE_DECISION_KINDS:
            decisions[(message.sender, message.referral_id)].append(message)
    for (sender, _), group_messages in decisions.items():
        group_messages.sort(key=_order)
        if not in_period(group_messages[0].sent_at):
            continue
        latest = group_messages[-1]
        value = latest.facts.get(CASE_DECISION_KINDS[latest.kind]) if latest.facts else None
        outcome = CASE_OUTCOMES.get((latest.kind, value), "unknown")
        _add(row(sender), f"cases_{outcome}", 1)

    # Referrals received and completed (办结).
    first_transfer: dict[tuple[str, str], ObservedMessage] = {}
    for message in known:
        if message.kind in TRANSFER_KINDS:
            key = (message.recipient, message.referral_id)
            if key not in first_transfer or _order(message) < _order(first_transfer[key]):
                first_transfer[key] = message
    for (agency, referral_id), transfer in first_transfer.items():
        if not in_period(transfer.sent_at):
            continue
        stats = row(agency)
        stats.referrals_received += 1
        if any(_closes_referral(message, agency) for message in by_referral[referral_id]
               if message.sent_at >= transfer.sent_at):
            stats.referrals_completed += 1

    # Funds recovered: one amount per referral.
    for referral_messages in by_referral.values():
        chosen = _funds_message(referral_messages)
        if chosen is not None and in_period(chosen[0].sent_at):
            row(chosen[0].sender).funds_recovered_fen += chosen[1]

    # Rewards paid.
    kind, fact = REWARD_PAYMENT
    for message in known:
        if message.kind == kind and in_period(message.sent_at) and message.facts and fact in message.facts:
            row(message.sender).rewards_paid_fen += _fen(message, fact)

    # Per-row derived figures, then the total row.
    listed = [rows[code] for code in agencies]
    extra = [rows[code] for code in sorted(set(rows) - set(agencies))]
    agency_rows = listed + extra
    for stats in agency_rows:
        for group, name in MEDIAN_FIELDS.items():
            setattr(stats, name, _median(durations.get((stats.agency, group), ())))
        stats.completion_rate = _rate(stats.referrals_completed, stats.referrals_received)
    totals = AgencyStats(TOTAL)
    for name in ADDITIVE_FIELDS:
        setattr(totals, name, sum(getattr(stats, name) for stats in agency_rows))
    totals.max_overdue_seconds = max((stats.max_overdue_seconds for stats in agency_rows), default=0)
    for group, name in MEDIAN_FIELDS.items():
        pooled = [seconds for (_, g), values in durations.items() if g == group for seconds in values]
        setattr(totals, name, _median(pooled))
    totals.completion_rate = _rate(totals.referrals_completed, totals.referrals_received)

    return StatsReport(period_from=period_from, period_to=period_to, as_of=as_of, agencies=agency_rows,
                       totals=totals, trend=[trend[day] for day in days], tz=tz)


def overdue_steps(steps: Iterable[Step], *, as_of: datetime, period_from: datetime | None = None,
                  period_to: datetime | None = None) -> list[Step]:
    """Steps open at ``as_of`` with ``due_at < as_of``, most overdue first.

    With a period, only the steps the report counts in ``open_overdue_steps`` (started in
    ``[period_from, period_to)``); without, the whole backlog.
    """
    _check_aware(as_of, "as_of")
    chosen = []
    for step in steps:
        if step.started_at > as_of:
            continue
        if period_from is not None and step.started_at < period_from:
            continue
        if period_to is not None and step.started_at >= period_to:
            continue
        if _open_overdue(step, as_of):
            chosen.append(step)
    return sorted(chosen, key=lambda s: (s.due_at, s.step_id))


def lateness_seconds(step: Step, as_of: datetime) -> int:
    """How late an open step is at ``as_of`` (whole seconds, 0 when not overdue)."""
    if not _open_overdue(step, as_of):
        return 0
    return (as_of - step.due_at) // _ONE_SECOND


# -- helpers --------------------------------------------------------------------------------------

def _missed(step: Step, as_of: datetime) -> bool:
    """Closed after its due_at (by as_of), or still open past it."""
    if step.closed_at is not None and step.closed_at <= as_of:
        return step.closed_at > step.due_at
    return step.due_at < as_of


def _open_overdue(step: Step, as_of: datetime) -> bool:
    is_open = step.closed_at is None or step.closed_at > as_of
    return is_open and step.due_at < as_of


def _check_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {value!r}")


def _unique(items: Iterable, key: str, what: str) -> list:
    seen: dict = {}
    for item in items:
        ident = getattr(item, key)
        if ident in seen:
            if seen[ident] != item:
                raise ValueError(f"two different {what}s with {key} {ident!r}")
            continue
        seen[ident] = item
    return list(seen.values())


def _order(message: ObservedMessage):
    return (message.sent_at, message.message_id)


def _add(stats: AgencyStats, name: str, amount: int) -> None:
    setattr(stats, name, getattr(stats, name) + amount)


def _days(period_from: datetime, period_to: datetime, tz: tzinfo) -> list[date]:
    first = period_from.astimezone(tz).date()
    last = (period_to - timedelta(microseconds=1)).astimezone(tz).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _closes_referral(message: ObservedMessage, agency: str) -> bool:
    if message.kind == CLOSURE:
        return True
    if message.kind == WITHDRAWAL:
        return message.recipient == agency
    return message.sender == agency and message.kind in CLOSING_ANSWER_KINDS


def _funds_message(referral_messages: Sequence[ObservedMessage]) -> tuple[ObservedMessage, int] | None:
    for kind, fact in FUNDS_SOURCES:
        candidates = [m for m in referral_messages if m.kind == kind and m.facts and fact in m.facts]
        if candidates:
            latest = max(candidates, key=_order)
            return latest, _fen(latest, fact)
    return None


def _fen(message: ObservedMessage, fact: str) -> int:
    value = message.facts[fact]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{message.kind} {message.message_id}: {fact} must be integer fen, not {value!r}")
    return value


def _median(values: Sequence[int]) -> float | None:
    if not values:
        return None
    return float(statistics.median(values))


def _rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator
