"""The delivery of a sent message as data: its outbox states and what moves it between them.

One owner: the relay and the receiving path never assign a delivery state themselves; they
name an event, and ``next_delivery_state`` (or, for many rows at once, the repository
applying these same rows in one UPDATE each) gives the new state.

    pending ──confirmed──▶ published ──receipted──▶ receipted
       │   (needs a receipt)   │  └─gave_up─▶ failed ──retried──▶ pending
       │                       └─confirmed (a resend)─▶ published
       │        receipted, failed ──resend_missing──▶ pending (reconciliation: the peer lacks it)
       └──confirmed (a receipt: needs none)──▶ done ──answer_again──▶ pending

A publication the broker refused is no event: nothing was delivered, so nothing moves
(docs/architecture.md §6). A receipt that arrives after giving up still records the delivery.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.protocol import rules

from .exceptions import DomainError

PENDING = "pending"          # committed, not yet confirmed by the broker
PUBLISHED = "published"      # broker confirmed; waiting for the recipient's receipt
RECEIPTED = "receipted"      # the recipient's receipt arrived (accepted or rejected)
DONE = "done"                # published and needs no receipt (receipts themselves)
FAILED = "failed"            # gave up after the last attempt without a receipt

DELIVERY_STATES = (PENDING, PUBLISHED, RECEIPTED, DONE, FAILED)

# Events.
CONFIRMED = "confirmed"          # the broker confirmed a publication
RECEIPTED_EVENT = "receipted"    # the recipient's receipt was recorded
GAVE_UP = "gave_up"              # MAX_ATTEMPTS publications without a receipt
RETRIED = "retried"              # an operator asked for a failed message to be sent again
ANSWER_AGAIN = "answer_again"    # a duplicate arrived: publish our same receipt again
# Reconciliation found that the recipient does not hold it (a database restored from a
# backup): the same bytes again, with a fresh set of attempts, until receipted again.
RESEND_MISSING = "resend_missing"
# A running node publishes what it commits at once, so it writes the entry as published in
# the committing transaction (one transaction fewer a message); if the broker then does not
# take it, NOT_TAKEN puts it back. Should the process stop in between, a message that needs
# a receipt is published again at its receipt timeout, and a receipt is answered again
# when its message arrives again (the sender's resend): nothing is lost either way.
HANDED_OVER = "handed_over"
NOT_TAKEN = "not_taken"

EVENTS = (CONFIRMED, RECEIPTED_EVENT, GAVE_UP, RETRIED, ANSWER_AGAIN, HANDED_OVER, NOT_TAKEN, RESEND_MISSING)

class DeliveryTransitionError(DomainError):
    rule = rules.DELIVERY_TRANSITION


@dataclass(frozen=True)
class DeliveryTransition:
    event: str
    from_states: tuple[str, ...]
    to: str
    # None: any message; True/False: only one that needs (or does not need) a receipt.
    needs_receipt: bool | None = None
    # Counts as a publication attempt (attempts + 1, last_published_at, next resend time).
    publication: bool = False


TRANSITIONS: tuple[DeliveryTransition, ...] = (
    DeliveryTransition(CONFIRMED, (PENDING, PUBLISHED), PUBLISHED, needs_receipt=True, publication=True),
    DeliveryTransition(CONFIRMED, (PENDING,), DONE, needs_receipt=False, publication=True),
    DeliveryTransition(RECEIPTED_EVENT, (PENDING, PUBLISHED, FAILED), RECEIPTED, needs_receipt=True),
    DeliveryTransition(GAVE_UP, (PUBLISHED,), FAILED, needs_receipt=True),
    DeliveryTransition(RETRIED, (FAILED,), PENDING, needs_receipt=True),
    DeliveryTransition(ANSWER_AGAIN, (DONE, PENDING), PENDING, needs_receipt=False),
    DeliveryTransition(HANDED_OVER, (PENDING,), PUBLISHED, needs_receipt=True, publication=True),
    DeliveryTransition(HANDED_OVER, (PENDING,), DONE, needs_receipt=False, publication=True),
    DeliveryTransition(NOT_TAKEN, (PUBLISHED,), PENDING, needs_receipt=True),
    DeliveryTransition(NOT_TAKEN, (DONE,), PENDING, needs_receipt=False),
    DeliveryTransition(RESEND_MISSING, (RECEIPTED, FAILED), PENDING, needs_receipt=True),
)


def transitions_for(event: str) -> tuple[DeliveryTransition, ...]:
    found = tuple(t for t in TRANSITIONS if t.event == event)
    if not found:
        raise DeliveryTransitionError(f"no delivery event {event!r}")
    return found


def transition(event: str, current: str, needs_receipt: bool) -> DeliveryTransition | None:
    """The row that applies, or None when the event does not move a message in ``current``
    (e.g. a confirm that comes after the receipt: the receipt wins)."""
    for row in transitions_for(event):
        if current in row.from_states and row.needs_receipt in (None, needs_receipt):
            return row
    return None


def next_delivery_state(event: str, current: str, needs_receipt: bool) -> str:
    """The new state; the current one when the event does not apply to it."""
    row = transition(event, current, needs_receipt)
    return row.to if row else current


# The sent message's own status mirrors its delivery until the receipt says more.
def message_status_after(event: str, current_status: str, *, needs_receipt: bool,
                         receipt_status: str | None = None) -> str:
    if event in (CONFIRMED, HANDED_OVER):
        return (PUBLISHED if needs_receipt else DONE) if current_status == PENDING else current_status
    if event == RECEIPTED_EVENT:
        if receipt_status is None:
            raise DeliveryTransitionError("a receipt's status is needed")
        return receipt_status
    if event == GAVE_UP:
        return FAILED
    if event in (RETRIED, RESEND_MISSING):
        return PENDING
    if event == ANSWER_AGAIN:
        return current_status
    if event == NOT_TAKEN:
        return PENDING if current_status in (PUBLISHED, DONE) else current_status
    raise DeliveryTransitionError(f"no delivery event {event!r}")
