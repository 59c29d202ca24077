"""Every decision a receiving node takes (docs/protocol.md sections 12, 13 and 18), each on a
bus without a broker (tests/support/inprocess_bus.py): real nodes wired by services.bootstrap
on their own SQLite files, real keys, one FakeClock, and in-memory queues.

Each test says what the node decided (the outcome's status and rule code), what it stored
(messages, inbox, quarantine, referrals, audit events), what it answered (a signed receipt with
its reason codes, opened and checked by its recipient, or nothing at all) and that nothing else
changed, in any node's database or on the bus.
"""

from __future__ import annotations

import json
import uuid

import pytest

from schemas.registry import CLUE_TRANSFER, RECEIPT, RECONSIDERATION_REQUEST, WITHDRAWAL
from services.handlers import receiving
from services.handlers.receiving import (OUTCOME_ACCEPTED, OUTCOME_DUPLICATE, OUTCOME_QUARANTINED,
                                         OUTCOME_RECEIPT, OUTCOME_REJECTED)
from services.protocol import rules
from services.protocol.compose import SignedMessage
from services.protocol.signing_input import message_sha256
from tests.fixtures.bodies import resign, sample_body
from tests.support.inprocess_bus import InProcessBus, Published, make_config

MS, PS, PROC = "medical_security", "public_security", "procuratorate"
CUSTOMS = "customs"   # has keys in the keyring, but is no configured agency


def _bus(tmp_path, clock, **options):
    config, _ = make_config(tmp_path, extra_key_agencies=[CUSTOMS])
    yield from InProcessBus(config, clock, **options).closing_audited()  # every audit chain must hold


@pytest.fixture
def bus(tmp_path, clock):
    """Nodes wired as a running node is (it publishes what it commits at once)."""
    yield from _bus(tmp_path, clock)


@pytest.fixture(params=["node", "cli"])
def any_bus(request, tmp_path, clock):
    """Both wirings: the running node's, and the command line's (its relay publishes)."""
    yield from _bus(tmp_path, clock, publishes_at_once=request.param == "node")


# -- helpers ---------------------------------------------------------------------------------------------
def send_clue(bus: InProcessBus, **options) -> SignedMessage:
    """A clue from the bureau to the police, committed and published (no copy to the
    procuratorate unless asked for: each test sees only its own traffic)."""
    options.setdefault("copy_to", None)
    sent = bus.refer_clue(MS, sample_body(CLUE_TRANSFER), PS, **options)
    if not bus.publishes_at_once:
        bus.relay(MS)                        # the command line leaves it to the node's relay
    return sent[0]


def accepted_clue(bus: InProcessBus) -> tuple[SignedMessage, Published]:
    """A clue the police have accepted; their receipt waits in the bureau's queue."""
    clue = send_clue(bus)
    [outcome] = bus.deliver(PS)
    assert outcome.status == OUTCOME_ACCEPTED
    receipt = bus.published[-1]
    assert receipt.publisher == PS and receipt.routing_key == f"{MS}.receipt"
    return clue, receipt


def receipted_clue(bus: InProcessBus) -> tuple[SignedMessage, Published]:
    """A clue accepted by the police, whose receipt the bureau has recorded."""
    clue, receipt = accepted_clue(bus)
    [outcome] = bus.deliver(MS)
    assert outcome.status == OUTCOME_RECEIPT
    return clue, receipt


def envelope_of(raw: bytes) -> dict:
    return json.loads(raw)


def check_receipt(bus: InProcessBus, published: Published, answered: bytes, *, status: str,
                  reason_codes: list[str], by: str | None = None):
    """``published`` is a receipt its recipient verifies, signed by the node that received
    ``answered`` (``by``, by default the agency it was addressed to), answering exactly those
    bytes with ``status`` and ``reason_codes``."""
    original = envelope_of(answered)
    by, to = by or original["recipient"], original["sender"]
    assert (published.publisher, published.routing_key) == (by, f"{to}.receipt")
    receipt = bus.read(to, published.raw)
    assert (receipt.kind, receipt.sender, receipt.recipient) == (RECEIPT, by, to)
    assert receipt.in_reply_to == original["message_id"]
    assert receipt.referral_id == original["referral_id"]
    body = receipt.plain_body
    assert body["status"] == status
    assert body["reason_codes"] == reason_codes
    assert body["message_sha256"] == message_sha256(answered)
    return receipt


_ANSWERED = object()


def hand_made_receipt(bus: InProcessBus, sender: str, answered: bytes, *, status: str = "accepted",
                      sha256: str | None = None, in_reply_to=_ANSWERED,
                      referral_id: str | None = None) -> SignedMessage:
    """A receipt validly signed by ``sender`` for ``answered``, composed outside its node."""
    original = envelope_of(answered)
    body = {"status": status, "message_sha256": sha256 or message_sha256(answered),
            "received_at": bus.clock(), "reason_codes": [] if status == "accepted" else [rules.BODY_INVALID]}
    return bus.compose(sender, RECEIPT, original["sender"], body,
                       referral_id=referral_id or original["referral_id"],
                       in_reply_to=original["message_id"] if in_reply_to is _ANSWERED else in_reply_to)


def only_changes(changes, expected: dict[str, set[str]]) -> None:
    """The databases that changed are exactly ``expected``, table by table."""
    assert {agency: changes.tables(agency) for agency in changes.db} == expected


def quarantined_row(row: dict, raw: bytes, rule: str, *, message_id: str | None, sender: str | None) -> None:
    assert row["rule"] == rule
    assert row["raw"] == raw and row["sha256"] == message_sha256(raw) and row["size"] == len(raw)
    assert row["truncated"] is False
    assert (row["claimed_message_id"], row["claimed_sender"]) == (message_id, sender)


def tampered(raw: bytes) -> bytes:
    """The same message with one character of its body changed: the signature no longer verifies."""
    changed = raw.replace("虚构住院".encode(), "虚假住院".encode(), 1)
    assert changed != raw
    return changed


def signed_by_customs(bus: InProcessBus, envelope: dict, **changes) -> bytes:
    """``envelope`` with ``changes``, validly signed by an agency the keyring knows but the
    configuration does not."""
    signer = bus.signer(CUSTOMS)
    return resign({**envelope, "sender": CUSTOMS, "sender_key_id": signer.key_id, **changes}, signer)


# -- accepted ----------------------------------------------------------------------------------------------
def test_a_first_delivery_is_accepted_stored_applied_and_answered(any_bus):
    bus = any_bus
    clue = send_clue(bus)
    assert bus.waiting(PS) == [clue.raw]
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.message_id, outcome.kind) == \
        (OUTCOME_ACCEPTED, None, clue.message_id, CLUE_TRANSFER)
    assert outcome.referral_id == clue.envelope["referral_id"]
    changes = bus.since(mark)
    only_changes(changes, {PS: {"messages", "inbox", "outbox", "referrals", "audit_log"}})
    # Stored: the message as received (its exact bytes, its body) and the receipt sent for it.
    stored = {row["message_id"]: row for row in changes.added(PS, "messages")}
    assert set(stored) == {clue.message_id, outcome.receipt_message_id}
    inbound = stored[clue.message_id]
    assert (inbound["direction"], inbound["status"], inbound["raw"], inbound["sha256"]) == \
        ("in", "accepted", clue.raw, clue.sha256)
    assert inbound["body"] == clue.plain_body and inbound["reason_codes"] is None
    [inbox] = changes.added(PS, "inbox")
    assert (inbox["message_id"], inbox["sha256"], inbox["outcome"], inbox["receipt_message_id"],
            inbox["deliveries"]) == (clue.message_id, clue.sha256, "accepted", outcome.receipt_message_id, 1)
    [entry] = changes.added(PS, "outbox")
    assert (entry["message_id"], entry["routing_key"], entry["needs_receipt"], entry["state"]) == \
        (outcome.receipt_message_id, f"{MS}.receipt", False, "done")
    [referral] = changes.added(PS, "referrals")
    assert (referral["referral_id"], referral["state"], referral["opened_by"], referral["first_kind"],
            referral["last_message_id"]) == (clue.envelope["referral_id"], "transferred", MS, CLUE_TRANSFER,
                                             clue.message_id)
    assert changes.events(PS) == ["message.accepted"]
    # Answered: one signed acceptance, bound to the bytes received, published at once.
    [published] = changes.published
    assert published.raw == stored[outcome.receipt_message_id]["raw"]
    check_receipt(bus, published, clue.raw, status="accepted", reason_codes=[])
    assert bus.waiting(MS) == [published.raw] and bus.waiting(PS) == []


def test_the_senders_node_records_the_receipt(bus):
    clue, receipt = accepted_clue(bus)
    mark = bus.mark()

    [outcome] = bus.deliver(MS)

    assert (outcome.status, outcome.rule, outcome.message_id) == (OUTCOME_RECEIPT, None, envelope_of(receipt.raw)["message_id"])
    changes = bus.since(mark)
    only_changes(changes, {MS: {"messages", "inbox", "outbox", "audit_log"}})
    [stored] = changes.added(MS, "messages")
    assert (stored["kind"], stored["direction"], stored["status"], stored["raw"]) == (RECEIPT, "in", "accepted", receipt.raw)
    [(before, after)] = changes.changed(MS, "messages")
    assert before["message_id"] == clue.message_id and (before["status"], after["status"]) == ("published", "accepted")
    [(before, after)] = changes.changed(MS, "outbox")
    assert (before["state"], after["state"], after["receipt_message_id"]) == ("published", "receipted", outcome.message_id)
    [inbox] = changes.added(MS, "inbox")
    assert (inbox["outcome"], inbox["receipt_message_id"]) == ("accepted", None)
    assert changes.events(MS) == ["receipt.received"]
    assert changes.published == []          # receipts are never answered


# -- the same message again -------------------------------------------------------------------------------
def test_an_exact_duplicate_is_applied_once_and_answered_with_the_original_receipt_bytes(any_bus, clock):
    bus = any_bus
    clue, first_receipt = accepted_clue(bus)
    bus.deliver(MS)
    referral_before = bus.referral(PS, clue.envelope["referral_id"])
    clock.advance(minutes=10)               # the sender's resend, long after
    bus.inject(PS, clue.raw, by=MS)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    receipt_id = envelope_of(first_receipt.raw)["message_id"]
    assert (outcome.status, outcome.rule, outcome.message_id, outcome.receipt_message_id) == \
        (OUTCOME_DUPLICATE, None, clue.message_id, receipt_id)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"inbox", "outbox", "audit_log"}})
    [(before, after)] = changes.changed(PS, "inbox")
    assert (before["deliveries"], after["deliveries"]) == (1, 2)
    assert {k: v for k, v in after.items() if k != "deliveries"} == {k: v for k, v in before.items() if k != "deliveries"}
    [(before, after)] = changes.changed(PS, "outbox")       # the same receipt, published again
    assert after["message_id"] == receipt_id and (before["state"], after["state"]) == ("done", "done")
    assert after["last_published_at"] == clock()
    assert changes.events(PS) == ["message.duplicate"]
    assert bus.referral(PS, clue.envelope["referral_id"]) == referral_before
    [again] = changes.published
    assert again.raw == first_receipt.raw and again.routing_key == first_receipt.routing_key
    assert bus.audit_events(PS).count("message.accepted") == 1

    # The bureau meets its receipt a second time: recorded once.
    [seen] = bus.deliver(MS)
    assert (seen.status, seen.message_id, seen.receipt_message_id) == (OUTCOME_DUPLICATE, receipt_id, None)
    assert bus.audit_events(MS).count("receipt.received") == 1


def test_a_redelivered_rejected_message_gets_the_same_rejection_receipt_again(bus, clock):
    clue, _ = accepted_clue(bus)
    refused = bus.compose(MS, RECONSIDERATION_REQUEST, PS, sample_body(RECONSIDERATION_REQUEST),
                          referral_id=clue.envelope["referral_id"])
    bus.inject(PS, refused.raw, by=MS)
    [first] = bus.deliver(PS)
    assert (first.status, first.rule) == (OUTCOME_REJECTED, rules.LIFECYCLE_TRANSITION)
    rejection = bus.published[-1]
    clock.advance(minutes=1)
    bus.inject(PS, refused.raw, by=MS)
    mark = bus.mark()

    [again] = bus.deliver(PS)

    assert (again.status, again.message_id, again.receipt_message_id) == \
        (OUTCOME_DUPLICATE, refused.message_id, first.receipt_message_id)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"inbox", "outbox", "audit_log"}})
    assert changes.events(PS) == ["message.duplicate"]
    [published] = changes.published
    assert published.raw == rejection.raw
    check_receipt(bus, published, refused.raw, status="rejected", reason_codes=[rules.LIFECYCLE_TRANSITION])


def test_a_duplicate_whose_receipt_the_broker_did_not_take_gets_that_receipt(bus, clock):
    clue = send_clue(bus)
    bus.node(PS).publisher.refusing = "connection lost"
    [first] = bus.deliver(PS)
    assert first.status == OUTCOME_ACCEPTED and bus.published_to(MS) == []
    [entry] = bus.outbox(PS)
    assert (entry["message_id"], entry["state"]) == (first.receipt_message_id, "pending")
    bus.node(PS).publisher.refusing = None
    clock.advance(seconds=1)                 # before the relay's retry: the sender resends first
    bus.inject(PS, clue.raw, by=MS)
    mark = bus.mark()

    [again] = bus.deliver(PS)

    assert (again.status, again.receipt_message_id) == (OUTCOME_DUPLICATE, first.receipt_message_id)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"messages", "inbox", "outbox", "audit_log"}})
    [(before, after)] = changes.changed(PS, "messages")      # the receipt's own status: published
    assert (before["message_id"], before["status"], after["status"]) == (first.receipt_message_id, "pending", "done")
    [published] = changes.published
    assert published.raw == bus.raw_of(PS, first.receipt_message_id)
    check_receipt(bus, published, clue.raw, status="accepted", reason_codes=[])


def test_a_message_id_reused_with_other_bytes_is_quarantined(bus):
    clue, _ = accepted_clue(bus)
    body = sample_body(CLUE_TRANSFER)
    body["title"] = "另一条线索"
    impostor = bus.compose(MS, CLUE_TRANSFER, PS, body, referral_id=clue.envelope["referral_id"],
                           message_id=clue.message_id)
    assert impostor.raw != clue.raw
    bus.inject(PS, impostor.raw, by=MS)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.message_id, outcome.receipt_message_id) == \
        (OUTCOME_QUARANTINED, rules.MESSAGE_ID_REUSED, clue.message_id, None)
    changes = bus.since(mark)
    # The inbox counts the delivery of that id; the message stored is still the first one.
    only_changes(changes, {PS: {"quarantine", "inbox", "audit_log"}})
    [row] = changes.added(PS, "quarantine")
    quarantined_row(row, impostor.raw, rules.MESSAGE_ID_REUSED, message_id=clue.message_id, sender=MS)
    [(before, after)] = changes.changed(PS, "inbox")
    assert (before["deliveries"], after["deliveries"]) == (1, 2) and after["sha256"] == clue.sha256
    assert changes.events(PS) == ["message.quarantined"]
    assert bus.message(PS, clue.message_id)["raw"] == clue.raw
    assert changes.published == []


def _own_id_answered(bus, clue: SignedMessage) -> bytes:
    """A filing decision the police sign under the id of the bureau's own clue."""
    body = {"decision": "not_filed", "decided_at": bus.clock(), "reasons": ["证据不足"]}
    return bus.compose(PS, "filing_decision", MS, body, referral_id=clue.envelope["referral_id"],
                       in_reply_to=clue.message_id, message_id=clue.message_id).raw


def _own_bytes_played_back(bus, clue: SignedMessage) -> bytes:
    """The bureau's own clue, published back to the bureau."""
    return clue.raw


@pytest.mark.parametrize("make", [_own_id_answered, _own_bytes_played_back],
                         ids=["other_agency_signs_our_id", "our_own_bytes_played_back"])
def test_the_id_of_a_message_this_node_sent_arriving_inbound_is_quarantined(bus, make):
    clue = send_clue(bus)
    raw = make(bus, clue)
    bus.inject(MS, raw, by=envelope_of(raw)["sender"])
    mark = bus.mark()

    [outcome] = bus.deliver(MS)

    assert (outcome.status, outcome.rule, outcome.message_id, outcome.receipt_message_id) == \
        (OUTCOME_QUARANTINED, rules.MESSAGE_ID_REUSED, clue.message_id, None)
    changes = bus.since(mark)
    only_changes(changes, {MS: {"quarantine", "audit_log"}})
    [row] = changes.added(MS, "quarantine")
    quarantined_row(row, raw, rules.MESSAGE_ID_REUSED, message_id=clue.message_id,
                    sender=envelope_of(raw)["sender"])
    assert changes.events(MS) == ["message.quarantined"]
    assert changes.published == []
    assert bus.message(MS, clue.message_id)["direction"] == "out"


# -- receipts that do not match what this node sent ----------------------------------------------------------
def _unknown_id(bus, clue, receipt):
    return hand_made_receipt(bus, PS, clue.raw, in_reply_to=str(uuid.uuid4()))


def _no_in_reply_to(bus, clue, receipt):
    return hand_made_receipt(bus, PS, clue.raw, in_reply_to=None)


def _answers_a_message_received(bus, clue, receipt):
    """A receipt for the police's receipt, which the bureau received (did not send)."""
    return hand_made_receipt(bus, PS, clue.raw, in_reply_to=envelope_of(receipt.raw)["message_id"])


@pytest.mark.parametrize("make", [_unknown_id, _no_in_reply_to, _answers_a_message_received],
                         ids=["unknown_id", "in_reply_to_null", "a_message_received"])
def test_a_receipt_for_a_message_this_node_did_not_send_is_quarantined(bus, make):
    clue, receipt = receipted_clue(bus)
    stray = make(bus, clue, receipt)
    bus.inject(MS, stray.raw, by=PS)
    mark = bus.mark()

    [outcome] = bus.deliver(MS)

    assert (outcome.status, outcome.rule, outcome.message_id, outcome.receipt_message_id) == \
        (OUTCOME_QUARANTINED, rules.RECEIPT_UNKNOWN_MESSAGE, stray.message_id, None)
    changes = bus.since(mark)
    only_changes(changes, {MS: {"quarantine", "inbox", "audit_log"}})
    [row] = changes.added(MS, "quarantine")
    quarantined_row(row, stray.raw, rules.RECEIPT_UNKNOWN_MESSAGE, message_id=stray.message_id, sender=PS)
    [inbox] = changes.added(MS, "inbox")
    assert (inbox["message_id"], inbox["outcome"], inbox["receipt_message_id"]) == (stray.message_id, "rejected", None)
    assert changes.events(MS) == ["message.quarantined"]
    assert changes.published == []


def test_a_receipt_answering_one_of_our_receipts_is_quarantined(bus):
    """Receipts are never answered (protocol section 13): a "receipt" of the police's receipt
    is not recorded against it."""
    clue, receipt = receipted_clue(bus)
    stray = hand_made_receipt(bus, MS, receipt.raw)  # the bureau answering the police's receipt
    bus.inject(PS, stray.raw, by=MS)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.message_id) == \
        (OUTCOME_QUARANTINED, rules.RECEIPT_UNKNOWN_MESSAGE, stray.message_id)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "inbox", "audit_log"}})
    assert changes.events(PS) == ["message.quarantined"]
    assert changes.published == []


def test_a_receipt_from_another_agency_than_the_recipient_is_quarantined(bus):
    clue = send_clue(bus)                  # to the police, not yet received
    forged = hand_made_receipt(bus, PROC, clue.raw)
    bus.inject(MS, forged.raw, by=PROC)
    mark = bus.mark()

    [outcome] = bus.deliver(MS)

    assert (outcome.status, outcome.rule, outcome.receipt_message_id) == \
        (OUTCOME_QUARANTINED, rules.RECEIPT_WRONG_SENDER, None)
    changes = bus.since(mark)
    only_changes(changes, {MS: {"quarantine", "inbox", "audit_log"}})
    [row] = changes.added(MS, "quarantine")
    quarantined_row(row, forged.raw, rules.RECEIPT_WRONG_SENDER, message_id=forged.message_id, sender=PROC)
    assert changes.events(MS) == ["message.quarantined"]
    assert bus.message(MS, clue.message_id)["status"] == "published"
    [entry] = bus.outbox(MS)
    assert (entry["state"], entry["receipt_message_id"]) == ("published", None)
    assert changes.published == []


def test_a_receipt_bound_to_other_bytes_is_quarantined(bus):
    clue = send_clue(bus)
    wrong = hand_made_receipt(bus, PS, clue.raw, sha256=message_sha256(b"other bytes"))
    bus.inject(MS, wrong.raw, by=PS)
    mark = bus.mark()

    [outcome] = bus.deliver(MS)

    assert (outcome.status, outcome.rule) == (OUTCOME_QUARANTINED, rules.RECEIPT_HASH_MISMATCH)
    changes = bus.since(mark)
    only_changes(changes, {MS: {"quarantine", "inbox", "audit_log"}})
    [row] = changes.added(MS, "quarantine")
    quarantined_row(row, wrong.raw, rules.RECEIPT_HASH_MISMATCH, message_id=wrong.message_id, sender=PS)
    [entry] = bus.outbox(MS)
    assert (entry["state"], entry["receipt_message_id"]) == ("published", None)
    assert changes.published == []

    # The genuine receipt is still recorded.
    bus.deliver(PS)
    [genuine] = bus.deliver(MS)
    assert genuine.status == OUTCOME_RECEIPT
    assert bus.outbox(MS)[0]["state"] == "receipted"


def test_a_duplicate_receipt_is_recorded_once(bus, clock):
    clue, receipt = receipted_clue(bus)
    clock.advance(seconds=30)
    bus.inject(MS, receipt.raw, by=PS)
    mark = bus.mark()

    [outcome] = bus.deliver(MS)

    assert (outcome.status, outcome.message_id, outcome.receipt_message_id) == \
        (OUTCOME_DUPLICATE, envelope_of(receipt.raw)["message_id"], None)
    changes = bus.since(mark)
    only_changes(changes, {MS: {"inbox", "audit_log"}})
    [(before, after)] = changes.changed(MS, "inbox")
    assert (before["deliveries"], after["deliveries"]) == (1, 2)
    assert changes.events(MS) == ["message.duplicate"]
    assert bus.audit_events(MS).count("receipt.received") == 1
    assert changes.published == []


# -- referral mismatch ----------------------------------------------------------------------------------------
def test_a_reply_naming_a_message_of_another_referral_is_rejected(bus):
    first, _ = accepted_clue(bus)
    second, _ = accepted_clue(bus)
    other = second.envelope["referral_id"]
    body = sample_body(WITHDRAWAL)
    body["subject_message_id"] = second.message_id
    crossed = bus.compose(MS, WITHDRAWAL, PS, body, referral_id=other, in_reply_to=first.message_id)
    bus.inject(PS, crossed.raw, by=MS)
    referral_before = bus.referral(PS, other)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.message_id) == \
        (OUTCOME_REJECTED, rules.REFERRAL_MISMATCH, crossed.message_id)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"messages", "inbox", "outbox", "audit_log"}})
    stored = {row["message_id"]: row for row in changes.added(PS, "messages")}
    assert set(stored) == {crossed.message_id, outcome.receipt_message_id}
    assert (stored[crossed.message_id]["status"], stored[crossed.message_id]["reason_codes"]) == \
        ("rejected", [rules.REFERRAL_MISMATCH])
    assert stored[crossed.message_id]["body"] is None
    [inbox] = changes.added(PS, "inbox")
    assert (inbox["outcome"], inbox["receipt_message_id"]) == ("rejected", outcome.receipt_message_id)
    assert changes.events(PS) == ["message.rejected"]
    assert bus.referral(PS, other) == referral_before         # not withdrawn
    [published] = changes.published
    check_receipt(bus, published, crossed.raw, status="rejected", reason_codes=[rules.REFERRAL_MISMATCH])


def test_a_receipt_naming_another_referral_is_quarantined(bus):
    first = send_clue(bus)
    second = send_clue(bus)
    crossed = hand_made_receipt(bus, PS, first.raw, referral_id=second.envelope["referral_id"])
    bus.inject(MS, crossed.raw, by=PS)
    mark = bus.mark()

    [outcome] = bus.deliver(MS)

    assert (outcome.status, outcome.rule, outcome.receipt_message_id) == \
        (OUTCOME_QUARANTINED, rules.REFERRAL_MISMATCH, None)
    changes = bus.since(mark)
    only_changes(changes, {MS: {"quarantine", "inbox", "audit_log"}})
    [row] = changes.added(MS, "quarantine")
    quarantined_row(row, crossed.raw, rules.REFERRAL_MISMATCH, message_id=crossed.message_id, sender=PS)
    assert [e["state"] for e in bus.outbox(MS)] == ["published", "published"]
    assert changes.published == []


# -- lifecycle -------------------------------------------------------------------------------------------------
def test_a_message_that_does_not_fit_the_referral_is_rejected_and_leaves_it_as_it_was(bus):
    clue, _ = accepted_clue(bus)
    referral_id = clue.envelope["referral_id"]
    early = bus.compose(MS, RECONSIDERATION_REQUEST, PS, sample_body(RECONSIDERATION_REQUEST),
                        referral_id=referral_id)       # there was no refusal to reconsider
    bus.inject(PS, early.raw, by=MS)
    referral_before = bus.referral(PS, referral_id)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.message_id) == \
        (OUTCOME_REJECTED, rules.LIFECYCLE_TRANSITION, early.message_id)
    assert "transferred" in outcome.detail
    changes = bus.since(mark)
    only_changes(changes, {PS: {"messages", "inbox", "outbox", "audit_log"}})
    stored = {row["message_id"]: row for row in changes.added(PS, "messages")}
    assert stored[early.message_id]["status"] == "rejected"
    assert stored[early.message_id]["reason_codes"] == [rules.LIFECYCLE_TRANSITION]
    assert changes.events(PS) == ["message.rejected"]
    assert bus.referral(PS, referral_id) == referral_before
    assert referral_before["state"] == "transferred"
    [published] = changes.published
    receipt = check_receipt(bus, published, early.raw, status="rejected", reason_codes=[rules.LIFECYCLE_TRANSITION])
    assert receipt.sealed                     # a rejection's detail is sealed for its recipient
    assert receipt.plain_body["detail"] == outcome.detail


def test_a_rejection_for_an_unknown_recipient_is_answered(bus):
    clue = send_clue(bus)
    bus.take(PS)
    raw = resign({**clue.envelope, "recipient": CUSTOMS}, bus.signer(MS))
    bus.inject(PS, raw, by=MS)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule) == (OUTCOME_REJECTED, rules.AGENCY_UNKNOWN)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"messages", "inbox", "outbox", "audit_log"}})
    assert changes.events(PS) == ["message.rejected"]
    [published] = changes.published
    check_receipt(bus, published, raw, status="rejected", reason_codes=[rules.AGENCY_UNKNOWN], by=PS)


# -- rejections that cannot be answered ---------------------------------------------------------------------------
def test_a_signed_message_from_an_unknown_agency_is_quarantined_not_answered(bus):
    clue = send_clue(bus)
    bus.take(PS)
    raw = signed_by_customs(bus, clue.envelope, message_id=str(uuid.uuid4()))
    bus.inject(PS, raw)                     # handed over in process: no bus account checked
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.receipt_message_id) == \
        (OUTCOME_QUARANTINED, rules.AGENCY_UNKNOWN, None)
    assert "not answered" in outcome.detail
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "audit_log"}})
    [row] = changes.added(PS, "quarantine")
    quarantined_row(row, raw, rules.AGENCY_UNKNOWN, message_id=envelope_of(raw)["message_id"], sender=CUSTOMS)
    assert changes.events(PS) == ["message.quarantined"]
    assert changes.published == []


def test_on_the_bus_an_unknown_agencys_account_is_refused_before_its_signature(bus):
    clue = send_clue(bus)
    bus.take(PS)
    raw = signed_by_customs(bus, clue.envelope, message_id=str(uuid.uuid4()))
    bus.inject(PS, raw, by=CUSTOMS)          # a user_id that is no configured agency's bus account
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule) == (OUTCOME_QUARANTINED, rules.TRANSPORT_SENDER_MISMATCH)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "audit_log"}})
    assert changes.published == []


def test_a_tampered_message_is_quarantined_not_answered_and_the_genuine_one_still_accepted(bus):
    clue = send_clue(bus)
    [genuine] = bus.take(PS)
    raw = tampered(clue.raw)
    bus.inject(PS, raw, by=MS)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.message_id, outcome.receipt_message_id) == \
        (OUTCOME_QUARANTINED, rules.SIGNATURE_INVALID, clue.message_id, None)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "audit_log"}})
    [row] = changes.added(PS, "quarantine")
    quarantined_row(row, raw, rules.SIGNATURE_INVALID, message_id=clue.message_id, sender=MS)
    assert changes.events(PS) == ["message.quarantined"]
    assert changes.published == []

    bus.inject(PS, genuine)                  # the id was not taken by the forgery
    [accepted] = bus.deliver(PS)
    assert (accepted.status, accepted.message_id) == (OUTCOME_ACCEPTED, clue.message_id)


def test_a_receipt_that_fails_verification_is_quarantined_not_answered(bus):
    clue = send_clue(bus)
    misaddressed = hand_made_receipt(bus, PS, clue.raw)
    bus.inject(PROC, misaddressed.raw, by=PS)       # a receipt for the bureau, in the procuratorate's queue
    mark = bus.mark()

    [outcome] = bus.deliver(PROC)

    assert (outcome.status, outcome.rule, outcome.receipt_message_id) == \
        (OUTCOME_QUARANTINED, rules.RECIPIENT_MISMATCH, None)
    changes = bus.since(mark)
    only_changes(changes, {PROC: {"quarantine", "audit_log"}})
    assert changes.published == []


# -- not a message at all ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("by", [MS, None], ids=["from_the_bus", "in_process"])
def test_empty_bytes_are_quarantined(bus, by):
    bus.ctx(PS)
    bus.inject(PS, b"", by=by)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.message_id) == (OUTCOME_QUARANTINED, rules.MESSAGE_EMPTY, None)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "audit_log"}})
    [row] = changes.added(PS, "quarantine")
    quarantined_row(row, b"", rules.MESSAGE_EMPTY, message_id=None, sender=None)
    assert changes.events(PS) == ["message.quarantined"]
    assert changes.published == []


@pytest.mark.parametrize("value", ["{}", None, 42, {"message_id": "x"}, ["a"]],
                         ids=["str", "none", "int", "dict", "list"])
def test_a_value_that_is_not_bytes_is_quarantined_with_its_repr(bus, value):
    bus.ctx(PS)
    bus.inject(PS, value)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule, outcome.message_id) == (OUTCOME_QUARANTINED, rules.MESSAGE_NOT_BYTES, None)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "audit_log"}})
    [row] = changes.added(PS, "quarantine")
    quarantined_row(row, repr(value).encode(), rules.MESSAGE_NOT_BYTES, message_id=None, sender=None)
    assert changes.published == []


def test_wrong_content_type_is_quarantined(bus):
    clue = send_clue(bus)
    [delivery] = bus.take(PS)
    bus.inject(PS, delivery.raw, by=MS, content_type="application/json")
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule) == (OUTCOME_QUARANTINED, rules.TRANSPORT_CONTENT_TYPE)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "audit_log"}})
    [row] = changes.added(PS, "quarantine")
    quarantined_row(row, clue.raw, rules.TRANSPORT_CONTENT_TYPE, message_id=clue.message_id, sender=MS)
    assert changes.published == []


def test_a_copy_published_by_another_agency_is_quarantined_not_answered(bus):
    clue = send_clue(bus)
    bus.take(PS)
    bus.inject(PS, clue.raw, by=PROC)        # the procuratorate replays the bureau's signed clue
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule) == (OUTCOME_QUARANTINED, rules.TRANSPORT_SENDER_MISMATCH)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "audit_log"}})
    assert changes.published == []


def test_an_oversized_message_is_quarantined_truncated(bus):
    limit = bus.ctx(PS).verifier.max_message_bytes
    raw = b"{" + b" " * limit + b"}"
    bus.inject(PS, raw, by=MS)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    assert (outcome.status, outcome.rule) == (OUTCOME_QUARANTINED, rules.MESSAGE_OVERSIZED)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"quarantine", "audit_log"}})
    [row] = changes.added(PS, "quarantine")
    assert (row["size"], row["sha256"], row["truncated"]) == (len(raw), message_sha256(raw), True)
    assert row["raw"] == raw[:len(row["raw"])] and len(row["raw"]) < len(raw)
    assert changes.published == []


def test_a_redelivery_older_than_the_allowed_age_still_gets_its_original_receipt(bus, clock):
    clue, first_receipt = accepted_clue(bus)
    max_age = bus.ctx(PS).verifier.max_age
    clock.advance(seconds=max_age.total_seconds() + 60)
    bus.inject(PS, clue.raw, by=MS)
    mark = bus.mark()

    [outcome] = bus.deliver(PS)

    # Too old to be accepted now (clock.skew), but recognised first as the same bytes.
    assert (outcome.status, outcome.receipt_message_id) == \
        (OUTCOME_DUPLICATE, envelope_of(first_receipt.raw)["message_id"])
    changes = bus.since(mark)
    only_changes(changes, {PS: {"inbox", "outbox", "audit_log"}})
    [again] = changes.published
    assert again.raw == first_receipt.raw


def test_a_message_for_another_agency_is_answered_and_the_sender_quarantines_that_answer(bus):
    clue = send_clue(bus)
    [delivery] = bus.take(PS)
    bus.inject(PROC, delivery)               # the police's message in the procuratorate's queue
    [outcome] = bus.deliver(PROC)
    assert (outcome.status, outcome.rule) == (OUTCOME_REJECTED, rules.RECIPIENT_MISMATCH)
    [answer] = bus.published[-1:]
    check_receipt(bus, answer, clue.raw, status="rejected", reason_codes=[rules.RECIPIENT_MISMATCH], by=PROC)
    mark = bus.mark()

    [seen] = bus.deliver(MS)

    # A receipt from another agency than the one the message was sent to (section 18.2).
    assert (seen.status, seen.rule) == (OUTCOME_QUARANTINED, rules.RECEIPT_WRONG_SENDER)
    changes = bus.since(mark)
    only_changes(changes, {MS: {"quarantine", "inbox", "audit_log"}})
    assert [e["state"] for e in bus.outbox(MS)] == ["published"]
    assert changes.published == []


# -- batches ------------------------------------------------------------------------------------------------------
def test_one_bad_message_in_a_batch_is_decided_alone_and_the_order_is_kept(bus):
    first, second, third = send_clue(bus), send_clue(bus), send_clue(bus)
    deliveries = bus.take(PS)
    forged = tampered(second.raw)
    early = bus.compose(MS, RECONSIDERATION_REQUEST, PS, sample_body(RECONSIDERATION_REQUEST),
                        referral_id=first.envelope["referral_id"])
    bus.inject(PS, deliveries[0])
    bus.inject(PS, forged, by=MS)
    bus.inject(PS, deliveries[1])
    bus.inject(PS, early.raw, by=MS)          # checked against the state the first clue left
    bus.inject(PS, deliveries[2])
    mark = bus.mark()

    outcomes = bus.deliver(PS)

    assert [(o.status, o.rule, o.message_id) for o in outcomes] == [
        (OUTCOME_ACCEPTED, None, first.message_id),
        (OUTCOME_QUARANTINED, rules.SIGNATURE_INVALID, second.message_id),
        (OUTCOME_ACCEPTED, None, second.message_id),
        (OUTCOME_REJECTED, rules.LIFECYCLE_TRANSITION, early.message_id),
        (OUTCOME_ACCEPTED, None, third.message_id),
    ]
    changes = bus.since(mark)
    only_changes(changes, {PS: {"messages", "inbox", "outbox", "referrals", "quarantine", "audit_log"}})
    assert changes.events(PS) == ["message.accepted", "message.quarantined", "message.accepted",
                                  "message.rejected", "message.accepted"]
    [row] = changes.added(PS, "quarantine")
    quarantined_row(row, forged, rules.SIGNATURE_INVALID, message_id=second.message_id, sender=MS)
    assert {r["message_id"]: r["outcome"] for r in changes.added(PS, "inbox")} == {
        first.message_id: "accepted", second.message_id: "accepted", early.message_id: "rejected",
        third.message_id: "accepted"}
    assert sorted(r["state"] for r in changes.added(PS, "referrals")) == ["transferred"] * 3
    # One receipt for each answered message, in the batch's order.
    answered = [first.raw, second.raw, early.raw, third.raw]
    assert len(changes.published) == 4
    for published, raw, status in zip(changes.published, answered, ["accepted", "accepted", "rejected", "accepted"]):
        check_receipt(bus, published, raw, status=status,
                      reason_codes=[rules.LIFECYCLE_TRANSITION] if status == "rejected" else [])
    assert [envelope_of(p.raw)["message_id"] for p in changes.published] == \
        [o.receipt_message_id for o in outcomes if o.receipt_message_id]


def test_the_same_message_twice_in_one_batch_is_applied_once_with_one_receipt(any_bus):
    bus = any_bus
    clue = send_clue(bus)
    bus.inject(PS, clue.raw, by=MS)
    assert bus.waiting(PS) == [clue.raw, clue.raw]
    mark = bus.mark()

    first, second = bus.deliver(PS)

    assert (first.status, first.message_id) == (OUTCOME_ACCEPTED, clue.message_id)
    assert (second.status, second.message_id, second.receipt_message_id) == \
        (OUTCOME_DUPLICATE, clue.message_id, first.receipt_message_id)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"messages", "inbox", "outbox", "referrals", "audit_log"}})
    assert [m["message_id"] for m in changes.added(PS, "messages") if m["direction"] == "in"] == [clue.message_id]
    [inbox] = changes.added(PS, "inbox")
    assert inbox["deliveries"] == 2
    assert changes.events(PS) == ["message.accepted", "message.duplicate"]
    [published] = changes.published
    check_receipt(bus, published, clue.raw, status="accepted", reason_codes=[])


def test_a_message_and_another_under_its_id_in_one_batch(bus):
    clue = send_clue(bus)
    body = sample_body(CLUE_TRANSFER)
    body["title"] = "另一条线索"
    impostor = bus.compose(MS, CLUE_TRANSFER, PS, body, referral_id=clue.envelope["referral_id"],
                           message_id=clue.message_id)
    bus.inject(PS, impostor.raw, by=MS)
    mark = bus.mark()

    first, second = bus.deliver(PS)

    assert (first.status, second.status, second.rule) == \
        (OUTCOME_ACCEPTED, OUTCOME_QUARANTINED, rules.MESSAGE_ID_REUSED)
    changes = bus.since(mark)
    only_changes(changes, {PS: {"messages", "inbox", "outbox", "referrals", "quarantine", "audit_log"}})
    [inbox] = changes.added(PS, "inbox")
    assert (inbox["sha256"], inbox["deliveries"]) == (clue.sha256, 2)
    assert changes.events(PS) == ["message.accepted", "message.quarantined"]
    [published] = changes.published
    check_receipt(bus, published, clue.raw, status="accepted", reason_codes=[])


def test_the_same_receipt_twice_in_one_batch_is_recorded_once(bus):
    clue, receipt = accepted_clue(bus)
    bus.inject(MS, receipt.raw, by=PS)
    mark = bus.mark()

    first, second = bus.deliver(MS)

    assert (first.status, second.status, second.receipt_message_id) == (OUTCOME_RECEIPT, OUTCOME_DUPLICATE, None)
    changes = bus.since(mark)
    only_changes(changes, {MS: {"messages", "inbox", "outbox", "audit_log"}})
    assert changes.events(MS) == ["receipt.received", "message.duplicate"]
    [inbox] = changes.added(MS, "inbox")
    assert inbox["deliveries"] == 2
    assert changes.published == []


# -- the bus itself ------------------------------------------------------------------------------------------------
def test_the_bus_routes_as_the_broker_binds_and_the_office_sees_everything(tmp_path, clock):
    config, _ = make_config(tmp_path)
    bus = InProcessBus(config, clock, office=True)
    try:
        [clue, copy] = bus.refer_clue(MS, sample_body(CLUE_TRANSFER), PS)      # with its copy
        assert [(p.routing_key, p.queues) for p in bus.published] == [
            (f"{PS}.clue_transfer", (PS, "joint_office")), (f"{PROC}.copy_notice", (PROC, "joint_office"))]
        bus.exchange()                       # every queue, the office's too, until all are empty
        assert all(not queue for queue in bus.queues.values())
        observed = {row["message_id"] for row in bus.rows("joint_office", "observed_messages")}
        assert {clue.message_id, copy.message_id} <= observed and len(observed) == 4   # and both receipts
        assert [e["state"] for e in bus.outbox(MS)] == ["receipted", "receipted"]
        assert bus.route("customs.receipt") == ()
    finally:
        bus.close()


def test_a_recorded_receipt_reports_its_delay_since_publication_and_a_repeated_one_none(bus, clock):
    accepted_clue(bus)
    clock.advance(seconds=3)
    deliveries = bus.take(MS)
    seconds: list[float] = []
    [outcome] = receiving.receive_batch(bus.ctx(MS), deliveries, receipt_seconds=seconds)
    assert outcome.status == OUTCOME_RECEIPT and seconds == [3.0]
    again: list[float] = []
    [outcome] = receiving.receive_batch(bus.ctx(MS), deliveries, receipt_seconds=again)
    assert outcome.status == OUTCOME_DUPLICATE and again == []
