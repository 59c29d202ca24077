"""A node's metrics (Prometheus text format) and its health, at the edge of the node.

One ``NodeMetrics`` per node, with a registry of its own (several nodes run in one process:
the demo, the tests), never prometheus_client's global one. Counters are moved by the node
layer from what the handlers already return (receiving outcomes, relay reports); gauges are
read from the node's database when scraped (a custom collector), so they are always true,
whichever process wrote the rows. Nothing here names a person, a clue or a message: labels
are agency codes, kinds, outcomes and rule codes only.

The HTTP routes (``/metrics``, ``/health``, ``/ready``) are in services/nodes/factory.py and
services/office/service.py; this module knows nothing of HTTP.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

from nameko.extensions import DependencyProvider
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from adapters.storage.office_tables import StepRow
from adapters.storage.store import Store
from adapters.storage.tables import Message, OutboxEntry, QuarantineEntry
from adapters.transport.topology import BusNotReady, check_provisioned
from services import config as c
from services import settings

from .dependencies import NodeDatabase
from .entrypoints import BUS_CONNECTION_KEY

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Outcomes of a message out (what the relay did with it).
OUT_PUBLISHED = "published"      # the broker confirmed its first publication
OUT_RESENT = "resent"            # published again: no receipt yet
OUT_NOT_TAKEN = "not_taken"      # the broker did not take it (tried again later)
OUT_FAILED = "failed"            # given up: no receipt after the last attempt
# A delivery that could not be stored (it is requeued): no outcome, no kind.
IN_REQUEUED = "requeued"
UNKNOWN = "unknown"

# Receipt latency: from the publication of a message to its receipt, in seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
OUTBOX_STATES = ("pending", "published", "receipted", "done", "failed")
BROKER_CHECK_TIMEOUT_SECONDS = 3.0


class NodeMetrics:
    """The metrics of one node. ``store()`` gives the node's database (it is opened after
    this is made); ``office`` adds the joint office's open and overdue steps; ``check()``
    says why the node is not ready (None: ready)."""

    def __init__(self, agency: str, store: Callable[[], Store | None], *, office: bool = False,
                 check: Callable[[], str | None] | None = None):
        self.agency, self.store, self._check = agency, store, check
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_in = Counter("cluebus_messages_in", "Messages delivered to this node, by kind and outcome "
                                   "(accepted, rejected, duplicate, quarantined, receipt, requeued)",
                                   ["kind", "outcome"], registry=self.registry)
        self.messages_out = Counter("cluebus_messages_out", "Messages this node published, by kind and outcome "
                                    "(published, resent, not_taken, failed)",
                                    ["kind", "outcome"], registry=self.registry)
        self.rejections = Counter("cluebus_rejections", "Messages refused, by rule: rejected or quarantined "
                                  "here, or rejected by their recipient (a receipt with a reason code)",
                                  ["rule", "outcome"], registry=self.registry)
        self.failed_deliveries = Counter("cluebus_failed_deliveries", "Messages given up on: no receipt "
                                         "after the last attempt", registry=self.registry)
        self.receipt_latency = Histogram("cluebus_receipt_latency_seconds", "From a message's (last) "
                                         "publication to its receipt", buckets=LATENCY_BUCKETS,
                                         registry=self.registry)
        self._collector = DatabaseCollector(store, office=office)
        self.registry.register(self._collector)

    # -- counting, from what the node layer already has ----------------------------------------
    def received(self, outcomes: Iterable[Mapping | object | None]) -> None:
        """Count a batch's receiving outcomes (ReceiveOutcome, their dicts, or None for a
        delivery that could not be stored)."""
        for outcome in outcomes:
            if outcome is None:
                self.messages_in.labels(UNKNOWN, IN_REQUEUED).inc()
                continue
            status = _get(outcome, "status") or UNKNOWN
            kind, rule = _get(outcome, "kind") or UNKNOWN, _get(outcome, "rule")
            self.messages_in.labels(kind, status).inc()
            if rule and status in ("rejected", "quarantined"):
                self.rejections.labels(rule, status).inc()
            elif rule and status == "receipt":
                self.rejections.labels(rule, "rejected_by_recipient").inc()

    def relayed(self, report, kinds: Mapping[str, str]) -> None:
        """Count a RelayReport; ``kinds``: message_id -> kind of the messages it names."""
        if report is None:
            return
        for outcome, ids in ((OUT_PUBLISHED, report.published), (OUT_RESENT, report.resent),
                             (OUT_FAILED, report.failed), (OUT_NOT_TAKEN, list(report.errors))):
            for message_id in ids:
                self.messages_out.labels(kinds.get(message_id) or UNKNOWN, outcome).inc()
        if report.failed:
            self.failed_deliveries.inc(len(report.failed))

    def receipt_latencies(self, seconds: Iterable[float]) -> None:
        for value in seconds:
            self.receipt_latency.observe(max(0.0, value))

    # -- what the node layer calls: never raises (metrics must not fail a batch or a relay) -------
    def batch_received(self, outcomes: list, receipt_seconds: list[float] | None = None) -> None:
        """Count a batch's outcomes, and the receipt latencies of the receipts it recorded:
        ``receipt_seconds`` as the batch computed them (receiving.receive_batch), else read back
        from the outbox rows the batch just committed."""
        try:
            self.received(outcomes)
            if receipt_seconds is not None:
                self.receipt_latencies(receipt_seconds)
                return
            receipts = [_get(o, "message_id") for o in outcomes
                        if o is not None and _get(o, "status") == "receipt" and _get(o, "message_id")]
            if receipts:
                self.receipt_latencies(receipt_latencies(self.store(), receipts))
        except Exception:
            log.warning("%s: could not count a batch in the metrics", self.agency, exc_info=True)

    def relay_report(self, report, kinds: Mapping[str, str] | None = None) -> None:
        """Count a RelayReport; the kinds of its messages are read back when not given."""
        if report is None:
            return
        try:
            ids = [*report.published, *report.resent, *report.failed, *report.errors]
            if not ids:
                return
            self.relayed(report, kinds if kinds is not None else message_kinds(self.store(), ids))
        except Exception:
            log.warning("%s: could not count a relay pass in the metrics", self.agency, exc_info=True)

    def ready(self) -> str | None:
        """None when the node can work (its database and the bus answer); else why not."""
        return self._check() if self._check is not None else None

    # -- scraping --------------------------------------------------------------------------------
    def exposition(self, now: datetime) -> bytes:
        """The Prometheus text format, the gauges read from the database as of ``now``."""
        self._collector.now = now
        return generate_latest(self.registry)


class DatabaseCollector:
    """Gauges read from the node's database at scrape time."""

    def __init__(self, store: Callable[[], Store | None], *, office: bool = False):
        self.store, self.office, self.now = store, office, None

    def describe(self):
        return []  # the families depend on the database: none is described ahead

    def collect(self):
        store, now = self.store(), self.now
        if store is None or now is None:
            return
        up = GaugeMetricFamily("cluebus_database_up", "1 when the node's database answered this scrape")
        try:
            families = list(self._read(store, now))
        except Exception:
            log.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, store: Store, now: datetime):
        with store.engine.connect() as connection:
            depth = GaugeMetricFamily("cluebus_outbox_depth", "Outbox entries, by state", labels=["state"])
            counts = dict(connection.execute(select(OutboxEntry.state, func.count())
                                             .group_by(OutboxEntry.state)).all())
            for state in dict.fromkeys([*OUTBOX_STATES, *counts]):
                depth.add_metric([state], counts.get(state, 0))
            yield depth
            quarantine = GaugeMetricFamily("cluebus_quarantine_size", "Messages kept aside in quarantine")
            quarantine.add_metric([], connection.execute(select(func.count()).select_from(QuarantineEntry)).scalar())
            yield quarantine
            due = ((OutboxEntry.state == "pending")
                   | ((OutboxEntry.state == "published") & OutboxEntry.needs_receipt))
            oldest = connection.execute(select(func.min(OutboxEntry.next_attempt_at))
                                        .where(due, OutboxEntry.next_attempt_at <= now)).scalar()
            lag = GaugeMetricFamily("cluebus_relay_lag_seconds", "Age of the oldest outbox entry due for "
                                    "publication (0: none is waiting)")
            lag.add_metric([], max(0.0, (now - _aware(oldest)).total_seconds()) if oldest is not None else 0.0)
            yield lag
            if self.office:
                yield from self._steps(connection, now)

    @staticmethod
    def _steps(connection, now: datetime):
        opened = GaugeMetricFamily("cluebus_office_steps_open", "Open deadline steps, by late agency",
                                   labels=["late_agency"])
        overdue = GaugeMetricFamily("cluebus_office_steps_overdue", "Open deadline steps past their limit, "
                                    "by late agency", labels=["late_agency"])
        is_open = StepRow.state == "open"
        for agency, count in connection.execute(select(StepRow.late_agency, func.count()).where(is_open)
                                                .group_by(StepRow.late_agency)).all():
            opened.add_metric([agency], count)
        for agency, count in connection.execute(select(StepRow.late_agency, func.count())
                                                .where(is_open, StepRow.due_at.is_not(None), StepRow.due_at < now)
                                                .group_by(StepRow.late_agency)).all():
            overdue.add_metric([agency], count)
        yield opened
        yield overdue


def _get(outcome, key: str):
    """A field of an outcome: a ReceiveOutcome, or a dict (its ``__dict__``, the office's)."""
    return outcome.get(key) if isinstance(outcome, Mapping) else getattr(outcome, key, None)


def _aware(value: datetime) -> datetime:
    """A core query on SQLite gives naive UTC datetimes (the ORM type makes them aware)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def receipt_latencies(store: Store, receipt_ids: list[str]) -> list[float]:
    """Seconds from publication to receipt of the messages these receipts answered."""
    if not receipt_ids:
        return []
    with store.engine.connect() as connection:
        rows = connection.execute(select(OutboxEntry.last_published_at, OutboxEntry.receipted_at)
                                  .where(OutboxEntry.receipt_message_id.in_(receipt_ids[:500]))).all()
    return [(_aware(receipted) - _aware(published)).total_seconds()
            for published, receipted in rows if published is not None and receipted is not None]


def message_kinds(store: Store, message_ids: list[str]) -> dict[str, str]:
    """message_id -> kind, for counting what a relay pass published (ids only)."""
    if not message_ids:
        return {}
    with store.engine.connect() as connection:
        return dict(connection.execute(select(Message.message_id, Message.kind)
                                       .where(Message.message_id.in_(message_ids[:500]))).all())


def readiness(store: Store | None, bus_uri: str, topology, agency: str) -> str | None:
    """None when the database answers a trivial query and the bus takes the agency's account
    (its exchange and queue provisioned); else a short reason. The details (addresses, the
    broker's words) go to the log only: /ready answers anyone who can reach the port."""
    if store is None:
        return "database not opened"
    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("%s: not ready: the database does not answer (%s)", agency, type(exc).__name__)
        return "database unreachable"
    try:
        check_provisioned(bus_uri, topology, agency, timeout=BROKER_CHECK_TIMEOUT_SECONDS)
    except BusNotReady as exc:
        log.warning("%s: not ready: %s", agency, exc)
        return "bus not ready"
    except Exception as exc:  # pragma: no cover - check_provisioned says why in BusNotReady
        log.warning("%s: not ready: the bus check failed (%s)", agency, type(exc).__name__)
        return "bus not ready"
    return None


class Metrics(DependencyProvider):
    """The node's NodeMetrics (one per container, its own registry); workers get it."""

    def setup(self):
        config, agency = self.container.config, self.container.service_name
        topology = settings.topology(config)
        self.api = NodeMetrics(agency, self._store, office=agency in c.observer_codes(config),
                               check=lambda: readiness(self._store(), config[BUS_CONNECTION_KEY], topology, agency))

    def _store(self) -> Store | None:
        database = next((d for d in self.container.dependencies if isinstance(d, NodeDatabase)), None)
        return getattr(database, "store", None)

    def get_dependency(self, worker_ctx) -> NodeMetrics:
        return self.api
