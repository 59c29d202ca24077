"""Opening and closing deadline steps from observed messages, and finding what is late.

Plain Python over the office's tables; the clock and calendar are passed in.

A step whose limit needs a day the working-day calendar does not cover is recorded with
``due_at`` None and ``calendar_missing`` set to that year (calendar.CalendarMissing): never a
guessed limit. It is never warned, urged or escalated; the views show it as
``calendar_missing``; ``recount_calendar_missing`` gives it its limit once the calendar covers
the year (after the office restarts with the new calendar file).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.crypto.timestamps import parse_timestamp
from adapters.storage.office_tables import ObservedMessageRow, StepRow

from .calendar import Calendar, CalendarMissing
from .model import CLOSED, OPEN, ObservedMessage, Step
from .rules import INTERVAL, RECIPIENT, REPLY, SENT_AT, DeadlineRule

ENDS_REFERRAL = frozenset({"closure", "withdrawal"})
# Steps a closure or withdrawal does not end: a receipt still due is still due.
ANSWERS_STILL_DUE = frozenset({"receipt"})
RECEIPT_KIND = "receipt"

URGE = "urge"
ESCALATE = "escalate"
WARN = "warn"
# The level shown for a step whose limit the calendar cannot count.
CALENDAR_MISSING = "calendar_missing"
MISSING_NOTE = "calendar missing"


@dataclass(frozen=True)
class DueAction:
    level: str        # warn | urge | escalate
    step_id: str


def to_step(row: StepRow) -> Step:
    return Step(step_id=row.step_id, rule=row.rule, referral_id=row.referral_id,
                start_message_id=row.start_message_id, started_at=row.started_at, due_at=row.due_at,
                late_agency=row.late_agency, counterpart=row.counterpart, state=row.state,
                closed_at=row.closed_at, closing_message_id=row.closing_message_id,
                calendar_missing=row.calendar_missing)


def to_observed(row: ObservedMessageRow) -> ObservedMessage:
    return ObservedMessage(message_id=row.message_id, kind=row.kind, sender=row.sender, recipient=row.recipient,
                           referral_id=row.referral_id, in_reply_to=row.in_reply_to, sent_at=row.sent_at,
                           observed_at=row.observed_at, sealed=row.sealed, facts=row.facts or {})


class Tracker:
    """The office's rules: the deadline rules and the working-day calendar it counts them with,
    and the fine rules its statistics check (``fine_rules``, services/domain/money.FineRule)."""

    def __init__(self, rules: Sequence[DeadlineRule], calendar: Calendar, *, fine_rules: Sequence = ()):
        self.rules = list(rules)
        self.by_name = {rule.name: rule for rule in self.rules}
        self.calendar = calendar
        self.fine_rules = tuple(fine_rules)

    def due(self, rule: DeadlineRule, start: datetime) -> tuple[datetime | None, int | None]:
        """The step's limit, or (None, year) when the calendar does not cover a day it needs."""
        try:
            return self.calendar.deadline(start, rule.limit, rule.unit, count_from=rule.count_from), None
        except CalendarMissing as missing:
            return None, missing.year

    @staticmethod
    def _missing_note(year: int) -> str:
        return (f"{MISSING_NOTE}: the working-day calendar does not cover {year}, "
                "so the limit is unknown (add the year's holiday notice to the calendar file)")

    # -- observing -------------------------------------------------------------------------
    def observe(self, session: Session, message: ObservedMessage, *, sha256: str,
                problem: str | None = None) -> bool:
        """Record ``message`` and move the steps it opens or closes. False for a duplicate."""
        if session.get(ObservedMessageRow, message.message_id) is not None:
            return False
        session.add(ObservedMessageRow(
            message_id=message.message_id, kind=message.kind, sender=message.sender,
            recipient=message.recipient, referral_id=message.referral_id, in_reply_to=message.in_reply_to,
            sent_at=message.sent_at, observed_at=message.observed_at, sha256=sha256, sealed=message.sealed,
            facts=message.facts, problem=problem))
        session.flush()
        if problem is None:
            self._close_steps(session, message)
            self._open_steps(session, message)
            self._open_late_intervals(session, message)
        return True

    def _open_steps(self, session: Session, message: ObservedMessage) -> None:
        earlier: list[ObservedMessage] | None = None
        for rule in self.rules:
            if not rule.opened_by(message.kind, message.recipient, message.facts):
                continue
            step_id = f"{rule.name}:{message.message_id}"
            if session.get(StepRow, step_id) is not None:
                continue
            late, counterpart = ((message.recipient, message.sender) if rule.late == RECIPIENT
                                 else (message.sender, message.recipient))
            if rule.type == INTERVAL:
                self._interval_step(session, rule, message, step_id, late, counterpart)
                continue
            due_at, missing = self.due(rule, message.sent_at)
            row = StepRow(step_id=step_id, rule=rule.name, referral_id=message.referral_id,
                          start_message_id=message.message_id, started_at=message.sent_at,
                          due_at=due_at, calendar_missing=missing,
                          note=self._missing_note(missing) if missing else None,
                          late_agency=late, counterpart=counterpart, state=OPEN)
            session.add(row)
            session.flush()
            # The answer, a closure or a refusal may have been observed first (queues
            # interleave, resends arrive late): look back, reading the referral once.
            if earlier is None:
                earlier = [to_observed(r) for r in session.scalars(select(ObservedMessageRow).where(
                    ObservedMessageRow.referral_id == message.referral_id,
                    ObservedMessageRow.problem.is_(None),
                    ObservedMessageRow.message_id != message.message_id).order_by(ObservedMessageRow.sent_at))]
            for seen in earlier:
                if self._settle(rule, row, seen):
                    break

    def _interval_step(self, session, rule, message, step_id, late, counterpart) -> None:
        """A period that ended when ``message`` was sent (or at a time its body gives): from a
        time in its own body (``start_fact``), or from the latest earlier message of the
        ``since`` kind addressed to its sender (a refusal the sender answers, the transfer the
        police answer)."""
        try:
            if rule.since is not None:
                since = self._since_message(session, rule, message)
                if since is None:
                    return  # nothing it follows is known (yet: _open_late_intervals)
                start = since.sent_at
            else:
                start = parse_timestamp(message.facts[rule.start_fact])
            stop = message.sent_at if rule.stop_fact == SENT_AT else parse_timestamp(message.facts[rule.stop_fact])
        except (KeyError, ValueError, TypeError):
            return  # a sealed or older body: nothing to measure
        due_at, missing = self.due(rule, start)
        session.add(StepRow(step_id=step_id, rule=rule.name, referral_id=message.referral_id,
                            start_message_id=message.message_id, started_at=start,
                            due_at=due_at, calendar_missing=missing,
                            note=self._missing_note(missing) if missing else None, late_agency=late,
                            counterpart=counterpart, state=CLOSED, closed_at=stop,
                            closing_message_id=message.message_id))
        session.flush()

    @staticmethod
    def _since_message(session: Session, rule: DeadlineRule, message: ObservedMessage) -> ObservedMessage | None:
        rows = session.scalars(select(ObservedMessageRow).where(
            ObservedMessageRow.referral_id == message.referral_id, ObservedMessageRow.kind == rule.since,
            ObservedMessageRow.recipient == message.sender, ObservedMessageRow.problem.is_(None),
            ObservedMessageRow.sent_at <= message.sent_at,
            ObservedMessageRow.message_id != message.message_id)
            .order_by(ObservedMessageRow.sent_at.desc(), ObservedMessageRow.message_id.desc()))
        for row in rows:
            if rule.since_matches(row.kind, row.facts or {}):
                return to_observed(row)
        return None

    def _open_late_intervals(self, session: Session, message: ObservedMessage) -> None:
        """``message`` may be where an interval starts whose ending message was observed first
        (queues interleave): open the steps that were waiting for it."""
        for rule in self.rules:
            if rule.type != INTERVAL or not rule.since_matches(message.kind, message.facts):
                continue
            later = session.scalars(select(ObservedMessageRow).where(
                ObservedMessageRow.referral_id == message.referral_id,
                ObservedMessageRow.kind.in_(sorted(rule.starts_on)), ObservedMessageRow.sender == message.recipient,
                ObservedMessageRow.problem.is_(None), ObservedMessageRow.sent_at >= message.sent_at,
                ObservedMessageRow.message_id != message.message_id))
            for row in later:
                ending = to_observed(row)
                step_id = f"{rule.name}:{ending.message_id}"
                if not rule.opened_by(ending.kind, ending.recipient, ending.facts) or session.get(StepRow, step_id):
                    continue
                late, counterpart = ((ending.recipient, ending.sender) if rule.late == RECIPIENT
                                     else (ending.sender, ending.recipient))
                self._interval_step(session, rule, ending, step_id, late, counterpart)

    def _close_steps(self, session: Session, message: ObservedMessage) -> None:
        rows = session.scalars(select(StepRow).where(StepRow.referral_id == message.referral_id,
                                                     StepRow.state == OPEN)).all()
        for row in rows:
            self._settle(self.by_name.get(row.rule), row, message)

    def _settle(self, rule: DeadlineRule | None, row: StepRow, message: ObservedMessage) -> bool:
        """Close ``row`` if ``message`` answers it or ends it; True when it did."""
        if self._closes(rule, row, message):
            self._close(row, message)
            return True
        if self._ends(row, message):
            self._close(row, message)
            row.note = f"ended by {message.kind} {message.message_id}"
            return True
        return False

    @staticmethod
    def _ends(row: StepRow, message: ObservedMessage) -> bool:
        """Whether ``message`` ends a step without answering it: closing or withdrawing the
        referral (with its reason) ends what it still awaited, and a recipient's refusal
        (a rejecting receipt) ends what the refused message asked for."""
        if row.rule in ANSWERS_STILL_DUE:
            return False
        if message.kind in ENDS_REFERRAL:
            return message.sent_at >= row.started_at
        return (message.kind == RECEIPT_KIND and message.facts.get("status") == "rejected"
                and message.in_reply_to == row.start_message_id)

    @staticmethod
    def _closes(rule: DeadlineRule | None, row: StepRow, message: ObservedMessage) -> bool:
        if rule is None or message.kind not in rule.stops_on or message.sender != row.late_agency:
            return False
        if rule.match == REPLY:
            return message.in_reply_to == row.start_message_id
        to = rule.stop_recipients if rule.stop_recipients is not None else {row.counterpart}
        return message.recipient in to and message.sent_at >= row.started_at

    @staticmethod
    def _close(row: StepRow, message: ObservedMessage) -> None:
        row.state = CLOSED
        row.closed_at = message.sent_at
        row.closing_message_id = message.message_id

    # -- what is due ---------------------------------------------------------------------------
    def recount_calendar_missing(self, session: Session) -> list[str]:
        """Give the steps marked calendar missing their limit, where the calendar now covers
        what they need (it is read when the office starts); the ids of those recounted."""
        done = []
        for row in session.scalars(select(StepRow).where(StepRow.calendar_missing.is_not(None))):
            rule = self.by_name.get(row.rule)
            if rule is None:
                continue
            due_at, missing = self.due(rule, row.started_at)
            ours = row.note is None or row.note.startswith(MISSING_NOTE)
            if missing is None:
                row.due_at, row.calendar_missing = due_at, None
                if ours:
                    row.note = "limit counted when the calendar came to cover it"
                done.append(row.step_id)
            elif missing != row.calendar_missing:
                row.calendar_missing = missing
                if ours:
                    row.note = self._missing_note(missing)
        return done

    def due_actions(self, session: Session, now: datetime, *, warn_before: timedelta,
                    escalate_after: timedelta) -> list[DueAction]:
        """Warnings, urges and escalations now due; a step without a limit (calendar missing)
        has none."""
        actions = []
        for row in session.scalars(select(StepRow).where(StepRow.state == OPEN, StepRow.due_at.is_not(None))
                                   .order_by(StepRow.due_at)):
            if now > row.due_at:  # an answer exactly at the limit is on time
                if row.urged_at is None:
                    actions.append(DueAction(URGE, row.step_id))
                elif row.escalated_at is None and now >= row.urged_at + escalate_after:
                    actions.append(DueAction(ESCALATE, row.step_id))
            elif now >= row.due_at - warn_before and row.warned_at is None:
                actions.append(DueAction(WARN, row.step_id))
        return actions


def level_of(row: StepRow, now: datetime) -> str | None:
    if row.due_at is None:
        return CALENDAR_MISSING
    if row.escalated_at:
        return "escalated"
    if row.urged_at:
        return "urged"
    if row.state == OPEN and now > row.due_at:
        return "overdue"
    if row.warned_at and row.state == OPEN:
        return "warning"
    return None
