"""Delivery guarantees over the real broker: duplicates applied once and answered with the
original receipt, nothing lost while a node or the broker route is down, resending after a
lost receipt, and giving up loudly after the last attempt."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import eventlet
import eventlet.queue
import pytest

from adapters.storage.tables import (DONE, FAILED, INBOUND, OUTBOUND, PENDING, PUBLISHED, RECEIPTED,
                                     InboxEntry, Message, Referral)
from adapters.transport.publisher import EnvelopePublisher
from schemas import registry as k
from services.handlers import relay, workflows
from services.nodes import base
from services.nodes.factory import build_node_service
from tests.fixtures.bodies import sample_body
from tests.integration import helpers as h

POLICE = "public_security"
MEDICAL = "medical_security"
CLUE_KEY = "public_security.clue_transfer"
RECEIPT_TIMEOUT = timedelta(seconds=60)   # CLUEBUS_RECEIPT_TIMEOUT_SECONDS in the fixture
PUBLISH_RETRY = timedelta(seconds=5)      # the default CLUEBUS_PUBLISH_RETRY_SECONDS
MAX_ATTEMPTS = 3                          # CLUEBUS_MAX_ATTEMPTS in the fixture


def clue(n: int) -> dict:
    """A clue for the police alone (not a suspected crime, so no copy to the procuratorate)."""
    body = sample_body(k.CLUE_TRANSFER)
    body.update(clue_no=f"YB-2026-{n:04d}", category="administrative_violation")
    return body


def assert_applied_once(bus, message_ids: list[str]) -> None:
    """The police stored, applied and answered each message exactly once."""
    with h.db(bus, POLICE) as repo:
        inbound = h.messages(repo, Message.direction == INBOUND)
        assert sorted(m.message_id for m in inbound) == sorted(message_ids)
        assert all(m.status == "accepted" for m in inbound)
        assert h.count(repo, Referral) == len(message_ids)
        accepted = h.audit_events(repo, "message.accepted")
        assert sorted(e.message_id for e in accepted) == sorted(message_ids)
        receipts = h.messages(repo, Message.direction == OUTBOUND)
        assert sorted(r.in_reply_to for r in receipts) == sorted(message_ids)
        assert all(r.kind == k.RECEIPT for r in receipts)


def assert_receipted(bus, message_ids: list[str], attempts: int) -> None:
    with h.db(bus, MEDICAL) as repo:
        for message_id in message_ids:
            entry = repo.outbox_entry(message_id)
            assert (entry.state, entry.attempts, entry.last_error) == (RECEIPTED, attempts, None), message_id
            assert repo.message(message_id).status == "accepted"


# -- (a) the same bytes twice ----------------------------------------------------------------------
def test_duplicate_is_applied_once_and_gets_the_original_receipt_again(bus):
    bus.start(POLICE)  # the bureau's node is not running: its queue keeps what the police send
    transfer = bus.context(MEDICAL).composer.compose(k.CLUE_TRANSFER, POLICE, clue(1), referral_id=str(uuid.uuid4()))

    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted") as first:
        h.publish_raw(bus, transfer.raw, CLUE_KEY)
    receipt_id = first.get()["receipt_message_id"]
    [original_receipt] = h.take_from_queue(bus, h.queue_name(bus, MEDICAL), 1)

    with bus.waiter(POLICE, status="duplicate") as second:
        h.publish_raw(bus, transfer.raw, CLUE_KEY)
    outcome = second.get()
    assert (outcome["message_id"], outcome["receipt_message_id"]) == (transfer.message_id, receipt_id)
    # The very same receipt, byte for byte, published again.
    [again] = h.take_from_queue(bus, h.queue_name(bus, MEDICAL), 1)
    assert bytes(again.body) == bytes(original_receipt.body)
    verified = bus.context(MEDICAL).verifier.verify(bytes(again.body), expected_recipient=MEDICAL)
    assert (verified.message_id, verified.in_reply_to) == (receipt_id, transfer.message_id)
    assert verified.plain_body["status"] == "accepted"

    assert_applied_once(bus, [transfer.message_id])
    with h.db(bus, POLICE) as repo:
        assert repo.inbox_entry(transfer.message_id).deliveries == 2
        assert repo.referral(transfer.envelope["referral_id"]).state == "transferred"
        assert len(h.audit_events(repo, "message.duplicate")) == 1
        assert [e.event for e in h.audit_events(repo)] == ["message.accepted", "message.duplicate"]
        [entry] = h.outbox(repo)
        assert (entry.message_id, entry.state) == (receipt_id, DONE)


# -- (b) nothing lost while a node is down, or while the broker refuses -------------------------------
def test_receiver_stopped_mid_stream_loses_nothing(bus):
    bus.start(MEDICAL, POLICE)
    with bus.rpc() as rpc:
        with bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt"):
            first = rpc.medical_security.refer_clue(clue(1))["messages"][0]["message_id"]

        bus.stop(POLICE)
        later = [rpc.medical_security.refer_clue(clue(n))["messages"][0]["message_id"] for n in range(2, 6)]
        # Published (the broker confirmed them) and waiting in the police's durable queue.
        assert {e["state"] for e in rpc.medical_security.outbox() if e["message_id"] in later} == {PUBLISHED}
        assert h.queue_depth(bus, h.queue_name(bus, POLICE)) == len(later)

        with bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=len(later)):
            bus.start(POLICE)
    assert_applied_once(bus, [first, *later])
    assert_receipted(bus, [first, *later], attempts=1)
    with h.db(bus, POLICE) as repo:
        assert all(e.deliveries == 1 for e in repo.session.query(InboxEntry))
    assert h.queue_depth(bus, h.queue_name(bus, POLICE)) == 0


def test_messages_committed_while_the_broker_refuses_them_are_published_later(bus):
    bus.sync_clock()
    bus.start(POLICE)
    bus.start(MEDICAL, fake_clock=True)
    h.unbind_queue(bus, POLICE)  # the broker now returns anything sent to the police
    with bus.rpc() as rpc:
        ids = [rpc.medical_security.refer_clue(clue(n))["messages"][0]["message_id"] for n in (1, 2)]
        entries = [e for e in rpc.medical_security.outbox() if e["message_id"] in ids]
        # A refused publication delivered nothing: it is no attempt, and it is retried for
        # as long as it takes.
        assert [(e["state"], e["attempts"]) for e in entries] == [(PENDING, 0), (PENDING, 0)]
        assert all("transport.unroutable" in e["last_error"] for e in entries)
    assert h.queue_depth(bus, h.queue_name(bus, POLICE)) == 0

    h.declare_topology(bus)  # the route is back; the relay retries after PUBLISH_RETRY
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted", count=2), \
            bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=2):
        bus.clock.advance(seconds=PUBLISH_RETRY.total_seconds() + 1)
    assert_applied_once(bus, ids)
    assert_receipted(bus, ids, attempts=1)  # the refused publication does not count


def test_messages_relayed_while_the_broker_is_unreachable_are_published_when_it_is_back(bus):
    bus.sync_clock()
    bus.start(POLICE)
    sender = dataclasses.replace(bus.context(MEDICAL), clock=bus.clock)  # offline, on the fake clock
    ids = [workflows.refer_clue(sender, clue(n), POLICE, copy_to="procuratorate")[0].message_id for n in (1, 2)]
    unreachable = EnvelopePublisher("amqp://guest:guest@127.0.0.1:1//", h.topology(bus), bus.bus_user(MEDICAL))  # nothing listens
    report = relay.relay_due(sender, unreachable.publish)
    assert report.published == [] and sorted(report.errors) == sorted(ids)
    assert all("transport.unavailable" in error for error in report.errors.values())
    with h.db(bus, MEDICAL) as repo:
        assert [(e.state, e.attempts) for e in h.outbox(repo)] == [(PENDING, 0)] * 2
        assert all(repo.message(i).status == PENDING for i in ids)

    # The node's relay, with the real broker, publishes them once the retry is due.
    bus.create(MEDICAL, fake_clock=True)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted", count=2), \
            bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=2):
        bus.start(MEDICAL)
        bus.clock.advance(seconds=PUBLISH_RETRY.total_seconds() + 1)
    assert_applied_once(bus, ids)
    assert_receipted(bus, ids, attempts=1)


def test_messages_committed_while_the_sender_is_down_are_published_when_it_starts(bus):
    bus.start(POLICE)
    offline = bus.context(MEDICAL)  # as the CLI has it: no node running
    ids = [workflows.refer_clue(offline, clue(n), POLICE, copy_to="procuratorate")[0].message_id for n in (1, 2, 3)]
    with h.db(bus, MEDICAL) as repo:
        assert [(e.state, e.attempts) for e in h.outbox(repo)] == [(PENDING, 0)] * 3
    assert h.queue_depth(bus, h.queue_name(bus, POLICE)) == 0

    bus.create(MEDICAL)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted", count=3), \
            bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=3):
        bus.start(MEDICAL)
    assert_applied_once(bus, ids)
    assert_receipted(bus, ids, attempts=1)


# -- (c) a lost receipt ----------------------------------------------------------------------------
def test_message_resent_after_a_lost_receipt_is_applied_once(bus):
    bus.start(POLICE)
    offline = bus.context(MEDICAL)
    [transfer] = workflows.refer_clue(offline, clue(1), POLICE, copy_to="procuratorate")
    publisher = h.agency_publisher(bus, MEDICAL)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted") as handled:
        report = relay.relay_due(offline, publisher.publish)
    assert report.published == [transfer.message_id]
    receipt_id = handled.get()["receipt_message_id"]
    h.take_from_queue(bus, h.queue_name(bus, MEDICAL), 1)  # the receipt is lost

    bus.sync_clock()
    bus.start(MEDICAL, fake_clock=True)
    with bus.waiter(POLICE, status="duplicate") as duplicate, \
            bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt") as receipted:
        bus.clock.advance(seconds=RECEIPT_TIMEOUT.total_seconds() + 1)
    assert duplicate.get()["receipt_message_id"] == receipt_id
    assert receipted.get()["message_id"] == receipt_id  # the original receipt, re-sent

    assert_applied_once(bus, [transfer.message_id])
    with h.db(bus, POLICE) as repo:
        assert repo.inbox_entry(transfer.message_id).deliveries == 2
        assert len(h.audit_events(repo, "message.duplicate")) == 1
    assert_receipted(bus, [transfer.message_id], attempts=2)
    with h.db(bus, MEDICAL) as repo:
        assert repo.outbox_entry(transfer.message_id).receipt_message_id == receipt_id
        [resent] = h.audit_events(repo, "delivery.resent")
        assert (resent.message_id, resent.detail) == (transfer.message_id, {"attempt": 2})
        [receipt] = h.messages(repo, Message.direction == INBOUND)
        assert (receipt.message_id, receipt.kind, receipt.in_reply_to) == (receipt_id, k.RECEIPT, transfer.message_id)


# -- (d) no receipt after the last attempt -------------------------------------------------------------
def test_message_without_receipt_after_the_last_attempt_is_marked_failed(bus):
    """The police's system takes every copy off its queue and never answers (as a node that
    quarantines what it cannot authenticate does): after MAX_ATTEMPTS publications without a
    receipt the bureau gives up, loudly."""
    bus.sync_clock()
    bus.start(MEDICAL, fake_clock=True)  # the police never run: no receipt will come
    police_queue = h.queue_name(bus, POLICE)
    taken = []
    with bus.rpc() as rpc:
        transfer_id = rpc.medical_security.refer_clue(clue(1))["messages"][0]["message_id"]

        def entry():
            [found] = [e for e in rpc.medical_security.outbox() if e["message_id"] == transfer_id]
            return found

        assert (entry()["state"], entry()["attempts"]) == (PUBLISHED, 1)
        taken += h.take_from_queue(bus, police_queue, 1)
        # Resend after the timeout, then after twice the timeout (backoff factor 2).
        for attempts, wait in ((2, RECEIPT_TIMEOUT), (3, RECEIPT_TIMEOUT * 2)):
            bus.clock.advance(seconds=wait.total_seconds() - 1)
            rpc.medical_security.relay_now()  # holds the relay lock: the timer's work is done too
            assert entry()["attempts"] == attempts - 1  # not due yet
            bus.clock.advance(seconds=2)
            rpc.medical_security.relay_now()
            assert (entry()["state"], entry()["attempts"]) == (PUBLISHED, attempts)
            taken += h.take_from_queue(bus, police_queue, 1)
        # After the third publication, the next timeout ends it.
        bus.clock.advance(seconds=(RECEIPT_TIMEOUT * 4).total_seconds() + 1)
        rpc.medical_security.relay_now()
        final = entry()
        assert (final["state"], final["status"], final["attempts"]) == (FAILED, FAILED, MAX_ATTEMPTS)
        # Failed is final: nothing more is published.
        bus.clock.advance(days=1)
        rpc.medical_security.relay_now()
        assert entry()["attempts"] == MAX_ATTEMPTS

    with h.db(bus, MEDICAL) as repo:
        assert repo.message(transfer_id).status == FAILED
        [failed] = h.audit_events(repo, "delivery.failed")
        assert failed.message_id == transfer_id
        assert failed.detail == {"attempts": MAX_ATTEMPTS, "recipient": POLICE}
        assert len(h.audit_events(repo, "delivery.resent")) == MAX_ATTEMPTS - 1
        assert repo.referral(repo.message(transfer_id).referral_id).state == "transferred"
    # The same bytes were published three times.
    assert len(taken) == MAX_ATTEMPTS and len({bytes(m.body) for m in taken}) == 1
    assert h.queue_depth(bus, police_queue) == 0


def test_no_resend_while_the_recipients_queue_still_holds_messages(bus):
    """A sender must not take a recipient's backlog for silence: while the police's queue still
    holds messages (the police are down, or behind), a message without its receipt is not
    published again, not counted as an attempt and never marked failed; once the queue is
    taken, resending resumes."""
    bus.sync_clock()
    bus.start(MEDICAL, fake_clock=True)
    police_queue = h.queue_name(bus, POLICE)
    with bus.rpc() as rpc:
        transfer_id = rpc.medical_security.refer_clue(clue(1))["messages"][0]["message_id"]

        def entry():
            [found] = [e for e in rpc.medical_security.outbox() if e["message_id"] == transfer_id]
            return found

        for _ in range(MAX_ATTEMPTS + 2):  # far past every timeout and the last attempt
            bus.clock.advance(seconds=(RECEIPT_TIMEOUT * 2 ** MAX_ATTEMPTS).total_seconds())
            rpc.medical_security.relay_now()
            assert (entry()["state"], entry()["attempts"]) == (PUBLISHED, 1)
        assert h.queue_depth(bus, police_queue) == 1  # one copy, waiting
        h.drain_queue(bus, police_queue)
        bus.clock.advance(seconds=(RECEIPT_TIMEOUT * 2 ** MAX_ATTEMPTS).total_seconds())
        rpc.medical_security.relay_now()
        assert (entry()["state"], entry()["attempts"]) == (PUBLISHED, 2)
    with h.db(bus, MEDICAL) as repo:
        assert h.audit_events(repo, "delivery.failed") == []


def test_failed_delivery_says_no_receipt_came(bus):
    h.declare_topology(bus)
    sender = dataclasses.replace(bus.context(MEDICAL), clock=bus.clock)  # offline, on the fake clock
    bus.sync_clock()
    [transfer] = workflows.refer_clue(sender, clue(1), POLICE, copy_to="procuratorate")
    publish = h.agency_publisher(bus, MEDICAL).publish
    for attempt in range(MAX_ATTEMPTS):
        report = relay.relay_due(sender, publish)
        assert report.published + report.resent == [transfer.message_id]
        bus.clock.advance(seconds=(RECEIPT_TIMEOUT * 2 ** attempt).total_seconds() + 1)
    report = relay.relay_due(sender, publish)
    assert report.failed == [transfer.message_id]
    with h.db(bus, MEDICAL) as repo:
        entry = repo.outbox_entry(transfer.message_id)
        assert entry.state == FAILED
        assert entry.last_error == f"no receipt after {MAX_ATTEMPTS} attempts"


# -- (e) two processes for one agency --------------------------------------------------------------
def test_a_second_process_for_the_same_agency_waits_as_a_standby(bus, monkeypatch):
    """Two containers of the bureau's node (as two processes started by mistake, or a standby):
    calls served by either are published once, by the one holding the relay lease, each
    counted as one attempt; the police apply each message once; when the holder stops, the
    standby takes over."""
    handled = eventlet.queue.Queue()  # every outcome of either container's envelope batches
    original = base.AgencyNode.handle_envelopes

    def recorded(self, deliveries):
        outcomes = original(self, deliveries)
        for outcome in outcomes:
            handled.put((self.protocol.agency, outcome))
        return outcomes
    monkeypatch.setattr(base.AgencyNode, "handle_envelopes", recorded)
    served_by = []  # the relay lease holder (one per container) of each call served
    run = base.AgencyNode._run

    def serve(self, call):
        served_by.append(self.transport.lease.holder)
        return run(self, call)
    monkeypatch.setattr(base.AgencyNode, "_run", serve)

    def receipts_recorded(count: int) -> None:
        with eventlet.Timeout(60, exception=AssertionError("not every receipt was recorded")):
            seen = 0
            while seen < count:
                agency, outcome = handled.get()
                seen += agency == MEDICAL and outcome is not None and outcome.get("status") == "receipt"

    bus.start(POLICE, MEDICAL)
    with bus.rpc() as rpc:
        first = rpc.medical_security.refer_clue(clue(0))["messages"][0]["message_id"]
        receipts_recorded(1)  # the first container published it: it holds the lease
        standby = bus.container_factory(build_node_service(MEDICAL, bus.config), bus.nameko_config(MEDICAL))
        standby.start()
        # The control queue hands calls to both containers in turn.
        ids = [rpc.medical_security.refer_clue(clue(n))["messages"][0]["message_id"] for n in range(1, 21)]
        receipts_recorded(len(ids))
        assert len(set(served_by)) == 2  # both containers served calls
        assert_applied_once(bus, [first, *ids])
        assert_receipted(bus, [first, *ids], attempts=1)
        with h.db(bus, POLICE) as repo:
            assert all(e.deliveries == 1 for e in repo.session.query(InboxEntry))
        with h.db(bus, MEDICAL) as repo:
            assert h.audit_events(repo, "delivery.resent") == []

        bus.stop(MEDICAL)  # the lease holder stops cleanly and lets go of the lease
        later = rpc.medical_security.refer_clue(clue(21))["messages"][0]["message_id"]
        receipts_recorded(1)
    assert_applied_once(bus, [first, *ids, later])
    assert_receipted(bus, [later], attempts=1)
