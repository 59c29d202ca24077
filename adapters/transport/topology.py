"""The broker topology, declared explicitly at start-up.

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

from kombu import Connection, Exchange, Queue, binding

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
        return {"x-queue-type": QUORUM} if self.queue_type == QUORUM else {}

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
