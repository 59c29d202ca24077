"""Each agency reaches only what is its own (issue: agency isolation), tried as outsiders
would try it on a real RabbitMQ: per-test virtual hosts and accounts made by `cluebus broker
setup`. Every attack here worked when all nodes shared one `guest` account."""

from __future__ import annotations

import json
import subprocess
import uuid

import amqp
import pytest
from amqp.exceptions import AccessRefused, NotAllowed, PreconditionFailed
from kombu import Connection, Exchange, Producer, Queue
from nameko.standalone.rpc import ClusterRpcProxy

from adapters.storage.tables import INBOUND, Message, Referral
from adapters.transport import uris
from schemas import registry as k
from services import provisioning, settings
from services.handlers import workflows
from tests.fixtures.bodies import sample_body
from tests.integration import helpers as h
from tests.integration.conftest import ADMIN_PASSWORD, ADMIN_USER, BROKER_ADDRESS

MEDICAL, POLICE, COURT, OFFICE = "medical_security", "public_security", "court", "joint_office"
PERSONAL = ("王某某", "320102197805061234", "明德康复医院", "李某")
REFUSED = (AccessRefused, NotAllowed)


def _connect(uri: str) -> Connection:
    connection = Connection(uri, connect_timeout=5)
    connection.ensure_connection(max_retries=1)
    return connection


def _account_uri(bus, agency: str, plane: str, on: str) -> str:
    """``agency``'s ``plane`` account ("bus"/"control") on the virtual host of ``on``
    ("bus", or another agency's control plane)."""
    creds = settings.credential_store(bus.config).load(agency)
    account = creds.bus if plane == "bus" else creds.control
    address = bus.config["BROKER"]["BUS_URI"] if on == "bus" else settings.control_address(bus.config, on)
    return uris.with_credentials(address, account.user, account.password)


def _without_admin(bus) -> None:
    """Setup again, as an operator runs it: the administrator keeps no rights on the vhosts."""
    provisioning.setup(bus.config, keep_admin_access=False)


# -- the control plane -------------------------------------------------------------------------------
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_other_account_reaches_an_agencys_control_plane(bus):
    bus.start(POLICE)
    _without_admin(bus)
    outsiders = {
        "court's control account": _account_uri(bus, COURT, "control", on=POLICE),
        "court's bus account": _account_uri(bus, COURT, "bus", on=POLICE),
        "the police's own bus account": _account_uri(bus, POLICE, "bus", on=POLICE),
        "the broker administrator": f"amqp://{ADMIN_USER}:{ADMIN_PASSWORD}@{BROKER_ADDRESS}/"
                                    f"{settings.broker_names(bus.config).control_vhost(POLICE)}",
    }
    for who, uri in outsiders.items():
        with pytest.raises(REFUSED, match="access to vhost"):
            _connect(uri)
    # The police's own control account is let in, and its clerks can drive the node.
    with bus.rpc() as rpc:
        assert rpc.public_security.outbox() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_decision_cannot_be_forged_through_the_bus(bus):
    """The attack: an anonymous Nameko RPC on the shared bus made the police node sign a 'not
    filed' decision. Now the node's RPCs are not on the bus at all, and a bus account cannot
    even open an RPC reply queue there."""
    bus.start(MEDICAL, POLICE)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted") as received, bus.rpc() as rpc:
        rpc.medical_security.refer_clue(sample_body(k.CLUE_TRANSFER), recipient=POLICE)
    clue_id = received.get()["message_id"]
    with pytest.raises(REFUSED):
        with ClusterRpcProxy({"AMQP_URI": bus.bus_uri(COURT)}, timeout=5) as outsider:
            outsider.public_security.decide_filing(clue_id, sample_body(k.FILING_DECISION))
    with h.db(bus, POLICE) as repo:
        assert h.messages(repo, Message.kind == k.FILING_DECISION) == []


# -- the bus ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_nobody_can_bind_a_spy_queue(bus):
    t = h.topology(bus)
    with _connect(bus.bus_uri(POLICE)) as connection:
        attempts = {
            "a queue of its own": lambda ch: ch.queue_declare("spy", durable=False, auto_delete=True),
            "a server-named queue": lambda ch: ch.queue_declare("", exclusive=True),
            "its queue bound to everything": lambda ch: ch.queue_bind(t.queue_name(POLICE), t.exchange_name, "#"),
            "its queue bound to the bureau's": lambda ch: ch.queue_bind(t.queue_name(POLICE), t.exchange_name,
                                                                         "medical_security.*"),
            "an exchange of its own": lambda ch: ch.exchange_declare("spy", "fanout"),
        }
        for what, attempt in attempts.items():
            channel = connection.channel()
            with pytest.raises(AccessRefused):
                attempt(channel)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("reader", [COURT, OFFICE, MEDICAL])
def test_no_agency_can_consume_another_agencys_queue(bus, reader):
    t = h.topology(bus)
    workflows.refer_clue(bus.context(MEDICAL), sample_body(k.CLUE_TRANSFER), POLICE, copy_to=None)
    with _connect(bus.bus_uri(reader)) as connection:
        for queue in (t.queue_name(POLICE), t.quarantine_queue_name(POLICE)):
            with pytest.raises(AccessRefused):
                connection.channel().basic_get(queue=queue)
            with pytest.raises(AccessRefused):
                connection.channel().basic_consume(queue=queue, callback=lambda m: None)
    with _connect(bus.bus_uri(POLICE)) as connection:  # its own, yes
        assert connection.channel().basic_get(queue=t.queue_name(POLICE)) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_broker_refuses_a_user_id_of_another_agency(bus):
    t = h.topology(bus)
    with _connect(bus.bus_uri(COURT)) as connection:
        channel = connection.channel()
        channel.confirm_select()
        with pytest.raises(PreconditionFailed, match="user_id property set to"):
            channel.basic_publish_confirm(amqp.Message(b"{}", user_id=bus.bus_user(POLICE)),
                                          exchange=t.exchange_name, routing_key="medical_security.judgment")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_envelope_not_published_by_its_sender_is_quarantined_with_the_rule(bus):
    """A genuine, police-signed decision replayed by the court's system (its own account and
    user_id, under a routing key the court may use): the signature alone would pass; the
    bureau refuses it before storing anything but the quarantine row."""
    bus.start(MEDICAL)
    police = bus.context(POLICE)
    decision = police.composer.compose(k.FILING_DECISION, MEDICAL, sample_body(k.FILING_DECISION),
                                       referral_id=str(uuid.uuid4()), in_reply_to=str(uuid.uuid4()))
    with bus.waiter(MEDICAL, status="quarantined") as waiting:
        h.publish_raw(bus, decision.raw, "medical_security.judgment", as_agency=COURT)
    outcome = waiting.get()
    assert outcome["rule"] == "transport.sender_mismatch"
    with h.db(bus, MEDICAL) as repo:
        [row] = h.quarantined(repo)
        assert row.rule == "transport.sender_mismatch" and row.raw == decision.raw
        assert bus.bus_user(COURT) in row.detail
        assert h.count(repo, Message) == 0 and h.count(repo, Referral) == 0
    # No answer went anywhere: neither to the police (who did not publish it) nor the court.
    assert h.queue_depth(bus, h.queue_name(bus, POLICE)) == 0
    assert h.queue_depth(bus, h.queue_name(bus, COURT)) == 0


# -- sealing -------------------------------------------------------------------------------------------
def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sealed_clue_crosses_the_bus_without_its_plaintext(bus):
    """Everything published or delivered on the bus's virtual host while a clue is referred
    (RabbitMQ's firehose sees all of it) carries none of the clue's personal data; the RPC
    that carried the plaintext went over the bureau's own control plane."""
    vhost = settings.broker_names(bus.config).bus_vhost
    bus.start(MEDICAL, POLICE, "procuratorate")
    tap = Queue(f"tap-{uuid.uuid4().hex[:8]}", exchange=Exchange("amq.rabbitmq.trace", "topic", internal=True,
                                                                   durable=True, no_declare=True),
                routing_key="#", auto_delete=True, durable=False)
    _rabbitmqctl("trace_on", "-p", vhost)
    try:
        with h.QueueWatch(bus, tap) as watch:
            with bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=2), bus.rpc() as rpc:
                sent = rpc.medical_security.refer_clue(sample_body(k.CLUE_TRANSFER))  # sealed by default
            # The firehose copy of the last receipt's delivery may trail its processing.
            with h.db(bus, MEDICAL) as repo:
                expected = {bytes(m.raw) for m in h.messages(repo)}
            with h.db(bus, POLICE) as repo:
                expected |= {bytes(m.raw) for m in h.messages(repo)}
            watch.wait_for(lambda bodies: expected <= set(bodies), timeout=30)
    finally:
        _rabbitmqctl("trace_off", "-p", vhost)
    crossed = [bytes(body) for body in watch.bodies]
    assert crossed, "the firehose saw nothing"
    for body in crossed:
        text = body.decode("utf-8", "replace")
        for personal in PERSONAL:
            assert personal not in text
    envelopes = [json.loads(body) for body in crossed]
    assert {e["kind"] for e in envelopes} == {k.CLUE_TRANSFER, k.COPY_NOTICE, k.RECEIPT}
    assert all(e["body_encoding"] == "sealed" for e in envelopes if e["kind"] != k.RECEIPT)
    # An acceptance says nothing personal: it travels in the clear.
    for receipt in (e for e in envelopes if e["kind"] == k.RECEIPT):
        assert set(receipt["body"]) == {"status", "message_sha256", "received_at", "reason_codes"}
    transfer = next(e for e in envelopes if e["kind"] == k.CLUE_TRANSFER)
    assert transfer["body"]["facts"]["clue_no"] == sample_body(k.CLUE_TRANSFER)["clue_no"]  # the office's facts
    assert {m["kind"] for m in sent["messages"]} == {k.CLUE_TRANSFER, k.COPY_NOTICE}
    with h.db(bus, POLICE) as repo:  # the recipient opened it
        [received] = h.messages(repo, Message.direction == INBOUND)
        assert received.sealed and received.body["subjects"]


# -- control calls happen once ---------------------------------------------------------------------------
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_repeated_request_id_makes_one_referral(bus):
    bus.start(MEDICAL)
    with bus.rpc() as rpc:
        first = rpc.medical_security.refer_clue(sample_body(k.CLUE_TRANSFER), request_id="clerk-2026-0001")
        again = rpc.medical_security.refer_clue(sample_body(k.CLUE_TRANSFER), request_id="clerk-2026-0001")
        other = rpc.medical_security.refer_clue(sample_body(k.CLUE_TRANSFER), request_id="clerk-2026-0002")
    assert (first["repeated"], again["repeated"], other["repeated"]) == (False, True, False)
    assert again["referral_id"] == first["referral_id"] and again["messages"] == first["messages"]
    assert other["referral_id"] != first["referral_id"]
    with h.db(bus, MEDICAL) as repo:
        assert h.count(repo, Referral) == 2
        assert h.count(repo, Message) == 4  # two transfers, two copies


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_redelivered_rpc_request_acts_once(bus):
    """RabbitMQ delivers an RPC request at least once: the same request (same correlation id)
    arriving twice, as after a node crash, opens one referral and gets the same answer."""
    bus.start(MEDICAL)
    control = settings.control_uri(bus.config, MEDICAL)
    replies = Queue(f"replies-{uuid.uuid4().hex[:8]}", exchange=Exchange("nameko-rpc", "topic", durable=True),
                    routing_key=f"replies-{uuid.uuid4().hex}", exclusive=True, auto_delete=True)
    request = json.dumps({"args": [sample_body(k.CLUE_TRANSFER)], "kwargs": {}})
    answers = []
    with Connection(control) as connection:
        channel = connection.channel()
        replies(channel).declare()
        producer = Producer(channel, exchange=Exchange("nameko-rpc", "topic", durable=True))
        for _ in range(2):
            producer.publish(request, routing_key="medical_security.refer_clue", content_type="application/json",
                             correlation_id="one-and-the-same", reply_to=replies.routing_key)
        with connection.Consumer(replies, callbacks=[lambda body, message: (answers.append(body), message.ack())]):
            while len(answers) < 2:
                connection.drain_events(timeout=30)
    first, second = (json.loads(a) if isinstance(a, str) else a for a in answers)
    assert first["error"] is None and second["error"] is None
    assert first["result"]["messages"] == second["result"]["messages"]
    assert sorted([first["result"]["repeated"], second["result"]["repeated"]]) == [False, True]
    with h.db(bus, MEDICAL) as repo:
        assert h.count(repo, Referral) == 1 and h.count(repo, Message) == 2
