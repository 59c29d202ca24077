"""An in-process bus for unit tests: several agencies' nodes, no broker.

Each agency's node is wired exactly as a running node wires it (``services.bootstrap``): its
own SQLite file under the configuration's ``DATA_DIR``, its real Ed25519/X25519 keys from
``KEYS_DIR`` (made by ``initialise_key_directory``), and one clock shared by every node (a
``tests.fixtures.keys.FakeClock``). Nodes are opened on first use, so a test pays only for
the agencies it touches.

What travels between them is what travels on RabbitMQ (docs/protocol.md section 19): each
agency has a :class:`QueuePublisher` (the relay's port, ``publish_many``) that appends the
exact wire bytes to in-memory queues chosen by the routing key ``<recipient>.<kind>`` the way
the broker's bindings choose them (``settings.topology``: an agency's queue is bound to
``<agency>.*``; an observer's queue, the joint office's, to every agency's key), as a
``receiving.Delivery`` carrying the content type and the ``user_id`` of the publishing
agency's bus account. A routing key no queue is bound to is refused as unroutable.

The bus decides nothing itself: it calls the handlers the Nameko nodes call, in the order they
call them.

- ``send`` runs a workflow call (``workflows.run``) and then, like ``AgencyNode._after_commit``,
  publishes what it committed (``relay.publish_committed``);
- ``deliver`` takes an agency's queue and does what ``AgencyNode.handle_envelopes`` does:
  ``receiving.receive_batch(ctx, deliveries, answers=...)``, then the new receipts are
  published (``relay.publish_committed``) and the receipts answered again for duplicates go out
  through ``relay.relay_due(message_ids=..., resends=False)``. For the office (``office=True``)
  it does what ``JointOfficeBase.handle_traffic`` does: ``office.handlers.observe`` per
  delivery, then the relay when a receipt was recorded;
- ``relay`` is the node's timer (``AgencyNode.flush_outbox``): ``relay.relay_due`` with resends
  held while the agency's own queue still holds messages.

With ``publishes_at_once=False`` the nodes are wired as the command line wires them
(``bootstrap.offline_context``): what they commit stays pending until ``relay`` (and
``deliver`` publishes its receipts with ``relay_due``, as nothing was handed over).

``inject`` puts hand-made bytes (or any value) in a queue; ``mark``/``since`` report what
changed in every database, and what was published, between two moments.
"""

from __future__ import annotations

import copy
import functools
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import select

from adapters.crypto.keys import KeyDirectory, initialise_key_directory
from adapters.crypto.signing import Signer
from adapters.storage import tables as t
from adapters.storage.office_tables import ObservedMessageRow, StepRow
from adapters.storage.store import Store
from schemas.registry import RECEIPT
from services import bootstrap, settings
from services import config as c
from services.config import load_config
from services.handlers import receiving, relay, workflows
from services.handlers.context import NodeContext
from services.handlers.relay import PublishFailed, RelayReport
from services.handlers.requests import Sent
from services.handlers.sending import Call
from services.office import handlers as office_handlers
from services.office.handlers import OfficeContext
from services.protocol import rules
from services.protocol.compose import SignedMessage
from services.protocol.transport import CONTENT_TYPE
from services.protocol.verify import VerifiedMessage

# The tables a node's database holds, each with the column that identifies a row.
NODE_TABLES: dict[str, tuple[Any, str]] = {
    "messages": (t.Message.__table__, "message_id"),
    "outbox": (t.OutboxEntry.__table__, "message_id"),
    "inbox": (t.InboxEntry.__table__, "message_id"),
    "quarantine": (t.QuarantineEntry.__table__, "id"),
    "referrals": (t.Referral.__table__, "referral_id"),
    "audit_log": (t.AuditEntry.__table__, "seq"),
    "control_requests": (t.ControlRequest.__table__, "request_id"),
    "reconciliations": (t.Reconciliation.__table__, "summary_message_id"),
}
OFFICE_TABLES: dict[str, tuple[Any, str]] = {
    "observed_messages": (ObservedMessageRow.__table__, "message_id"),
    "deadline_steps": (StepRow.__table__, "step_id"),
}


@functools.lru_cache(maxsize=1)
def _shipped_config() -> dict:
    return load_config(environ={})


def make_config(base: Path, *, extra_key_agencies: Iterable[str] = (), now=None,
                validity: timedelta = timedelta(days=365)) -> tuple[dict, KeyDirectory]:
    """A configuration whose data and keys live under ``base``, and its key directory: keys
    for every configured agency, plus ``extra_key_agencies`` (agencies the keyring knows but
    the configuration does not, to sign messages from an unknown agency)."""
    from tests.fixtures.keys import FIXED_NOW

    config = copy.deepcopy(_shipped_config())
    # What load_config(environ={"CLUEBUS_DATA_DIR": ..., "CLUEBUS_KEYS_DIR": ...}) gives.
    config[c.DATA_DIR], config[c.KEYS_DIR] = str(base / "data"), str(base / "keys")
    agencies = list(c.agency_codes(config)) + [a for a in extra_key_agencies if a not in c.agency_codes(config)]
    directory, _ = initialise_key_directory(base / "keys", agencies, validity=validity,
                                            now=(now or FIXED_NOW) - timedelta(days=1))
    return config, directory


@dataclass(frozen=True)
class Published:
    """One message the broker took: who published it, under which key, into which queues."""

    publisher: str
    routing_key: str
    raw: bytes
    queues: tuple[str, ...]

    @property
    def recipient(self) -> str:
        return self.routing_key.split(".", 1)[0]

    @property
    def kind(self) -> str:
        return self.routing_key.split(".", 1)[1]


class QueuePublisher:
    """One agency's publisher: ``publish_many(items) -> {message_id: PublishFailed}`` as the
    relay expects (relay._as_many). ``refusing`` set makes it refuse everything, as a broker
    that is down would (nothing is queued)."""

    def __init__(self, bus: "InProcessBus", agency: str):
        self.bus = bus
        self.agency = agency
        self.user_id = bus.names.bus_user(agency)
        self.refusing: str | None = None

    def publish_many(self, items: list[tuple[str, bytes, str]]) -> dict[str, PublishFailed]:
        failures: dict[str, PublishFailed] = {}
        for message_id, raw, routing_key in items:
            if self.refusing:
                failures[message_id] = PublishFailed(rules.TRANSPORT_UNAVAILABLE, self.refusing)
                continue
            queues = self.bus.route(routing_key)
            if not queues:
                failures[message_id] = PublishFailed(rules.TRANSPORT_UNROUTABLE,
                                                     f"no queue is bound to {routing_key}")
                continue
            for queue in queues:
                self.bus.queues[queue].append(receiving.Delivery(raw=raw, content_type=CONTENT_TYPE,
                                                                 user_id=self.user_id, publisher=self.agency))
            self.bus.published.append(Published(self.agency, routing_key, raw, queues))
        return failures


@dataclass
class Node:
    agency: str
    ctx: NodeContext
    store: Store
    publisher: QueuePublisher
    office: OfficeContext | None = None   # the joint office's context, for the observer

    @property
    def tables(self) -> dict[str, tuple[Any, str]]:
        return {**NODE_TABLES, **(OFFICE_TABLES if self.office is not None else {})}


@dataclass(frozen=True)
class Diff:
    """What changed in one table: rows added, rows changed (before, after), rows removed."""

    added: list[dict] = field(default_factory=list)
    changed: list[tuple[dict, dict]] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


@dataclass(frozen=True)
class Mark:
    tables: dict[str, dict[str, dict[Any, dict]]]
    published: int


@dataclass(frozen=True)
class Changes:
    """What changed since a mark: ``db[agency][table]`` (only tables that changed) and what
    was published meanwhile, in order."""

    db: dict[str, dict[str, Diff]]
    published: list[Published]

    def tables(self, agency: str) -> set[str]:
        return set(self.db.get(agency, {}))

    def added(self, agency: str, table: str) -> list[dict]:
        diff = self.db.get(agency, {}).get(table)
        return diff.added if diff else []

    def changed(self, agency: str, table: str) -> list[tuple[dict, dict]]:
        diff = self.db.get(agency, {}).get(table)
        return diff.changed if diff else []

    def events(self, agency: str) -> list[str]:
        """The audit events appended meanwhile, in order."""
        return [row["event"] for row in sorted(self.added(agency, "audit_log"), key=lambda r: r["seq"])]


class InProcessBus:
    def __init__(self, config: Mapping, clock: Callable, *, office: bool = False,
                 publishes_at_once: bool = True):
        self.config = config
        self.clock = clock
        self.publishes_at_once = publishes_at_once
        self.topology = settings.topology(config)
        self.names = settings.broker_names(config)
        self.observers = set(c.observer_codes(config))
        self.with_office = office
        self.queues: dict[str, deque] = {agency: deque() for agency in self.topology.agencies}
        self.published: list[Published] = []
        self._nodes: dict[str, Node] = {}
        self._copy_targets: dict[str, str | None] = {}  # ROLES_FILE, read once per agency

    # -- the nodes ----------------------------------------------------------------------------------
    def node(self, agency: str) -> Node:
        """``agency``'s node, opened on first use."""
        node = self._nodes.get(agency)
        if node is None:
            node = self._nodes[agency] = self._open(agency)
        return node

    def ctx(self, agency: str) -> NodeContext:
        return self.node(agency).ctx

    @property
    def opened(self) -> list[str]:
        """The agencies whose node has been opened, in order."""
        return list(self._nodes)

    @property
    def key_directory(self) -> KeyDirectory:
        return settings.key_directory(self.config)

    def _open(self, agency: str) -> Node:
        if agency not in self.queues:
            raise KeyError(f"{agency} is not a configured agency")
        if agency in self.observers and not self.with_office:
            raise KeyError(f"{agency} is the observer: make the bus with office=True")
        store = bootstrap.open_store(self.config, agency)
        publisher = QueuePublisher(self, agency)
        if agency in self.observers:
            # The office service's wiring (JointOfficeBase.context): it leaves publishing to the relay.
            parts = bootstrap.node_parts(self.config, agency, clock=self.clock)
            office = bootstrap.office_context_for(bootstrap.node_context(parts, store, self.clock),
                                                  bootstrap.office_rules(self.config),
                                                  bootstrap.node_agencies(self.config))
            return Node(agency, office.node, store, publisher, office)
        if self.publishes_at_once:
            # The running node's wiring (AgencyNode.context).
            parts = bootstrap.node_parts(self.config, agency, clock=self.clock)
            ctx = bootstrap.node_context(parts, store, self.clock, publishes_at_once=True)
        else:
            # The command line's wiring.
            ctx = bootstrap.offline_context(self.config, agency, clock=self.clock, store=store)
        return Node(agency, ctx, store, publisher)

    def close(self) -> None:
        for node in self._nodes.values():
            node.store.dispose()
        self._nodes.clear()

    # -- routing -------------------------------------------------------------------------------------
    def route(self, routing_key: str) -> tuple[str, ...]:
        """The queues the bus's bindings give ``routing_key`` (each queue once)."""
        return tuple(agency for agency in self.topology.agencies
                     if any(_topic_match(key, routing_key) for key in self.topology.binding_keys(agency)))

    # -- traffic ---------------------------------------------------------------------------------------
    def send(self, agency: str, call: Call, *, publish: bool = True) -> Sent:
        """Run a workflow call as ``agency`` (``workflows.*_call``); then, as a running node does,
        publish what it committed. ``publish=False``: the node stops between the commit and
        the publication (what it committed waits for its relay or its resend)."""
        node = self.node(agency)
        sent = workflows.run(node.ctx, call)
        if publish and node.ctx.publishes_at_once and sent.messages:
            relay.publish_committed(node.ctx, node.publisher,
                                    [relay.committed_row(m, needs_receipt=m.envelope["kind"] != RECEIPT)
                                     for m in sent.messages])
        return sent

    def refer_clue(self, agency: str, body: Mapping, recipient: str, **options) -> Sent:
        """As the node's refer RPC: copied (a suspected crime) to its ROLES_FILE copy target
        unless ``copy_to`` is given."""
        if "copy_to" not in options:
            if agency not in self._copy_targets:  # reading ROLES_FILE costs tens of ms: once
                self._copy_targets[agency] = getattr(settings.refer_action(self.config, agency), "copy_to", None)
            options["copy_to"] = self._copy_targets[agency]
        return self.send(agency, workflows.refer_clue_call(body, recipient, **options))

    def reply(self, agency: str, message_id: str, kind: str, body: Mapping, **options) -> Sent:
        return self.send(agency, workflows.reply_call(self.ctx(agency), message_id, kind, body, **options))

    def follow_up(self, agency: str, referral_id: str, kind: str, body: Mapping, recipients: Iterable[str],
                  **options) -> Sent:
        return self.send(agency, workflows.follow_up_call(self.ctx(agency), referral_id, kind, body, recipients,
                                                          **options))

    def relay(self, agency: str, **options) -> RelayReport:
        """The node's relay timer: what is due, resends held while its own queue is backed up."""
        node = self.node(agency)
        options.setdefault("resends", not self.backlogged(agency))
        options.setdefault("busy", self.backlogged)
        return relay.relay_due(node.ctx, node.publisher, **options)

    def backlogged(self, agency: str) -> bool:
        return bool(self.queues[agency])

    def inject(self, agency: str, message: Any, *, by: str | None = None,
               content_type: str | None = CONTENT_TYPE, user_id: str | None = None) -> None:
        """Put ``message`` (hand-made bytes, or any value) at the end of ``agency``'s queue.
        ``by``: the agency whose bus account published it (a Delivery with its ``user_id``, as
        the broker would stamp it); None hands the value over in process, without transport
        facts (as ``receiving.receive(ctx, raw)`` takes it)."""
        if by is None and user_id is None:
            self.queues[agency].append(message)
            return
        user_id = user_id if user_id is not None else self.names.bus_user(by)
        publisher = self.names.agency_of_bus_user(user_id, self.topology.agencies)
        self.queues[agency].append(receiving.Delivery(raw=message, content_type=content_type,
                                                      user_id=user_id, publisher=publisher))

    def waiting(self, agency: str) -> list[Any]:
        """The raw values waiting in ``agency``'s queue, in order (left there)."""
        return [_raw_of(item) for item in self.queues[agency]]

    def take(self, agency: str, limit: int | None = None) -> list[Any]:
        """Remove and return what waits in ``agency``'s queue (at most ``limit``), as deliveries
        (or the values injected in process): to lose them, or hand them over again."""
        queue = self.queues[agency]
        count = len(queue) if limit is None else min(limit, len(queue))
        return [queue.popleft() for _ in range(count)]

    def deliver(self, agency: str, limit: int | None = None) -> list:
        """``agency`` takes its queue (at most ``limit`` deliveries, as one batch) as its node
        does, and answers; the outcomes, in order (``ReceiveOutcome`` for a node; for the office,
        what ``observe`` returns). On an error the deliveries go back to the queue (the broker
        requeues) and the error is raised."""
        node = self.node(agency)
        deliveries = self.take(agency, limit)
        if not deliveries:
            return []
        try:
            if node.office is not None:
                return self._observe(node, deliveries)
            return self._handle_envelopes(node, deliveries)
        except Exception:
            self.queues[agency].extendleft(reversed(deliveries))
            raise

    def _handle_envelopes(self, node: Node, deliveries: list) -> list[receiving.ReceiveOutcome]:
        """AgencyNode.handle_envelopes, less its framework."""
        ctx = node.ctx
        answers: list[dict] = []
        outcomes = receiving.receive_batch(ctx, deliveries, answers=answers)
        if ctx.publishes_at_once:
            relay.publish_committed(ctx, node.publisher, answers)
            again = receiving.receipts_again(outcomes)
        else:
            again = receiving.receipts_to_publish(outcomes)
        if again:
            relay.relay_due(ctx, node.publisher, message_ids=again, resends=False)
        return outcomes

    def _observe(self, node: Node, deliveries: list) -> list[dict]:
        """JointOfficeBase.handle_traffic, less its framework."""
        results = [office_handlers.observe(node.office, delivery) for delivery in deliveries]
        if any(result.get("receipt") for result in results):
            self.relay(node.agency)
        return results

    def exchange(self, *agencies: str, rounds: int = 10) -> None:
        """Deliver every listed agency's queue (when none are named: every agency's, the
        observer's only with ``office=True``) until they are all empty."""
        for _ in range(rounds):
            names = agencies or [a for a in self.queues if a not in self.observers or self.with_office]
            busy = [a for a in names if self.queues[a]]
            if not busy:
                return
            for agency in busy:
                self.deliver(agency)
        raise AssertionError(f"queues still not empty after {rounds} rounds")

    # -- hand-made messages ---------------------------------------------------------------------------
    def compose(self, agency: str, kind: str, recipient: str, body: Mapping, *, referral_id: str,
                **options) -> SignedMessage:
        """A message validly signed by ``agency``'s own key, composed outside its node: nothing
        is recorded, no lifecycle is checked (``options``: in_reply_to, message_id, sent_at,
        seal, schema_version)."""
        options.setdefault("sent_at", self.clock())
        return self.ctx(agency).composer.compose(kind, recipient, body, referral_id=referral_id, **options)

    def signer(self, agency: str) -> Signer:
        """``agency``'s signing key, from the key directory: a configured agency's, or one the
        keyring knows but the configuration does not (``make_config(extra_key_agencies=...)``)."""
        material = self.key_directory.load_private(agency)
        return Signer(agency, material.signing_key_id, material.signing_seed)

    def read(self, agency: str, raw: bytes) -> VerifiedMessage:
        """``raw`` verified (and opened) by ``agency``, as addressed to it; raises a Rejection."""
        return self.ctx(agency).verifier.verify(raw, expected_recipient=agency, check_freshness=False)

    def published_to(self, agency: str) -> list[Published]:
        return [p for p in self.published if p.recipient == agency]

    # -- views of the databases ----------------------------------------------------------------------
    def rows(self, agency: str, table: str) -> list[dict]:
        """Every row of ``table`` in ``agency``'s database, as plain dicts, in key order."""
        return self._read(agency, [table])[table]

    def _read(self, agency: str, names: Iterable[str]) -> dict[str, list[dict]]:
        node = self.node(agency)
        found = {}
        with node.store.transaction() as repo:
            for name in names:
                table, key = node.tables[name]
                rows = repo.session.execute(select(table).order_by(table.c[key])).mappings().all()
                found[name] = [dict(row) for row in rows]
        return found

    def messages(self, agency: str) -> list[dict]:
        return self.rows(agency, "messages")

    def message(self, agency: str, message_id: str) -> dict | None:
        return next((m for m in self.messages(agency) if m["message_id"] == message_id), None)

    def inbox(self, agency: str) -> list[dict]:
        return self.rows(agency, "inbox")

    def outbox(self, agency: str) -> list[dict]:
        return self.rows(agency, "outbox")

    def quarantine(self, agency: str) -> list[dict]:
        return self.rows(agency, "quarantine")

    def referral(self, agency: str, referral_id: str) -> dict | None:
        return next((r for r in self.rows(agency, "referrals") if r["referral_id"] == referral_id), None)

    def audit(self, agency: str) -> list[dict]:
        return self.rows(agency, "audit_log")

    def audit_events(self, agency: str) -> list[str]:
        return [row["event"] for row in self.audit(agency)]

    def verify_audit_chain(self, agency: str) -> int:
        with self.ctx(agency).store.transaction() as repo:
            return repo.verify_audit_chain()

    def closing_audited(self):
        """For a fixture: yield the bus; afterwards, whatever the test did, every opened
        node's audit chain must still verify, and the bus is closed."""
        yield self
        try:
            for agency in self.opened:
                self.verify_audit_chain(agency)
        finally:
            self.close()

    def raw_of(self, agency: str, message_id: str) -> bytes:
        return self.message(agency, message_id)["raw"]

    def mark(self) -> Mark:
        """Every opened node's tables now, and how much has been published. A node opened
        after the mark is compared with the empty database it started from."""
        snapshot = {}
        for agency, node in self._nodes.items():
            tables = self._read(agency, node.tables)
            snapshot[agency] = {name: {row[key]: row for row in tables[name]}
                                for name, (_, key) in node.tables.items()}
        return Mark(snapshot, len(self.published))

    def since(self, mark: Mark) -> Changes:
        now = self.mark()
        db: dict[str, dict[str, Diff]] = {}
        for agency, tables in now.tables.items():
            before_tables = mark.tables.get(agency, {})
            for name, rows in tables.items():
                before = before_tables.get(name, {})
                diff = Diff(added=[row for key, row in rows.items() if key not in before],
                            changed=[(before[key], row) for key, row in rows.items()
                                     if key in before and before[key] != row],
                            removed=[row for key, row in before.items() if key not in rows])
                if diff:
                    db.setdefault(agency, {})[name] = diff
        return Changes(db, self.published[mark.published:])


def _topic_match(binding_key: str, routing_key: str) -> bool:
    """AMQP topic matching, for the ``*`` (exactly one word) the bindings use, and ``#``."""
    pattern, words = binding_key.split("."), routing_key.split(".")

    def match(p: int, w: int) -> bool:
        if p == len(pattern):
            return w == len(words)
        if pattern[p] == "#":
            return any(match(p + 1, i) for i in range(w, len(words) + 1))
        return w < len(words) and pattern[p] in ("*", words[w]) and match(p + 1, w + 1)

    return match(0, 0)


def _raw_of(item):
    return item.raw if isinstance(item, receiving.Delivery) else item
