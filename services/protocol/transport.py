"""What the transport tells a receiver about a delivery (docs/protocol.md §19), and the
checks made on it before the envelope is trusted."""

from __future__ import annotations

from dataclasses import dataclass

# The one content type of an envelope on the bus; the body is the envelope's bytes.
CONTENT_TYPE = "application/vnd.cluebus.v1+json"
CONTENT_ENCODING = "binary"


@dataclass(frozen=True)
class TransportFacts:
    """``content_type`` as delivered, and ``publisher``: the agency whose bus account
    published the message (from the broker-checked AMQP ``user_id``), or None when the
    ``user_id`` is missing or names no agency's bus account."""

    content_type: str | None
    publisher: str | None
    user_id: str | None = None
