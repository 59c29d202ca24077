"""What a node does with bad input arriving over the broker: a tampered message, a forbidden
route, an oversized message and bytes it cannot even decode."""

from __future__ import annotations

import uuid

import eventlet.queue
import pytest
from nameko.exceptions import RemoteError

from adapters.storage.tables import (DONE, INBOUND, OUTBOUND, RECEIPTED, InboxEntry, Message, OutboxEntry,
                                     Referral)
from schemas import registry as k
from services.handlers import workflows
from services.protocol.exceptions import ComposeError
from services.protocol.signing_input import message_sha256
from tests.fixtures.bodies import sample_body
from tests.integration import helpers as h

POLICE = "public_security"
MEDICAL = "medical_security"
CLUE_KEY = "public_security.clue_transfer"


def assert_nothing_applied(bus, agency: str) -> None:
    """No stored message, referral, inbox entry or outbox entry: only the audit trail of what
    was set aside."""
    with h.db(bus, agency) as repo:
        assert h.count(repo, Message) == 0
        assert h.count(repo, Referral) == 0
        assert h.count(repo, InboxEntry) == 0
        assert h.count(repo, OutboxEntry) == 0
        assert {e.event for e in h.audit_events(repo)} <= {"message.quarantined"}


def flip_one_byte(raw: bytes, inside: bytes) -> bytes:
    """Flip the lowest bit of the last byte of ``inside`` (which must occur once in ``raw``)."""
    assert raw.count(inside) == 1
    at = raw.index(inside) + len(inside) - 1
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]


# -- (a) a tampered message ---------------------------------------------------------------------
def test_tampered_message_is_quarantined_unanswered_and_the_original_still_accepted(bus):
    bus.start(POLICE)
    # The bureau commits a transfer to its outbox; its node is not running yet.
    [transfer] = workflows.refer_clue(bus.context(MEDICAL), sample_body(k.CLUE_TRANSFER), POLICE, copy_to=None)
    tampered = flip_one_byte(transfer.raw, b'"clue_no":"YB-2026-0001')  # ...0001 -> ...0000
    assert tampered != transfer.raw and len(tampered) == len(transfer.raw)

    with bus.waiter(POLICE, status="quarantined") as waiting:
        h.publish_raw(bus, tampered, CLUE_KEY)
    outcome = waiting.get()
    assert outcome["rule"] == "signature.invalid"

    with bus.rpc() as rpc:
        [entry] = rpc.public_security.quarantine()
    assert entry["rule"] == "signature.invalid"
    assert entry["sha256"] == message_sha256(tampered) and entry["size"] == len(tampered)
    # What the message claims is recorded, for the record only.
    assert (entry["claimed_message_id"], entry["claimed_sender"]) == (transfer.message_id, MEDICAL)
    with h.db(bus, POLICE) as repo:
        [row] = h.quarantined(repo)
        assert row.raw == tampered and not row.truncated
        [audit] = h.audit_events(repo)
        assert audit.event == "message.quarantined" and audit.detail["rule"] == "signature.invalid"
    assert_nothing_applied(bus, POLICE)
    # Not answered: no receipt waits for the bureau.
    assert h.queue_depth(bus, h.queue_name(bus, MEDICAL)) == 0

    # The untampered original, published by the bureau's relay, is accepted and receipted.
    bus.create(MEDICAL)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted"), \
            bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt"):
        bus.start(MEDICAL)
    with h.db(bus, POLICE) as repo:
        [message] = h.messages(repo, Message.direction == INBOUND)
        assert (message.message_id, message.raw, message.status) == (transfer.message_id, transfer.raw, "accepted")
        assert repo.referral(transfer.envelope["referral_id"]).state == "transferred"
        [receipt] = h.messages(repo, Message.direction == OUTBOUND)
        assert receipt.kind == k.RECEIPT and receipt.in_reply_to == transfer.message_id
        assert len(h.quarantined(repo)) == 1
        assert [e.event for e in h.audit_events(repo)] == ["message.quarantined", "message.accepted"]
    with h.db(bus, MEDICAL) as repo:
        entry = repo.outbox_entry(transfer.message_id)
        assert entry.state == RECEIPTED
        assert repo.message(transfer.message_id).status == "accepted"


# -- (b) a forbidden route -----------------------------------------------------------------------
def test_forbidden_route_is_rejected_with_a_signed_receipt_and_refused_at_the_sender(bus):
    bus.start(POLICE)
    finance = bus.context("finance")
    body = sample_body(k.CLUE_TRANSFER)
    # finance -> public_security is not in schemas/routes.yaml; signed by hand with finance's key.
    envelope, raw = h.signed_envelope(finance.composer.signer, k.CLUE_TRANSFER, POLICE, body)

    with bus.waiter(POLICE, status="rejected") as waiting:
        h.publish_raw(bus, raw, CLUE_KEY)
    outcome = waiting.get()
    assert (outcome["rule"], outcome["message_id"]) == ("route.forbidden", envelope["message_id"])

    with h.db(bus, POLICE) as repo:
        [stored, receipt] = h.messages(repo)
        assert (stored.direction, stored.message_id, stored.status, stored.reason_codes) == \
            (INBOUND, envelope["message_id"], "rejected", ["route.forbidden"])
        assert stored.body is None  # a rejected body is not taken in
        assert (receipt.direction, receipt.kind, receipt.recipient, receipt.in_reply_to) == \
            (OUTBOUND, k.RECEIPT, "finance", envelope["message_id"])
        assert receipt.message_id == outcome["receipt_message_id"]
        assert repo.outbox_entry(receipt.message_id).state == DONE
        assert h.count(repo, Referral) == 0  # nothing applied
        assert [e.event for e in h.audit_events(repo)] == ["message.rejected"]
        assert repo.inbox_entry(envelope["message_id"]).outcome == "rejected"

    # The rejection receipt went out on the bus, signed by the police, bound to the bytes.
    [delivered] = h.drain_queue(bus, h.queue_name(bus, "finance"))
    verified = finance.verifier.verify(bytes(delivered.body), expected_recipient="finance")
    assert (verified.kind, verified.sender, verified.referral_id, verified.in_reply_to) == \
        (k.RECEIPT, POLICE, envelope["referral_id"], envelope["message_id"])
    assert verified.plain_body["status"] == "rejected"
    assert verified.plain_body["reason_codes"] == ["route.forbidden"]
    assert verified.plain_body["message_sha256"] == message_sha256(raw)
    assert verified.message_id == outcome["receipt_message_id"]

    # The sender's own composer refuses the route, and so does the finance node's RPC.
    with pytest.raises(ComposeError) as refused:
        finance.composer.compose(k.CLUE_TRANSFER, POLICE, body, referral_id=str(uuid.uuid4()))
    assert refused.value.rule == "route.forbidden"
    bus.start("finance")
    with bus.rpc() as rpc:
        with pytest.raises(RemoteError) as remote:
            rpc.finance.send(k.CLUE_TRANSFER, POLICE, body)
        assert remote.value.exc_type == "ComposeError"
        assert "route.forbidden" in remote.value.value
        assert rpc.finance.outbox() == []
    with h.db(bus, "finance") as repo:
        assert h.count(repo, Message) == 0 and h.count(repo, Referral) == 0


# -- (c) an oversized message ---------------------------------------------------------------------
@pytest.mark.parametrize("bus_environ", [{"CLUEBUS_MAX_MESSAGE_BYTES": "4096"}], indirect=True, ids=["limit4096"])
def test_oversized_message_is_quarantined_unanswered(bus):
    bus.start(POLICE, MEDICAL)
    big = sample_body(k.CLUE_TRANSFER)
    big["summary"] = "虚构住院" * 1000  # 12,000 bytes of UTF-8
    with bus.rpc() as rpc:
        with bus.waiter(POLICE, status="quarantined") as waiting:
            sent = rpc.medical_security.refer_clue(big)
        [transfer_id] = [m["message_id"] for m in sent["messages"] if m["kind"] == k.CLUE_TRANSFER]
        outcome = waiting.get()
        assert outcome["rule"] == "message.oversized"
        [entry] = rpc.public_security.quarantine()
        assert entry["rule"] == "message.oversized" and entry["size"] > 4096
        assert "limit is 4096" in entry["detail"]
        with h.db(bus, POLICE) as repo:
            assert h.count(repo, Message) == 0 and h.count(repo, Referral) == 0
            assert h.count(repo, OutboxEntry) == 0  # no receipt
        # The bureau heard nothing back: its transfer waits for a receipt.
        transfer = next(e for e in rpc.medical_security.outbox() if e["message_id"] == transfer_id)
        assert transfer["state"] == "published" and transfer["receipt_message_id"] is None

        # A transfer within the limit still goes through (its copy waits for the procuratorate,
        # which is not running here).
        with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted"), \
                bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt"):
            small = sample_body(k.CLUE_TRANSFER)
            small["clue_no"] = "YB-2026-0002"
            rpc.medical_security.refer_clue(small)


# -- (d) bytes the node cannot decode ----------------------------------------------------------------
def publish_undecodable(bus):
    """Publish text/plain bytes to the police queue; return where they went first: ("log", record)
    when the consumer refused to decode them, ("queue", body) when they reached the quarantine
    queue."""
    found = eventlet.queue.Queue()
    with h.QueueWatch(bus, h.topology(bus).quarantine_queue(POLICE), found), \
            h.LogEvent("kombu.mixins", "Can't decode message body", found):
        h.publish_raw(bus, b"not an envelope", CLUE_KEY, content_type="text/plain")
        with eventlet.Timeout(30, exception=AssertionError("the undecodable message went nowhere")):
            return found.get()


def test_undecodable_message_does_not_block_the_node(bus):
    """A message kombu cannot decode (content type text/plain) is rejected without requeue by
    services/nodes/entrypoints.QuarantiningQueueConsumer, so the queue dead-letters it into
    the agency's quarantine queue; the node goes on consuming and nothing is applied."""
    bus.start(POLICE)
    where, what = publish_undecodable(bus)
    assert where == "queue" and what == b"not an envelope"
    assert_nothing_applied(bus, POLICE)

    # The node is not stuck: a valid transfer right after is accepted.
    [transfer] = workflows.refer_clue(bus.context(MEDICAL), sample_body(k.CLUE_TRANSFER), POLICE, copy_to=None)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted"):
        h.publish_raw(bus, transfer.raw, CLUE_KEY)

    bus.stop(POLICE)
    assert h.queue_depth(bus, h.queue_name(bus, POLICE)) == 0
    with h.db(bus, POLICE) as repo:
        assert h.count(repo, Message, Message.direction == INBOUND) == 1  # the valid transfer only


def test_undecodable_message_is_kept_in_the_quarantine_queue(bus):
    bus.start(POLICE)
    where, what = publish_undecodable(bus)
    assert where == "queue", "the message was acked and dropped by kombu (see the log line) instead"
    assert what == b"not an envelope"
