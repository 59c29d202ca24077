"""What every agency node does, whatever its role."""

from __future__ import annotations

import logging

import eventlet

from schemas.registry import CLOSURE, WITHDRAWAL
from services.domain.exceptions import DomainError
from services.handlers import queries, receiving, relay, workflows
from services.handlers.context import NodeContext
from services.handlers.requests import Request, Sent
from services.protocol.exceptions import ComposeError

from .dependencies import CallerRequest, Clock, NodeDatabase, NodeProtocol, NodeTransport
from .entrypoints import control_rpc

log = logging.getLogger(__name__)

# A worker that could not store a message waits this long before it is requeued, so a
# database outage does not spin through the queue's delivery limit in a moment.
REQUEUE_PAUSE_SECONDS = 2.0

# Errors an RPC caller may expect; Nameko passes them back as RemoteError with this type name.
CALLER_ERRORS = (DomainError, ComposeError)


class AgencyNode:
    """Shared behaviour. Concrete services are built per agency by ``services.nodes.factory``."""

    store = NodeDatabase()
    protocol = NodeProtocol()
    transport = NodeTransport()
    clock = Clock()
    call = CallerRequest()

    def context(self) -> NodeContext:
        p = self.protocol
        return NodeContext(p.agency, self.store, p.composer, p.verifier, self.clock, p.policy, p.seal_by_default)

    # -- entrypoint bodies (bound to a queue and a timer by the factory) ---------------------
    def handle_envelopes(self, deliveries: list[receiving.Delivery]) -> list[dict | None]:
        """One outcome per delivery, in order; None for one that could not be stored (it is
        requeued). A batch that fails as a whole (one delivery breaks the transaction) is
        taken again one by one, so the others are not failed with it."""
        ctx = self.context()
        try:
            outcomes = receiving.receive_batch(ctx, deliveries)
        except Exception:
            if len(deliveries) == 1:
                log.exception("%s: could not store an incoming message; it will be redelivered", ctx.agency)
                outcomes = [None]
            else:
                log.warning("%s: a batch of %d could not be stored; taking them one by one", ctx.agency,
                            len(deliveries), exc_info=True)
                outcomes = [self._receive_alone(ctx, delivery) for delivery in deliveries]
        if None in outcomes:
            eventlet.sleep(REQUEUE_PAUSE_SECONDS)  # an outage must not spin through the delivery limit
        stored = [o for o in outcomes if o is not None]
        self.flush_outbox(ctx, receiving.receipts_to_publish(stored))  # the receipts now, not at the next tick
        return [o.__dict__ if o is not None else None for o in outcomes]

    @staticmethod
    def _receive_alone(ctx: NodeContext, delivery: receiving.Delivery):
        try:
            return receiving.receive(ctx, delivery)
        except Exception:
            log.exception("%s: could not store an incoming message; it will be redelivered", ctx.agency)
            return None

    def flush_outbox(self, ctx: NodeContext | None = None,
                     message_ids: list[str] | None = None) -> relay.RelayReport | None:
        """Publish what is due (``message_ids``: just those, as soon as they are committed),
        when this process holds the node's relay lease."""
        ctx = ctx or self.context()
        if message_ids is not None and not message_ids:
            return None
        transport = self.transport
        try:
            with transport.relay_lock:
                if not transport.lease.hold(ctx):
                    return None  # a standby: the process holding the lease publishes
                if message_ids is not None:
                    return relay.relay_due(ctx, transport.publisher, message_ids=message_ids, resends=False)
                return relay.relay_due(ctx, transport.publisher, resends=not transport.backlogged(ctx.agency),
                                       busy=transport.backlogged)
        except Exception:  # the timer will try again; the outbox keeps everything
            log.exception("%s: outbox relay failed", ctx.agency)
            return None

    def _sent(self, sent: Sent) -> dict:
        if sent.messages:
            self.flush_outbox(message_ids=[m.message_id for m in sent.messages])
        return sent.answer()

    def _sent_many(self, results) -> list[dict]:
        ids = [m.message_id for r in results if isinstance(r, Sent) for m in r.messages]
        if ids:
            self.flush_outbox(message_ids=ids)
        return [r.answer() if isinstance(r, Sent) else {"refused": True, "rule": r.rule, "detail": r.detail}
                for r in results]

    def _request(self, action: str, request_id: str | None) -> Request | None:
        """The call's request id: the caller's, else the RPC's correlation id (kept when the
        broker redelivers the request)."""
        chosen = request_id or self.call
        return Request(str(chosen), action) if chosen else None

    def _seal(self, seal: bool | None) -> bool:
        return self.protocol.seal_by_default if seal is None else bool(seal)

    # -- generic actions ------------------------------------------------------------------------
    @control_rpc(expected_exceptions=CALLER_ERRORS)
    def send(self, kind, recipient, body, referral_id=None, in_reply_to=None, seal=None, request_id=None):
        """Send any kind the route table allows (the lifecycle still applies)."""
        ctx = self.context()
        request = self._request("send", request_id)
        if referral_id and in_reply_to is None:
            sent = workflows.follow_up(ctx, referral_id, kind, body, [recipient], seal=self._seal(seal),
                                       request=request)
        elif in_reply_to:
            sent = workflows.reply(ctx, in_reply_to, kind, body, recipients=[recipient], seal=self._seal(seal),
                                   request=request)
        else:
            sent = workflows.start(ctx, kind, recipient, body, seal=self._seal(seal), request=request)
        return self._sent(sent)

    @control_rpc(expected_exceptions=CALLER_ERRORS)
    def answer(self, message_id, kind, body, seal=None, request_id=None):
        """Answer a message this node holds, to its other party."""
        return self._sent(workflows.reply(self.context(), message_id, kind, body, seal=self._seal(seal),
                                          request=self._request("answer", request_id)))

    @control_rpc(expected_exceptions=CALLER_ERRORS)
    def close_referral(self, referral_id, recipient, body, seal=None, request_id=None):
        """Close a referral; the body must give the reason (撤销和关闭必须注明原因)."""
        return self._sent(workflows.follow_up(self.context(), referral_id, CLOSURE, body, [recipient],
                                              seal=self._seal(seal),
                                              request=self._request("close_referral", request_id)))

    @control_rpc(expected_exceptions=CALLER_ERRORS)
    def withdraw(self, referral_id, recipient, body, seal=None, request_id=None):
        """Withdraw what this node sent; the body must give the reason."""
        return self._sent(workflows.follow_up(self.context(), referral_id, WITHDRAWAL, body, [recipient],
                                              seal=self._seal(seal),
                                              request=self._request("withdraw", request_id)))

    # -- views ----------------------------------------------------------------------------------
    @control_rpc
    def inbox(self, kind=None, status=None, limit=50):
        return queries.inbox(self.context(), kind=kind, status=status, limit=limit)

    @control_rpc
    def outbox(self, states=None):
        return queries.outbox(self.context(), states)

    @control_rpc
    def quarantine(self, limit=50):
        return queries.quarantined(self.context(), limit)

    @control_rpc
    def referral(self, referral_id):
        return queries.referral(self.context(), referral_id)

    @control_rpc
    def trace(self, referral_id):
        return queries.trace(self.context(), referral_id)

    @control_rpc
    def audit_chain(self):
        return queries.audit_chain(self.context())

    @control_rpc
    def relay_now(self):
        report = self.flush_outbox()
        return report.__dict__ if report else None
