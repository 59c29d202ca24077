"""The office's statistics (报表台账): figures that reconcile, nothing left out, nothing counted twice.

A seeded generator plays a few hundred realistic referrals (receipts, decisions on time and
late, steps left open, sealed decisions, reconsiderations, closures and judgments with
amounts) and the tests check the report's invariants on it; a small three-referral example
has every figure worked out by hand. Plain Python: no broker, no database.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from adapters.exporters.stats_csv import COLUMNS, HEADERS, write_csv
from adapters.exporters.stats_xlsx import (ON_TIME_SHEET, OVERDUE_SHEET, STATISTICS_SHEET, TREND_SHEET, write_xlsx)
from services.office.model import CLOSED, OPEN, ObservedMessage, Step
from services.office.stats import (ADDITIVE_FIELDS, DECISION_RULES, FEEDBACK_RULES, GROUPS, RULE_GROUPS,
                                   STATUSES, AgencyStats, compute_stats, overdue_steps)
from services.office.snapshot import snapshot

CN = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

MS, PS, PROC, COURT, HEALTH, FIN, OFFICE = ("medical_security", "public_security", "procuratorate", "court",
                                            "health", "finance", "joint_office")
AGENCIES = (MS, PS, PROC, COURT, HEALTH, FIN, OFFICE)

PERIOD_FROM = datetime(2026, 11, 1, tzinfo=CN)
PERIOD_TO = datetime(2026, 12, 1, tzinfo=CN)
AS_OF = datetime(2026, 12, 5, tzinfo=CN)


# -- building observed messages and steps --------------------------------------------------------

class World:
    """What the office would have recorded: observed messages and deadline steps."""

    def __init__(self):
        self.messages: list[ObservedMessage] = []
        self.by_id: dict[str, ObservedMessage] = {}
        self.steps: list[Step] = []
        self._count = 0

    # What the office knew at a moment, recounted here on its own (docs/office.md §7, Snapshot):
    # a message once observed and sent, a step once its opening message is, closed once its
    # closing message is.
    @staticmethod
    def known(message: ObservedMessage, as_of: datetime) -> bool:
        return max(message.sent_at, message.observed_at) <= as_of

    def step_known(self, step: Step, as_of: datetime = None) -> bool:
        return self.known(self.by_id[step.start_message_id], as_of or AS_OF)

    def closed(self, step: Step, as_of: datetime = None) -> bool:
        return step.closing_message_id is not None and self.known(self.by_id[step.closing_message_id], as_of or AS_OF)

    def send(self, kind, sender, recipient, referral, at, facts=None, *, sealed=False, reply_to=None):
        self._count += 1
        message = ObservedMessage(
            message_id=f"m{self._count:06d}", kind=kind, sender=sender, recipient=recipient,
            referral_id=referral, in_reply_to=reply_to, sent_at=at, observed_at=at + timedelta(seconds=1),
            sealed=sealed, facts={} if sealed else dict(facts or {}))
        self.messages.append(message)
        self.by_id[message.message_id] = message
        return message

    def open(self, rule, start: ObservedMessage, limit: timedelta, *, late_is_recipient=True):
        late, counterpart = ((start.recipient, start.sender) if late_is_recipient
                             else (start.sender, start.recipient))
        step = Step(step_id=f"{rule}:{start.message_id}", rule=rule, referral_id=start.referral_id,
                    start_message_id=start.message_id, started_at=start.sent_at,
                    due_at=start.sent_at + limit, late_agency=late, counterpart=counterpart)
        self.steps.append(step)
        return step

    def interval(self, rule, transfer: ObservedMessage, start: datetime, limit: timedelta, stop: datetime):
        """An interval rule read from the transfer's body (approval, transfer after approval)."""
        self.steps.append(Step(
            step_id=f"{rule}:{transfer.message_id}", rule=rule, referral_id=transfer.referral_id,
            start_message_id=transfer.message_id, started_at=start, due_at=start + limit,
            late_agency=transfer.sender, counterpart=transfer.recipient, state=CLOSED, closed_at=stop,
            closing_message_id=transfer.message_id))

    @staticmethod
    def close(step: Step, message: ObservedMessage):
        step.state, step.closed_at, step.closing_message_id = CLOSED, message.sent_at, message.message_id

    def end(self, message: ObservedMessage):
        """A closure or withdrawal ends what its referral still awaited, as the tracker does:
        every open step that started by then, but receipts (they stay due)."""
        for step in self.steps:
            if (step.referral_id == message.referral_id and step.closing_message_id is None
                    and step.rule != "receipt" and step.started_at <= message.sent_at):
                self.close(step, message)


def _answer_at(rng: random.Random, step: Step) -> datetime | None:
    """Mostly on time, sometimes late, sometimes never."""
    limit = step.due_at - step.started_at
    draw = rng.random()
    if draw < 0.70:
        return step.started_at + limit * rng.uniform(0.02, 1.0)
    if draw < 0.88:
        return step.started_at + limit * rng.uniform(1.01, 3.0)
    return None


def _receipt(world: World, rng: random.Random, message: ObservedMessage):
    step = world.open("receipt", message, 24 * HOUR)
    at = _answer_at(rng, step)
    if at is not None:
        world.close(step, world.send("receipt", message.recipient, message.sender, message.referral_id, at,
                                     {"status": "accepted"}, reply_to=message.message_id))


def _hours(rng, low, high):
    return timedelta(hours=rng.uniform(low, high))


def _clue(world, rng, referral, t0, sender, recipient, category):
    team = t0 - _hours(rng, 24, 120)
    approved = team + _hours(rng, 2, 110)       # limit 72 h: sometimes late
    sent = approved + _hours(rng, 0.5, 36)      # limit 24 h: sometimes late
    clue = world.send("clue_transfer", sender, recipient, referral, sent,
                      {"category": category, "amount_involved_fen": rng.randrange(10_000, 50_000_000)})
    world.interval("approve_transfer", clue, team, 3 * DAY, approved)
    world.interval("transfer_after_approval", clue, approved, 24 * HOUR, sent)
    _receipt(world, rng, clue)
    return clue


def _crime(world, rng, referral, t0):
    clue = _clue(world, rng, referral, t0, MS, PS, "suspected_crime")
    _receipt(world, rng, world.send("copy_notice", MS, PROC, referral, clue.sent_at + timedelta(minutes=1)))
    filing = world.open("filing_decision", clue, 3 * DAY)
    if rng.random() < 0.05:   # withdrawn before the police decide: it ends the step (at times after its limit)
        world.end(world.send("withdrawal", MS, PS, referral, clue.sent_at + _hours(rng, 1, 120)))
        return
    at = _answer_at(rng, filing)
    if at is None:
        return
    draw = rng.random()
    if draw < 0.10:
        world.close(filing, world.send("filing_decision", PS, MS, referral, at, sealed=True))
        return
    decision = ("filed" if draw < 0.62 else "not_filed" if draw < 0.88 else "not_competent")
    answer = world.send("filing_decision", PS, MS, referral, at, {"decision": decision})
    world.close(filing, answer)
    if decision == "not_competent":
        return
    if decision == "not_filed":
        if rng.random() < 0.5:
            request = world.send("reconsideration_request", MS, PS, referral, at + _hours(rng, 2, 60))
            _receipt(world, rng, request)
            step = world.open("reconsideration_decision", request, 3 * DAY)
            at2 = _answer_at(rng, step)
            if at2 is None:
                return
            outcome = rng.choice(("upheld", "reversed"))
            answer = world.send("reconsideration_decision", PS, MS, referral, at2, {"outcome": outcome})
            world.close(step, answer)
            if outcome == "upheld":
                return
        else:
            if rng.random() < 0.4:
                back = world.send("case_transfer", PS, MS, referral, at + _hours(rng, 24, 400),
                                  {"direction": "reverse", "amount_involved_fen": rng.randrange(10_000, 9_000_000)})
                _receipt(world, rng, back)
                if rng.random() < 0.6:
                    world.end(world.send("closure", MS, PS, referral, back.sent_at + _hours(rng, 48, 900),
                                         {"outcome": "completed", "amount_recovered_fen": rng.randrange(0, 2_000_000)}))
            return
    _filed(world, rng, referral, answer)


def _filed(world, rng, referral, decision):
    handover = world.open("materials_handover", decision, 3 * DAY)
    at = _answer_at(rng, handover)
    if at is not None:
        message = world.send("materials_handover", MS, PS, referral, at)
        world.close(handover, message)
        _receipt(world, rng, message)
    if rng.random() >= 0.6:
        return
    transfer = world.send("case_transfer", PS, PROC, referral, decision.sent_at + _hours(rng, 120, 960),
                          {"direction": "for_prosecution", "amount_involved_fen": rng.randrange(10_000, 50_000_000)})
    _receipt(world, rng, transfer)
    step = world.open("prosecution_decision", transfer, 30 * DAY)
    at = _answer_at(rng, step)
    if at is None:
        return
    decision = rng.choices(("prosecute", "not_prosecute", "return_for_investigation"), (7, 2, 1))[0]
    first = world.send("prosecution_decision", PROC, MS, referral, at, {"decision": decision})
    world.close(step, first)
    if decision != "prosecute":
        return
    world.send("prosecution_decision", PROC, COURT, referral, at, {"decision": decision})
    if rng.random() >= 0.8:
        return
    judged = at + _hours(rng, 240, 1440)
    amount = rng.randrange(50_000, 80_000_000)
    for recipient in (MS, PROC, PS):  # one judgment, sent to three agencies
        world.send("judgment", COURT, recipient, referral, judged,
                   {"effective": True, "amount_to_recover_fen": amount, "fine_fen": rng.randrange(0, 1_000_000)})
    if rng.random() < 0.6:
        closed = judged + _hours(rng, 48, 720)
        draw = rng.random()
        sealed = draw >= 0.8
        facts = ({"outcome": "completed", "amount_recovered_fen": rng.randrange(0, amount + 1)} if draw < 0.6
                 else {"outcome": "completed"})
        for recipient in (PS, PROC):  # one closure, sent to two agencies
            world.end(world.send("closure", MS, recipient, referral, closed, facts, sealed=sealed))


def _health(world, rng, referral, t0):
    clue = _clue(world, rng, referral, t0, MS, HEALTH, "medical_conduct")
    step = world.open("handling_result", clue, 30 * DAY)
    at = _answer_at(rng, step)
    if at is None:
        return
    sealed = rng.random() < 0.15
    result = world.send("handling_result", HEALTH, MS, referral, at,
                        {"result": "penalised", "amount_recovered_fen": rng.randrange(0, 5_000_000),
                         "fine_fen": rng.randrange(0, 500_000)}, sealed=sealed)
    world.close(step, result)
    if rng.random() < 0.3:
        world.end(world.send("closure", MS, HEALTH, referral, at + _hours(rng, 24, 200), {"outcome": "completed"}))


def _from_health(world, rng, referral, t0):
    clue = _clue(world, rng, referral, t0, HEALTH, MS, "administrative_violation")
    if rng.random() < 0.7:
        world.send("handling_result", MS, HEALTH, referral, clue.sent_at + _hours(rng, 72, 960),
                   {"result": "corrected", "amount_recovered_fen": rng.randrange(0, 3_000_000), "fine_fen": 0})


def _invoice(world, rng, referral, t0):
    request = world.send("invoice_verification_request", MS, FIN, referral, t0)
    _receipt(world, rng, request)
    step = world.open("invoice_verification", request, 10 * DAY)
    at = _answer_at(rng, step)
    if at is not None:
        world.close(step, world.send("invoice_verification_result", FIN, MS, referral, at))


def _reward(world, rng, referral, t0):
    request = world.send("reward_request", MS, FIN, referral, t0)
    _receipt(world, rng, request)
    if rng.random() < 0.8:
        world.send("reward_payment", FIN, MS, referral, t0 + _hours(rng, 24, 480),
                   {"reward_fen": rng.randrange(20_000, 10_000_000)})


def generate(seed: int = 20261124, referrals: int = 500) -> World:
    """A seeded set of referrals starting from mid-August to after ``AS_OF``."""
    rng = random.Random(seed)
    world = World()
    first = datetime(2026, 8, 15, tzinfo=CN)
    plays = (_crime, _health, _from_health, _invoice, _reward)
    for number in range(referrals):
        t0 = first + timedelta(seconds=rng.randrange(116 * 86400))
        play = rng.choices(plays, (45, 20, 10, 15, 10))[0]
        play(world, rng, f"R{number:04d}", t0)
    return world


@pytest.fixture(scope="module")
def world() -> World:
    return generate()


@pytest.fixture(scope="module")
def report(world):
    return compute_stats(world.messages, world.steps, period_from=PERIOD_FROM, period_to=PERIOD_TO,
                         as_of=AS_OF, agencies=AGENCIES)


def _in_period(moment, period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF):
    return period_from <= moment < period_to and moment <= as_of


def _counted(world, step, as_of=AS_OF):
    """A step the report for the period at as_of counts: known then, started in the period."""
    return world.step_known(step, as_of) and PERIOD_FROM <= step.started_at < PERIOD_TO


# -- invariants on the generated referrals --------------------------------------------------------

def test_the_generator_covers_the_cases_that_matter(world, report):
    totals = report.totals
    assert len({m.referral_id for m in world.messages}) == 500
    for name in ("receipts_on_time", "receipts_late", "receipts_open", "decisions_on_time", "decisions_late",
                 "decisions_ended", "decisions_open", "feedback_on_time", "feedback_late", "feedback_open",
                 "cases_opened", "cases_refused", "cases_forwarded", "cases_unknown",
                 "open_overdue_steps", "steps_ended_overdue", "total_seconds_late", "referrals_completed",
                 "referrals_ended", "referrals_pending", "funds_recovered_fen", "funds_to_recover_fen",
                 "rewards_paid_fen", "transfer_steps_late"):
        assert getattr(totals, name) > 0, name
    assert totals.referrals_completed < totals.referrals_received
    assert any(m.sent_at > AS_OF for m in world.messages)
    assert any(world.step_known(s) and not world.closed(s) and s.closing_message_id and _counted(world, s)
               for s in world.steps)                                    # closed after as_of: open at as_of
    assert any(s.started_at < PERIOD_FROM for s in world.steps)



def test_totals_equal_the_sum_over_agencies_for_every_count(report):
    assert [row.agency for row in report.agencies] == list(AGENCIES)
    for name in ADDITIVE_FIELDS:
        assert getattr(report.totals, name) == sum(getattr(row, name) for row in report.agencies), name
    assert report.totals.max_overdue_seconds == max(row.max_overdue_seconds for row in report.agencies)
    assert report.totals.max_seconds_late == max(row.max_seconds_late for row in report.agencies)
    assert report.totals.transfers_sent == report.totals.transfers_received
    assert report.totals.completion_rate == report.totals.referrals_completed / report.totals.referrals_received
    assert report.totals.on_time_rate == report.totals.steps_on_time / report.totals.steps_due



def _status(world, step, as_of=AS_OF) -> str:
    """A step's status at as_of, recounted from its messages (the generator answers every step
    before any closure of its referral, so the closing message tells)."""
    if not world.closed(step, as_of):
        return "open"
    closer = world.by_id[step.closing_message_id]
    if closer.kind in ("closure", "withdrawal"):
        return "ended"
    return "on_time" if step.closed_at <= step.due_at else "late"


def test_every_step_is_counted_exactly_once(world, report):
    started = [s for s in world.steps if _counted(world, s)]
    grouped = [s for s in started if s.rule in RULE_GROUPS]
    counted = sum(getattr(row, f"{group}_{status}") for row in report.agencies
                  for group in GROUPS for status in STATUSES)
    assert counted == len(grouped)
    assert sum(getattr(report.totals, f"steps_{status}") for status in STATUSES) == len(started)
    # The three groups the brief names, on their own.
    three = [s for s in started if s.rule in ("receipt", *DECISION_RULES, *FEEDBACK_RULES)]
    assert sum(getattr(report.totals, f"{group}_{status}") for group in ("receipts", "decisions", "feedback")
               for status in STATUSES) == len(three)
    # Each step for its late agency, in exactly one status.
    for row in report.agencies:
        mine = [s for s in started if s.late_agency == row.agency]
        for status in STATUSES:
            assert getattr(row, f"steps_{status}") == sum(getattr(row, f"{g}_{status}") for g in GROUPS)
            assert getattr(row, f"steps_{status}") == sum(1 for s in mine if _status(world, s) == status), status
        overdue = [s for s in mine if _status(world, s) == "open" and s.due_at < AS_OF]
        assert row.open_overdue_steps == len(overdue)
        assert row.total_overdue_seconds == sum(int((AS_OF - s.due_at).total_seconds()) for s in overdue)
        assert row.receipts_ended == 0                     # a receipt still due is still due


def test_on_time_rate_and_lateness_recounted(world, report):
    """按时率 = on time / due, due = on time + closed late + open overdue + ended after the limit;
    lateness of the steps closed late = closed_at - due_at. Recounted per agency and per rule."""
    started = [s for s in world.steps if _counted(world, s)]

    def recount(steps):
        on_time = [s for s in steps if _status(world, s) == "on_time"]
        late = [int((s.closed_at - s.due_at).total_seconds()) for s in steps if _status(world, s) == "late"]
        open_overdue = [s for s in steps if _status(world, s) == "open" and s.due_at < AS_OF]
        ended_overdue = [s for s in steps if _status(world, s) == "ended" and s.closed_at > s.due_at]
        due = len(on_time) + len(late) + len(open_overdue) + len(ended_overdue)
        return due, (len(on_time) / due if due else None), late, len(ended_overdue)

    for row in [*report.agencies, report.totals]:
        mine = [s for s in started if row.agency == "total" or s.late_agency == row.agency]
        due, rate, late, ended_overdue = recount(mine)
        assert (row.steps_due, row.on_time_rate, row.steps_ended_overdue) == (due, rate, ended_overdue), row.agency
        assert row.total_seconds_late == sum(late) and row.max_seconds_late == max(late, default=0)
        assert row.median_seconds_late == (sorted(late)[len(late) // 2] if len(late) % 2 else
                                           (sum(sorted(late)[len(late) // 2 - 1:len(late) // 2 + 1]) / 2
                                            if late else None))
    rules = {s.rule for s in started}
    assert {(r.rule, r.agency) for r in report.on_time if r.agency == "total"} == {(rule, "total") for rule in rules}
    for entry in report.on_time:
        mine = [s for s in started
                if s.rule == entry.rule and (entry.agency == "total" or s.late_agency == entry.agency)]
        due, rate, late, ended_overdue = recount(mine)
        assert (entry.steps, entry.steps_due, entry.on_time_rate) == (len(mine), due, rate), (entry.rule, entry.agency)
        assert (entry.late, entry.ended_overdue, entry.max_seconds_late) == (
            len(late), ended_overdue, max(late, default=0))
    # Every step of the period is in exactly one (rule, agency) row and in its rule's total.
    assert sum(r.steps for r in report.on_time if r.agency != "total") == len(started)
    assert sum(r.steps for r in report.on_time if r.agency == "total") == len(started)



def test_transfers_are_counted_once_for_the_sender_and_once_for_the_recipient(world, report):
    transfers = [m for m in world.messages
                 if m.kind in ("clue_transfer", "case_transfer") and _in_period(m.sent_at)]
    assert report.totals.transfers_sent == report.totals.transfers_received == len(transfers)
    for row in report.agencies:
        assert row.transfers_sent == sum(1 for m in transfers if m.sender == row.agency)
        assert row.transfers_received == sum(1 for m in transfers if m.recipient == row.agency)


def test_each_case_decision_falls_in_exactly_one_outcome(world, report):
    groups = {}
    for m in world.messages:
        if m.kind in ("filing_decision", "reconsideration_decision") and world.known(m, AS_OF):
            key = (m.sender, m.referral_id)
            groups[key] = min(groups.get(key, m.sent_at), m.sent_at)
    in_period = sum(1 for first in groups.values() if _in_period(first))
    totals = report.totals
    assert totals.cases_opened + totals.cases_refused + totals.cases_forwarded + totals.cases_unknown == in_period
    sealed = {(m.sender, m.referral_id) for m in world.messages
              if m.kind == "filing_decision" and m.sealed and world.known(m, AS_OF)}
    assert totals.cases_unknown == sum(1 for key in sealed if _in_period(groups[key]))



OPENERS = ("clue_transfer", "case_transfer", "reconsideration_request", "supervision_request",
           "invoice_verification_request", "reward_request")


def _recount_referrals(world, as_of=AS_OF):
    """(agency, referral) -> (first opening's sent_at, completed | ended | pending), recounted here
    from the messages with the definitions of docs/office.md §7 (办结)."""
    known = sorted((m for m in world.messages if world.known(m, as_of)), key=lambda m: (m.sent_at, m.message_id))
    result = {}
    for referral in {m.referral_id for m in known}:
        mine = [m for m in known if m.referral_id == referral]
        openers = [m for m in mine if m.kind in OPENERS
                   or (m.kind == "prosecution_decision" and m.recipient == COURT
                       and m.facts.get("decision") == "prosecute")]
        for agency in {m.recipient for m in openers}:
            states = []
            for opener in (m for m in openers if m.recipient == agency):
                later = [m for m in mine if m.sent_at >= opener.sent_at and m is not opener]
                acts = [m for m in later if m.sender == agency]
                kinds = {m.kind for m in acts}
                if opener.kind in ("clue_transfer", "case_transfer"):
                    decisions = [m for m in acts if m.kind in ("filing_decision", "reconsideration_decision")]
                    last = (decisions[-1].facts.get("decision") or decisions[-1].facts.get("outcome")
                            if decisions else None)
                    prosecutions = [m.facts.get("decision") for m in acts if m.kind == "prosecution_decision"]
                    done = (bool(kinds & {"handling_result", "case_transfer", "closure"})
                            or last in ("not_filed", "not_competent", "upheld")
                            or (prosecutions and prosecutions[-1] in ("prosecute", "not_prosecute")))
                else:
                    answer = {"reconsideration_request": "reconsideration_decision",
                              "supervision_request": "supervision_notice", "prosecution_decision": "judgment",
                              "invoice_verification_request": "invoice_verification_result",
                              "reward_request": "reward_payment"}[opener.kind]
                    done = "closure" in kinds or any(
                        m.kind == answer and (answer != "judgment" or m.facts.get("effective") is True) for m in acts)
                if done:
                    states.append("completed")
                elif any((m.kind == "closure" and m.sender != agency)
                         or (m.kind == "withdrawal" and m.recipient == agency) for m in later):
                    states.append("ended")
                else:
                    states.append("pending")
            first = min(m.sent_at for m in openers if m.recipient == agency)
            state = ("completed" if set(states) == {"completed"}
                     else "ended" if "pending" not in states else "pending")
            result[(agency, referral)] = (first, state)
    return result


def test_referrals_received_completed_ended_pending_recounted(world, report):
    recount = _recount_referrals(world)
    for row in report.agencies:
        mine = [state for (agency, _), (first, state) in recount.items() if agency == row.agency and _in_period(first)]
        assert row.referrals_received == len(mine), row.agency
        assert (row.referrals_completed, row.referrals_ended, row.referrals_pending) == (
            mine.count("completed"), mine.count("ended"), mine.count("pending")), row.agency
        if row.referrals_received:
            assert row.completion_rate == row.referrals_completed / row.referrals_received
        else:
            assert row.completion_rate is None
    # Every role can complete: the police, the procuratorate, the court, health and finance.
    for agency in (PS, PROC, COURT, HEALTH, FIN):
        assert report.row(agency).referrals_completed > 0, agency



def _split(world, key):
    parts = {}
    for m in world.messages:
        parts.setdefault(key(m), ([], []))[0].append(m)
    for s in world.steps:
        parts.setdefault(key(s), ([], []))[1].append(s)
    return parts


def test_figures_add_up_over_referrals_so_nothing_is_shared_between_two(world, report):
    """Every figure is per referral: computing each referral alone and adding gives the same totals."""
    sums = {name: 0 for name in ADDITIVE_FIELDS}
    for messages, steps in _split(world, lambda item: item.referral_id).values():
        part = compute_stats(messages, steps, period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF,
                             agencies=AGENCIES)
        for name in ADDITIVE_FIELDS:
            sums[name] += getattr(part.totals, name)
    assert sums == {name: getattr(report.totals, name) for name in ADDITIVE_FIELDS}


def test_consecutive_periods_add_up_to_the_whole(world, report):
    """Each item belongs to exactly one period: two halves add up to the month."""
    middle = datetime(2026, 11, 16, tzinfo=CN)
    halves = [compute_stats(world.messages, world.steps, period_from=start, period_to=end, as_of=AS_OF,
                            agencies=AGENCIES)
              for start, end in ((PERIOD_FROM, middle), (middle, PERIOD_TO))]
    for name in ADDITIVE_FIELDS:
        for index, row in enumerate(report.agencies):
            assert getattr(row, name) == sum(getattr(half.agencies[index], name) for half in halves), name
    assert report.trend == halves[0].trend + halves[1].trend   # each deadline on one day of one report


def test_steps_and_messages_outside_the_period_are_excluded(world, report):
    inside = [s for s in world.steps if _in_period(s.started_at)]
    outside = [s for s in world.steps if not _in_period(s.started_at)]
    assert outside
    only_inside = compute_stats(world.messages, inside, period_from=PERIOD_FROM, period_to=PERIOD_TO,
                                as_of=AS_OF, agencies=AGENCIES)
    assert (only_inside.agencies, only_inside.totals) == (report.agencies, report.totals)
    # Nothing of the period: all zeros.
    empty = compute_stats(world.messages, outside, period_from=PERIOD_FROM, period_to=PERIOD_TO,
                          as_of=AS_OF, agencies=AGENCIES)
    for status in STATUSES:
        assert getattr(empty.totals, f"steps_{status}") == 0


def test_a_report_is_what_the_office_knew_at_as_of(world):
    """Data that arrived later does not change a report: truncating the data to what was known
    at as_of (observed and sent by then) gives the same report."""
    as_of = datetime(2026, 11, 20, 12, tzinfo=CN)
    known = [m for m in world.messages if world.known(m, as_of)]
    steps = []
    for s in world.steps:
        if not world.step_known(s, as_of):
            continue
        if s.closing_message_id is not None and not world.closed(s, as_of):
            s = replace(s, state=OPEN, closed_at=None, closing_message_id=None)
        steps.append(s)
    full = compute_stats(world.messages, world.steps, period_from=PERIOD_FROM, period_to=PERIOD_TO,
                         as_of=as_of, agencies=AGENCIES)
    truncated = compute_stats(known, steps, period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=as_of,
                              agencies=AGENCIES)
    assert full == truncated
    assert full.totals.steps_open > 0



def test_duplicated_input_changes_nothing(world, report):
    again = compute_stats(world.messages + world.messages[::3], world.steps + world.steps[::5],
                          period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF, agencies=AGENCIES)
    assert again == report
    clash = replace(world.steps[0], due_at=world.steps[0].due_at + DAY)
    with pytest.raises(ValueError, match="two different steps"):
        compute_stats(world.messages, world.steps + [clash], period_from=PERIOD_FROM, period_to=PERIOD_TO,
                      as_of=AS_OF, agencies=AGENCIES)


def test_funds_are_counted_once_per_referral(world, report):
    judgments = [m for m in world.messages if m.kind == "judgment" and world.known(m, AS_OF)]
    assert len(judgments) >= 3 and len(judgments) % 3 == 0
    summed_copies = sum(m.facts["amount_to_recover_fen"] for m in judgments if _in_period(m.sent_at))
    assert report.row(COURT).funds_to_recover_fen < summed_copies
    assert report.row(COURT).funds_to_recover_fen == sum(
        m.facts["amount_to_recover_fen"] for m in judgments if _in_period(m.sent_at) and m.recipient == MS)
    assert report.row(COURT).funds_recovered_fen == 0          # a judgment's amount is not money recovered
    assert isinstance(report.totals.funds_recovered_fen, int)



def test_funds_recovered_and_to_recover_recounted(world, report):
    """已追回 (recovered) and 应追回 (to recover), recounted per referral from the messages: a
    closure's amount is the referral's recovered total; without one, each sender's latest
    handling result; to recover is the latest effective judgment's amount. Never mixed."""
    recovered, to_recover = {}, {}
    for referral in {m.referral_id for m in world.messages}:
        mine = sorted((m for m in world.messages if m.referral_id == referral and world.known(m, AS_OF)),
                      key=lambda m: (m.sent_at, m.message_id))
        closures = [m for m in mine if m.kind == "closure" and "amount_recovered_fen" in m.facts]
        if closures:
            chosen = [closures[-1]]
        else:
            latest = {}
            for m in mine:
                if m.kind == "handling_result" and "amount_recovered_fen" in m.facts:
                    latest[m.sender] = m
            chosen = list(latest.values())
        for m in chosen:
            if _in_period(m.sent_at):
                recovered[m.sender] = recovered.get(m.sender, 0) + m.facts["amount_recovered_fen"]
        judgments = [m for m in mine if m.kind == "judgment" and m.facts.get("effective") is True]
        if judgments and _in_period(judgments[-1].sent_at):
            court = judgments[-1].sender
            to_recover[court] = to_recover.get(court, 0) + judgments[-1].facts["amount_to_recover_fen"]
    for row in report.agencies:
        assert row.funds_recovered_fen == recovered.get(row.agency, 0), row.agency
        assert row.funds_to_recover_fen == to_recover.get(row.agency, 0), row.agency
    assert report.totals.funds_recovered_fen == sum(recovered.values()) > 0
    assert report.totals.funds_to_recover_fen == sum(to_recover.values()) > 0


def test_trend_reconciles_with_the_totals(world, report):
    assert len(report.trend) == 30
    assert report.trend[0]["day"] == "2026-11-01" and report.trend[-1]["day"] == "2026-11-30"
    assert sum(day["transfers"] for day in report.trend) == report.totals.transfers_sent
    due_inside = [s for s in world.steps if world.step_known(s) and PERIOD_FROM <= s.due_at < PERIOD_TO]
    assert sum(day["steps_due"] for day in report.trend) == len(due_inside)
    for key, status, extra in (("steps_on_time", "on_time", None), ("steps_closed_late", "late", None),
                               ("steps_ended_overdue", "ended", lambda s: s.closed_at > s.due_at),
                               ("steps_open_overdue", "open", lambda s: s.due_at < AS_OF)):
        expected = [s for s in due_inside if _status(world, s) == status and (extra is None or extra(s))]
        assert sum(day[key] for day in report.trend) == len(expected), key
        assert sum(day[key] for day in report.trend) > 0, key
    for day in report.trend:
        assert (day["steps_on_time"] + day["steps_closed_late"] + day["steps_ended_overdue"]
                + day["steps_open_overdue"]) <= day["steps_due"]



def test_an_agency_not_listed_still_gets_its_row(world, report):
    partial = compute_stats(world.messages, world.steps, period_from=PERIOD_FROM, period_to=PERIOD_TO,
                            as_of=AS_OF, agencies=[PS, MS])
    assert [row.agency for row in partial.agencies][:2] == [PS, MS]
    assert {row.agency for row in partial.agencies} >= {PROC, COURT, HEALTH, FIN}
    assert partial.totals == report.totals


# -- a small example worked out by hand ----------------------------------------------------------

T = datetime(2026, 11, 10, 1, 0, tzinfo=UTC)   # 09:00 on 10 November in Beijing


def three_referrals() -> World:
    """R1: a crime filed, prosecuted, judged and closed. R2: refused, then reversed on
    reconsideration; its receipt never came. R3: a health clue whose result came after as_of.
    Plus noise outside the period (R0 in October, R5 in December, R6 after as_of)."""
    w = World()
    # R1
    m1 = w.send("clue_transfer", MS, PS, "R1", T, {"category": "suspected_crime"})
    m2 = w.send("copy_notice", MS, PROC, "R1", T)
    w.interval("approve_transfer", m1, T - 4 * DAY, 3 * DAY, T - 12 * HOUR)          # late
    w.interval("transfer_after_approval", m1, T - 12 * HOUR, 24 * HOUR, T)           # on time
    w.close(w.open("receipt", m1, DAY), w.send("receipt", PS, MS, "R1", T + 2 * HOUR))          # on time
    w.close(w.open("receipt", m2, DAY), w.send("receipt", PROC, MS, "R1", T + 30 * HOUR))       # late
    m4 = w.send("filing_decision", PS, MS, "R1", T + DAY, {"decision": "filed"})
    w.close(w.open("filing_decision", m1, 3 * DAY), m4)                                         # on time
    w.close(w.open("materials_handover", m4, 3 * DAY),                                          # late (MS)
            w.send("materials_handover", MS, PS, "R1", T + 5 * DAY))
    m6 = w.send("case_transfer", PS, PROC, "R1", T + 6 * DAY, {"direction": "for_prosecution"})
    w.close(w.open("receipt", m6, DAY), w.send("receipt", PROC, PS, "R1", T + 6 * DAY + HOUR))  # on time
    m7 = w.send("prosecution_decision", PROC, COURT, "R1", T + 8 * DAY, {"decision": "prosecute"})
    w.send("prosecution_decision", PROC, MS, "R1", T + 8 * DAY, {"decision": "prosecute"})
    w.close(w.open("prosecution_decision", m6, 30 * DAY), m7)                                   # on time
    for recipient in (MS, PROC, PS):
        w.send("judgment", COURT, recipient, "R1", T + 12 * DAY,
               {"effective": True, "amount_to_recover_fen": 1_000_000, "fine_fen": 50_000})
    for recipient in (PS, PROC):
        w.send("closure", MS, recipient, "R1", T + 14 * DAY, {"outcome": "completed", "amount_recovered_fen": 600_000})
    # R2
    n1 = w.send("clue_transfer", MS, PS, "R2", T + DAY, {"category": "suspected_crime"})
    early = datetime(2026, 10, 29, tzinfo=UTC)
    # Both started before the period (not counted), both due on 1 November (in the trend).
    w.interval("approve_transfer", n1, early, 3 * DAY, early + 2 * DAY)            # on time
    w.interval("transfer_after_approval", n1, early + 2 * DAY, 24 * HOUR, T + DAY)  # late
    w.open("receipt", n1, DAY)                                                      # never answered
    n2 = w.send("filing_decision", PS, MS, "R2", T + 6 * DAY, {"decision": "not_filed"})
    w.close(w.open("filing_decision", n1, 3 * DAY), n2)                                         # late
    n3 = w.send("reconsideration_request", MS, PS, "R2", T + 7 * DAY)
    w.close(w.open("receipt", n3, DAY), w.send("receipt", PS, MS, "R2", T + 7 * DAY + HOUR))    # on time
    w.close(w.open("reconsideration_decision", n3, 3 * DAY),                                    # on time
            w.send("reconsideration_decision", PS, MS, "R2", T + 9 * DAY, {"outcome": "reversed"}))
    # R3
    p1 = w.send("clue_transfer", MS, HEALTH, "R3", T + 2 * DAY, {"category": "medical_conduct"})
    w.close(w.open("receipt", p1, DAY), w.send("receipt", HEALTH, MS, "R3", T + 2 * DAY + 30 * 60 * timedelta(seconds=1)))
    handling = w.open("handling_result", p1, 30 * DAY)
    w.close(handling, w.send("handling_result", HEALTH, MS, "R3", datetime(2026, 12, 10, tzinfo=CN),
                             {"result": "penalised", "amount_recovered_fen": 250_000, "fine_fen": 0}))
    # R0: October, outside the period, but closed (without an amount) inside it.
    r0 = w.send("clue_transfer", MS, PS, "R0", datetime(2026, 10, 20, tzinfo=CN), {"category": "suspected_crime"})
    w.close(w.open("receipt", r0, DAY), w.send("receipt", PS, MS, "R0", r0.sent_at + HOUR))
    d0 = w.send("filing_decision", PS, MS, "R0", r0.sent_at + DAY, {"decision": "filed"})
    w.close(w.open("filing_decision", r0, 3 * DAY), d0)
    w.send("judgment", COURT, MS, "R0", datetime(2026, 10, 28, tzinfo=CN),
           {"effective": True, "amount_to_recover_fen": 777, "fine_fen": 0})
    w.send("closure", MS, PS, "R0", datetime(2026, 11, 15, tzinfo=CN), {"outcome": "completed"})
    # R5: after the period (before as_of), overdue at as_of.
    r5 = w.send("clue_transfer", MS, PS, "R5", datetime(2026, 12, 2, tzinfo=CN), {"category": "suspected_crime"})
    w.open("receipt", r5, DAY)
    # R6: after as_of.
    w.send("clue_transfer", MS, PS, "R6", datetime(2026, 12, 10, tzinfo=CN), {"category": "suspected_crime"})
    return w


@pytest.fixture
def small():
    w = three_referrals()
    return w, compute_stats(w.messages, w.steps, period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF,
                            agencies=AGENCIES)


def _nonzero(row: AgencyStats) -> dict:
    return {k: v for k, v in asdict(row).items() if k != "agency" and v not in (0, None)}


def test_hand_checked_example_every_figure(small):
    _, report = small
    overdue = int((AS_OF - (T + 2 * DAY)).total_seconds())
    assert overdue == 22 * 86400 + 15 * 3600
    assert _nonzero(report.row(MS)) == {
        "transfers_sent": 3, "feedback_late": 1, "transfer_steps_on_time": 1, "transfer_steps_late": 1,
        "steps_on_time": 1, "steps_late": 2, "steps_due": 3, "on_time_rate": 1 / 3,
        # R1's approval 12 h late, its handover 1 day late.
        "median_seconds_late": 64800.0, "max_seconds_late": 86400, "total_seconds_late": 129600,
        "median_seconds_to_feedback": 345600.0, "funds_recovered_fen": 600_000}
    assert _nonzero(report.row(PS)) == {
        "transfers_sent": 1, "transfers_received": 2, "receipts_on_time": 2, "receipts_open": 1,
        "decisions_on_time": 2, "decisions_late": 1, "steps_on_time": 4, "steps_late": 1, "steps_open": 1,
        "steps_due": 6, "on_time_rate": 4 / 6,
        "median_seconds_late": 172800.0, "max_seconds_late": 172800, "total_seconds_late": 172800,
        # R1: filed, then the case transferred: completed. R2: refused, reversed on
        # reconsideration, no case transferred yet: the investigation goes on (pending).
        "cases_opened": 2, "referrals_received": 2, "referrals_completed": 1, "referrals_pending": 1,
        "completion_rate": 0.5,
        "open_overdue_steps": 1, "max_overdue_seconds": overdue, "total_overdue_seconds": overdue,
        "median_seconds_to_receipt": 5400.0, "median_seconds_to_decision": 172800.0}
    assert _nonzero(report.row(PROC)) == {
        "transfers_received": 1, "receipts_on_time": 1, "receipts_late": 1, "decisions_on_time": 1,
        "steps_on_time": 2, "steps_late": 1, "steps_due": 3, "on_time_rate": 2 / 3,
        "median_seconds_late": 21600.0, "max_seconds_late": 21600, "total_seconds_late": 21600,
        "referrals_received": 1, "referrals_completed": 1,
        "completion_rate": 1.0, "median_seconds_to_receipt": 55800.0, "median_seconds_to_decision": 172800.0}
    # The court's part: the decision to prosecute sent to it, completed by its effective judgment,
    # whose amount is to be recovered (not recovered).
    assert _nonzero(report.row(COURT)) == {
        "referrals_received": 1, "referrals_completed": 1, "completion_rate": 1.0, "funds_to_recover_fen": 1_000_000}
    assert _nonzero(report.row(HEALTH)) == {
        "transfers_received": 1, "receipts_on_time": 1, "feedback_open": 1, "steps_on_time": 1, "steps_open": 1,
        "steps_due": 1, "on_time_rate": 1.0, "referrals_received": 1, "referrals_pending": 1,
        "median_seconds_to_receipt": 1800.0}
    assert report.row(HEALTH).completion_rate == 0.0
    for agency in (FIN, OFFICE):
        assert _nonzero(report.row(agency)) == {}
    assert _nonzero(report.totals) == {
        "transfers_sent": 4, "transfers_received": 4, "receipts_on_time": 4, "receipts_late": 1,
        "receipts_open": 1, "decisions_on_time": 3, "decisions_late": 1, "feedback_late": 1, "feedback_open": 1,
        "transfer_steps_on_time": 1, "transfer_steps_late": 1, "steps_on_time": 8, "steps_late": 4,
        "steps_open": 2, "steps_due": 13, "on_time_rate": 8 / 13,
        "median_seconds_late": 64800.0, "max_seconds_late": 172800, "total_seconds_late": 324000,
        "cases_opened": 2, "referrals_received": 5, "referrals_completed": 3, "referrals_pending": 2,
        "completion_rate": 0.6, "open_overdue_steps": 1, "max_overdue_seconds": overdue,
        "total_overdue_seconds": overdue,
        # Pooled medians, not medians of the agencies' medians (which would be 5400 for receipts).
        "median_seconds_to_receipt": 3600.0, "median_seconds_to_decision": 172800.0,
        "median_seconds_to_feedback": 345600.0, "funds_recovered_fen": 600_000, "funds_to_recover_fen": 1_000_000}
    # Per rule and agency: the police's receipts 2 on time of 3 due (one open and overdue).
    receipts = report.on_time_row("receipt", PS)
    assert (receipts.steps_due, receipts.on_time, receipts.late, receipts.open_overdue) == (3, 2, 0, 1)
    assert report.on_time_row("receipt", "total").on_time_rate == 4 / 6
    handling = report.on_time_row("handling_result", HEALTH)
    assert (handling.steps, handling.steps_due, handling.on_time_rate) == (1, 0, None)   # not due yet



def test_hand_checked_example_trend(small):
    _, report = small
    keys = ("transfers", "steps_due", "steps_on_time", "steps_closed_late", "steps_ended_overdue",
            "steps_open_overdue")
    busy = {d["day"]: tuple(d[k] for k in keys) for d in report.trend if d["transfers"] or d["steps_due"]}
    assert busy == {
        "2026-11-01": (0, 2, 1, 1, 0, 0),   # R2's approval and transfer, started in October
        "2026-11-09": (0, 1, 0, 1, 0, 0),   # approval due, closed late
        "2026-11-10": (1, 1, 1, 0, 0, 0),   # R1 transferred; its transfer-after-approval due
        "2026-11-11": (1, 2, 1, 1, 0, 0),   # R2 transferred; two receipts due, the copy's closed late
        "2026-11-12": (1, 1, 0, 0, 0, 1),   # R3 transferred; R2's receipt due, never came: open and overdue
        "2026-11-13": (0, 2, 2, 0, 0, 0),
        "2026-11-14": (0, 2, 0, 2, 0, 0),   # handover closed late; R2's filing decision closed late
        "2026-11-16": (1, 0, 0, 0, 0, 0),   # case transferred for prosecution
        "2026-11-17": (0, 1, 1, 0, 0, 0),
        "2026-11-18": (0, 1, 1, 0, 0, 0),
        "2026-11-20": (0, 1, 1, 0, 0, 0),
    }



def test_hand_checked_example_overdue_list(small):
    w, _ = small
    snap = snapshot(w.messages, w.steps, AS_OF)
    listed = overdue_steps(snap, period_from=PERIOD_FROM, period_to=PERIOD_TO)
    assert [s.step_id for s in listed] == ["receipt:m000016"]
    backlog = overdue_steps(snap)
    assert len(backlog) == 2   # with R5's receipt, started after the period



def test_a_refusal_upheld_and_a_sealed_decision():
    w = World()
    for referral in ("A", "B", "C", "D"):
        w.send("clue_transfer", MS, PS, referral, T, {"category": "suspected_crime"})
    w.send("filing_decision", PS, MS, "A", T + DAY, {"decision": "not_filed"})
    w.send("reconsideration_decision", PS, MS, "A", T + 5 * DAY, {"outcome": "upheld"})
    w.send("filing_decision", PS, MS, "B", T + DAY, sealed=True)
    w.send("filing_decision", PS, MS, "C", T + DAY, {"decision": "not_competent"})
    # D: refused in the period, reversed after as_of: still refused as of as_of.
    w.send("filing_decision", PS, MS, "D", T + DAY, {"decision": "not_filed"})
    w.send("reconsideration_decision", PS, MS, "D", datetime(2026, 12, 20, tzinfo=CN), {"outcome": "reversed"})
    row = compute_stats(w.messages, [], period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF,
                        agencies=AGENCIES).row(PS)
    assert (row.cases_opened, row.cases_refused, row.cases_forwarded, row.cases_unknown) == (0, 2, 1, 1)
    # Refused (A, D) and passed on (C) are the police's final answers; a decision nobody can
    # read (B) is not known to be one (the figure is a lower bound).
    assert (row.referrals_received, row.referrals_completed, row.referrals_pending) == (4, 3, 1)
    later = compute_stats(w.messages, [], period_from=PERIOD_FROM, period_to=PERIOD_TO,
                          as_of=datetime(2026, 12, 31, tzinfo=CN), agencies=AGENCIES).row(PS)
    assert (later.cases_opened, later.cases_refused) == (1, 1)   # the same case, now counted as opened
    assert later.referrals_completed == 2                         # D's case is open now: not completed



def test_completion_by_the_agencys_answer_not_by_others_closures():
    w = World()
    for referral in ("A", "B", "C", "D", "E", "F"):
        w.send("clue_transfer", MS, HEALTH, referral, T, {"category": "medical_conduct"})
    w.send("handling_result", HEALTH, MS, "A", T + DAY, sealed=True)   # the agency answered (kind suffices)
    w.send("closure", MS, HEALTH, "B", T + DAY, {"outcome": "other"})  # closed by the sender: ended, not completed
    w.send("withdrawal", MS, HEALTH, "C", T + DAY)                     # withdrawn from it: ended
    w.send("withdrawal", MS, PS, "D", T + DAY)                         # a withdrawal addressed elsewhere
    w.send("handling_result", HEALTH, MS, "E", datetime(2026, 12, 9, tzinfo=CN), {"amount_recovered_fen": 1})
    w.send("closure", HEALTH, MS, "F", T + DAY, {"outcome": "no_violation"})   # closed by the agency itself
    report = compute_stats(w.messages, [], period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF,
                           agencies=AGENCIES)
    row = report.row(HEALTH)
    assert (row.referrals_received, row.referrals_completed, row.referrals_ended, row.referrals_pending) == (6, 2, 2, 2)
    assert row.completion_rate == 2 / 6
    assert report.row(MS).completion_rate is None



def test_funds_recovered_and_to_recover():
    w = World()
    # A: judgment to three agencies, then a closure to two: to recover the judgment's amount
    # once (the court's), recovered the closure's amount once (the bureau's).
    for recipient in (MS, PROC, PS):
        w.send("judgment", COURT, recipient, "A", T, {"effective": True, "amount_to_recover_fen": 1_000_000})
    for recipient in (PS, PROC):
        w.send("closure", MS, recipient, "A", T + DAY, {"amount_recovered_fen": 400_001})
    # B: judgment only: nothing recovered yet.
    for recipient in (MS, PROC, PS):
        w.send("judgment", COURT, recipient, "B", T, {"effective": True, "amount_to_recover_fen": 30_000})
    # C: a sealed closure and a closure without amount: the handling result's amount.
    w.send("handling_result", HEALTH, MS, "C", T, {"amount_recovered_fen": 5_55})
    w.send("closure", MS, HEALTH, "C", T + DAY, sealed=True)
    w.send("closure", MS, HEALTH, "C", T + 2 * DAY, {"outcome": "completed"})
    # D: a corrected handling result replaces the first; another sender's result adds to it.
    w.send("handling_result", HEALTH, MS, "D", T, {"amount_recovered_fen": 100})
    w.send("handling_result", HEALTH, MS, "D", T + DAY, {"amount_recovered_fen": 150})
    w.send("handling_result", MS, HEALTH, "D", T + DAY, {"amount_recovered_fen": 7})
    # E: a judgment not yet effective orders nothing yet; a later effective one replaces it.
    w.send("judgment", COURT, MS, "E", T, {"effective": False, "amount_to_recover_fen": 999})
    w.send("judgment", COURT, MS, "F", T, {"effective": False, "amount_to_recover_fen": 50})
    w.send("judgment", COURT, MS, "F", T + DAY, {"effective": True, "amount_to_recover_fen": 40})
    report = compute_stats(w.messages, [], period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF,
                           agencies=AGENCIES)
    assert report.row(MS).funds_recovered_fen == 400_001 + 7
    assert report.row(COURT).funds_recovered_fen == 0
    assert report.row(COURT).funds_to_recover_fen == 1_000_000 + 30_000 + 40
    assert report.row(HEALTH).funds_recovered_fen == 555 + 150
    assert report.totals.funds_recovered_fen == 400_001 + 7 + 705
    # A closure of B after the period: B's recovery belongs to that later period.
    w.send("closure", MS, PS, "B", datetime(2026, 12, 3, tzinfo=CN), {"amount_recovered_fen": 29_000})
    again = compute_stats(w.messages, [], period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF,
                          agencies=AGENCIES)
    assert (again.agencies, again.totals) == (report.agencies, report.totals)



def test_money_must_be_integer_fen():
    w = World()
    w.send("closure", MS, PS, "A", T, {"amount_recovered_fen": 12.5})
    with pytest.raises(ValueError, match="integer fen"):
        compute_stats(w.messages, [], period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF,
                      agencies=AGENCIES)


def test_bad_arguments_are_refused():
    naive = datetime(2026, 11, 1)
    for kwargs in ({"period_from": naive}, {"period_to": PERIOD_FROM}, {"as_of": PERIOD_FROM - DAY}):
        arguments = {"period_from": PERIOD_FROM, "period_to": PERIOD_TO, "as_of": AS_OF, **kwargs}
        with pytest.raises(ValueError):
            compute_stats([], [], agencies=AGENCIES, **arguments)


def test_json_is_json_native(small):
    _, report = small
    data = json.loads(json.dumps(report.to_json()))
    assert data["period_from"] == "2026-10-31T16:00:00Z"
    assert data["period_to"] == "2026-11-30T16:00:00Z"
    assert data["as_of"] == "2026-12-04T16:00:00Z"
    assert data["timezone"] == "Asia/Shanghai"
    assert data["totals"]["funds_recovered_fen"] == 600_000
    assert data["totals"]["agency"] == "total"
    assert [row["agency"] for row in data["agencies"]] == list(AGENCIES)
    assert len(data["trend"]) == 30 and data["trend"][9]["day"] == "2026-11-10"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["as_of"])


# -- exporters -------------------------------------------------------------------------------------

def _expected_cell(row: AgencyStats, name: str, kind: str):
    if kind == "money":
        return Decimal(getattr(row, name)) / 100
    if kind == "rate":
        numerator, denominator = {"completion_rate": ("referrals_completed", "referrals_received"),
                                  "on_time_rate": ("steps_on_time", "steps_due")}[name]
        return None if getattr(row, denominator) == 0 else getattr(row, numerator) / getattr(row, denominator)
    return getattr(row, name)


def test_csv_round_trips(report, tmp_path):
    path = tmp_path / "stats.csv"
    write_csv(report, path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    assert tuple(table[0]) == HEADERS
    assert "completion_rate (办结率)" in HEADERS and "funds_recovered_yuan (已追回资金 元)" in HEADERS
    assert "on_time_rate (按时率)" in HEADERS and "funds_to_recover_yuan (判决应追回 元)" in HEADERS
    rows = [*report.agencies, report.totals]
    assert len(table) == 1 + len(rows)
    for line, row in zip(table[1:], rows):
        for text, (name, _, kind) in zip(line, COLUMNS):
            expected = _expected_cell(row, name, kind)
            if kind == "text":
                assert text == expected
            elif kind == "money":
                assert re.fullmatch(r"-?\d+\.\d\d", text)
                assert Decimal(text) == expected
            elif kind == "rate":
                if expected is None:
                    assert text == ""
                else:
                    assert re.fullmatch(r"\d\.\d{4}", text)
                    assert abs(Decimal(text) - Decimal(repr(expected))) <= Decimal("0.00005")
            elif kind == "median":
                assert (text == "") if expected is None else (float(text) == expected)
            else:
                assert int(text) == expected
    # Money in the total row is the exact sum of the agencies' yuan.
    money = [index for index, (_, _, kind) in enumerate(COLUMNS) if kind == "money"]
    for index in money:
        assert sum(Decimal(line[index]) for line in table[1:-1]) == Decimal(table[-1][index])


def test_csv_exact_formats(small):
    _, report = small
    buffer = io.StringIO(newline="")
    write_csv(report, buffer)
    lines = list(csv.DictReader(io.StringIO(buffer.getvalue(), newline="")))
    total = lines[-1]
    assert total["agency (单位)"] == "total"
    assert total["completion_rate (办结率)"] == "0.6000"
    assert total["on_time_rate (按时率)"] == "0.6154"                 # 8 / 13, rounded half up
    assert total["funds_recovered_yuan (已追回资金 元)"] == "6000.00"
    assert total["funds_to_recover_yuan (判决应追回 元)"] == "10000.00"
    assert total["rewards_paid_yuan (奖励发放 元)"] == "0.00"
    assert total["median_seconds_to_receipt (回执用时中位数 秒)"] == "3600"
    assert lines[0]["completion_rate (办结率)"] == ""          # medical security received nothing


def test_xlsx_has_the_sheets_and_the_same_totals(report, world, tmp_path):
    path = tmp_path / "stats.xlsx"
    snap = snapshot(world.messages, world.steps, AS_OF)
    backlog = overdue_steps(snap, period_from=PERIOD_FROM, period_to=PERIOD_TO)
    write_xlsx(report, path, overdue_steps=snap.steps)   # all steps passed: only the overdue ones listed
    book = load_workbook(path)
    assert book.sheetnames[:3] == [STATISTICS_SHEET, OVERDUE_SHEET, TREND_SHEET]
    sheet = book[STATISTICS_SHEET]
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.bold for cell in sheet[1])
    assert tuple(cell.value for cell in sheet[1]) == HEADERS
    assert sheet.column_dimensions["A"].width >= 12
    rows = [*report.agencies, report.totals]
    assert sheet.max_row == 1 + len(rows)
    for index, row in enumerate(rows, start=2):
        for column, (name, _, kind) in enumerate(COLUMNS, start=1):
            cell = sheet.cell(row=index, column=column)
            expected = _expected_cell(row, name, kind)
            if kind == "money":
                assert cell.number_format == "#,##0.00"
                assert isinstance(cell.value, (int, float))
                assert Decimal(str(cell.value)).quantize(Decimal("0.01")) == expected
            elif kind == "rate":
                assert (cell.value is None) if expected is None else abs(cell.value - expected) <= 0.00005
            else:
                assert cell.value == expected, (row.agency, name)
    overdue = book[OVERDUE_SHEET]
    all_open_overdue = overdue_steps(snap)
    assert overdue.max_row == 1 + len(all_open_overdue)
    assert len(all_open_overdue) > len(backlog) > 0
    assert overdue.freeze_panes == "A2"
    assert overdue.cell(row=2, column=1).value == all_open_overdue[0].step_id
    trend = book[TREND_SHEET]
    assert trend.max_row == 1 + len(report.trend)
    assert sum(trend.cell(row=r, column=2).value for r in range(2, trend.max_row + 1)) == report.totals.transfers_sent
    on_time = book[ON_TIME_SHEET]
    assert on_time.max_row == 1 + len(report.on_time)
    assert [on_time.cell(row=r, column=3).value for r in range(2, on_time.max_row + 1)] == [
        entry.steps_due for entry in report.on_time]


def test_xlsx_overdue_sheet_for_the_period(small, tmp_path):
    w, report = small
    path = tmp_path / "small.xlsx"
    write_xlsx(report, path, overdue_steps(snapshot(w.messages, w.steps, AS_OF), period_from=PERIOD_FROM,
                                           period_to=PERIOD_TO))
    sheet = load_workbook(path)[OVERDUE_SHEET]
    assert sheet.max_row == 2
    values = [cell.value for cell in sheet[2]]
    assert values[0] == "receipt:m000016" and values[3] == PS
    assert values[6] == datetime(2026, 11, 12, 9, 0)          # due, Beijing time
    assert values[7] == report.totals.max_overdue_seconds
    total = load_workbook(path)[STATISTICS_SHEET]
    money_column = [h for h in HEADERS].index("funds_recovered_yuan (已追回资金 元)") + 1
    assert total.cell(row=total.max_row, column=money_column).value == 6000


def test_a_prosecution_opens_a_trial_part_only_at_an_agency_that_may_judge():
    """The court's part in the hand-checked example exists because the route table lets the
    court send judgments; with a table where nobody may, the prosecution opens no part."""
    w = three_referrals()
    figures = dict(period_from=PERIOD_FROM, period_to=PERIOD_TO, as_of=AS_OF, agencies=AGENCIES)
    default = compute_stats(w.messages, w.steps, **figures)
    assert compute_stats(w.messages, w.steps, judges=frozenset({COURT}), **figures) == default
    nobody = compute_stats(w.messages, w.steps, judges=frozenset(), **figures)
    assert default.row(COURT).referrals_received == 1
    assert nobody.row(COURT).referrals_received == 0
    assert nobody.totals.referrals_received == default.totals.referrals_received - 1
