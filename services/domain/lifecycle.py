"""The referral lifecycle as data: which kind moves a referral from which state to which.

Each node keeps its own view of a referral and applies the same table to every message it
sends or receives. A node sees only part of a referral (the court first hears of it from the
prosecution decision), so a transition lists every state from which some participant may
legitimately see that message; the first message a node sees of a referral starts from NEW.

Rows are matched in order; ``outcome`` narrows a row to one value of the body field named
by ``OUTCOME_FIELDS`` for that kind. ``to=None`` leaves the state unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from schemas import registry as k

from .exceptions import LifecycleViolation

NEW = "new"
REPORTED = "reported"                      # a court finding reported to the bureau
TRANSFERRED = "transferred"                # a clue transferred (or its copy received)
FILED = "filed"                            # 立案
NOT_FILED = "not_filed"                    # 不予立案
FORWARDED = "forwarded"                    # passed to the competent organ
RECONSIDERATION = "reconsideration"        # 复议 pending
SUPERVISION = "supervision"                # 立案监督 pending
PROSECUTION_REVIEW = "prosecution_review"  # 审查起诉
PROSECUTED = "prosecuted"
NOT_PROSECUTED = "not_prosecuted"
JUDGED = "judged"
REVERSE_TRANSFERRED = "reverse_transferred"
HANDLED = "handled"
VERIFICATION_REQUESTED = "verification_requested"
VERIFIED = "verified"
REWARD_REQUESTED = "reward_requested"
REWARD_PAID = "reward_paid"
CLOSED = "closed"
WITHDRAWN = "withdrawn"

TERMINAL = frozenset({CLOSED, WITHDRAWN})
ALL_STATES = (NEW, REPORTED, TRANSFERRED, FILED, NOT_FILED, FORWARDED, RECONSIDERATION, SUPERVISION,
              PROSECUTION_REVIEW, PROSECUTED, NOT_PROSECUTED, JUDGED, REVERSE_TRANSFERRED, HANDLED,
              VERIFICATION_REQUESTED, VERIFIED, REWARD_REQUESTED, REWARD_PAID, CLOSED, WITHDRAWN)
OPEN_STATES = frozenset(ALL_STATES) - TERMINAL - {NEW}

# The body field whose value selects among a kind's rows.
OUTCOME_FIELDS: Mapping[str, str] = {
    k.FILING_DECISION: "decision",
    k.RECONSIDERATION_DECISION: "outcome",
    k.CASE_TRANSFER: "direction",
    k.PROSECUTION_DECISION: "decision",
    k.SUPERVISION_NOTICE: "subject",
}


@dataclass(frozen=True)
class Transition:
    kind: str
    from_states: frozenset[str]
    to: str | None
    outcome: str | None = None


def _t(kind, from_states, to, outcome=None) -> Transition:
    return Transition(kind, frozenset(from_states), to, outcome)


TRANSITIONS: tuple[Transition, ...] = (
    _t(k.FINDING_NOTICE, {NEW}, REPORTED),
    _t(k.CLUE_TRANSFER, {NEW, REPORTED}, TRANSFERRED),
    _t(k.COPY_NOTICE, {NEW, TRANSFERRED}, TRANSFERRED),
    _t(k.FILING_DECISION, {TRANSFERRED, SUPERVISION, NOT_FILED}, FILED, "filed"),
    _t(k.FILING_DECISION, {TRANSFERRED}, NOT_FILED, "not_filed"),
    _t(k.FILING_DECISION, {TRANSFERRED}, FORWARDED, "not_competent"),
    _t(k.RECONSIDERATION_REQUEST, {NOT_FILED}, RECONSIDERATION),
    _t(k.RECONSIDERATION_DECISION, {RECONSIDERATION}, FILED, "reversed"),
    _t(k.RECONSIDERATION_DECISION, {RECONSIDERATION}, NOT_FILED, "upheld"),
    # The procuratorate knows the referral from its copy; the bureau after a refusal.
    _t(k.SUPERVISION_REQUEST, {NOT_FILED, TRANSFERRED}, SUPERVISION),
    _t(k.SUPERVISION_NOTICE, {SUPERVISION, NOT_FILED}, SUPERVISION, "filing_supervision"),
    _t(k.SUPERVISION_NOTICE, {SUPERVISION}, SUPERVISION, "supervision_result"),
    # The office may escalate a referral the procuratorate has not seen before.
    _t(k.SUPERVISION_NOTICE, OPEN_STATES | {NEW}, None, "overdue_escalation"),
    _t(k.MATERIALS_HANDOVER, {FILED}, None),
    # The procuratorate sees the case arrive with only its copy (or a supervision) behind it.
    _t(k.CASE_TRANSFER, {FILED, TRANSFERRED, SUPERVISION}, PROSECUTION_REVIEW, "for_prosecution"),
    _t(k.CASE_TRANSFER, {TRANSFERRED, NOT_FILED, FILED}, REVERSE_TRANSFERRED, "reverse"),
    # The court hears of a referral first from the prosecution decision; the bureau and the
    # police knew it as filed.
    _t(k.PROSECUTION_DECISION, {PROSECUTION_REVIEW, NEW, FILED}, PROSECUTED, "prosecute"),
    _t(k.PROSECUTION_DECISION, {PROSECUTION_REVIEW, FILED}, NOT_PROSECUTED, "not_prosecute"),
    _t(k.PROSECUTION_DECISION, {PROSECUTION_REVIEW, FILED}, FILED, "return_for_investigation"),
    _t(k.JUDGMENT, {PROSECUTED}, JUDGED),
    _t(k.HANDLING_RESULT, {TRANSFERRED, REVERSE_TRANSFERRED}, HANDLED),
    _t(k.INVOICE_VERIFICATION_REQUEST, {NEW}, VERIFICATION_REQUESTED),
    _t(k.INVOICE_VERIFICATION_RESULT, {VERIFICATION_REQUESTED}, VERIFIED),
    _t(k.REWARD_REQUEST, {NEW}, REWARD_REQUESTED),
    _t(k.REWARD_PAYMENT, {REWARD_REQUESTED}, REWARD_PAID),
    _t(k.URGE, OPEN_STATES, None),
    _t(k.WITHDRAWAL, OPEN_STATES, WITHDRAWN),
    _t(k.CLOSURE, OPEN_STATES, CLOSED),
)

# Receipts answer a message; they never move a referral.
STATELESS_KINDS = frozenset({k.RECEIPT})


def _outcome(kind: str, body: Mapping | None) -> str | None:
    field = OUTCOME_FIELDS.get(kind)
    if field is None or body is None:
        return None
    return body.get(field)


def next_state(kind: str, current: str, body: Mapping | None) -> str:
    """The state after ``kind`` arrives in ``current``; raise LifecycleViolation if it cannot.

    ``body`` may be None when a sealed body cannot be read by this node (an observer);
    then the first row whose ``from_states`` admits ``current`` is taken.
    """
    if kind in STATELESS_KINDS:
        return current
    outcome = _outcome(kind, body)
    candidates = [t for t in TRANSITIONS if t.kind == kind
                  and (t.outcome is None or outcome is None or t.outcome == outcome)]
    if not candidates:
        raise LifecycleViolation(f"no lifecycle rule for {kind}" + (f" with {outcome!r}" if outcome else ""))
    for transition in candidates:
        if current in transition.from_states:
            return transition.to or current
    allowed = sorted(set().union(*(t.from_states for t in candidates)))
    what = kind + (f" ({outcome})" if outcome else "")
    raise LifecycleViolation(
        f"{what} cannot follow state {current!r}; allowed from: {', '.join(allowed)}")


def starts_referral(kind: str) -> bool:
    return any(NEW in t.from_states for t in TRANSITIONS if t.kind == kind)
