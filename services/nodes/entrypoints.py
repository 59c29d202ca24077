"""A Nameko consumer that hands the handler the envelope's exact bytes."""

from __future__ import annotations

from nameko.messaging import Consumer


class EnvelopeConsumer(Consumer):
    """Like ``nameko.messaging.consume``, but the worker gets ``message.body`` verbatim:
    the receipt is bound to the SHA-256 of exactly those bytes, and they are stored as is.
    The message is acked only after the worker returns (after the database commit); when
    the worker raises, it is requeued, and the queue's delivery limit dead-letters a message
    that keeps failing into the agency's quarantine queue."""

    def handle_message(self, body, message):
        super().handle_message(message.body, message)


consume_envelopes = EnvelopeConsumer.decorator
