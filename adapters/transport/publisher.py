"""Publishing envelopes on the bus: persistent, confirmed by the broker, mandatory (an
unroutable message is an error, never a silent loss), and stamped with the agency's own
broker user in ``user_id``, which RabbitMQ checks against the connection's login.

Nothing is declared: an agency's bus account may configure nothing (the bus operator
provisions exchanges and queues, `cluebus broker setup`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import amqp
from amqp.exceptions import AMQPError, ChannelError
from kombu import Connection
from kombu.exceptions import KombuError

from services.handlers.relay import PublishFailed
from services.protocol import rules
from services.protocol.transport import CONTENT_ENCODING, CONTENT_TYPE

from .topology import Topology, connect_once_per_address, release_quietly
from .uris import without_credentials

log = logging.getLogger(__name__)

PERSISTENT = 2
CONFIRM_TIMEOUT_SECONDS = 30.0


class EnvelopePublisher:
    """One connection and channel (in confirm mode) per publisher, made on first use and made
    again after any failure. Thread-safe: publications are serialised. Many messages are
    published back to back and their confirms awaited once (publish_many)."""

    def __init__(self, amqp_uri: str, topology: Topology, user_id: str, *,
                 connect_timeout: float = 5.0, confirm_timeout: float = CONFIRM_TIMEOUT_SECONDS,
                 content_type: str = CONTENT_TYPE):
        self.amqp_uri = amqp_uri
        self.content_type = content_type  # envelopes; the operator's keyring updates have their own
        self.topology = topology
        self.user_id = user_id
        self.connect_timeout = connect_timeout
        self.confirm_timeout = confirm_timeout
        self._connection: Connection | None = None
        self._channel = None
        self._lock = threading.Lock()

    def _open_channel(self):
        if self._channel is None:
            self._connection = Connection(self.amqp_uri, connect_timeout=self.connect_timeout,
                                          transport_options={"confirm_publish": False})
            connect_once_per_address(self._connection)  # the outbox retries later
            channel = self._connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
            self._channel = channel
            self._sequence = 0          # delivery tags of confirms count publications on the channel
            self._waiting: dict[int, str] = {}
            self._outcome: dict[str, PublishFailed | None] = {}
        return self._channel

    # Publisher confirms (and returns) arrive while draining the connection.
    def _settle(self, tag: int, multiple: bool, error: PublishFailed | None) -> None:
        tags = [t for t in self._waiting if t <= tag] if multiple else [tag]
        for t in tags:
            message_id = self._waiting.pop(t, None)
            if message_id is not None:
                self._outcome[message_id] = error

    def _on_ack(self, delivery_tag, multiple):
        self._settle(delivery_tag, multiple, None)

    def _on_nack(self, delivery_tag, multiple):
        self._settle(delivery_tag, multiple, PublishFailed(rules.TRANSPORT_UNAVAILABLE, "the broker nacked it"))

    def _on_return(self, exc, exchange, routing_key, message):
        # A return comes before the confirm of the same message: remember it as refused.
        message_id = (message.properties or {}).get("message_id")
        if message_id:
            self._returned[message_id] = PublishFailed(
                rules.TRANSPORT_UNROUTABLE, f"no queue is bound for routing key {routing_key!r}")

    def publish_many(self, items: list[tuple[str, bytes, str]]) -> dict[str, PublishFailed]:
        """Publish every ``(message_id, raw, routing_key)`` and wait once for the broker's
        confirms of all of them. Returns what was not taken (unroutable, nacked, refused, or
        unconfirmed when the connection failed), by message id; the rest is confirmed."""
        if not items:
            return {}
        failures, refused = self._publish_batch(items)
        if not refused or len(failures) <= 1:
            return failures
        # The channel closed on one refused publication (403 on its routing key) and took the
        # others unconfirmed with it: each of those again on its own, so only the refused ones
        # stay refused and the rest are not held back with them, time after time.
        outcome = {}
        for item in items:
            if item[0] in failures:
                outcome.update(self._publish_batch([item])[0])
        return outcome

    def _publish_batch(self, items: list[tuple[str, bytes, str]]) -> tuple[dict[str, PublishFailed], bool]:
        """What was not taken, and whether the broker refused a publication (closing the channel)."""
        with self._lock:
            self._returned: dict[str, PublishFailed] = {}
            try:
                channel = self._open_channel()
                self._outcome = {}
                for message_id, raw, routing_key in items:
                    message = amqp.Message(raw, content_type=self.content_type, content_encoding=CONTENT_ENCODING,
                                           delivery_mode=PERSISTENT, user_id=self.user_id, message_id=message_id)
                    channel.basic_publish(message, exchange=self.topology.exchange_name,
                                          routing_key=routing_key, mandatory=True)
                    self._sequence += 1
                    self._waiting[self._sequence] = message_id
                deadline = time.monotonic() + self.confirm_timeout
                while self._waiting:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout(f"no confirm within {self.confirm_timeout:.0f} s")
                    self._connection.drain_events(timeout=left)
            except ChannelError as exc:
                self._reset()
                failure = PublishFailed(rules.TRANSPORT_REFUSED, f"the broker refused a publication from "
                                                                f"{self.user_id}: {exc}")
                return self._failures(items, failure), True
            except (AMQPError, KombuError, OSError, socket.timeout, ConnectionError) as exc:
                self._reset()
                failure = PublishFailed(rules.TRANSPORT_UNAVAILABLE,
                                        f"broker at {without_credentials(self.amqp_uri)} did not confirm: "
                                        f"{exc.__class__.__name__}: {exc}")
                return self._failures(items, failure), False
            outcome = {message_id: error for message_id, error in self._outcome.items() if error is not None}
            outcome.update(self._returned)
            return outcome, False

    def _failures(self, items, failure: PublishFailed) -> dict[str, PublishFailed]:
        """After a broken channel: everything not confirmed before it broke failed."""
        confirmed = {m for m, error in getattr(self, "_outcome", {}).items() if error is None}
        result = {message_id: failure for message_id, _, _ in items if message_id not in confirmed}
        result.update({m: e for m, e in getattr(self, "_returned", {}).items()})
        return result

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        release_quietly(connection)

    def publish(self, raw: bytes, routing_key: str, message_id: str | None = None) -> None:
        """One message, confirmed; PublishFailed if the broker did not take it. A connection
        found broken is made again once, at once."""
        message_id = message_id or f"single-{id(raw)}"
        for attempt in (1, 2):
            failures = self.publish_many([(message_id, raw, routing_key)])
            error = failures.get(message_id)
            if error is None:
                return
            if error.rule != rules.TRANSPORT_UNAVAILABLE or attempt == 2:
                raise error

    def queue_depth(self, queue: str) -> int | None:
        """Ready messages in ``queue`` (a passive declare), or None when it cannot be told."""
        with self._lock:
            try:
                return self._open_channel().queue_declare(queue=queue, passive=True).message_count
            except (AMQPError, KombuError, OSError, socket.timeout, ConnectionError):
                self._reset()
                return None

    def close(self) -> None:
        with self._lock:
            self._reset()
