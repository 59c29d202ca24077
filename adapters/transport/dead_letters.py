"""What the broker dead-lettered into an agency's quarantine queue (deliveries its node
could not store within the queue's delivery limit): read them with the agency's own bus
account, and replay them through the node's ordinary receiving path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kombu import Connection


@dataclass(frozen=True)
class DeadLetter:
    body: bytes
    content_type: str | None
    user_id: str | None
    routing_key: str | None
    reason: str | None          # from the x-death header: delivery_limit, rejected, expired, ...
    from_queue: str | None
    count: int

    @classmethod
    def of(cls, message) -> "DeadLetter":
        properties = message.properties or {}
        headers = properties.get("application_headers") or {}
        deaths = headers.get("x-death") or [{}]
        death = deaths[0] if isinstance(deaths, list) and deaths else {}
        body = message.body
        if isinstance(body, str):  # py-amqp gives "" for an empty body
            body = body.encode("utf-8", "surrogateescape")
        return cls(bytes(body), properties.get("content_type"), properties.get("user_id"),
                   (message.delivery_info or {}).get("routing_key"),
                   _text(death.get("reason")), _text(death.get("queue")), int(death.get("count") or 1))


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def peek(amqp_uri: str, queue: str, limit: int = 100) -> list[DeadLetter]:
    """Up to ``limit`` dead letters, left in the queue (not acked: they return when the
    channel closes)."""
    found = []
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        try:
            while len(found) < limit:
                message = channel.basic_get(queue=queue, no_ack=False)
                if message is None:
                    break
                found.append(DeadLetter.of(message))
        finally:
            channel.close()
    return found


def replay(amqp_uri: str, queue: str, handle: Callable[[DeadLetter], object], limit: int | None = None) -> list:
    """Take dead letters one by one, hand each to ``handle`` and ack it only after ``handle``
    returned (after its commit). Stops at the first one ``handle`` fails on (left queued)."""
    results = []
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        try:
            while limit is None or len(results) < limit:
                message = channel.basic_get(queue=queue, no_ack=False)
                if message is None:
                    break
                try:
                    results.append(handle(DeadLetter.of(message)))
                except BaseException:
                    channel.basic_reject(message.delivery_tag, requeue=True)
                    raise
                channel.basic_ack(message.delivery_tag)
        finally:
            channel.close()
    return results
