"""Dependency providers: each builds its shared client in setup() and hands workers a thin API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from eventlet.semaphore import Semaphore
from kombu import Connection
from nameko.extensions import DependencyProvider

from adapters.storage.store import Store
from adapters.transport.publisher import EnvelopePublisher
from services import config as c
from services import settings
from services.handlers.context import DeliveryPolicy
from services.protocol.compose import Composer
from services.protocol.verify import Verifier


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class NodeDatabase(DependencyProvider):
    """The node's own database (never shared with another agency)."""

    def setup(self):
        url = c.database_url(self.container.config, self.container.service_name)
        self.store = Store(url)
        self.store.create_schema()

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


class ShiftedClock:
    """System time plus an offset that can be moved forward: one shared clock lets the demo
    show days passing while every node still agrees on the time."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass(frozen=True)
class ProtocolApi:
    agency: str
    composer: Composer
    verifier: Verifier
    policy: DeliveryPolicy
    seal_by_default: bool


class NodeProtocol(DependencyProvider):
    """Signing, sealing and verification for this agency. Workers get a composer holding a
    Signer, never the private key itself."""

    def setup(self):
        config = self.container.config
        agency = self.container.service_name
        composer, verifier = settings.protocol_for(config, agency, clock=utc_now)
        self.api = ProtocolApi(agency, composer, verifier, settings.delivery_policy(config),
                               bool(config[c.DELIVERY][c.SEAL_BODIES]))

    def get_dependency(self, worker_ctx) -> ProtocolApi:
        return self.api


@dataclass(frozen=True)
class TransportApi:
    publish: Callable[[bytes, str], None]
    # One relay at a time per node, whoever triggers it (timer, RPC, consumer).
    relay_lock: Semaphore


class NodeTransport(DependencyProvider):
    """Declares the topology at start-up and publishes with confirms and mandatory routing."""

    def setup(self):
        config = self.container.config
        self.topology = settings.topology(config)
        with Connection(config[c.AMQP_URI]) as connection:
            self.topology.declare(connection)
        self.publisher = EnvelopePublisher(config[c.AMQP_URI], self.topology)
        self.api = TransportApi(self.publisher.publish, Semaphore())

    def get_dependency(self, worker_ctx) -> TransportApi:
        return self.api
