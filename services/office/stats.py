"""The joint-meeting office's statistics (报表台账), computed from what the office observed.

Plain Python, no Nameko, no database: ``compute_stats`` takes the observed messages (signed
metadata plus non-personal facts, see ``model.py``) and the deadline steps as the tracker
recorded them, and returns a ``StatsReport`` with one row per agency, a total row, the on-time
rates per rule and agency, and a trend. Figures must be consistent: nothing left out and nothing
counted twice (不漏报、不多报). docs/office.md §7 defines every figure, one paragraph each; this
docstring is the short form. The exporters (``adapters/exporters``) only format these numbers.

Snapshot
    A report is what the office knew **at ``as_of``**, as ``snapshot.snapshot`` computes it
    (the one as-of computation, shared with the overdue list and the dashboard): a message
    counts once it is known (observed and sent by ``as_of``); a step exists once the message
    that opened it is known, and its state is the one it had at ``as_of``. So a report for a
    past moment is the same whenever it is run. ``as_of`` must not precede ``period_from``.

Period
    The half-open interval ``[period_from, period_to)``; each item belongs to exactly one
    period through ONE timestamp named per figure, so consecutive periods add up.

Rows
    One row per agency in ``agencies`` (in that order, even when all zero), plus a row for any
    other agency a counted item names. The total row is the sum of the agency rows for every
    count, second total and amount (``ADDITIVE_FIELDS``); ``max_*`` are maxima over the rows;
    rates are total over total; medians are over the pooled steps (never a median of medians).

Steps (receipts_*, decisions_*, feedback_*, transfer_steps_*, steps_*)
    A step belongs to the period by its ``started_at`` and counts once, for its late agency.
    Status at ``as_of``: ``on_time`` = answered (the awaited act) at or before ``due_at``;
    ``late`` = answered after it (closed late); ``ended`` = ended by a closure, withdrawal or
    refusal without the act; ``open`` = none of these known. Every step is exactly one of four.
On-time rate (按时率)
    ``steps_due`` = on_time + late + open_overdue + ended_overdue (the steps whose outcome
    against the limit is settled at ``as_of``); ``on_time_rate`` = on_time / steps_due. An open
    step whose limit has not passed, and a step ended before its limit, are in neither.
Lateness
    ``open_overdue_steps``/``max_overdue_seconds``/``total_overdue_seconds``: open steps past
    their limit, ``as_of - due_at``. ``median_seconds_late``/``max_seconds_late``/
    ``total_seconds_late``: steps answered late, ``closed_at - due_at``. Never mixed.
Medians to receipt / decision / feedback
    ``closed_at - started_at`` over the answered steps of the group.
Cases opened / refused / forwarded / unknown
    One case decision per (police agency, referral), in the period of its first decision, with
    the outcome of its latest decision.
Referrals received / completed / ended / pending, completion rate (办结率)
    Per (agency, referral): the agency's *part* in the referral, opened by what it received
    (``PART_OPENERS``) and completed by its own acts (``_part_done``); see docs/office.md §7.
    received = completed + ended + pending; completion_rate = completed / received.
Funds
    ``funds_recovered_fen`` (已追回): money reported recovered, by a closure (the referral's
    total, replacing the rest) or else by each sender's latest handling result.
    ``funds_to_recover_fen`` (应追回): the latest effective judgment's ``amount_to_recover_fen``
    per referral. A judgment's amount is never counted as recovered.
Trend
    One entry per local day: ``transfers`` sent that day; and, for the steps whose limit falls
    that day, ``steps_due`` (all of them), ``steps_on_time``, ``steps_closed_late``,
    ``steps_ended_overdue`` and ``steps_open_overdue`` (open and past the limit at ``as_of``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Iterable, Sequence

from .model import ObservedMessage, Step
from .rules import DeadlineRule
from .snapshot import ENDED, LATE, ON_TIME, OPEN, Snapshot, StepAt, order, snapshot

from services.display_time import LOCAL_TZ  # the calendar's default zone, Asia/Shanghai

TOTAL = "total"

RECEIPT_RULES = ("receipt",)
DECISION_RULES = ("filing_decision", "reconsideration_decision", "prosecution_decision")
FEEDBACK_RULES = ("handling_result", "invoice_verification", "materials_handover")
TRANSFER_RULES = ("approve_transfer", "transfer_after_approval")

# Rule -> the prefix of its on_time/late/ended/open columns.
RULE_GROUPS = {
    **{rule: "receipts" for rule in RECEIPT_RULES},
    **{rule: "decisions" for rule in DECISION_RULES},
    **{rule: "feedback" for rule in FEEDBACK_RULES},
    **{rule: "transfer_steps" for rule in TRANSFER_RULES},
}
GROUPS = ("receipts", "decisions", "feedback", "transfer_steps")
STATUSES = (ON_TIME, LATE, ENDED, OPEN)

TRANSFER_KINDS = ("clue_transfer", "case_transfer")
CLOSURE = "closure"
WITHDRAWAL = "withdrawal"
RECEIPT = "receipt"

# Case decisions: (kind, fact name) and fact value -> outcome.
CASE_DECISION_KINDS = {"filing_decision": "decision", "reconsideration_decision": "outcome"}
CASE_OUTCOMES = {
    ("filing_decision", "filed"): "opened",
    ("filing_decision", "not_filed"): "refused",
    ("filing_decision", "not_competent"): "forwarded",
    ("reconsideration_decision", "reversed"): "opened",
    ("reconsideration_decision", "upheld"): "refused",
}

# -- completion (办结): an agency's part in a referral ---------------------------------------------
# What opens a part for its recipient. A prosecution decision to prosecute opens one only for an
# agency that may send a judgment (schemas/routes.yaml: the court); copies to others do not.
TRANSFER_PART, RECONSIDERATION_PART, SUPERVISION_PART, TRIAL_PART, INVOICE_PART, REWARD_PART = (
    "transfer", "reconsideration", "supervision", "trial", "invoice_verification", "reward")
PART_OPENERS = {
    "clue_transfer": TRANSFER_PART,
    "case_transfer": TRANSFER_PART,
    "reconsideration_request": RECONSIDERATION_PART,
    "supervision_request": SUPERVISION_PART,
    "prosecution_decision": TRIAL_PART,          # decision "prosecute", to a court
    "invoice_verification_request": INVOICE_PART,
    "reward_request": REWARD_PART,
}
# What the recipient itself sends that completes each part (besides a closure of its own).
# The transfer part: a handling result, a case transfer (for prosecution, or back), or a final
# decision: the latest case decision refused or forwarded (``filed`` and ``reversed`` open an
# investigation that goes on), or the latest prosecution decision prosecute / not_prosecute
# (``return_for_investigation`` sends it back).
TRANSFER_ANSWERS = ("handling_result", "case_transfer")
FINAL_CASE_OUTCOMES = ("refused", "forwarded")
FINAL_PROSECUTION = ("prosecute", "not_prosecute")
PART_ANSWERS = {
    RECONSIDERATION_PART: "reconsideration_decision",
    SUPERVISION_PART: "supervision_notice",
    TRIAL_PART: "judgment",                      # with effective: true
    INVOICE_PART: "invoice_verification_result",
    REWARD_PART: "reward_payment",
}

# Money.
RECOVERED_BY_CLOSURE = ("closure", "amount_recovered_fen")
RECOVERED_BY_RESULT = ("handling_result", "amount_recovered_fen")
TO_RECOVER = ("judgment", "amount_to_recover_fen")
REWARD_PAYMENT = ("reward_payment", "reward_fen")


@dataclass
class AgencyStats:
    agency: str
    transfers_sent: int = 0
    transfers_received: int = 0
    receipts_on_time: int = 0
    receipts_late: int = 0
    receipts_ended: int = 0
    receipts_open: int = 0
    decisions_on_time: int = 0
    decisions_late: int = 0
    decisions_ended: int = 0
    decisions_open: int = 0
    feedback_on_time: int = 0
    feedback_late: int = 0
    feedback_ended: int = 0
    feedback_open: int = 0
    transfer_steps_on_time: int = 0
    transfer_steps_late: int = 0
    transfer_steps_ended: int = 0
    transfer_steps_open: int = 0
    steps_on_time: int = 0
    steps_late: int = 0
    steps_ended: int = 0
    steps_open: int = 0
    steps_ended_overdue: int = 0
    steps_due: int = 0
    on_time_rate: float | None = None
    open_overdue_steps: int = 0
    max_overdue_seconds: int = 0
    total_overdue_seconds: int = 0
    median_seconds_late: float | None = None
    max_seconds_late: int = 0
    total_seconds_late: int = 0
    median_seconds_to_receipt: float | None = None
    median_seconds_to_decision: float | None = None
    median_seconds_to_feedback: float | None = None
    cases_opened: int = 0
    cases_refused: int = 0
    cases_forwarded: int = 0
    cases_unknown: int = 0
    referrals_received: int = 0
    referrals_completed: int = 0
    referrals_ended: int = 0
    referrals_pending: int = 0
    completion_rate: float | None = None
    funds_recovered_fen: int = 0
    funds_to_recover_fen: int = 0
    rewards_paid_fen: int = 0


# Figures whose total is the sum over the agencies (counts, second totals, money).
ADDITIVE_FIELDS = tuple(f.name for f in fields(AgencyStats)
                        if f.type in ("int", int) and not f.name.startswith("max_"))
MEDIAN_FIELDS = {"receipts": "median_seconds_to_receipt", "decisions": "median_seconds_to_decision",
                 "feedback": "median_seconds_to_feedback"}
# Rates: name -> (numerator, denominator).
RATES = {"on_time_rate": ("steps_on_time", "steps_due"),
         "completion_rate": ("referrals_completed", "referrals_received")}


@dataclass
class OnTimeRow:
    """The on-time rate of one rule for one agency (or ``total`` over the agencies)."""

    rule: str
    agency: str
    steps: int = 0
    on_time: int = 0
    late: int = 0
    ended: int = 0
    ended_overdue: int = 0
    open: int = 0
    open_overdue: int = 0
    steps_due: int = 0
    on_time_rate: float | None = None
    median_seconds_late: float | None = None
    max_seconds_late: int = 0


@dataclass
class StatsReport:
    period_from: datetime
    period_to: datetime
    as_of: datetime
    agencies: list[AgencyStats]
    totals: AgencyStats
    trend: list[dict]
    tz: tzinfo = field(default=LOCAL_TZ)
    on_time: list[OnTimeRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, agency: str) -> AgencyStats:
        if agency == TOTAL:
            return self.totals
        for row in self.agencies:
            if row.agency == agency:
                return row
        raise KeyError(agency)

    def on_time_row(self, rule: str, agency: str) -> OnTimeRow:
        for row in self.on_time:
            if (row.rule, row.agency) == (rule, agency):
                return row
        raise KeyError((rule, agency))

    def to_json(self) -> dict:
        """JSON-native: datetimes as ``YYYY-MM-DDTHH:MM:SSZ``, money as integer fen."""
        return {
            "period_from": rfc3339(self.period_from),
            "period_to": rfc3339(self.period_to),
            "as_of": rfc3339(self.as_of),
            "timezone": tz_name(self.tz),
            "agencies": [asdict(row) for row in self.agencies],
            "totals": asdict(self.totals),
            "on_time": [asdict(row) for row in self.on_time],
            "trend": [dict(entry) for entry in self.trend],
            "notes": list(self.notes),
        }


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC to the second (fractions of a second are dropped)."""
    _check_aware(moment, "timestamp")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tz_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def compute_stats(messages: Sequence[ObservedMessage], steps: Sequence[Step], *,
                  period_from: datetime, period_to: datetime, as_of: datetime,
                  agencies: Sequence[str], tz: tzinfo = LOCAL_TZ,
                  rules: Sequence[DeadlineRule] | None = None, fine_rules: Sequence = (),
                  judges: frozenset[str] | None = None) -> StatsReport:
    """The office's figures for ``[period_from, period_to)`` as known at ``as_of``.

    ``rules`` are the deadline rules the steps were opened by (``snapshot.snapshot``);
    ``judges`` the agencies the configured route table lets send a judgment (a prosecution
    sent to one opens its trial part; default: the shipped route table's). See the module
    docstring and docs/office.md §7 for the exact definition of every figure.
    """
    for name, value in (("period_from", period_from), ("period_to", period_to), ("as_of", as_of)):
        _check_aware(value, name)
    if period_to <= period_from:
        raise ValueError("period_to must be after period_from")
    if as_of < period_from:
        raise ValueError("as_of must not precede period_from (nothing of the period is known yet)")
    if TOTAL in agencies:
        raise ValueError(f"{TOTAL!r} is reserved for the total row")
    return report_from(snapshot(messages, steps, as_of, rules=rules), period_from=period_from,
                       period_to=period_to, agencies=agencies, tz=tz, fine_rules=fine_rules, judges=judges)


def report_from(snap: Snapshot, *, period_from: datetime, period_to: datetime, agencies: Sequence[str],
                tz: tzinfo = LOCAL_TZ, fine_rules: Sequence = (), judges: frozenset[str] | None = None) -> StatsReport:
    """The figures from a snapshot already taken (``compute_stats`` checks the arguments)."""
    judges = shipped_judges() if judges is None else judges
    as_of = snap.as_of
    known = snap.messages

    def in_period(moment: datetime) -> bool:
        return period_from <= moment < period_to

    rows: dict[str, AgencyStats] = {code: AgencyStats(code) for code in agencies}

    def row(code: str) -> AgencyStats:
        if code not in rows:
            rows[code] = AgencyStats(code)
        return rows[code]

    days = _days(period_from, period_to, tz)
    trend = {day: {"day": day.isoformat(), "transfers": 0, "steps_due": 0, "steps_on_time": 0,
                   "steps_closed_late": 0, "steps_ended_overdue": 0, "steps_open_overdue": 0} for day in days}

    def local_day(moment: datetime) -> date:
        return moment.astimezone(tz).date()

    # Transfers.
    for message in known:
        if message.kind in TRANSFER_KINDS and in_period(message.sent_at):
            row(message.sender).transfers_sent += 1
            row(message.recipient).transfers_received += 1
            trend[local_day(message.sent_at)]["transfers"] += 1

    # Steps, on-time rates and lateness.
    durations: dict[tuple[str, str], list[int]] = defaultdict(list)   # (agency, group) -> seconds to answer
    late_by: dict[str, list[int]] = defaultdict(list)                 # agency -> seconds late
    per_rule: dict[tuple[str, str], list[StepAt]] = defaultdict(list)
    for step in snap.steps:
        if not in_period(step.started_at):
            continue
        stats = row(step.late_agency)
        group = RULE_GROUPS.get(step.rule)
        if group is not None:
            _add(stats, f"{group}_{step.status}", 1)
            if step.answered:
                durations[(step.late_agency, group)].append(step.seconds_to_answer)
        _add(stats, f"steps_{step.status}", 1)
        per_rule[(step.rule, step.late_agency)].append(step)
        if step.ended_overdue:
            stats.steps_ended_overdue += 1
        if step.open_overdue:
            lateness = step.overdue_seconds
            stats.open_overdue_steps += 1
            stats.total_overdue_seconds += lateness
            stats.max_overdue_seconds = max(stats.max_overdue_seconds, lateness)
        if step.status == LATE:
            late_by[step.late_agency].append(step.late_seconds)
            stats.total_seconds_late += step.late_seconds
            stats.max_seconds_late = max(stats.max_seconds_late, step.late_seconds)

    # Trend of deadlines: every known step, on the local day of its due_at.
    for step in snap.steps:
        entry = trend.get(local_day(step.due_at))
        if entry is None:
            continue
        entry["steps_due"] += 1
        if step.status == ON_TIME:
            entry["steps_on_time"] += 1
        elif step.status == LATE:
            entry["steps_closed_late"] += 1
        elif step.ended_overdue:
            entry["steps_ended_overdue"] += 1
        elif step.open_overdue:
            entry["steps_open_overdue"] += 1

    by_referral = snap.referral_messages()

    # Case decisions (立案 / 不予立案), one per (police agency, referral).
    decisions: dict[tuple[str, str], list[ObservedMessage]] = defaultdict(list)
    for message in known:
        if message.kind in CASE_DECISION_KINDS:
            decisions[(message.sender, message.referral_id)].append(message)
    for (sender, _), group_messages in decisions.items():
        if in_period(group_messages[0].sent_at):
            _add(row(sender), f"cases_{_case_outcome(group_messages[-1])}", 1)

    # Referrals received, completed, ended, pending (办结).
    parts: dict[tuple[str, str], list[ObservedMessage]] = defaultdict(list)
    for message in known:
        if _opens_part(message, judges):
            parts[(message.recipient, message.referral_id)].append(message)
    for (agency, referral_id), openers in parts.items():
        if not in_period(openers[0].sent_at):
            continue
        stats = row(agency)
        stats.referrals_received += 1
        outcome = _referral_outcome(agency, openers, by_referral[referral_id])
        _add(stats, f"referrals_{outcome}", 1)

    # Funds recovered, funds to recover.
    for referral_messages in by_referral.values():
        for message, fact in _recovered(referral_messages):
            if in_period(message.sent_at):
                row(message.sender).funds_recovered_fen += _fen(message, fact)
        judgment = _latest(referral_messages, TO_RECOVER, effective_only=True)
        if judgment is not None and in_period(judgment.sent_at):
            row(judgment.sender).funds_to_recover_fen += _fen(judgment, TO_RECOVER[1])

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
        stats.median_seconds_late = _median(late_by.get(stats.agency, ()))
        _derive(stats)
    totals = AgencyStats(TOTAL)
    for name in ADDITIVE_FIELDS:
        setattr(totals, name, sum(getattr(stats, name) for stats in agency_rows))
    totals.max_overdue_seconds = max((stats.max_overdue_seconds for stats in agency_rows), default=0)
    totals.max_seconds_late = max((stats.max_seconds_late for stats in agency_rows), default=0)
    for group, name in MEDIAN_FIELDS.items():
        pooled = [seconds for (_, g), values in durations.items() if g == group for seconds in values]
        setattr(totals, name, _median(pooled))
    totals.median_seconds_late = _median([seconds for values in late_by.values() for seconds in values])
    _derive(totals)

    order_of = {stats.agency: index for index, stats in enumerate(agency_rows)}
    on_time: list[OnTimeRow] = []
    for rule in sorted({rule for rule, _ in per_rule}):
        mine = sorted((agency for r, agency in per_rule if r == rule), key=order_of.__getitem__)
        for agency in mine:
            on_time.append(_on_time_row(rule, agency, per_rule[(rule, agency)]))
        on_time.append(_on_time_row(rule, TOTAL, [s for agency in mine for s in per_rule[(rule, agency)]]))

    notes = _calendar_missing_notes(snap, in_period) + _fine_notes(known, in_period, fine_rules)
    return StatsReport(period_from=period_from, period_to=period_to, as_of=as_of, agencies=agency_rows,
                       totals=totals, trend=[trend[day] for day in days], tz=tz, on_time=on_time,
                       notes=notes)


def _calendar_missing_notes(snap: Snapshot, in_period) -> list[str]:
    """The period's steps with no limit (the working-day calendar lacks a year they need): in
    no step figure, so the report says so, with their ids."""
    missing = [step for step in snap.calendar_missing if in_period(step.started_at)]
    if not missing:
        return []
    years = ", ".join(str(year) for year in sorted({s.calendar_missing for s in missing if s.calendar_missing}))
    return [f"calendar missing: {len(missing)} step(s) of the period have no limit because the working-day "
            f"calendar does not cover {years or 'a year they need'}; they are left out of every step figure "
            f"(steps {', '.join(s.step_id for s in missing)}; referrals "
            f"{', '.join(sorted({s.referral_id for s in missing}))})"]


def _fine_notes(known: Sequence[ObservedMessage], in_period, fine_rules: Sequence) -> list[str]:
    """Fines outside their rule's range (services/domain/money.FineRule, e.g. 2 to 5 times the
    amount obtained), among the messages sent in the period: how many, and their referrals."""
    notes = []
    for rule in fine_rules:
        flagged = [m for m in known if in_period(m.sent_at) and rule.applies(m.kind, m.sender, m.facts)
                   and rule.out_of_range(m.facts)]
        if flagged:
            notes.append(f"fines out of range ({rule.name}: {_number(rule.min_multiple)} to "
                         f"{_number(rule.max_multiple)} times {rule.amount_fact}): {len(flagged)} "
                         f"(referrals {', '.join(sorted({m.referral_id for m in flagged}))})")
    return notes


def _number(value) -> str:
    """An exact configured multiple (a Fraction from a decimal string) as a decimal."""
    from decimal import Decimal
    return format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), "f")


def overdue_steps(snap: Snapshot, *, period_from: datetime | None = None,
                  period_to: datetime | None = None) -> list[StepAt]:
    """Steps open at the snapshot's ``as_of`` with ``due_at < as_of``, most overdue first.

    With a period, only the steps the report counts in ``open_overdue_steps`` (started in
    ``[period_from, period_to)``); without, the whole backlog.
    """
    return [step for step in snap.open_overdue()
            if (period_from is None or step.started_at >= period_from)
            and (period_to is None or step.started_at < period_to)]


def lateness_seconds(step: StepAt, as_of: datetime | None = None) -> int:
    """How late an open step is at its ``as_of`` (whole seconds, 0 when not overdue)."""
    return step.overdue_seconds if step.open_overdue else 0


# -- helpers --------------------------------------------------------------------------------------

def _derive(stats: AgencyStats) -> None:
    stats.steps_due = stats.steps_on_time + stats.steps_late + stats.open_overdue_steps + stats.steps_ended_overdue
    for name, (numerator, denominator) in RATES.items():
        setattr(stats, name, _rate(getattr(stats, numerator), getattr(stats, denominator)))


def _on_time_row(rule: str, agency: str, steps: Sequence[StepAt]) -> OnTimeRow:
    late = [s.late_seconds for s in steps if s.status == LATE]
    entry = OnTimeRow(rule=rule, agency=agency, steps=len(steps),
                      on_time=sum(s.status == ON_TIME for s in steps), late=len(late),
                      ended=sum(s.status == ENDED for s in steps), ended_overdue=sum(s.ended_overdue for s in steps),
                      open=sum(s.status == OPEN for s in steps), open_overdue=sum(s.open_overdue for s in steps),
                      median_seconds_late=_median(late), max_seconds_late=max(late, default=0))
    entry.steps_due = entry.on_time + entry.late + entry.open_overdue + entry.ended_overdue
    entry.on_time_rate = _rate(entry.on_time, entry.steps_due)
    return entry


def _case_outcome(latest: ObservedMessage) -> str:
    value = latest.facts.get(CASE_DECISION_KINDS[latest.kind]) if latest.facts else None
    return CASE_OUTCOMES.get((latest.kind, value), "unknown")


def judges_in(routes) -> frozenset[str]:
    """The agencies ``routes`` (a schemas.routes.RouteTable) lets send a judgment."""
    return frozenset(sender for sender, _ in routes.routes.get("judgment", ()))


@lru_cache(maxsize=1)
def shipped_judges() -> frozenset[str]:
    """As judges_in(), for the shipped route table (schemas/routes.yaml)."""
    from schemas.routes import RouteTable
    return judges_in(RouteTable.load())


def _opens_part(message: ObservedMessage, judges: frozenset[str]) -> bool:
    part = PART_OPENERS.get(message.kind)
    if part == TRIAL_PART:
        return (message.facts or {}).get("decision") == "prosecute" and message.recipient in judges
    return part is not None


def _part_done(part: str, acts: Sequence[ObservedMessage]) -> bool:
    """Whether the recipient's own ``acts`` (its messages in the referral from the opening on,
    in order) complete ``part``."""
    if any(m.kind == CLOSURE for m in acts):
        return True
    if part == TRANSFER_PART:
        if any(m.kind in TRANSFER_ANSWERS for m in acts):
            return True
        case = [m for m in acts if m.kind in CASE_DECISION_KINDS]
        if case and _case_outcome(case[-1]) in FINAL_CASE_OUTCOMES:
            return True
        prosecution = [m for m in acts if m.kind == "prosecution_decision"]
        return bool(prosecution) and (prosecution[-1].facts or {}).get("decision") in FINAL_PROSECUTION
    answer = PART_ANSWERS[part]
    if part == TRIAL_PART:
        return any(m.kind == answer and (m.facts or {}).get("effective") is True for m in acts)
    return any(m.kind == answer for m in acts)


def _part_ended(agency: str, opener: ObservedMessage, after: Sequence[ObservedMessage]) -> bool:
    """Ended without the agency's answer: the referral closed by another agency, what was sent
    to it withdrawn, or the opening message refused by it (a rejecting receipt)."""
    return any((m.kind == CLOSURE and m.sender != agency)
               or (m.kind == WITHDRAWAL and m.recipient == agency)
               or (m.kind == RECEIPT and m.sender == agency and m.in_reply_to == opener.message_id
                   and (m.facts or {}).get("status") == "rejected")
               for m in after)


def _referral_outcome(agency: str, openers: Sequence[ObservedMessage],
                      referral: Sequence[ObservedMessage]) -> str:
    """completed | ended | pending, for the agency's part in the referral."""
    pending_ended = []
    for opener in openers:
        after = [m for m in referral if m.sent_at >= opener.sent_at and m.message_id != opener.message_id]
        acts = [m for m in after if m.sender == agency]
        if _part_done(PART_OPENERS[opener.kind], acts):
            continue
        pending_ended.append(_part_ended(agency, opener, after))
    if not pending_ended:
        return "completed"
    return "ended" if all(pending_ended) else "pending"


def _latest(messages: Sequence[ObservedMessage], source: tuple[str, str], *, sender: str | None = None,
            effective_only: bool = False) -> ObservedMessage | None:
    kind, fact = source
    found = [m for m in messages if m.kind == kind and m.facts and fact in m.facts
             and (sender is None or m.sender == sender)
             and (not effective_only or m.facts.get("effective") is True)]
    return max(found, key=order) if found else None


def _recovered(referral: Sequence[ObservedMessage]) -> list[tuple[ObservedMessage, str]]:
    """The messages whose amounts are the referral's money recovered: its latest closure with an
    amount (it states the referral's total) or, without one, each sender's latest handling
    result with an amount."""
    closure = _latest(referral, RECOVERED_BY_CLOSURE)
    if closure is not None:
        return [(closure, RECOVERED_BY_CLOSURE[1])]
    kind, fact = RECOVERED_BY_RESULT
    senders = sorted({m.sender for m in referral if m.kind == kind and m.facts and fact in m.facts})
    return [(_latest(referral, RECOVERED_BY_RESULT, sender=sender), fact) for sender in senders]


def _check_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {value!r}")


def _add(stats: AgencyStats, name: str, amount: int) -> None:
    setattr(stats, name, getattr(stats, name) + amount)


def _days(period_from: datetime, period_to: datetime, tz: tzinfo) -> list[date]:
    first = period_from.astimezone(tz).date()
    last = (period_to - timedelta(microseconds=1)).astimezone(tz).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _fen(message: ObservedMessage, fact: str) -> int:
    value = message.facts[fact]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{message.kind} {message.message_id}: {fact} must be integer fen, not {value!r}")
    return value


def _median(values: Iterable[int]) -> float | None:
    values = list(values)
    if not values:
        return None
    return float(statistics.median(values))


def _rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator
