"""The broker topology: what `cluebus broker setup` provisions (services/provisioning.py) and
what a node checks with passive declares at start-up (check_provisioned); nodes declare
nothing on the bus.

- one durable topic exchange; routing key ``<recipient>.<kind>``;
- one durable queue per agency, bound to ``<agency>.*`` (quorum where supported; an
  observer's queue, such as the joint office's, is bound to every agency's key), whose
  messages that keep failing (``x-delivery-limit``) are dead-lettered;
- a dead-letter exchange with one quarantine queue per agency, bound to the name of the
  queue its dead letters come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from amqp.exceptions import AccessRefused, NotAllowed, NotFound
from kombu import Connection, Exchange, Queue, binding

from .uris import without_credentials

QUORUM = "quorum"
CLASSIC = "classic"


@dataclass(frozen=True)
class Topology:
    agencies: tuple[str, ...]
    exchange_name: str = "cluebus"
    dead_letter_exchange_name: str = "cluebus.dlx"
    queue_type: str = QUORUM
    delivery_limit: int = 20
    # Observers get every agency's traffic (and what is addressed to them), key by key.
    observers: tuple[str, ...] = ()
    # Replicas of each quorum queue when it is made (None: the broker's default).
    quorum_group_size: int | None = None

    @property
    def exchange(self) -> Exchange:
        return Exchange(self.exchange_name, type="topic", durable=True)

    @property
    def dead_letter_exchange(self) -> Exchange:
        return Exchange(self.dead_letter_exchange_name, type="topic", durable=True)

    def queue_name(self, agency: str) -> str:
        return f"{self.exchange_name}.{agency}"

    def quarantine_queue_name(self, agency: str) -> str:
        return f"{self.exchange_name}.{agency}.quarantine"

    def binding_key(self, agency: str) -> str:
        return f"{agency}.*"

    def binding_keys(self, agency: str) -> list[str]:
        """An observer is bound to every configured agency's traffic, key by key (not "#"),
        so that a message for an agency nobody configured stays unroutable."""
        if agency in self.observers:
            return [self.binding_key(a) for a in self.agencies]
        return [self.binding_key(agency)]

    def _type_arguments(self) -> dict:
        if self.queue_type != QUORUM:
            return {}
        if self.quorum_group_size:
            return {"x-queue-type": QUORUM, "x-quorum-initial-group-size": int(self.quorum_group_size)}
        return {"x-queue-type": QUORUM}

    def queue(self, agency: str) -> Queue:
        # Dead letters are keyed by the queue they left, so each lands in its own agency's
        # quarantine queue (an observer's queue carries other agencies' routing keys).
        arguments = {"x-dead-letter-exchange": self.dead_letter_exchange_name,
                     "x-dead-letter-routing-key": self.queue_name(agency), **self._type_arguments()}
        if self.queue_type == QUORUM:
            arguments["x-delivery-limit"] = self.delivery_limit
        return Queue(self.queue_name(agency), durable=True, queue_arguments=arguments,
                     bindings=[binding(self.exchange, routing_key=key) for key in self.binding_keys(agency)])

    def quarantine_queue(self, agency: str) -> Queue:
        return Queue(self.quarantine_queue_name(agency), exchange=self.dead_letter_exchange,
                     routing_key=self.queue_name(agency), durable=True,
                     queue_arguments=self._type_arguments())

    def entities(self, agencies: Iterable[str] | None = None) -> list:
        entities: list = [self.exchange, self.dead_letter_exchange]
        for agency in agencies or self.agencies:
            entities += [self.queue(agency), self.quarantine_queue(agency)]
        return entities

    def declare(self, connection: Connection) -> None:
        """Declare exchanges, queues and bindings for every agency (idempotent)."""
        channel = connection.channel()
        try:
            for entity in self.entities():
                entity(channel).declare()
        finally:
            channel.close()

    def delete(self, connection: Connection) -> None:
        """Delete every queue and exchange of this topology (a demo's or a test's own)."""
        channel = connection.channel()
        try:
            for agency in self.agencies:
                channel.queue_delete(self.queue_name(agency))
                channel.queue_delete(self.quarantine_queue_name(agency))
            channel.exchange_delete(self.exchange_name)
            channel.exchange_delete(self.dead_letter_exchange_name)
        finally:
            channel.close()


class BusNotReady(Exception):
    """The bus cannot be used as configured: one line saying why and what to do.

    ``transient``: the broker could not be reached at all (down, restarting, or a wrong
    address or port: from here they look the same), so trying again later may succeed; a
    refused account, a missing virtual host or an unprovisioned bus are configuration, which
    waiting does not fix."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def check_provisioned(amqp_uri: str, topology: Topology, agency: str, *, timeout: float = 10.0) -> None:
    """Connect with ``agency``'s bus account and check, passively, that the exchange and the
    agency's queues exist (an agency may declare nothing). Raise BusNotReady otherwise."""
    where = without_credentials(amqp_uri)
    connection = Connection(amqp_uri, connect_timeout=timeout)
    try:
        _connect(connection, where, f"{agency}'s bus account", "the bus", "BROKER.BUS_URI", timeout)
        channel = connection.channel()
        for name, check in ((f"exchange {topology.exchange_name}",
                             lambda: channel.exchange_declare(topology.exchange_name, "topic", passive=True)),
                            (f"queue {topology.queue_name(agency)}",
                             lambda: channel.queue_declare(topology.queue_name(agency), passive=True))):
            try:
                check()
            except (NotFound, AccessRefused) as exc:
                raise BusNotReady(f"the bus at {where} has no {name} for {agency} ({exc.reply_text if hasattr(exc, 'reply_text') else exc}); "
                                  f"the bus operator provisions it with `cluebus broker setup`") from None
    finally:
        connection.release()


def check_control_plane(amqp_uri: str, agency: str, *, timeout: float = 10.0) -> None:
    """Connect with ``agency``'s control account to its control plane (its own virtual host,
    Nameko's RPC and timers). Raise BusNotReady, in one line, if it cannot."""
    where = without_credentials(amqp_uri)
    connection = Connection(amqp_uri, connect_timeout=timeout)
    try:
        _connect(connection, where, f"{agency}'s control account", "the control plane", "BROKER.CONTROL_URI",
                 timeout)
    finally:
        connection.release()


def connect_once_per_address(connection: Connection, *, timeout: float | None = None) -> None:
    """Connect, trying each address of ``connection`` (a failover list) once, one after the
    other. kombu's retries would, after the last, sleep 2 s and try the first again; every
    caller here tries again later by itself (the relay, the runner, the operator)."""
    connection.ensure_connection(max_retries=max(len(connection.alt), 1) - 1, timeout=timeout)


def release_quietly(connection: Connection | None) -> None:
    """Let go of a connection that may be broken already (a publisher's after a failure, or
    at close): nothing of it is kept, and its errors are not the caller's."""
    if connection is not None:
        try:
            connection.release()
        except Exception:  # already broken; nothing to keep
            pass


def _connect(connection: Connection, where: str, account: str, what: str, setting: str, timeout: float) -> None:
    try:
        connect_once_per_address(connection, timeout=timeout)
    except AccessRefused:
        raise BusNotReady(f"the broker refused {account} at {where} (wrong password, "
                          f"or the account does not exist: the bus operator runs `cluebus broker setup`)") from None
    except NotAllowed:
        raise BusNotReady(f"{account} may not open the virtual host of {where} (it does "
                          f"not exist, or the account has no permission there: `cluebus broker setup`)") from None
    except Exception as exc:
        raise BusNotReady(f"cannot reach {what} at {where} ({exc.__class__.__name__}: {exc}); start "
                          f"RabbitMQ (`rabbitmq-server -detached`) or check {setting}",
                          transient=True) from None
