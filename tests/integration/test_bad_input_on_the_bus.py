"""What a node does with bad input arriving over the broker: a tampered message, a forbidden
route, an oversized message and bytes it cannot even decode."""

from __future__ import annotations

import uuid

import pytest
from amqp.exceptions import AccessRefused
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
def test_forbidden_route_is_refused_by_the_broker_and_rejected_by_the_receiver(bus):
    bus.start(POLICE)
    finance = bus.context("finance")
    body = sample_body(k.CLUE_TRANSFER)
    # finance -> public_security is not in schemas/routes.yaml; signed by hand with finance's key.
    envelope, raw = h.signed_envelope(finance.composer.signer, k.CLUE_TRANSFER, POLICE, body)

    # First lock: finance's bus account may not publish that routing key at all (topic permission).
    with pytest.raises(AccessRefused, match="public_security.clue_transfer"):
        h.publish_raw(bus, raw, CLUE_KEY)
    # Second lock: under a routing key finance may use (a receipt for the police), the police
    # node still checks the envelope's route and answers with a signed rejection.
    with bus.waiter(POLICE, status="rejected") as waiting:
        h.publish_raw(bus, raw, "public_security.receipt")
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
    [delivered] = h.take_from_queue(bus, h.queue_name(bus, "finance"), 1)
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


# -- (d) bytes that are not an envelope: any content type, empty, anything ----------------------------
@pytest.mark.parametrize("body, content_type, rule", [
    (b"not an envelope", "text/plain", "transport.content_type"),
    (b"\x00\x01\x02", "application/octet-stream", "transport.content_type"),
    (b"{}", "application/json", "transport.content_type"),
    (b"", "application/vnd.cluebus.v1+json", "message.empty"),
    (b"", "text/plain", "message.empty"),
    (b"not json", "application/vnd.cluebus.v1+json", "json.malformed"),
], ids=["text_plain", "octet_stream", "json", "empty", "empty_text_plain", "not_json"])
def test_any_bytes_get_a_typed_answer_at_once_and_the_node_goes_on(bus, body, content_type, rule):
    """Nothing is decoded before the node sees it: every delivery reaches the handler as bytes
    and gets a rule, in the node's quarantine table (seen by `cluebus quarantine`), acked at
    once (no redelivery, nothing dead-lettered); the node goes on consuming."""
    bus.start(POLICE)
    with bus.waiter(POLICE, status="quarantined") as waiting:
        h.publish_raw(bus, body, CLUE_KEY, as_agency=MEDICAL, content_type=content_type)
    assert waiting.get()["rule"] == rule
    with bus.rpc() as rpc:
        [entry] = rpc.public_security.quarantine()
    assert entry["rule"] == rule and entry["size"] == len(body)
    assert_nothing_applied(bus, POLICE)

    # The node is not stuck: a valid transfer right after is accepted.
    [transfer] = workflows.refer_clue(bus.context(MEDICAL), sample_body(k.CLUE_TRANSFER), POLICE, copy_to=None)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted"):
        h.publish_raw(bus, transfer.raw, CLUE_KEY)

    bus.stop(POLICE)
    assert h.queue_depth(bus, h.queue_name(bus, POLICE)) == 0
    assert h.queue_depth(bus, h.quarantine_queue_name(bus, POLICE)) == 0  # handled, not dead-lettered
    with h.db(bus, POLICE) as repo:
        assert h.count(repo, Message, Message.direction == INBOUND) == 1  # the valid transfer only


# -- (e) what the broker dead-lettered ---------------------------------------------------------------
def test_dead_letters_are_listed_and_replayed_through_the_node(bus, monkeypatch, capsys):
    """A delivery the broker dead-lettered into the police's quarantine queue (here: rejected
    without requeue, as a node that could not store it within the delivery limit leaves it)
    is listed by `cluebus quarantine --broker` and taken through the node's ordinary
    receiving by `--replay`, with its original publisher still checked."""
    from kombu import Connection

    from services.cli.main import main
    t = h.topology(bus)
    [transfer] = workflows.refer_clue(bus.context(MEDICAL), sample_body(k.CLUE_TRANSFER), POLICE, copy_to=None)
    h.agency_publisher(bus, MEDICAL).publish(transfer.raw, CLUE_KEY)
    with Connection(bus.bus_uri(POLICE)) as connection:  # the police's own account
        channel = connection.channel()
        message = channel.basic_get(queue=t.queue_name(POLICE))
        channel.basic_reject(message.delivery_tag, requeue=False)
    for name, value in bus.environ.items():
        monkeypatch.setenv(name, value)

    assert main(["quarantine", "--as", POLICE, "--broker", "--json"]) == 0
    import json
    [letter] = json.loads(capsys.readouterr().out)
    assert (letter["reason"], letter["from_queue"], letter["user_id"]) == ("rejected", t.queue_name(POLICE),
                                                                           bus.bus_user(MEDICAL))
    assert letter["sha256"] == transfer.sha256
    assert h.queue_depth(bus, t.quarantine_queue_name(POLICE)) == 1  # listing leaves it there

    assert main(["quarantine", "--as", POLICE, "--replay"]) == 0
    assert "replayed 1 dead letter" in capsys.readouterr().out
    assert h.queue_depth(bus, t.quarantine_queue_name(POLICE)) == 0
    with h.db(bus, POLICE) as repo:
        [stored] = h.messages(repo, Message.direction == INBOUND)
        assert (stored.message_id, stored.status, stored.raw) == (transfer.message_id, "accepted", transfer.raw)
        [receipt] = h.messages(repo, Message.direction == OUTBOUND)
        assert receipt.in_reply_to == transfer.message_id  # answered; the node's relay sends it
