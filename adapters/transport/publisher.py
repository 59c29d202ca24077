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

import amqp
from amqp.exceptions import AMQPError, ChannelError
from kombu import Connection
from kombu.exceptions import KombuError

from services.handlers.relay import PublishFailed

from .serializer import CONTENT_ENCODING, CONTENT_TYPE
from .topology import Topology
from .uris import without_credentials

log = logging.getLogger(__name__)

PERSISTENT = 2
NO_ROUTE = 312
ACCESS_REFUSED = 403
PRECONDITION_FAILED = 406
CONFIRM_TIMEOUT_SECONDS = 30.0


class EnvelopePublisher:
    """One connection and channel (in confirm mode) per publisher, made on first use and made
    again after any failure. Thread-safe: publications are serialised."""

    def __init__(self, amqp_uri: str, topology: Topology, user_id: str, *,
                 connect_timeout: float = 5.0, confirm_timeout: float = CONFIRM_TIMEOUT_SECONDS):
        self.amqp_uri = amqp_uri
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
            # One try per address of a cluster; the outbox retries later.
            self._connection.ensure_connection(max_retries=len(self._connection.alt or [None]))
            channel = self._connection.channel()
            channel.confirm_select()
            self._channel = channel
        return self._channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # the connection is already broken; nothing to keep
                pass

    def publish(self, raw: bytes, routing_key: str) -> None:
        message = amqp.Message(raw, content_type=CONTENT_TYPE, content_encoding=CONTENT_ENCODING,
                               delivery_mode=PERSISTENT, user_id=self.user_id)
        with self._lock:
            for attempt in (1, 2):  # a connection found broken is made again once, at once
                try:
                    channel = self._open_channel()
                    channel.basic_publish_confirm(message, exchange=self.topology.exchange_name,
                                                  routing_key=routing_key, mandatory=True,
                                                  confirm_timeout=self.confirm_timeout)
                    return
                except ChannelError as exc:
                    code = getattr(exc, "reply_code", None) or getattr(exc, "code", None)
                    if code == NO_ROUTE:
                        # basic.return: the channel is still usable.
                        raise PublishFailed("transport.unroutable",
                                            f"no queue is bound for routing key {routing_key!r}") from None
                    self._reset()
                    if code in (ACCESS_REFUSED, PRECONDITION_FAILED):
                        raise PublishFailed("transport.refused",
                                            f"the broker refused {routing_key!r} from {self.user_id}: {exc}") from None
                    if attempt == 2:
                        raise PublishFailed("transport.unavailable", f"broker did not take the message: {exc}") from None
                except (AMQPError, KombuError, OSError, socket.timeout, ConnectionError) as exc:
                    self._reset()
                    if attempt == 2:
                        raise PublishFailed(
                            "transport.unavailable",
                            f"broker at {without_credentials(self.amqp_uri)} did not take the message: "
                            f"{exc.__class__.__name__}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._reset()
