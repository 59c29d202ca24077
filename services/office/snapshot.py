"""What the office knew at a moment: the one as-of computation behind every figure.

``snapshot(messages, steps, as_of)`` is the only place where the office decides what was
known at ``as_of`` and in which state each deadline step was then. The statistics
(``stats.compute_stats``), the overdue list (``handlers.overdue``, ``cluebus overdue``), the
referral list and timeline, the exports and the dashboard all read a ``Snapshot``; none of them
looks at a step's current state. So they agree for any moment, and a report for a past moment
is the same whenever it is run (docs/office.md §7, "Snapshot").

Plain Python over plain data (no database, no Nameko):

- A message is **known at T** when the office had observed it by T and it had been sent by T:
  ``known_at = max(sent_at, observed_at) <= T``. (A message whose ``sent_at`` lies ahead of the
  office's clock is known from its ``sent_at``.) Both times are fixed once recorded, so what is
  known at a past T never changes.
- A step **exists at T** when the message that opened it is known at T. For the interval rules
  (approval, transfer after approval) that is the transfer, whatever times its body reports.
- Its **state at T** is derived from what was known at T: it is closed at T only when the
  message that closed it is known at T; otherwise it is open at T (a step closed after T is open
  at T).
- A closed step was either **answered** (the awaited act: the answer the rule waits for, or the
  transfer itself for an interval rule) or **ended** (a closure, a withdrawal or a refusal ended
  it without the act, tracking.py). A step recorded as ended is still *answered* at T when the
  awaited act, known at T, was sent at or before the ending: the tracker keeps the first message
  it observed, and the closure may have been observed before an earlier answer.
- The office's marks (``warned_at``, ``urged_at``, ``escalated_at``) count at T only when they
  were made by T.
- A step whose limit is unknown because the working-day calendar does not cover a year its
  count needs (``Step.calendar_missing``, tracking.py) is not among ``Snapshot.steps``: it is
  listed in ``Snapshot.calendar_missing`` (status open, ended, or ``answered`` when whether it
  was on time cannot be told), so no figure counts it as on time, late or overdue, and the views
  and the statistics' notes show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Sequence

from .model import ObservedMessage, Step
from .rules import DeadlineRule
from .tracking import ANSWERS_STILL_DUE, ENDS_REFERRAL, RECEIPT_KIND, Tracker

# A step's status at T.
ON_TIME = "on_time"     # answered at or before its limit
LATE = "late"           # answered after its limit ("closed late")
ENDED = "ended"         # ended by a closure, withdrawal or refusal without the awaited act
OPEN = "open"           # nothing that closes it known at T
STATUSES = (ON_TIME, LATE, ENDED, OPEN)
# Only in Snapshot.calendar_missing: answered, but with no limit to say whether on time.
ANSWERED = "answered"

_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Marks:
    """What the office did about a step, and when (the columns of ``deadline_steps``)."""

    warned_at: datetime | None = None
    urged_at: datetime | None = None
    escalated_at: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class StepAt:
    """One deadline step as it stood at ``as_of``."""

    step_id: str
    rule: str
    referral_id: str
    start_message_id: str
    started_at: datetime
    due_at: datetime
    late_agency: str
    counterpart: str
    known_at: datetime                 # when its opening message became known
    as_of: datetime
    status: str                        # ON_TIME | LATE | ENDED | OPEN
    closed_at: datetime | None = None  # sent_at of the answer or of the ending, when known at as_of
    closing_message_id: str | None = None
    closing_kind: str | None = None
    warned_at: datetime | None = None  # marks made by as_of only
    urged_at: datetime | None = None
    escalated_at: datetime | None = None
    note: str | None = None
    calendar_missing: int | None = None  # the year the calendar lacks; due_at is then None

    @property
    def state(self) -> str:
        """``open`` or ``closed`` at ``as_of`` (an ended step is closed)."""
        return "open" if self.status == OPEN else "closed"

    @property
    def answered(self) -> bool:
        return self.status in (ON_TIME, LATE)

    @property
    def open_overdue(self) -> bool:
        """Open at ``as_of`` and past its limit (an answer exactly at the limit is on time)."""
        return self.status == OPEN and self.due_at is not None and self.due_at < self.as_of

    @property
    def ended_overdue(self) -> bool:
        """Ended without the awaited act after its limit had passed."""
        return self.status == ENDED and self.due_at is not None and self.closed_at > self.due_at

    @property
    def missed(self) -> bool:
        """The limit passed without the act in time: closed late, ended after it, or open past it."""
        return self.status == LATE or self.ended_overdue or self.open_overdue

    @property
    def overdue_seconds(self) -> int:
        """How late: for an open step ``as_of - due_at``, for a closed one ``closed_at - due_at``;
        whole seconds, 0 when not late."""
        if self.due_at is None:
            return 0
        end = self.as_of if self.status == OPEN else self.closed_at
        return max(0, (end - self.due_at) // _ONE_SECOND)

    @property
    def late_seconds(self) -> int | None:
        """Lateness of a step answered late (``closed_at - due_at``), else None."""
        return (self.closed_at - self.due_at) // _ONE_SECOND if self.status == LATE else None

    @property
    def seconds_to_answer(self) -> int | None:
        """``closed_at - started_at`` of an answered step, else None."""
        return (self.closed_at - self.started_at) // _ONE_SECOND if self.answered else None

    def level(self, warn_before: timedelta) -> str | None:
        """The level shown at ``as_of`` for an open step: escalated, urged, overdue, warning,
        or calendar_missing when its limit is unknown."""
        if self.status != OPEN:
            return None
        if self.due_at is None:
            return "calendar_missing"
        if self.escalated_at is not None:
            return "escalated"
        if self.urged_at is not None:
            return "urged"
        if self.as_of > self.due_at:
            return "overdue"
        if self.warned_at is not None or self.as_of >= self.due_at - warn_before:
            return "warning"
        return None


@dataclass(frozen=True)
class Snapshot:
    as_of: datetime
    messages: list[ObservedMessage]        # known at as_of, one per message_id, in (sent_at, id) order
    steps: list[StepAt]                    # existing at as_of, one per step_id, in (started_at, id) order
    # Existing at as_of but with no limit (the calendar lacks a year they need): in no figure.
    calendar_missing: list[StepAt] = field(default_factory=list)

    def referral_messages(self) -> dict[str, list[ObservedMessage]]:
        grouped: dict[str, list[ObservedMessage]] = {}
        for message in self.messages:
            grouped.setdefault(message.referral_id, []).append(message)
        return grouped

    def open_overdue(self) -> list[StepAt]:
        """Every step open and past its limit at ``as_of``, most overdue first."""
        return sorted((s for s in self.steps if s.open_overdue), key=lambda s: (s.due_at, s.step_id))


def known_at(message: ObservedMessage) -> datetime:
    return max(message.sent_at, message.observed_at)


def order(message: ObservedMessage):
    return (message.sent_at, message.message_id)


def unique(items: Iterable, key: str, what: str) -> list:
    """One item per ``key``: repeats of the same record are dropped, two different records under
    one id are an error (ValueError)."""
    seen: dict = {}
    for item in items:
        ident = getattr(item, key)
        if ident in seen:
            if seen[ident] != item:
                raise ValueError(f"two different {what}s with {key} {ident!r}")
            continue
        seen[ident] = item
    return list(seen.values())


def snapshot(messages: Iterable[ObservedMessage], steps: Iterable[Step], as_of: datetime, *,
             rules: Sequence[DeadlineRule] | None = None,
             marks: Mapping[str, Marks] | None = None) -> Snapshot:
    """What the office knew at ``as_of`` (see the module docstring).

    ``messages`` are the observed messages that broke no rule (any moment: later ones are
    left out here), ``steps`` the steps as the tracker recorded them. ``rules`` (the deadline
    rules by which the steps were opened) let an ended step be recognised as answered when its
    awaited act came first; without them the recorded closing message decides. Raises
    ValueError when a step's opening or closing message is not among ``messages``.
    """
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError(f"as_of must be a timezone-aware datetime, not {as_of!r}")
    every = unique(messages, "message_id", "message")
    by_id = {m.message_id: m for m in every}
    known = sorted((m for m in every if known_at(m) <= as_of), key=order)
    by_referral: dict[str, list[ObservedMessage]] = {}
    for message in known:
        by_referral.setdefault(message.referral_id, []).append(message)
    rule_by_name = {rule.name: rule for rule in rules} if rules is not None else None
    marks = marks or {}

    result, missing = [], []
    for step in unique(steps, "step_id", "step"):
        start = by_id.get(step.start_message_id)
        if start is None:
            raise ValueError(f"step {step.step_id}: its opening message {step.start_message_id} is not in the log")
        if known_at(start) > as_of:
            continue
        status, closer = OPEN, None
        if step.closing_message_id is not None:
            closer = by_id.get(step.closing_message_id)
            if closer is None:
                raise ValueError(f"step {step.step_id}: its closing message {step.closing_message_id} "
                                 "is not in the log")
            if known_at(closer) > as_of:
                closer = None
        closed_at = step.closed_at if closer is not None else None   # an interval step's is its stop time
        if closer is not None:
            rule = rule_by_name.get(step.rule) if rule_by_name is not None else None
            if _ends(step, closer, rule):
                answer = _earlier_answer(step, closer, rule, by_referral.get(step.referral_id, ()))
                if answer is None:
                    status = ENDED
                else:
                    closer, closed_at = answer, answer.sent_at
            if status != ENDED:
                if step.due_at is None:
                    status = ANSWERED
                else:
                    status = ON_TIME if closed_at <= step.due_at else LATE
        mark = marks.get(step.step_id, Marks())
        (result if step.due_at is not None else missing).append(StepAt(
            step_id=step.step_id, rule=step.rule, referral_id=step.referral_id,
            start_message_id=step.start_message_id, started_at=step.started_at, due_at=step.due_at,
            late_agency=step.late_agency, counterpart=step.counterpart, known_at=known_at(start), as_of=as_of,
            status=status, closed_at=closed_at,
            closing_message_id=closer.message_id if closer else None,
            closing_kind=closer.kind if closer else None,
            warned_at=_by(mark.warned_at, as_of), urged_at=_by(mark.urged_at, as_of),
            escalated_at=_by(mark.escalated_at, as_of), note=mark.note,
            calendar_missing=getattr(step, "calendar_missing", None)))
    result.sort(key=lambda s: (s.started_at, s.step_id))
    missing.sort(key=lambda s: (s.started_at, s.step_id))
    return Snapshot(as_of=as_of, messages=known, steps=result, calendar_missing=missing)


def _by(moment: datetime | None, as_of: datetime) -> datetime | None:
    return moment if moment is not None and moment <= as_of else None


def _ends(step: Step, closer: ObservedMessage, rule: DeadlineRule | None) -> bool:
    """Whether ``closer`` ended the step rather than answering it (tracking.Tracker._settle:
    an answer first, then a closure, a withdrawal or a rejecting receipt)."""
    if rule is not None and Tracker._closes(rule, step, closer):
        return False
    if closer.message_id == step.start_message_id:     # an interval rule: the transfer itself
        return False
    if step.rule in ANSWERS_STILL_DUE:
        return False
    return closer.kind in ENDS_REFERRAL or (closer.kind == RECEIPT_KIND and closer.facts.get("status") == "rejected"
                                            and closer.in_reply_to == step.start_message_id)


def _earlier_answer(step: Step, ending: ObservedMessage, rule: DeadlineRule | None,
                    referral: Sequence[ObservedMessage]) -> ObservedMessage | None:
    """The awaited act, known at as_of, sent at or before ``ending`` (the first such)."""
    if rule is None:
        return None
    for message in referral:            # in (sent_at, message_id) order
        if message.sent_at > ending.sent_at:
            break
        if message.message_id != ending.message_id and Tracker._closes(rule, step, message):
            return message
    return None
