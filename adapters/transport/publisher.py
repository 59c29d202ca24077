"""Publishing envelopes: persistent, confirmed by the broker, and mandatory (an unroutable
message is an error, never a silent loss)."""

from __future__ import annotations

from amqp.exceptions import AMQPError
from kombu.exceptions import KombuError
from nameko.amqp.publish import Publisher as AmqpPublisher
from nameko.amqp.publish import UndeliverableMessage

from services.handlers.relay import PublishFailed

from .serializer import CONTENT_ENCODING, CONTENT_TYPE
from .topology import Topology

PERSISTENT = 2


class EnvelopePublisher:
    def __init__(self, amqp_uri: str, topology: Topology):
        self.topology = topology
        self._publisher = AmqpPublisher(
            amqp_uri, use_confirms=True, mandatory=True, delivery_mode=PERSISTENT,
            exchange=topology.exchange, declare=[topology.exchange],
            # One quick retry on a dropped connection; the outbox retries after that.
            retry=True, retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 1,
                                      "interval_max": 1})

    def publish(self, raw: bytes, routing_key: str) -> None:
        try:
            self._publisher.publish(raw, routing_key=routing_key, content_type=CONTENT_TYPE,
                                    content_encoding=CONTENT_ENCODING)
        except UndeliverableMessage:
            raise PublishFailed("transport.unroutable",
                                f"no queue is bound for routing key {routing_key!r}") from None
        except (AMQPError, KombuError, OSError) as exc:
            raise PublishFailed("transport.unavailable", f"broker did not take the message: {exc}") from None
