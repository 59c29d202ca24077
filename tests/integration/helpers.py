"""Small helpers for integration tests: raw publishing, queue inspection, database views."""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

import eventlet
import eventlet.event
import eventlet.queue
from kombu import Connection, Consumer, Queue
from nameko.amqp.publish import Publisher
from sqlalchemy import func, select

from adapters.crypto.timestamps import format_timestamp
from adapters.storage.repository import NodeRepository
from adapters.storage.tables import AuditEntry, Message, OutboxEntry, QuarantineEntry
from adapters.transport.publisher import EnvelopePublisher
from services.protocol.transport import CONTENT_ENCODING, CONTENT_TYPE
from schemas.envelope import PLAIN, PROTOCOL
from services import config as c
from services import settings
from services.nodes.dependencies import utc_now
from services.protocol.compose import encode, sign_envelope
from services.protocol.signing_input import body_sha256

PERSISTENT = 2


def topology(bus):
    return settings.topology(bus.config)


def queue_name(bus, agency: str) -> str:
    return topology(bus).queue_name(agency)


def quarantine_queue_name(bus, agency: str) -> str:
    return topology(bus).quarantine_queue_name(agency)


def claimed_sender(raw: bytes) -> str | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    sender = value.get("sender") if isinstance(value, dict) else None
    return sender if isinstance(sender, str) else None


def publish_raw(bus, raw: bytes, routing_key: str, *, as_agency: str | None = None,
                content_type: str = CONTENT_TYPE, content_encoding: str = CONTENT_ENCODING,
                user_id: str | None = None) -> None:
    """Publish exactly ``raw`` to the bus exchange (persistent, confirmed, mandatory), as an
    agency's own system could with that agency's bus account (by default the agency the bytes
    claim as sender, when it is a configured one; else the broker's administrator, without a
    user_id), bypassing every node's outbox."""
    agency = as_agency or claimed_sender(raw)
    if agency in c.agency_codes(bus.config):
        uri, user_id = bus.bus_uri(agency), user_id or bus.bus_user(agency)
    else:
        uri = bus.amqp_uri
    extra = {"user_id": user_id} if user_id else {}
    publisher = Publisher(uri, use_confirms=True, mandatory=True, delivery_mode=PERSISTENT,
                          exchange=topology(bus).exchange, declare=[])
    publisher.publish(raw, routing_key=routing_key, content_type=content_type,
                      content_encoding=content_encoding, **extra)


@contextmanager
def _channel(bus):
    with Connection(bus.amqp_uri) as connection:
        channel = connection.channel()
        try:
            yield channel
        finally:
            channel.close()


def agency_publisher(bus, agency: str) -> EnvelopePublisher:
    """The publisher a node of ``agency`` uses: its bus account, its user_id."""
    return EnvelopePublisher(bus.bus_uri(agency), topology(bus), bus.bus_user(agency))


def queue_depth(bus, queue: str) -> int:
    """Messages ready in ``queue`` (passive declare: the queue must exist)."""
    with _channel(bus) as channel:
        return channel.queue_declare(queue=queue, passive=True).message_count


def purge_queue(bus, queue: str) -> int:
    """Drop every ready message of ``queue``; return how many there were."""
    with _channel(bus) as channel:
        return channel.queue_purge(queue=queue)


def drain_queue(bus, queue: str) -> list:
    """Take (and ack) every ready message of ``queue``: a list of amqp messages (``.body``,
    ``.properties``, ``.delivery_info``). Only for queues no node consumes from."""
    messages = []
    with _channel(bus) as channel:
        while True:
            message = channel.basic_get(queue=queue, no_ack=True)
            if message is None:
                return messages
            messages.append(message)


def take_from_queue(bus, queue: str, count: int, timeout: float = 10.0) -> list:
    """Wait for ``count`` messages on ``queue`` (nobody else consuming it) and take them: a node
    publishes what it committed just after the commit, so an answer can follow the handler's
    return by a moment. Fails if fewer arrive within ``timeout``; takes no more than ``count``."""
    messages: list = []
    with Connection(bus.amqp_uri) as connection:
        channel = connection.channel()
        channel.basic_qos(0, count, False)

        def taken(message):  # on_message: the raw message, not decoded by kombu
            messages.append(message)
            message.ack()

        consumer = Consumer(channel, queues=[Queue(queue, no_declare=True)], on_message=taken, no_ack=False)
        deadline = time.monotonic() + timeout
        with consumer:
            while len(messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(messages)} of {count} messages arrived on {queue} in {timeout}s")
                try:
                    connection.drain_events(timeout=remaining)
                except TimeoutError:
                    continue
    return messages


class LogEvent(logging.Handler):
    """An eventlet Event fired by the first record of ``logger`` whose message contains
    ``needle``: wait on a log line instead of sleeping."""

    def __init__(self, logger: str, needle: str, sink: eventlet.queue.Queue | None = None):
        super().__init__(level=logging.DEBUG)
        self.logger = logging.getLogger(logger)
        self.needle = needle
        self.sink = sink
        self.event = eventlet.event.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if self.needle in record.getMessage():
            self.records.append(record)
            if self.sink is not None:
                self.sink.put(("log", record))
            if not self.event.ready():
                self.event.send(record)

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)

    def wait(self, timeout: float = 30):
        with eventlet.Timeout(timeout, exception=AssertionError(f"no log line with {self.needle!r}")):
            return self.event.wait()


class QueueWatch:
    """Consume ``queue`` (a kombu Queue) in a green thread while in the ``with`` block; each
    message is acked, kept in ``bodies`` and reported to ``sink`` as ("queue", body)."""

    def __init__(self, bus, queue, sink: eventlet.queue.Queue | None = None):
        self.bus, self.queue, self.sink = bus, queue, sink
        self.bodies: list[bytes] = []
        self._stopping = False
        self._ready = eventlet.event.Event()
        self._arrivals = eventlet.queue.Queue()

    def _run(self):
        with Connection(self.bus.amqp_uri) as connection:
            def on_message(message):
                self.bodies.append(message.body)
                message.ack()
                self._arrivals.put(None)
                if self.sink is not None:
                    self.sink.put(("queue", message.body))
            with Consumer(connection, queues=[self.queue], on_message=on_message):
                self._ready.send()
                while not self._stopping:
                    try:
                        connection.drain_events(timeout=0.2)  # wakes up only to see if we stop
                    except TimeoutError:
                        pass

    def __enter__(self):
        self._thread = eventlet.spawn(self._run)
        self._ready.wait()
        return self

    def __exit__(self, *exc):
        self._stopping = True
        self._thread.wait()

    def wait_for(self, predicate, timeout: float = 30):
        """Until ``predicate(bodies)`` holds, woken by each message (no polling)."""
        with eventlet.Timeout(timeout, exception=AssertionError("the watched queue never got what was awaited")):
            while not predicate(self.bodies):
                self._arrivals.get()


def signed_envelope(signer, kind: str, recipient: str, body: dict, *, referral_id: str | None = None,
                    in_reply_to: str | None = None, sent_at=None, schema_version: int = 1) -> tuple[dict, bytes]:
    """A validly signed envelope built by hand (the Composer refuses forbidden routes)."""
    envelope = {
        "protocol": PROTOCOL,
        "message_id": str(uuid.uuid4()),
        "kind": kind,
        "schema_version": schema_version,
        "sender": signer.agency,
        "recipient": recipient,
        "referral_id": referral_id or str(uuid.uuid4()),
        "in_reply_to": in_reply_to,
        "sent_at": format_timestamp(sent_at or utc_now()),
        "sender_key_id": signer.key_id,
        "body_encoding": PLAIN,
        "body": body,
    }
    envelope["body_sha256"] = body_sha256(body)
    envelope = sign_envelope(envelope, signer)
    return envelope, encode(envelope)


# -- database views ---------------------------------------------------------------------------
@contextmanager
def db(bus, agency: str) -> Iterator[NodeRepository]:
    """One read transaction on ``agency``'s own database."""
    with bus.store(agency).transaction() as repo:
        yield repo


def count(repo: NodeRepository, model, *where) -> int:
    return repo.session.scalar(select(func.count()).select_from(model).where(*where))


def messages(repo: NodeRepository, *where) -> list[Message]:
    return list(repo.session.scalars(select(Message).where(*where).order_by(Message.id)))


def audit_events(repo: NodeRepository, event: str | None = None, message_id: str | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.seq)
    if event:
        query = query.where(AuditEntry.event == event)
    if message_id:
        query = query.where(AuditEntry.message_id == message_id)
    return list(repo.session.scalars(query))


def outbox(repo: NodeRepository) -> list[OutboxEntry]:
    return list(repo.session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def quarantined(repo: NodeRepository) -> list[QuarantineEntry]:
    return list(repo.session.scalars(select(QuarantineEntry).order_by(QuarantineEntry.id)))


# -- broker topology ----------------------------------------------------------------------------
def declare_topology(bus) -> None:
    """Declare (again) every exchange, queue and binding, as a node does when it starts."""
    with Connection(bus.amqp_uri) as connection:
        topology(bus).declare(connection)


def unbind_queue(bus, agency: str) -> None:
    """Remove every binding of ``agency``'s routing keys (its own queue's and the observers'
    copies): publishing to it becomes unroutable."""
    t = topology(bus)
    with _channel(bus) as channel:
        for holder in [agency, *t.observers]:
            channel.queue_unbind(queue=t.queue_name(holder), exchange=t.exchange_name,
                                 routing_key=t.binding_key(agency))
