"""Nameko entrypoints at the edge of a node: envelopes from the bus, and control calls.

- ``consume_envelopes``: the agency's queue on the **bus**, over a connection of its own made
  with the agency's bus account (the container's own AMQP connection is its control plane).
  The worker gets a :class:`~services.handlers.receiving.Delivery`: the body's exact bytes,
  whatever its content type (nothing is decoded, so nothing can vanish undecoded), with the
  broker-checked ``user_id`` of its publisher. The delivery is acked only after the worker
  returns (after the database commit) and requeued when it raises.
- ``control_rpc``: Nameko's RPC, except that a request carries a stable request id (the
  caller's, else the AMQP correlation id, which a redelivery keeps), and that a reply the
  broker cannot take leaves the request unacked instead of killing the container.
"""

from __future__ import annotations

import logging
from functools import partial

from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import Entrypoint
from nameko.messaging import QueueConsumer
from nameko.rpc import Rpc, RpcConsumer
from nameko.utils import sanitize_url

from services.handlers.receiving import Delivery

log = logging.getLogger(__name__)

# Container configuration keys the node's wiring fills in (services/nodes/factory.py).
BUS_CONNECTION_KEY = "CLUEBUS_BUS_CONNECTION"      # bus URI with the agency's bus account
BUS_USER_KEY = "CLUEBUS_BUS_USER"                  # the agency's own bus user name
BUS_USERS_KEY = "CLUEBUS_BUS_USERS"                # {broker user: agency} for every agency
CALL_ID_KEY = "cluebus.call_id"


class BusQueueConsumer(QueueConsumer):
    """Nameko's queue consumer (reconnects, prefetch, acks), on the bus connection, handing
    over raw messages: kombu's ``on_message`` skips decoding altogether."""

    @property
    def amqp_uri(self):
        return self.container.config[BUS_CONNECTION_KEY]

    def get_consumers(self, consumer_cls, channel):
        for provider in self._providers:
            # auto_declare off: an agency's bus account may not declare anything; the bus
            # operator provisions the queues.
            consumer = consumer_cls(queues=[provider.queue], auto_declare=False,
                                    on_message=partial(self.handle_raw, provider))
            consumer.qos(prefetch_count=self.prefetch_count)
            self._consumers[provider] = consumer
        return self._consumers.values()

    def handle_raw(self, provider, message):
        ident = f"{type(provider).__name__}.handle_raw[{message.delivery_info.get('routing_key')}]"
        self.container.spawn_managed_thread(partial(provider.handle_raw, message), identifier=ident)

    def on_connection_error(self, exc, interval):
        log.warning("bus connection to %s failed (%s); retrying in %s s",
                    sanitize_url(self.amqp_uri), exc, interval)


def _bytes(body) -> bytes:
    """py-amqp gives ``''`` (a str) for an empty body and may give a memoryview: always bytes."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return bytes(body)


class EnvelopeConsumer(Entrypoint):
    queue_consumer = BusQueueConsumer()

    def __init__(self, queue, **kwargs):
        self.queue = queue
        super().__init__(**kwargs)

    def setup(self):
        self.queue_consumer.register_provider(self)

    def stop(self):
        self.queue_consumer.unregister_provider(self)

    def handle_raw(self, message):
        properties = message.properties or {}
        user_id = properties.get("user_id")
        users = self.container.config.get(BUS_USERS_KEY, {})
        delivery = Delivery(raw=_bytes(message.body), content_type=message.content_type,
                            user_id=user_id, publisher=users.get(user_id),
                            redelivered=bool(message.delivery_info.get("redelivered")))
        try:
            self.container.spawn_worker(self, (delivery,), {},
                                        handle_result=partial(self.handle_result, message))
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is not None:
            self.queue_consumer.requeue_message(message)
        else:
            self.queue_consumer.ack_message(message)
        return result, exc_info


consume_envelopes = EnvelopeConsumer.decorator


class ResilientRpcConsumer(RpcConsumer):
    def handle_result(self, message, result, exc_info):
        try:
            return super().handle_result(message, result, exc_info)
        except Exception:  # the broker cannot take the reply now
            log.warning("could not publish the reply to %s; the request stays unacked and is answered "
                        "from its stored result when the broker redelivers it",
                        message.delivery_info.get("routing_key"), exc_info=True)
            self.requeue_message(message)
            return result, exc_info


class ControlRpc(Rpc):
    rpc_consumer = ResilientRpcConsumer()

    def handle_message(self, body, message):
        try:
            args, kwargs = body["args"], body["kwargs"]
        except (KeyError, TypeError):
            return super().handle_message(body, message)
        self.check_signature(args, kwargs)
        context_data = self.unpack_message_headers(message)
        correlation_id = (message.properties or {}).get("correlation_id")
        if correlation_id:
            context_data[CALL_ID_KEY] = f"rpc:{correlation_id}"
        try:
            self.container.spawn_worker(self, args, kwargs, context_data=context_data,
                                        handle_result=partial(self.handle_result, message))
        except ContainerBeingKilled:
            self.rpc_consumer.requeue_message(message)


control_rpc = ControlRpc.decorator
