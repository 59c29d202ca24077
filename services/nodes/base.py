"""What every agency node does, whatever its role."""

from __future__ import annotations

import dataclasses
import logging

import eventlet

from schemas.registry import CLOSURE, WITHDRAWAL
from services import bootstrap
from services.domain.exceptions import DomainError
from services.handlers import keyring_updates, queries, receiving, reconciliation, relay, workflows
from services.handlers.context import NodeContext
from services.handlers.requests import Request, Sent
from services.handlers.sending import Call, Refused
from services.protocol.exceptions import ComposeError

from .batching import CallBatching, Publishing
from .dependencies import CallerRequest, Clock, NodeDatabase, NodeProtocol, NodeTransport, ReconcileSettle
from .entrypoints import control_rpc
from .metrics import Metrics

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
    calls = CallBatching()
    publishing = Publishing()
    metrics = Metrics()
    reconcile_settle = ReconcileSettle()

    def context(self) -> NodeContext:
        return bootstrap.node_context(self.protocol, self.store, self.clock, publishes_at_once=True)

    # -- entrypoint bodies (bound to a queue and a timer by the factory) ---------------------
    def handle_envelopes(self, deliveries: list[receiving.Delivery]) -> list[dict | None]:
        """One outcome per delivery, in order; None for one that could not be stored (it is
        requeued). A batch that fails as a whole (one delivery breaks the transaction) is
        taken again one by one, so the others are not failed with it. Keyring updates go
        first: a message signed with a key the same batch brings then verifies."""
        ctx = self.context()
        if any(keyring_updates.is_keyring_update(d) for d in deliveries):
            return self._with_keyring_updates(ctx, deliveries)
        answers: list[dict] = []
        receipt_seconds: list[float] | None = []
        try:
            # Through the call batcher: committed with the calls waiting, if any (one commit).
            outcomes = self.calls.receive(ctx, deliveries).results(answers=answers, receipt_seconds=receipt_seconds)
            batched = True
        except Exception:
            answers, batched, receipt_seconds = [], False, None  # read back from what was committed
            if len(deliveries) == 1:
                log.exception("%s: could not store an incoming message; it will be redelivered", ctx.agency)
                outcomes = [None]
            else:
                log.warning("%s: a batch of %d could not be stored; taking them one by one", ctx.agency,
                            len(deliveries), exc_info=True)
                # One by one, the receipts are committed pending and published from the outbox.
                alone = dataclasses.replace(ctx, publishes_at_once=False)
                outcomes = [self._receive_alone(alone, delivery) for delivery in deliveries]
        stored = [o for o in outcomes if o is not None]
        # The receipts now, not at the next tick: the new ones from memory, the same ones again
        # for duplicates (and after a batch taken one by one) read back.
        self._publish_committed(ctx, answers)
        self.flush_outbox(ctx, receiving.receipts_again(stored) if batched else receiving.receipts_to_publish(stored))
        self.metrics.batch_received(outcomes, receipt_seconds)
        if None in outcomes:
            eventlet.sleep(REQUEUE_PAUSE_SECONDS)  # an outage must not spin through the delivery limit
        return [o.__dict__ if o is not None else None for o in outcomes]

    def _with_keyring_updates(self, ctx: NodeContext, deliveries: list[receiving.Delivery]) -> list[dict | None]:
        updates = [i for i, d in enumerate(deliveries) if keyring_updates.is_keyring_update(d)]
        try:
            taken = keyring_updates.take_keyring_updates(ctx, [deliveries[i] for i in updates])
            results = {i: o.__dict__ for i, o in zip(updates, taken)}
        except Exception:
            log.exception("%s: could not store a keyring update; it will be redelivered", ctx.agency)
            results = {i: None for i in updates}
        rest = [i for i in range(len(deliveries)) if i not in results]
        if rest:
            results.update(zip(rest, self.handle_envelopes([deliveries[i] for i in rest])))
        return [results[i] for i in range(len(deliveries))]

    def _publish_committed(self, ctx: NodeContext, rows: list[dict]):
        """Hand what was just committed to the node's publisher (it publishes at once, while
        the worker goes on): an Event fired once the broker has answered for them."""
        return self.publishing.put(ctx, rows, self._publish_now)

    def _publish_now(self, ctx: NodeContext, rows: list[dict]) -> None:
        transport = self.transport
        try:
            with transport.relay_lock:
                if transport.lease.hold(ctx):
                    # The timer's relay may have taken them meanwhile (it sees what is committed).
                    fresh = [row for row in rows if row["message_id"] not in transport.published]
                    report = relay.publish_committed(ctx, transport.publisher, fresh)
                    transport.published.add(report.published)
                    self.metrics.relay_report(report, {row["message_id"]: row["kind"] for row in fresh})
                else:  # a standby: the process holding the lease publishes them, at its next tick
                    relay.put_back(ctx, rows, retry_at=ctx.clock())
        except Exception:  # committed: the timer's relay publishes it
            log.exception("%s: publishing just after the commit failed; what was not taken goes out again at its receipt timeout (a receipt: when its message comes again)", ctx.agency)

    def _after_commit(self, ctx: NodeContext, sents: list[Sent]):
        return self._publish_committed(ctx, [relay.committed_row(m, needs_receipt=m.envelope["kind"] != "receipt")
                                      for sent in sents for m in sent.messages])

    def _run(self, call: Call) -> dict:
        """One state-changing call, committed with whatever other calls are waiting."""
        [result] = self.calls.submit(self.context(), [call], self._after_commit)
        if isinstance(result, Refused):
            raise result.error
        return result.answer()

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
                    report = relay.relay_due(ctx, transport.publisher, message_ids=message_ids, resends=False)
                else:
                    report = relay.relay_due(ctx, transport.publisher, resends=not transport.backlogged(ctx.agency),
                                             busy=transport.backlogged)
                transport.published.add(report.published)
                self.metrics.relay_report(report)
                return report
        except Exception:  # the timer will try again; the outbox keeps everything
            log.exception("%s: outbox relay failed", ctx.agency)
            return None

    def _run_many(self, calls: list[Call]) -> list[dict]:
        results = self.calls.submit(self.context(), calls, self._after_commit)
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
            call = workflows.follow_up_call(ctx, referral_id, kind, body, [recipient], seal=self._seal(seal),
                                            request=request)
        elif in_reply_to:
            call = workflows.reply_call(ctx, in_reply_to, kind, body, recipients=[recipient],
                                        seal=self._seal(seal), request=request)
        else:
            call = workflows.start_call(kind, recipient, body, seal=self._seal(seal), request=request)
        return self._run(call)

    @control_rpc(expected_exceptions=CALLER_ERRORS)
    def answer(self, message_id, kind, body, seal=None, request_id=None):
        """Answer a message this node holds, to its other party."""
        return self._run(workflows.reply_call(self.context(), message_id, kind, body, seal=self._seal(seal),
                                              request=self._request("answer", request_id)))

    @control_rpc(expected_exceptions=CALLER_ERRORS)
    def close_referral(self, referral_id, recipient, body, seal=None, request_id=None):
        """Close a referral; the body must give the reason (撤销和关闭必须注明原因)."""
        return self._run(workflows.follow_up_call(self.context(), referral_id, CLOSURE, body, [recipient],
                                                  seal=self._seal(seal),
                                                  request=self._request("close_referral", request_id)))

    @control_rpc(expected_exceptions=CALLER_ERRORS)
    def withdraw(self, referral_id, recipient, body, seal=None, request_id=None):
        """Withdraw what this node sent; the body must give the reason."""
        return self._run(workflows.follow_up_call(self.context(), referral_id, WITHDRAWAL, body, [recipient],
                                                  seal=self._seal(seal),
                                                  request=self._request("withdraw", request_id)))

    # -- reconciliation (docs/protocol.md §20) -------------------------------------------------
    @control_rpc(expected_exceptions=CALLER_ERRORS)
    def reconcile(self, peer, request_id=None):
        """Send ``peer`` a reconciliation summary now; the answer is acted on when it arrives
        (``reconciliation_round`` shows it). Returns the summary's window, count and hash."""
        ctx = self.context()
        sent = reconciliation.send_summary(ctx, peer, settle=self.reconcile_settle,
                                           request=self._request("reconcile", request_id))
        if sent.signed is not None:
            self._publish_committed(ctx, [relay.committed_row(sent.signed, needs_receipt=True)])
        return sent.result

    @control_rpc
    def reconciliation_round(self, summary_message_id):
        """A reconciliation this node started: its summary and, once answered, what was found."""
        return reconciliation.round_of(self.context(), summary_message_id)

    def reconcile_periodically(self) -> None:
        """The timer's round (RECONCILE.INTERVAL_SECONDS): every agency this node has sent to."""
        ctx = self.context()
        try:
            sents = reconciliation.send_summaries(ctx, settle=self.reconcile_settle)
        except Exception:  # the next round tries again; nothing was half-done (one transaction each)
            log.exception("%s: periodic reconciliation failed", ctx.agency)
            return
        self._publish_committed(ctx, [relay.committed_row(s.signed, needs_receipt=True) for s in sents if s.signed])

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
