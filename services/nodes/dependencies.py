"""Dependency providers: each builds its shared client in setup() and hands workers a thin API."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider

from adapters.storage.store import Store
from adapters.transport.publisher import EnvelopePublisher
from adapters.transport.topology import check_provisioned
from services import bootstrap
from services import config as c
from services import settings
from services.bootstrap import utc_now
from services.handlers.relay_lease import RelayLease

from .entrypoints import BUS_CONNECTION_KEY, BUS_USER_KEY, CALL_ID_KEY


class NodeDatabase(DependencyProvider):
    """The node's own database (never shared with another agency)."""

    def setup(self):
        self.store = bootstrap.open_store(self.container.config, self.container.service_name)

    def stop(self):
        self.store.dispose()

    def get_dependency(self, worker_ctx) -> Store:
        return self.store


class Clock(DependencyProvider):
    """The time: ``now`` if given (the demo's shared, movable clock), else the system's.
    Tests replace it (nameko.testing.services.replace_dependencies)."""

    def __init__(self, now: Callable[[], datetime] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.now = now or utc_now

    def get_dependency(self, worker_ctx) -> Callable[[], datetime]:
        return self.now


class ReconcileSettle(DependencyProvider):
    """How long before now a reconciliation window ends (RECONCILE.SETTLE_SECONDS): messages
    sent more recently may still be in flight."""

    def setup(self):
        self.settle = timedelta(seconds=c.reconcile_seconds(self.container.config, c.SETTLE_SECONDS))

    def get_dependency(self, worker_ctx) -> timedelta:
        return self.settle


class ShiftedClock:
    """System time plus an offset that can be moved forward: one shared clock lets the demo
    show days passing while every node still agrees on the time."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


class NodeProtocol(DependencyProvider):
    """Signing, sealing and verification for this agency. Workers get a composer holding a
    Signer, never the private key itself."""

    def setup(self):
        self.api = bootstrap.node_parts(self.container.config, self.container.service_name)

    def get_dependency(self, worker_ctx) -> bootstrap.NodeParts:
        return self.api


@dataclass(frozen=True)
class TransportApi:
    publisher: EnvelopePublisher          # publish / publish_many, with the agency's user_id
    # One relay at a time in this process, whoever triggers it (timer, RPC, consumer) ...
    relay_lock: Semaphore
    # ... and one process at a time per node (a second one waits as a standby).
    lease: RelayLease
    backlogged: Callable[[str], bool]     # agency -> its queue holds messages not yet taken
    # Message ids this process published first, lately (so a just-committed message the
    # timer's relay took meanwhile is not published a second time).
    published: "RecentIds"

    @property
    def publish(self) -> Callable[[bytes, str], None]:
        return self.publisher.publish


class RecentIds:
    """The last ``size`` ids added, for membership tests."""

    def __init__(self, size: int = 20_000):
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, ids) -> None:
        for message_id in ids:
            self._ids[message_id] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._ids


class NodeTransport(DependencyProvider):
    """The node's side of the bus, with the agency's own bus account: checks at start-up that
    the bus operator provisioned its queue (it may declare nothing itself), and publishes with
    confirms, mandatory routing and its broker user in ``user_id``."""

    def setup(self):
        config = self.container.config
        self.topology = settings.topology(config)
        bus_uri = config[BUS_CONNECTION_KEY]
        check_provisioned(bus_uri, self.topology, self.container.service_name)
        self.publisher = EnvelopePublisher(bus_uri, self.topology, config[BUS_USER_KEY])
        lease = RelayLease(timedelta(seconds=float(config[c.DELIVERY].get(c.LEASE_SECONDS, 10))))
        self.api = TransportApi(self.publisher, Semaphore(), lease, self._backlogged, RecentIds())

    def _backlogged(self, agency: str) -> bool:
        """Whether ``agency``'s queue holds ready messages (unknown counts as no)."""
        depth = self.publisher.queue_depth(self.topology.queue_name(agency))
        return bool(depth)

    def stop(self):
        # A clean stop lets a standby take over at once rather than after the lease expires.
        store = next((d.store for d in self.container.dependencies if isinstance(d, NodeDatabase)), None)
        if store is not None and self.api.lease.holding:
            try:
                self.api.lease.release_in(store)
            except Exception:  # the database is gone: the lease simply expires
                pass
        self.publisher.close()

    def get_dependency(self, worker_ctx) -> TransportApi:
        return self.api


class CallerRequest(DependencyProvider):
    """The request id of the RPC being served (its AMQP correlation id), or None."""

    def get_dependency(self, worker_ctx) -> str | None:
        return (worker_ctx.context_data or {}).get(CALL_ID_KEY)
