"""A Nameko consumer that hands the handler the envelope's exact bytes."""

from __future__ import annotations

import logging

from nameko.messaging import Consumer, QueueConsumer

log = logging.getLogger(__name__)


class QuarantiningQueueConsumer(QueueConsumer):
    """kombu acks a message it cannot decode (an unaccepted content type) and only logs it;
    we reject it instead, so the queue dead-letters it into the agency's quarantine queue."""

    def on_decode_error(self, message, exc):
        log.error("cannot decode a message (%s: %s); moved to the quarantine queue",
                  message.content_type, exc)
        message.reject(requeue=False)


class EnvelopeConsumer(Consumer):
    """Like ``nameko.messaging.consume``, but the worker gets ``message.body`` verbatim:
    the receipt is bound to the SHA-256 of exactly those bytes, and they are stored as is.
    The message is acked only after the worker returns (after the database commit); when
    the worker raises, it is requeued, and the queue's delivery limit dead-letters a message
    that keeps failing into the agency's quarantine queue."""

    queue_consumer = QuarantiningQueueConsumer()

    def handle_message(self, body, message):
        super().handle_message(message.body, message)


consume_envelopes = EnvelopeConsumer.decorator
