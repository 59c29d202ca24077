"""What every agency node does, whatever its role."""

from __future__ import annotations

import logging

import eventlet
from nameko.rpc import rpc

from schemas.registry import CLOSURE, WITHDRAWAL
from services.domain.exceptions import DomainError
from services.handlers import queries, receiving, relay, workflows
from services.handlers.context import NodeContext
from services.protocol.compose import SignedMessage
from services.protocol.exceptions import ComposeError

from .dependencies import Clock, NodeDatabase, NodeProtocol, NodeTransport

log = logging.getLogger(__name__)

# A worker that could not store a message waits this long before it is requeued, so a
# database outage does not spin through the queue's delivery limit in a moment.
REQUEUE_PAUSE_SECONDS = 2.0

# Errors an RPC caller may expect; Nameko passes them back as RemoteError with this type name.
CALLER_ERRORS = (DomainError, ComposeError)


def sent_summary(messages: list[SignedMessage]) -> dict:
    return {
        "referral_id": messages[0].envelope["referral_id"] if messages else None,
        "messages": [{"message_id": m.message_id, "kind": m.envelope["kind"],
                      "recipient": m.envelope["recipient"], "sha256": m.sha256} for m in messages],
    }


class AgencyNode:
    """Shared behaviour. Concrete services are built per agency by ``services.nodes.factory``."""

    store = NodeDatabase()
    protocol = NodeProtocol()
    transport = NodeTransport()
    clock = Clock()

    def context(self) -> NodeContext:
        p = self.protocol
        return NodeContext(p.agency, self.store, p.composer, p.verifier, self.clock, p.policy)

    # -- entrypoint bodies (bound to a queue and a timer by the factory) ---------------------
    def handle_envelope(self, raw: bytes) -> dict:
        ctx = self.context()
        try:
            outcome = receiving.receive(ctx, raw)
        except Exception:
            log.exception("%s: could not store an incoming message; it will be redelivered", ctx.agency)
            eventlet.sleep(REQUEUE_PAUSE_SECONDS)
            raise
        self.flush_outbox(ctx)  # send the receipt now rather than at the next tick
        return outcome.__dict__

    def flush_outbox(self, ctx: NodeContext | None = None) -> relay.RelayReport | None:
        ctx = ctx or self.context()
        try:
            with self.transport.relay_lock:
                return relay.relay_due(ctx, self.transport.publish)
        except Exception:  # the timer will try again; the outbox keeps everything
            log.exception("%s: outbox relay failed", ctx.agency)
            return None

    def _sent(self, messages: list[SignedMessage]) -> dict:
        self.flush_outbox()
        return sent_summary(messages)

    def _seal(self, seal: bool | None) -> bool:
        return self.protocol.seal_by_default if seal is None else bool(seal)

    # -- generic actions ------------------------------------------------------------------------
    @rpc(expected_exceptions=CALLER_ERRORS)
    def send(self, kind, recipient, body, referral_id=None, in_reply_to=None, seal=None):
        """Send any kind the route table allows (the lifecycle still applies)."""
        ctx = self.context()
        if referral_id and in_reply_to is None:
            messages = workflows.follow_up(ctx, referral_id, kind, body, [recipient], seal=self._seal(seal))
        elif in_reply_to:
            messages = workflows.reply(ctx, in_reply_to, kind, body, recipients=[recipient], seal=self._seal(seal))
        else:
            messages = workflows.start(ctx, kind, recipient, body, seal=self._seal(seal))
        return self._sent(messages)

    @rpc(expected_exceptions=CALLER_ERRORS)
    def answer(self, message_id, kind, body, seal=None):
        """Answer a message this node holds, to its other party."""
        return self._sent(workflows.reply(self.context(), message_id, kind, body, seal=self._seal(seal)))

    @rpc(expected_exceptions=CALLER_ERRORS)
    def close_referral(self, referral_id, recipient, body, seal=None):
        """Close a referral; the body must give the reason (撤销和关闭必须注明原因)."""
        return self._sent(workflows.follow_up(self.context(), referral_id, CLOSURE, body, [recipient],
                                              seal=self._seal(seal)))

    @rpc(expected_exceptions=CALLER_ERRORS)
    def withdraw(self, referral_id, recipient, body, seal=None):
        """Withdraw what this node sent; the body must give the reason."""
        return self._sent(workflows.follow_up(self.context(), referral_id, WITHDRAWAL, body, [recipient],
                                              seal=self._seal(seal)))

    # -- views ----------------------------------------------------------------------------------
    @rpc
    def inbox(self, kind=None, status=None, limit=50):
        return queries.inbox(self.context(), kind=kind, status=status, limit=limit)

    @rpc
    def outbox(self, states=None):
        return queries.outbox(self.context(), states)

    @rpc
    def quarantine(self, limit=50):
        return queries.quarantined(self.context(), limit)

    @rpc
    def referral(self, referral_id):
        return queries.referral(self.context(), referral_id)

    @rpc
    def trace(self, referral_id):
        return queries.trace(self.context(), referral_id)

    @rpc
    def audit_chain(self):
        return queries.audit_chain(self.context())

    @rpc
    def relay_now(self):
        report = self.flush_outbox()
        return report.__dict__ if report else None
