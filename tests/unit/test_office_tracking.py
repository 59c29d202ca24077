"""The joint-meeting office's deadline tracking (services/office/tracking.py), broker-free.

A real Tracker over a real SQLite Store (node tables and office tables), with the shipped
deadline rules (OFFICE DEADLINES in services/cluebus.yaml) and the shipped holiday calendar
(services/office/holidays_cn.yaml). Messages are ObservedMessage values, i.e. what
handlers.observe extracts from a verified envelope: the signed metadata plus non-personal facts.

Dates are in 2026, which the shipped calendar covers. Shanghai is UTC+8 (no daylight saving), so
"end of day D" is D 16:00Z.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from adapters.storage.office_tables import ObservedMessageRow, OfficeBase, StepRow
from adapters.storage.store import Store
from services.config import load_config
from services.office.calendar import Calendar
from services.office.model import CLOSED, OPEN, ObservedMessage
from services.office.rules import RuleError, load_rules
from services.office.tracking import (ANSWERS_STILL_DUE, CALENDAR_MISSING, ENDS_REFERRAL, URGE, Tracker, level_of,
                                      to_observed, to_step)

UTC = timezone.utc
MS, PS, PROC, HEALTH = "medical_security", "public_security", "procuratorate", "health"

SHIPPED_DEADLINES = load_config(environ={})["OFFICE"]["DEADLINES"]
RULES = load_rules(SHIPPED_DEADLINES)
CALENDAR = Calendar.from_yaml(None)

# Tuesday 2026-09-29, 10:00 in Shanghai. Day 1 = 09-30, day 3 = 10-02, inside the National Day
# holidays (2026-10-01..10-07 in holidays_cn.yaml): the period ends at the end of Thursday
# 2026-10-08, the first working day after them, i.e. 2026-10-08T16:00Z.
TUESDAY_BEFORE_NATIONAL_DAY = datetime(2026, 9, 29, 2, 0, tzinfo=UTC)
FILING_DUE_AFTER_NATIONAL_DAY = datetime(2026, 10, 8, 16, 0, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def hours_after(sent_at: datetime, hours: int) -> datetime:
    """A limit in hours as the law counts it: from the next whole hour (CPL art. 105)."""
    return sent_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1 + hours)


def message(kind, sender, recipient, sent_at, *, referral_id, in_reply_to=None, facts=None,
            sealed=False, message_id=None) -> ObservedMessage:
    return ObservedMessage(message_id=message_id or new_id(), kind=kind, sender=sender, recipient=recipient,
                           referral_id=referral_id, in_reply_to=in_reply_to, sent_at=sent_at,
                           observed_at=sent_at + timedelta(seconds=2), sealed=sealed,
                           facts={} if sealed else dict(facts or {}))


class Office:
    """A Tracker over one SQLite database, observing one transaction per message."""

    def __init__(self, store: Store, rules=RULES, calendar=CALENDAR):
        self.store = store
        self.tracker = Tracker(rules, calendar)
        self.referral_id = new_id()

    def observe(self, observed: ObservedMessage, *, problem: str | None = None) -> bool:
        with self.store.transaction() as repo:
            return self.tracker.observe(repo.session, observed, sha256="0" * 64, problem=problem)

    def send(self, kind, sender, recipient, sent_at, **kw) -> ObservedMessage:
        kw.setdefault("referral_id", self.referral_id)
        observed = message(kind, sender, recipient, sent_at, **kw)
        self.observe(observed)
        return observed

    def steps(self, referral_id: str | None = None) -> dict:
        """{step_id: Step} of a referral (default: this office's one referral)."""
        with self.store.transaction() as repo:
            rows = repo.session.scalars(select(StepRow).where(
                StepRow.referral_id == (referral_id or self.referral_id))).all()
            return {row.step_id: to_step(row) for row in rows}

    def step(self, rule: str, start: ObservedMessage):
        return self.steps(start.referral_id).get(f"{rule}:{start.message_id}")

    def rules_of(self, start: ObservedMessage) -> set:
        return {s.rule for s in self.steps(start.referral_id).values() if s.start_message_id == start.message_id}

    def rows(self):
        with self.store.transaction() as repo:
            return {
                "observed": repo.session.scalar(select(func.count()).select_from(ObservedMessageRow)),
                "steps": sorted((s.step_id, s.state, s.closed_at, s.closing_message_id, s.due_at)
                                for s in repo.session.scalars(select(StepRow))),
            }

    def clue(self, sent_at=TUESDAY_BEFORE_NATIONAL_DAY, recipient=PS, **kw) -> ObservedMessage:
        kw.setdefault("facts", {"category": "suspected_crime", "amount_involved_fen": 128_645_000})
        return self.send("clue_transfer", MS, recipient, sent_at, **kw)


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'joint_office.sqlite3'}")
    store.create_schema()
    OfficeBase.metadata.create_all(store.engine)
    yield store
    store.dispose()


@pytest.fixture
def office(store) -> Office:
    return Office(store)


# -- opening steps ----------------------------------------------------------------------------------

def test_shipped_rules_and_calendar_are_what_these_tests_assume():
    names = [rule.name for rule in RULES]
    assert names[:2] == ["approve_transfer", "transfer_after_approval"]
    assert {"receipt", "filing_decision", "materials_handover"} <= set(names)
    by_name = {rule.name: rule for rule in RULES}
    assert (by_name["receipt"].limit, by_name["receipt"].unit) == (24, "hours")
    assert (by_name["filing_decision"].limit, by_name["filing_decision"].unit) == (3, "days")
    assert CALENDAR.timezone == "Asia/Shanghai"
    assert 2026 in CALENDAR.covered_years
    national_day = [utc(2026, 10, d).date() for d in range(1, 8)]
    assert all(not CALENDAR.is_working_day(day) for day in national_day)
    assert CALENDAR.is_working_day(utc(2026, 10, 8).date())
    assert CALENDAR.is_working_day(utc(2026, 10, 10).date())  # a Saturday, make-up working day


def test_clue_transfer_to_the_police_opens_receipt_and_filing_steps(office):
    clue = office.clue()
    steps = office.steps()
    assert set(steps) == {f"receipt:{clue.message_id}", f"filing_decision:{clue.message_id}",
                          f"copy_to_procuratorate:{clue.message_id}"}

    receipt = office.step("receipt", clue)
    assert receipt.state == OPEN and receipt.closed_at is None
    assert (receipt.late_agency, receipt.counterpart) == (PS, MS)
    assert receipt.started_at == clue.sent_at
    # Hours: from the next whole hour (03:00Z), never moved for holidays.
    assert receipt.due_at == hours_after(clue.sent_at, 24) == clue.sent_at + timedelta(hours=25)

    filing = office.step("filing_decision", clue)
    assert filing.state == OPEN
    assert (filing.late_agency, filing.counterpart) == (PS, MS)
    assert filing.referral_id == office.referral_id and filing.start_message_id == clue.message_id
    # 3 days would end with 2026-10-02, inside the National Day holidays: moved to the end of 10-08.
    assert filing.due_at == FILING_DUE_AFTER_NATIONAL_DAY
    assert filing.due_at.tzinfo is not None and filing.due_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("sent_at, due_at", [
    # Tuesday 10:00 CST -> day 3 is Friday 2026-11-06, a working day.
    (utc(2026, 11, 3, 2, 0), utc(2026, 11, 6, 16, 0)),
    # 2026-09-28T17:30Z is already Tuesday 09-29 01:30 in Shanghai: the National Day case.
    (utc(2026, 9, 28, 17, 30), FILING_DUE_AFTER_NATIONAL_DAY),
    # Wednesday -> day 3 is Saturday 2026-11-07: moved to the end of Monday 11-09.
    (utc(2026, 11, 4, 2, 0), utc(2026, 11, 9, 16, 0)),
    # Wednesday 2026-10-07 (a holiday) -> day 3 is Saturday 10-10, a make-up working day: not moved.
    (utc(2026, 10, 7, 2, 0), utc(2026, 10, 10, 16, 0)),
    # Late evening in Shanghai (23:59 CST Friday 11-06): day 1 is Saturday, day 3 Monday 11-09.
    (utc(2026, 11, 6, 15, 59), utc(2026, 11, 9, 16, 0)),
])
def test_filing_deadline_counts_days_as_the_law_does(office, sent_at, due_at):
    clue = office.clue(sent_at=sent_at)
    assert office.step("filing_decision", clue).due_at == due_at
    assert office.step("receipt", clue).due_at == hours_after(sent_at, 24)


def test_clue_to_health_opens_handling_result_not_filing_decision(office):
    clue = office.clue(recipient=HEALTH)
    assert office.rules_of(clue) == {"receipt", "handling_result"}
    assert office.step("handling_result", clue).late_agency == HEALTH


# -- closing steps ----------------------------------------------------------------------------------

def test_receipt_in_reply_closes_the_receipt_step_only(office):
    clue = office.clue()
    receipt = office.send("receipt", PS, MS, clue.sent_at + timedelta(hours=2), in_reply_to=clue.message_id,
                          facts={"status": "accepted"})
    step = office.step("receipt", clue)
    assert step.state == CLOSED
    assert step.closed_at == receipt.sent_at and step.closing_message_id == receipt.message_id
    assert step.on_time() is True and step.lateness_seconds(step.closed_at) == 0
    assert office.step("filing_decision", clue).state == OPEN


def test_late_receipt_closes_the_step_as_late(office):
    clue = office.clue()
    office.send("receipt", PS, MS, clue.sent_at + timedelta(hours=30), in_reply_to=clue.message_id,
                facts={"status": "accepted"})
    step = office.step("receipt", clue)
    assert step.state == CLOSED and step.on_time() is False
    # Due 25 h after the 02:00Z transfer (24 h from 03:00Z), answered after 30 h.
    assert step.lateness_seconds(datetime.max.replace(tzinfo=UTC)) == 5 * 3600


def test_receipt_not_answering_the_transfer_or_from_someone_else_does_not_close_it(office):
    clue = office.clue()
    later = clue.sent_at + timedelta(hours=1)
    office.send("receipt", PS, MS, later, in_reply_to=new_id(), facts={"status": "accepted"})   # another message
    office.send("receipt", PS, MS, later, in_reply_to=None, facts={"status": "accepted"})       # no reply
    office.send("receipt", PROC, MS, later, in_reply_to=clue.message_id, facts={"status": "accepted"})
    assert office.step("receipt", clue).state == OPEN


@pytest.mark.parametrize("answer_at, on_time, late_seconds", [
    (utc(2026, 9, 30, 3, 0), True, 0),                       # the next day
    (utc(2026, 10, 5, 3, 0), True, 0),                       # after 3 days, but inside the holidays
    (FILING_DUE_AFTER_NATIONAL_DAY - timedelta(seconds=1), True, 0),
    (FILING_DUE_AFTER_NATIONAL_DAY, True, 0),                # 24:00 of the last day is still on time
    (FILING_DUE_AFTER_NATIONAL_DAY + timedelta(seconds=1), False, 1),
    (utc(2026, 10, 12, 1, 0), False, 3 * 86400 + 9 * 3600),
])
def test_filing_decision_from_the_police_to_the_bureau_closes_the_step(office, answer_at, on_time, late_seconds):
    clue = office.clue()
    decision = office.send("filing_decision", PS, MS, answer_at, facts={"decision": "not_filed"})
    step = office.step("filing_decision", clue)
    assert step.state == CLOSED
    assert step.closing_message_id == decision.message_id and step.closed_at == answer_at
    assert step.on_time() is on_time
    assert step.lateness_seconds(utc(2030, 1, 1)) == late_seconds
    assert step.overdue_at(utc(2030, 1, 1)) is (not on_time)


def test_decision_by_someone_else_to_someone_else_or_in_another_referral_does_not_close(office):
    clue = office.clue()
    at = clue.sent_at + timedelta(days=1)
    office.send("filing_decision", PROC, MS, at, facts={"decision": "filed"})          # not the police
    office.send("filing_decision", PS, HEALTH, at, facts={"decision": "filed"})        # not to the bureau
    office.send("filing_decision", PS, MS, at, referral_id=new_id(), facts={"decision": "filed"})
    office.send("reconsideration_decision", PS, MS, at, facts={"outcome": "reversed"})  # not the kind
    office.send("receipt", PS, MS, at, in_reply_to=clue.message_id, facts={"status": "accepted"})
    assert office.step("filing_decision", clue).state == OPEN
    assert office.step("receipt", clue).state == CLOSED


def test_answers_observed_before_their_start_close_the_steps_when_it_arrives(office):
    """Queues interleave: the office may see the police's receipt and decision first."""
    clue = message("clue_transfer", MS, PS, TUESDAY_BEFORE_NATIONAL_DAY, referral_id=office.referral_id,
                   facts={"category": "suspected_crime"})
    receipt = office.send("receipt", PS, MS, clue.sent_at + timedelta(minutes=5), in_reply_to=clue.message_id,
                          facts={"status": "accepted"})
    decision = office.send("filing_decision", PS, MS, FILING_DUE_AFTER_NATIONAL_DAY + timedelta(hours=1),
                           facts={"decision": "not_filed"})
    assert office.steps() == {}

    assert office.observe(clue) is True
    receipt_step, filing_step = office.step("receipt", clue), office.step("filing_decision", clue)
    assert (receipt_step.state, receipt_step.closing_message_id) == (CLOSED, receipt.message_id)
    assert receipt_step.on_time() is True
    assert (filing_step.state, filing_step.closing_message_id) == (CLOSED, decision.message_id)
    assert filing_step.closed_at == decision.sent_at and filing_step.on_time() is False


def test_an_earlier_decision_in_the_referral_does_not_close_a_later_transfer(office):
    """Looking back, only answers sent at or after the start count (match: referral)."""
    office.send("filing_decision", PS, MS, TUESDAY_BEFORE_NATIONAL_DAY - timedelta(days=10),
                facts={"decision": "not_filed"})
    clue = office.clue()
    assert office.step("filing_decision", clue).state == OPEN


def test_duplicates_change_nothing(office):
    clue = office.clue()
    assert office.observe(clue) is False
    decision = office.send("filing_decision", PS, MS, clue.sent_at + timedelta(days=1), facts={"decision": "filed"})
    before = office.rows()
    assert office.observe(decision) is False
    assert office.observe(clue) is False
    # Same message id with other content (a replay or a forgery under the id): ignored as well.
    impostor = message("withdrawal", MS, PS, clue.sent_at + timedelta(days=2), referral_id=office.referral_id,
                       message_id=decision.message_id)
    assert office.observe(impostor) is False
    assert office.rows() == before
    assert before["observed"] == 2


def test_message_with_a_problem_is_recorded_but_opens_and_closes_nothing(office, store):
    bad_clue = message("clue_transfer", MS, PS, TUESDAY_BEFORE_NATIONAL_DAY, referral_id=office.referral_id)
    assert office.observe(bad_clue, problem="route.forbidden") is True
    assert office.steps() == {}

    clue = office.clue(sent_at=TUESDAY_BEFORE_NATIONAL_DAY + timedelta(hours=1))
    bad_receipt = message("receipt", PS, MS, clue.sent_at + timedelta(hours=1), referral_id=office.referral_id,
                          in_reply_to=clue.message_id, facts={"status": "accepted"})
    bad_decision = message("filing_decision", PS, MS, clue.sent_at + timedelta(hours=2),
                           referral_id=office.referral_id, facts={"decision": "filed"})
    bad_closure = message("closure", MS, PS, clue.sent_at + timedelta(hours=3), referral_id=office.referral_id)
    for bad in (bad_receipt, bad_decision, bad_closure):
        assert office.observe(bad, problem="schema.invalid") is True
    assert {s.state for s in office.steps().values()} == {OPEN}
    # No materials_handover either.
    assert office.rules_of(clue) == {"receipt", "filing_decision", "copy_to_procuratorate"}
    with store.transaction() as repo:
        problems = repo.session.scalars(select(ObservedMessageRow.problem).where(
            ObservedMessageRow.problem.is_not(None))).all()
    assert sorted(problems) == ["route.forbidden"] + ["schema.invalid"] * 3


def test_a_problem_answer_seen_before_its_start_does_not_close_it_later(office):
    clue = message("clue_transfer", MS, PS, TUESDAY_BEFORE_NATIONAL_DAY, referral_id=office.referral_id)
    bad_receipt = message("receipt", PS, MS, clue.sent_at + timedelta(hours=1), referral_id=office.referral_id,
                          in_reply_to=clue.message_id, facts={"status": "accepted"})
    office.observe(bad_receipt, problem="signature.invalid")
    office.observe(clue)
    assert office.step("receipt", clue).state == OPEN


# -- steps opened by facts ----------------------------------------------------------------------------

def test_filed_decision_opens_materials_handover_for_the_bureau(office):
    clue = office.clue()
    decision = office.send("filing_decision", PS, MS, utc(2026, 10, 8, 2, 0), facts={"decision": "filed"})
    step = office.step("materials_handover", decision)
    assert step is not None and step.state == OPEN
    assert (step.late_agency, step.counterpart) == (MS, PS)
    # Thursday 2026-10-08 -> day 3 is Sunday 10-11: moved to the end of Monday 10-12.
    assert step.due_at == utc(2026, 10, 12, 16, 0)
    assert office.step("filing_decision", clue).state == CLOSED

    handover = office.send("materials_handover", MS, PS, utc(2026, 10, 12, 3, 0))
    step = office.step("materials_handover", decision)
    assert (step.state, step.closing_message_id, step.on_time()) == (CLOSED, handover.message_id, True)


@pytest.mark.parametrize("facts, sealed, opened", [({"decision": "not_filed"}, False, set()),
                                                   ({"decision": "not_competent"}, False, {"forward_to_competent"}),
                                                   ({}, True, set())])
def test_no_materials_handover_without_a_readable_filed_decision(office, facts, sealed, opened):
    """A sealed decision gives the office no facts (model.py): it cannot tell "filed" from "not
    filed", so it opens no materials_handover step. This is the documented limit of sealed bodies,
    not a bug: the filing step itself is still closed by the sealed decision's metadata. (A
    "not competent" decision measures the 24 hours of Decree 310 art. 7 instead.)"""
    clue = office.clue()
    decision = office.send("filing_decision", PS, MS, clue.sent_at + timedelta(days=1), facts=facts, sealed=sealed)
    assert office.rules_of(decision) == opened
    filing = office.step("filing_decision", clue)
    assert (filing.state, filing.closing_message_id) == (CLOSED, decision.message_id)


# -- interval rules, read from the transfer's own body -----------------------------------------------

def test_interval_rules_on_time_are_closed_at_once(office):
    # Team report Monday 2026-11-02 09:00 CST; approval Wednesday 16:00 CST (within 3 days,
    # which end at the end of Thursday 11-05); transfer 20 h after the approval (within 24 h).
    clue = office.clue(sent_at=utc(2026, 11, 5, 4, 0), facts={
        "category": "suspected_crime", "team_reported_at": "2026-11-02T01:00:00Z",
        "approved_at": "2026-11-04T08:00:00Z"})
    assert office.rules_of(clue) == {"approve_transfer", "transfer_after_approval", "receipt", "filing_decision",
                                     "copy_to_procuratorate"}

    approve = office.step("approve_transfer", clue)
    assert approve.state == CLOSED and approve.closing_message_id == clue.message_id
    assert approve.started_at == utc(2026, 11, 2, 1, 0) and approve.due_at == utc(2026, 11, 5, 16, 0)
    assert approve.closed_at == utc(2026, 11, 4, 8, 0) and approve.on_time() is True
    assert (approve.late_agency, approve.counterpart) == (MS, PS)

    transfer = office.step("transfer_after_approval", clue)
    assert transfer.state == CLOSED
    # 24 hours from the next whole hour after the approval (16:00 CST is in the hour 16-17).
    assert transfer.started_at == utc(2026, 11, 4, 8, 0) and transfer.due_at == utc(2026, 11, 5, 9, 0)
    assert transfer.closed_at == clue.sent_at and transfer.on_time() is True
    assert transfer.late_agency == MS


def test_interval_rules_late(office):
    # Team report Friday 2026-11-06 09:00 CST: day 3 is Monday 11-09 (the weekend inside the
    # period counts). Approval Tuesday 11-10 10:00 CST is late by 18 h; the transfer 25 h 30 min
    # after the approval is late by 30 min (24 hours counted from 11:00 CST, the next whole hour).
    clue = office.clue(sent_at=utc(2026, 11, 11, 3, 30), facts={
        "team_reported_at": "2026-11-06T01:00:00Z", "approved_at": "2026-11-10T02:00:00Z"})
    approve = office.step("approve_transfer", clue)
    assert approve.due_at == utc(2026, 11, 9, 16, 0)
    assert approve.on_time() is False and approve.lateness_seconds(utc(2030, 1, 1)) == 10 * 3600
    transfer = office.step("transfer_after_approval", clue)
    assert transfer.due_at == utc(2026, 11, 11, 3, 0)
    assert transfer.on_time() is False and transfer.lateness_seconds(utc(2030, 1, 1)) == 1800


def test_a_transfer_within_the_starting_hour_s_grace_is_on_time(office):
    """Approved at 16:25, transferred at 16:59 the next day: 24 hours counted exactly would be
    late by 34 minutes; the starting hour is not counted, so the limit is 17:00 (CPL art. 105)."""
    clue = office.clue(sent_at=utc(2026, 11, 11, 8, 59, 59), facts={
        "team_reported_at": "2026-11-09T01:00:00Z", "approved_at": "2026-11-10T08:25:00Z"})
    transfer = office.step("transfer_after_approval", clue)
    assert transfer.due_at == utc(2026, 11, 11, 9, 0)
    assert transfer.on_time() is True


def test_interval_rules_need_the_facts(office):
    """A sealed (or older) transfer body gives nothing to measure: no interval step."""
    sealed = office.clue(sealed=True)
    assert office.rules_of(sealed) == {"receipt", "filing_decision"}
    half = office.clue(sent_at=TUESDAY_BEFORE_NATIONAL_DAY + timedelta(hours=1),
                       facts={"approved_at": "2026-09-28T08:00:00Z"})
    assert office.rules_of(half) == {"transfer_after_approval", "receipt", "filing_decision"}


# -- closing or withdrawing a referral ---------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(ENDS_REFERRAL))
def test_closure_or_withdrawal_ends_open_steps_except_receipts(office, kind):
    assert ANSWERS_STILL_DUE == {"receipt"}
    clue = office.clue()
    other = office.clue(referral_id=new_id())     # another referral: untouched
    end = office.send(kind, MS, PS, clue.sent_at + timedelta(hours=5), facts={"outcome": "completed"})

    filing = office.step("filing_decision", clue)
    assert filing.state == CLOSED and filing.closing_message_id == end.message_id
    assert filing.closed_at == end.sent_at
    with office.store.transaction() as repo:
        note = repo.session.get(StepRow, filing.step_id).note
    assert note == f"ended by {kind} {end.message_id}"

    assert office.step("receipt", clue).state == OPEN      # the transfer must still be receipted
    assert {s.state for s in office.steps(other.referral_id).values()} == {OPEN}

    # The receipt still closes it afterwards, normally.
    office.send("receipt", PS, MS, clue.sent_at + timedelta(hours=6), in_reply_to=clue.message_id,
                facts={"status": "accepted"})
    assert office.step("receipt", clue).state == CLOSED


def test_closure_ends_materials_handover_too(office):
    office.clue()
    decision = office.send("filing_decision", PS, MS, utc(2026, 9, 30, 2, 0), facts={"decision": "filed"})
    assert office.step("materials_handover", decision).state == OPEN
    office.send("closure", MS, PS, utc(2026, 9, 30, 5, 0), facts={"outcome": "completed"})
    assert office.step("materials_handover", decision).state == CLOSED


# -- loading rules --------------------------------------------------------------------------------------

def _shipped():
    return copy.deepcopy(SHIPPED_DEADLINES)


def _rule(entries, name):
    return next(entry for entry in entries if entry["name"] == name)


def _unknown_kind(entries):
    _rule(entries, "filing_decision")["stops_on"] = ["filing_decison"]


def _bad_unit(entries):
    _rule(entries, "filing_decision")["unit"] = "weeks"


def _negative_limit(entries):
    _rule(entries, "filing_decision")["limit"] = -1


def _duplicate(entries):
    entries.append(copy.deepcopy(_rule(entries, "filing_decision")))


def _missing_stops_on(entries):
    del _rule(entries, "filing_decision")["stops_on"]


def _bad_match(entries):
    _rule(entries, "filing_decision")["match"] = "thread"


def _bad_late(entries):
    _rule(entries, "filing_decision")["late"] = "police"


def _bad_type(entries):
    _rule(entries, "filing_decision")["type"] = "periodic"


def _interval_without_facts(entries):
    del _rule(entries, "approve_transfer")["start_fact"]


def _missing_limit(entries):
    del _rule(entries, "filing_decision")["limit"]


def _limit_not_a_number(entries):
    _rule(entries, "filing_decision")["limit"] = "three"


def _count_from_on_days(entries):
    _rule(entries, "filing_decision")["count_from"] = "exact"


def _bad_count_from(entries):
    _rule(entries, "receipt")["count_from"] = "this_hour"


def _since_unknown_kind(entries):
    _rule(entries, "reconsideration_request")["since"] = "refusal"


def _since_and_start_fact(entries):
    _rule(entries, "reconsideration_request")["start_fact"] = "decided_at"


def _since_on_a_message_rule(entries):
    _rule(entries, "filing_decision")["since"] = "clue_transfer"


def _stop_recipients_with_reply(entries):
    _rule(entries, "receipt")["stop_recipients"] = ["procuratorate"]


def _start_facts_not_a_mapping(entries):
    _rule(entries, "copy_to_procuratorate")["start_facts"] = ["category"]


@pytest.mark.parametrize("breaks, name, says", [
    (_count_from_on_days, "filing_decision", "count_from applies to hours only"),
    (_bad_count_from, "receipt", "count_from must be one of"),
    (_since_unknown_kind, "reconsideration_request", "unknown kinds"),
    (_since_and_start_fact, "reconsideration_request", "either start_fact or since"),
    (_since_on_a_message_rule, "filing_decision", "belong to interval rules"),
    (_stop_recipients_with_reply, "receipt", "stop_recipients needs match referral"),
    (_start_facts_not_a_mapping, "copy_to_procuratorate", "copy_to_procuratorate"),
    (_unknown_kind, "filing_decision", "unknown kinds"),
    (_bad_unit, "filing_decision", "limit"),
    (_negative_limit, "filing_decision", "limit"),
    (_duplicate, "filing_decision", "duplicate name"),
    (_missing_stops_on, "filing_decision", "stops_on"),
    (_bad_match, "filing_decision", "match"),
    (_bad_late, "filing_decision", "late"),
    (_bad_type, "filing_decision", "type"),
    (_interval_without_facts, "approve_transfer", "start_fact"),
    (_missing_limit, "filing_decision", "malformed"),
    (_limit_not_a_number, "filing_decision", "malformed"),
])
def test_load_rules_rejects_malformed_rules_naming_the_rule(breaks, name, says):
    entries = _shipped()
    breaks(entries)
    with pytest.raises(RuleError) as caught:
        load_rules(entries)
    assert f"'{name}'" in str(caught.value)
    assert says in str(caught.value)
    assert caught.value.rule == "deadline_rule.invalid"


def test_load_rules_accepts_the_shipped_rules_unchanged():
    assert [r.name for r in load_rules(_shipped())] == [entry["name"] for entry in SHIPPED_DEADLINES]


@pytest.mark.parametrize("entry", ["filing_decision", None])
def test_load_rules_rejects_an_entry_that_is_not_a_mapping(entry):
    with pytest.raises(RuleError):
        load_rules(_shipped() + [entry])


def test_load_rules_rejects_a_fractional_limit():
    entries = _shipped()
    _rule(entries, "filing_decision")["limit"] = 2.5
    with pytest.raises(RuleError, match="filing_decision"):
        load_rules(entries)


def test_load_rules_rejects_unknown_keys():
    entries = _shipped()
    rule = _rule(entries, "filing_decision")
    rule["start_recipient"] = rule.pop("start_recipients")
    with pytest.raises(RuleError, match="filing_decision"):
        load_rules(entries)


def test_a_closure_observed_before_an_earlier_sent_start_still_ends_its_steps(office):
    clue = office.clue()
    decision = message("filing_decision", PS, MS, clue.sent_at + timedelta(hours=2), referral_id=office.referral_id,
                       facts={"decision": "filed"})
    office.send("closure", MS, PS, clue.sent_at + timedelta(hours=5), facts={"outcome": "completed"})
    office.observe(decision)      # sent before the closure, observed after it (a resend, say)
    assert office.step("filing_decision", clue).state == CLOSED
    assert office.step("materials_handover", decision).state == CLOSED


def test_a_rejected_transfer_does_not_leave_a_filing_step_to_urge(office):
    clue = office.clue()
    office.send("receipt", PS, MS, clue.sent_at + timedelta(minutes=1), in_reply_to=clue.message_id,
                facts={"status": "rejected"})
    assert office.step("receipt", clue).state == CLOSED
    assert office.step("filing_decision", clue).state != OPEN


# -- Decree 310: the copy to the procuratorate ----------------------------------------------------

NOV_3 = utc(2026, 11, 3, 2, 0)   # Tuesday 10:00 in Shanghai


def test_a_suspected_crime_transfer_copied_to_the_procuratorate_closes_the_copy_step(office):
    clue = office.clue(sent_at=NOV_3)
    step = office.step("copy_to_procuratorate", clue)
    assert (step.state, step.late_agency, step.counterpart) == (OPEN, MS, PS)
    assert step.due_at == hours_after(NOV_3, 24)
    copy_ = office.send("copy_notice", MS, PROC, NOV_3)
    step = office.step("copy_to_procuratorate", clue)
    assert (step.state, step.closing_message_id, step.on_time()) == (CLOSED, copy_.message_id, True)


def test_a_copy_observed_before_its_transfer_still_closes_the_step(office):
    copy_ = office.send("copy_notice", MS, PROC, NOV_3)
    clue = office.clue(sent_at=NOV_3)
    assert office.step("copy_to_procuratorate", clue).closing_message_id == copy_.message_id


def test_a_transfer_without_its_copy_is_flagged_and_urged(office):
    clue = office.clue(sent_at=NOV_3)
    office.send("copy_notice", MS, PS, NOV_3)           # not to the procuratorate: no copy
    office.send("copy_notice", HEALTH, PROC, NOV_3)     # not from the sender: no copy either
    step = office.step("copy_to_procuratorate", clue)
    assert step.state == OPEN
    with office.store.transaction() as repo:
        actions = office.tracker.due_actions(repo.session, step.due_at + timedelta(seconds=1),
                                             warn_before=timedelta(hours=12), escalate_after=timedelta(hours=72))
    assert (URGE, step.step_id) in {(a.level, a.step_id) for a in actions}


@pytest.mark.parametrize("recipient, facts", [
    (PS, {"category": "medical_conduct"}),
    (PS, {}),                                        # category unknown
    (HEALTH, {"category": "suspected_crime"}),       # not a transfer to the police
])
def test_no_copy_step_for_other_transfers(office, recipient, facts):
    clue = office.clue(sent_at=NOV_3, recipient=recipient, facts=facts)
    assert "copy_to_procuratorate" not in office.rules_of(clue)


# -- Decree 310 art. 7: not competent, passed on within 24 hours and the sender told ---------------

@pytest.mark.parametrize("after, on_time", [(timedelta(hours=20), True), (timedelta(hours=24, minutes=59), True),
                                            (timedelta(hours=25, seconds=1), False)])
def test_a_not_competent_decision_measures_the_24_hours_from_the_transfer(office, after, on_time):
    clue = office.clue(sent_at=NOV_3)
    decision = office.send("filing_decision", PS, MS, NOV_3 + after, facts={"decision": "not_competent"})
    step = office.step("forward_to_competent", decision)
    assert (step.state, step.late_agency, step.counterpart) == (CLOSED, PS, MS)
    assert step.started_at == clue.sent_at and step.closed_at == decision.sent_at
    assert step.due_at == utc(2026, 11, 4, 3, 0)   # 24 h from 11:00 CST, the next whole hour
    assert step.on_time() is on_time
    assert office.step("filing_decision", clue).state == CLOSED   # the decision answers that step too


def test_a_not_competent_decision_observed_before_its_transfer(office):
    decision = office.send("filing_decision", PS, MS, NOV_3 + timedelta(hours=30), facts={"decision": "not_competent"})
    assert office.step("forward_to_competent", decision) is None
    clue = office.clue(sent_at=NOV_3)
    step = office.step("forward_to_competent", decision)
    assert step is not None and step.started_at == clue.sent_at and step.on_time() is False


@pytest.mark.parametrize("decision", ["filed", "not_filed"])
def test_other_decisions_do_not_measure_the_24_hours(office, decision):
    office.clue(sent_at=NOV_3)
    answer = office.send("filing_decision", PS, MS, NOV_3 + timedelta(days=2), facts={"decision": decision})
    assert office.step("forward_to_competent", answer) is None


# -- Decree 310 art. 9: reconsideration within 3 days of a refusal, supervision within 3 of the answer

def _refused(office):
    office.clue(sent_at=NOV_3)
    return office.send("filing_decision", PS, MS, NOV_3 + timedelta(days=1), facts={"decision": "not_filed"})


@pytest.mark.parametrize("at, on_time", [
    (utc(2026, 11, 7, 15, 59), True),    # refused Wednesday 11-04: day 3 is Saturday 11-07 -> Monday 11-09
    (utc(2026, 11, 9, 15, 59), True),
    (utc(2026, 11, 9, 16, 0), True),     # 24:00 of Monday, exactly
    (utc(2026, 11, 9, 16, 1), False),
])
def test_the_senders_3_days_to_ask_for_reconsideration(office, at, on_time):
    refusal = _refused(office)
    request = office.send("reconsideration_request", MS, PS, at)
    step = office.step("reconsideration_request", request)
    assert (step.state, step.late_agency, step.counterpart) == (CLOSED, MS, PS)
    assert step.started_at == refusal.sent_at and step.due_at == utc(2026, 11, 9, 16, 0)
    assert step.on_time() is on_time
    # The police's own 3 days to answer it open as before.
    assert office.step("reconsideration_decision", request).state == OPEN


def test_no_reconsideration_period_without_a_refusal(office):
    office.clue(sent_at=NOV_3)
    office.send("filing_decision", PS, MS, NOV_3 + timedelta(days=1), facts={"decision": "filed"})
    request = office.send("reconsideration_request", MS, PS, NOV_3 + timedelta(days=2))
    assert office.step("reconsideration_request", request) is None


@pytest.mark.parametrize("after, on_time", [(timedelta(days=2), True), (timedelta(days=6), False)])
def test_the_senders_3_days_to_ask_for_supervision_after_the_reconsideration_answer(office, after, on_time):
    _refused(office)
    office.send("reconsideration_request", MS, PS, NOV_3 + timedelta(days=2))
    upheld = office.send("reconsideration_decision", PS, MS, utc(2026, 11, 9, 2, 0), facts={"outcome": "upheld"})
    supervision = office.send("supervision_request", MS, PROC, upheld.sent_at + after)
    step = office.step("supervision_after_reconsideration", supervision)
    assert (step.late_agency, step.counterpart, step.started_at) == (MS, PROC, upheld.sent_at)
    assert step.due_at == utc(2026, 11, 12, 16, 0)  # Monday 11-09 + 3 days: Thursday 11-12
    assert step.on_time() is on_time


def test_no_supervision_period_without_an_upheld_reconsideration(office):
    _refused(office)
    supervision = office.send("supervision_request", MS, PROC, NOV_3 + timedelta(days=2))
    assert office.step("supervision_after_reconsideration", supervision) is None


# -- periods in months: the prosecution decision (CPL art. 172) -----------------------------------

def test_the_prosecution_decision_is_due_in_one_month_not_30_days(office):
    transfer = office.send("case_transfer", PS, PROC, utc(2026, 9, 1, 2, 0), facts={"direction": "for_prosecution"})
    step = office.step("prosecution_decision", transfer)
    # 1 October is National Day: the first working day after the holidays is 8 October.
    assert step.due_at == utc(2026, 10, 8, 16, 0)
    transfer = office.send("case_transfer", PS, PROC, utc(2026, 7, 31, 2, 0), facts={"direction": "for_prosecution"},
                           referral_id=new_id())
    assert office.step("prosecution_decision", transfer).due_at == utc(2026, 8, 31, 16, 0)  # not 30 August


# -- beyond the calendar: "calendar missing" -------------------------------------------------------

DEC_2 = utc(2026, 12, 2, 2, 0)   # 30 days later is 1 January 2027, a year the shipped calendar lacks


def _with_2027(calendar: Calendar) -> Calendar:
    """The shipped calendar plus a MADE-UP 2027 (New Year's Day only) for the recount test: not
    the State Council's data, which the shipped file does not have yet."""
    return Calendar(calendar.holidays | {utc(2027, 1, 1).date()}, calendar.workdays, calendar.timezone,
                    years=calendar.covered_years | {2027})


def test_a_step_counted_into_a_missing_year_is_marked_calendar_missing(office):
    clue = office.clue(sent_at=DEC_2, recipient=HEALTH, facts={"category": "medical_conduct"})
    step = office.step("handling_result", clue)
    assert (step.due_at, step.calendar_missing, step.state) == (None, 2027, OPEN)
    assert step.on_time() is None and step.lateness_seconds(utc(2027, 6, 1)) == 0 and not step.overdue_at(utc(2027, 6, 1))
    with office.store.transaction() as repo:
        row = repo.session.get(StepRow, step.step_id)
        assert row.note.startswith("calendar missing") and "2027" in row.note
        assert level_of(row, utc(2027, 6, 1)) == CALENDAR_MISSING
        # Never warned, urged or escalated: its limit is unknown.
        actions = office.tracker.due_actions(repo.session, utc(2027, 6, 1), warn_before=timedelta(hours=12),
                                             escalate_after=timedelta(hours=72))
    assert step.step_id not in {a.step_id for a in actions}
    # Limits in hours need no calendar: the receipt step has its limit.
    assert office.step("receipt", clue).due_at == hours_after(DEC_2, 24)


def test_a_calendar_missing_step_still_closes_and_an_interval_is_marked_too(office):
    clue = office.clue(sent_at=utc(2026, 12, 29, 2, 0))        # day 3 is 1 January 2027
    filing = office.step("filing_decision", clue)
    assert (filing.due_at, filing.calendar_missing) == (None, 2027)
    office.send("filing_decision", PS, MS, utc(2026, 12, 30, 2, 0), facts={"decision": "not_filed"})
    filing = office.step("filing_decision", clue)
    assert filing.state == CLOSED and filing.on_time() is None
    request = office.send("reconsideration_request", MS, PS, utc(2026, 12, 31, 2, 0))
    interval = office.step("reconsideration_request", request)   # 30 Dec + 3 days: 2 January 2027
    assert (interval.state, interval.due_at, interval.calendar_missing) == (CLOSED, None, 2027)


def test_calendar_missing_steps_get_their_limit_once_the_calendar_covers_the_year(store):
    office = Office(store)
    clue = office.clue(sent_at=DEC_2, recipient=HEALTH, facts={"category": "medical_conduct"})
    with store.transaction() as repo:
        assert office.tracker.recount_calendar_missing(repo.session) == []   # still missing
    later = Office(store, calendar=_with_2027(CALENDAR))   # the office restarted with a new file
    with store.transaction() as repo:
        assert later.tracker.recount_calendar_missing(repo.session) == [f"handling_result:{clue.message_id}"]
    step = later.step("handling_result", clue)
    # 1 January 2027 is a day off in the made-up data: the end of Monday 4 January (Sat 2, Sun 3).
    assert (step.due_at, step.calendar_missing) == (utc(2027, 1, 4, 16, 0), None)


def test_calendar_missing_steps_are_in_no_figure_but_in_the_views_and_notes(office):
    from types import SimpleNamespace

    from services.office import handlers
    from services.office.snapshot import snapshot
    from services.office.stats import compute_stats

    clue = office.clue(sent_at=DEC_2, recipient=HEALTH, facts={"category": "medical_conduct"})
    with office.store.transaction() as repo:
        messages = [to_observed(r) for r in repo.session.scalars(select(ObservedMessageRow))]
        steps = [to_step(r) for r in repo.session.scalars(select(StepRow))]
    as_of = utc(2026, 12, 20)
    snap = snapshot(messages, steps, as_of, rules=RULES)
    missing_id = f"handling_result:{clue.message_id}"
    assert [s.step_id for s in snap.calendar_missing] == [missing_id]
    assert missing_id not in {s.step_id for s in snap.steps}
    views = handlers.overdue_views(SimpleNamespace(warn_before=timedelta(hours=12)), snap)
    [view] = [v for v in views if v["step_id"] == missing_id]
    assert (view["level"], view["due_at"], view["calendar_missing"], view["overdue_seconds"]) == \
        (CALENDAR_MISSING, None, 2027, 0)
    report = compute_stats(messages, steps, period_from=utc(2026, 12, 1), period_to=utc(2026, 12, 31),
                           as_of=as_of, agencies=[MS, HEALTH], rules=RULES)
    assert report.row(HEALTH).steps_open == 1          # the receipt step only
    [note] = [n for n in report.notes if n.startswith("calendar missing")]
    assert "1 step(s)" in note and "2027" in note and missing_id in note and clue.referral_id in note
