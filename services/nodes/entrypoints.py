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

import inspect
import logging
import sys
from functools import partial

import amqp
import eventlet
import kombu.serialization
from amqp.exceptions import AMQPError
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from eventlet.semaphore import Semaphore
from kombu import Connection, Queue
from kombu.exceptions import KombuError
from nameko.constants import (AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_TRANSPORT_OPTIONS,
                              LOGIN_METHOD_CONFIG_KEY, NON_PERSISTENT)
from nameko.exceptions import ContainerBeingKilled, IncorrectSignature, UnserializableValueError, serialize
from nameko.extensions import Entrypoint
from nameko.messaging import QueueConsumer
from nameko.rpc import RPC_QUEUE_TEMPLATE, Rpc, RpcConsumer, get_rpc_exchange

from adapters.transport.topology import QUORUM, connect_once_per_address, release_quietly
from adapters.transport.uris import without_credentials
from services import config as c
from services.handlers.receiving import Delivery

log = logging.getLogger(__name__)

# Container configuration keys the node's wiring fills in (services/nodes/factory.py).
BUS_CONNECTION_KEY = "CLUEBUS_BUS_CONNECTION"      # bus URI with the agency's bus account
BUS_USER_KEY = "CLUEBUS_BUS_USER"                  # the agency's own bus user name
BUS_USERS_KEY = "CLUEBUS_BUS_USERS"                # {broker user: agency} for every agency
BATCH_SIZE_KEY = "CLUEBUS_BATCH_SIZE"              # deliveries handled in one transaction, at most
CALL_ID_KEY = "cluebus.call_id"

DEFAULT_BATCH_SIZE = 200


# How long the consumer loop waits for the broker before it looks at what it was asked to
# do (cancel consumers, stop). kombu's default is 1 s, and a node's stop takes two such
# looks per queue consumer: 2 s of every shutdown, a test's teardown or a standby's takeover.
# Idle, the looks cost a node a few tenths of a percent of a CPU (bench_delivery: idle_node_cpu_percent).
CONSUMER_POLL_SECONDS = 0.2


class _PromptConsumer(QueueConsumer):
    def consume(self, *args, **kwargs):
        kwargs.setdefault("safety_interval", CONSUMER_POLL_SECONDS)
        return super().consume(*args, **kwargs)


class BusQueueConsumer(_PromptConsumer):
    """Nameko's queue consumer (reconnects, prefetch, acks), on the bus connection, handing
    over raw messages: kombu's ``on_message`` skips decoding altogether."""

    @property
    def amqp_uri(self):
        return self.container.config[BUS_CONNECTION_KEY]

    @property
    def prefetch_count(self):
        # Room for the batch being handled and the next one filling up.
        return 2 * int(self.container.config.get(BATCH_SIZE_KEY, DEFAULT_BATCH_SIZE))

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
        # Nameko spawns a thread per message here; the provider only queues it (never blocks),
        # so it is handed over in the consumer's own thread.
        provider.handle_raw(message)

    def on_connection_error(self, exc, interval):
        # without_credentials, not nameko's sanitize_url: that one leaves the passwords of
        # every address of a failover list but the first in the log.
        log.warning("bus connection to %s failed (%s); retrying in %s s",
                    without_credentials(self.amqp_uri), exc, interval)


class ControlQueueConsumer(_PromptConsumer):
    """Nameko's queue consumer for the control plane's RPC, logging its broker addresses
    without any password (nameko's own shows all but the first of a failover list's)."""

    def on_connection_error(self, exc, interval):
        log.warning("control connection to %s failed (%s); retrying in %s s",
                    without_credentials(self.amqp_uri), exc, interval)


def _bytes(body) -> bytes:
    """py-amqp gives ``''`` (a str) for an empty body and may give a memoryview: always bytes."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return bytes(body)


class EnvelopeConsumer(Entrypoint):
    """Deliveries are handled in batches: one worker takes every delivery waiting (at most the
    batch size) and handles them in one transaction, while the next batch fills up. Under light
    load a batch is one delivery, handled at once; under load batches grow by themselves. The
    worker returns one outcome per delivery, None for one it could not store: that one is
    requeued, the others are acked (all with one ack when none failed)."""

    queue_consumer = BusQueueConsumer()

    def __init__(self, queue, **kwargs):
        self.queue = queue
        super().__init__(**kwargs)

    def setup(self):
        self.batch_size = int(self.container.config.get(BATCH_SIZE_KEY, DEFAULT_BATCH_SIZE))
        self._waiting: LightQueue = LightQueue()
        self.queue_consumer.register_provider(self)

    def start(self):
        self.container.spawn_managed_thread(self._take_batches, identifier=f"{type(self).__name__}.batches")

    def stop(self):
        self.queue_consumer.unregister_provider(self)

    def handle_raw(self, message):
        self._waiting.put(message)

    def _take_batches(self):
        while True:
            batch = [self._waiting.get()]
            # Let the consumer read what else has arrived meanwhile, so it joins this batch.
            eventlet.sleep(0)
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._waiting.get_nowait())
                except Empty:
                    break
            deliveries = [self._delivery(message) for message in batch]
            settled = Event()
            try:
                self.container.spawn_worker(self, (deliveries,), {},
                                            handle_result=partial(self.handle_result, batch, settled))
            except ContainerBeingKilled:
                for message in batch:
                    self.queue_consumer.requeue_message(message)
                return
            settled.wait()  # one batch at a time: acks stay in delivery order

    def _delivery(self, message) -> Delivery:
        properties = message.properties or {}
        user_id = properties.get("user_id")
        users = self.container.config.get(BUS_USERS_KEY, {})
        return Delivery(raw=_bytes(message.body), content_type=message.content_type,
                        user_id=user_id, publisher=users.get(user_id),
                        redelivered=bool((message.delivery_info or {}).get("redelivered")))

    def handle_result(self, batch, settled, worker_ctx, result=None, exc_info=None):
        try:
            self._settle(batch, result, exc_info)
        finally:
            settled.send()
        return result, exc_info

    def _settle(self, batch, result, exc_info) -> None:
        if exc_info is not None or result is None:
            for message in batch:
                self.queue_consumer.requeue_message(message)
        elif all(outcome is not None for outcome in result):
            _ack_up_to(batch[-1])
        else:
            for message, outcome in zip(batch, result):
                if outcome is None:
                    self.queue_consumer.requeue_message(message)
                else:
                    self.queue_consumer.ack_message(message)


def _ack_up_to(message) -> None:
    """One ack for this delivery and every earlier one of its channel (the batches before it
    are settled already: one batch at a time, in delivery order)."""
    channel = message.channel
    if channel.connection:  # else the broker has reclaimed them all: they come again
        try:
            channel.basic_ack(message.delivery_tag, multiple=True)
        except ConnectionError:  # pragma: no cover
            pass


consume_envelopes = EnvelopeConsumer.decorator


class _Replies:
    """RPC replies as nameko's Responder sends them (the same body, properties and routing),
    on a channel opened once per container: nameko makes a Publisher and a kombu Connection
    for every reply and serialises each result twice, about a tenth of a single call's time
    at the node, and kombu's producer pool and retry wrappers still cost half of a reply's
    publishing (bench/README.md, eleventh session). Without publisher confirms and
    unpersisted: a lost reply only makes the caller time out and call again, which the
    request id makes harmless; waiting for the broker to confirm every reply would cost each
    call a round trip. A connection found broken is made again once, at once; if that fails
    too, the error goes to the caller of ``send`` (the request is requeued)."""

    def __init__(self, config):
        options = {**DEFAULT_TRANSPORT_OPTIONS, "confirm_publish": False}
        self._connect = partial(Connection, config[AMQP_URI_CONFIG_KEY], transport_options=options,
                                ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        self.exchange = get_rpc_exchange(config)
        self._connection = None
        self._channel = None
        self._lock = Semaphore(1)  # one channel: one reply written at a time

    def send(self, message, result, exc_info):
        """nameko.rpc.Responder.send_response; the result and exc_info it would return."""
        error = serialize(exc_info[1]) if exc_info is not None else None
        # Encoded the way the request was.
        serializer = kombu.serialization.registry.type_to_name[message.properties["content_type"]]
        try:
            content_type, encoding, body = kombu.serialization.dumps({"result": result, "error": error}, serializer)
        except Exception:  # nameko's answer to a result it cannot encode
            exc_info = sys.exc_info()
            error, result = serialize(UnserializableValueError(result)), None
            content_type, encoding, body = kombu.serialization.dumps({"result": None, "error": error}, serializer)
        reply = amqp.Message(body, content_type=content_type, content_encoding=encoding, application_headers={},
                             delivery_mode=NON_PERSISTENT, correlation_id=message.properties.get("correlation_id"))
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._open().basic_publish(reply, exchange=self.exchange.name,
                                               routing_key=message.properties["reply_to"])
                    break
                except (AMQPError, KombuError, OSError, ConnectionError):
                    self._reset()
                    if attempt == 2:
                        raise
        return result, exc_info

    def _open(self):
        if self._channel is None:
            self._connection = self._connect()
            connect_once_per_address(self._connection)  # every broker address once, no waits
            self._channel = self._connection.default_channel
        return self._channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        release_quietly(connection)

    def close(self) -> None:
        with self._lock:
            self._reset()


class ResilientRpcConsumer(RpcConsumer):
    queue_consumer = ControlQueueConsumer()

    def setup(self):
        # TRANSPORT.CONTROL_QUEUE_TYPE "quorum": the RPC queue survives the loss of a minority
        # of a broker cluster's nodes (a classic queue is gone while the node holding it is).
        transport = self.container.config.get(c.TRANSPORT) or {}
        if self.queue is None and transport.get(c.CONTROL_QUEUE_TYPE) == QUORUM:
            service_name = self.container.service_name
            self.queue = Queue(RPC_QUEUE_TEMPLATE.format(service_name), exchange=get_rpc_exchange(self.container.config),
                               routing_key=f"{service_name}.*", durable=True,
                               queue_arguments={"x-queue-type": QUORUM})
            self.queue_consumer.register_provider(self)
            self._registered = True
        super().setup()
        self._replies = _Replies(self.container.config)

    def stop(self):
        # nameko stops this consumer after the running workers are done: no reply comes later.
        super().stop()
        self._replies.close()

    def kill(self):
        super().kill()
        self._replies.close()

    def handle_result(self, message, result, exc_info):
        try:
            result, exc_info = self._replies.send(message, result, exc_info)
        except Exception:  # the broker cannot take the reply now
            log.warning("could not publish the reply to %s; the request stays unacked and is answered "
                        "from its stored result when the broker redelivers it",
                        message.delivery_info.get("routing_key"), exc_info=True)
            self.requeue_message(message)
            return result, exc_info
        self.queue_consumer.ack_message(message)
        return result, exc_info


class ControlRpc(Rpc):
    rpc_consumer = ResilientRpcConsumer()
    _signature: inspect.Signature | None = None

    def check_signature(self, args, kwargs):
        """nameko's check (``inspect.getcallargs`` on every call, about 2% of a single call
        at the node) with the method's signature read once."""
        if self._signature is None:
            self._signature = inspect.signature(getattr(self.container.service_cls, self.method_name))
        try:
            self._signature.bind(None, *args, **kwargs)  # None: the unbound method's self
        except TypeError as exc:
            raise IncorrectSignature(str(exc)) from None

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
