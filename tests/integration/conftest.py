"""Integration fixtures: a real RabbitMQ with a bus provisioned for each test by our own
``cluebus broker setup`` code (its own virtual hosts and per-agency accounts, removed after
the test), and every node on SQLite files or on its own real PostgreSQL database."""

from __future__ import annotations

import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import eventlet
import pytest
import sqlalchemy
from nameko.testing.services import entrypoint_waiter, replace_dependencies

from adapters.crypto.keys import initialise_key_directory
from adapters.storage.store import Store
from services import config as c
from services import provisioning, settings
from services.control_client import ControlClients
from services.handlers.context import NodeContext
from services.nodes.dependencies import utc_now
from services.nodes.factory import build_node_service, container_config
from services.office.service import build_office_service
from services.bootstrap import node_agencies, offline_context
from tests.fixtures.keys import FakeClock

POSTGRES_ADMIN_URL = "postgresql+pg8000://postgres@127.0.0.1:5432/postgres"
BROKER_ADDRESS = "127.0.0.1:5672"
# The administrator of the shared test broker: it provisions each test's bus, inspects queues
# and plays outsiders. Nodes never use it: each agency has its own accounts.
ADMIN_USER, ADMIN_PASSWORD = "guest", "guest"
MANAGEMENT_URI = f"http://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:15672/"


def _postgres_admin():
    return sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


@contextmanager
def fresh_postgres_database():
    """A new, empty PostgreSQL database: its name, and a function that runs one statement as
    the administrator (e.g. to end a server process); the database is dropped afterwards."""
    admin = _postgres_admin()
    name = f"cluebus_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def as_admin(statement: str):
        with admin.connect() as connection:
            return connection.exec_driver_sql(statement).scalar()
    try:
        yield name, as_admin
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A DATABASE_URL template with {agency}: one database per node, fresh for the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/db/{{agency}}.sqlite3"
        return
    prefix = f"cluebus_test_{uuid.uuid4().hex[:10]}"
    agencies = c.agency_codes(c.load_config(environ={}))  # every node, the office too
    engine = _postgres_admin()

    def each(statement: str) -> None:
        # One connection per database at once: the server makes (and drops) them in parallel,
        # about half the time of one after the other, for every PostgreSQL test.
        def run(agency):
            with engine.connect() as connection:
                connection.exec_driver_sql(statement.format(f"{prefix}_{agency}"))
        list(eventlet.GreenPool(len(agencies)).imap(run, agencies))
    try:
        each('CREATE DATABASE "{}"')
        yield f"postgresql+pg8000://postgres@127.0.0.1:5432/{prefix}_{{agency}}"
    finally:
        each('DROP DATABASE IF EXISTS "{}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture
def bus_environ(request) -> dict:
    """Extra CLUEBUS_* settings for one test: parametrize it indirectly, e.g.
    ``@pytest.mark.parametrize("bus_environ", [{"CLUEBUS_MAX_MESSAGE_BYTES": "4096"}], indirect=True)``."""
    return dict(getattr(request, "param", {}))


@dataclass
class Bus:
    """The bus under test: configuration, started nodes, an RPC proxy and a moveable clock."""

    config: dict
    container_factory: object
    clock: FakeClock
    environ: dict = field(default_factory=dict)  # the CLUEBUS_* variables that make `config`
    containers: dict = field(default_factory=dict)
    _contexts: dict = field(default_factory=dict)
    _stores: dict = field(default_factory=dict)

    def nameko_config(self, agency: str) -> dict:
        return container_config(self.config, agency)

    @property
    def amqp_uri(self) -> str:
        """The test broker's administrator on this test's bus (to inspect and play outsiders)."""
        return f"amqp://{ADMIN_USER}:{ADMIN_PASSWORD}@{BROKER_ADDRESS}/{settings.broker_names(self.config).bus_vhost}"

    def bus_uri(self, agency: str) -> str:
        """The bus with ``agency``'s own account."""
        return settings.bus_uri(self.config, agency)

    def bus_user(self, agency: str) -> str:
        return settings.broker_names(self.config).bus_user(agency)

    def create(self, *agencies: str, fake_clock: bool = False):
        """Build nodes without starting them (to attach waiters before they consume)."""
        for agency in agencies or node_agencies(self.config):
            if agency in self.containers:
                raise RuntimeError(f"{agency} already has a container; stop it first")
            service = (build_office_service(self.config) if agency in c.observer_codes(self.config)
                       else build_node_service(agency, self.config))
            container = self.container_factory(service, self.nameko_config(agency))
            if fake_clock:
                replace_dependencies(container, clock=self.clock)
            self.containers[agency] = container
        return self

    def start(self, *agencies: str, fake_clock: bool = False):
        """Start nodes (those already created keep how they were created); no names: every
        agency node and whatever else was created (the office)."""
        for agency in agencies or dict.fromkeys([*node_agencies(self.config), *self.containers]):
            if agency not in self.containers:
                self.create(agency, fake_clock=fake_clock)
            container = self.containers[agency]
            if not container.started:
                container.start()
        return self

    def stop(self, agency: str) -> None:
        self.containers.pop(agency).stop()

    def sync_clock(self) -> None:
        """Set the fake clock to the real time (nodes on the real clock then accept what
        fake-clock nodes sign, and the other way round, until the clock is moved far)."""
        self.clock.now = utc_now()

    def rpc(self, timeout: float = 30) -> ControlClients:
        """Each agency's control plane, with that agency's own control account."""
        return ControlClients(self.config, timeout=timeout)

    def waiter(self, agency: str, *, kind: str | None = None, status: str | None = None,
               count: int = 1, timeout: float = 30):
        """Wait until ``agency``'s node has handled ``count`` envelopes (of ``kind``, with
        ``status``); the waiter's result is the outcome of the last one."""
        seen = []

        def matches(worker_ctx, result, exc_info):
            if exc_info is not None or result is None:
                return False
            for outcome in result:  # a batch: one outcome per delivery
                if outcome is not None and ((kind is None or outcome.get("kind") == kind)
                                            and (status is None or outcome.get("status") == status)):
                    seen.append(outcome)
            return len(seen) >= count
        return _OutcomeWaiter(entrypoint_waiter(self.containers[agency], "on_envelope", timeout=timeout,
                                                callback=matches), seen)

    def context(self, agency: str) -> NodeContext:
        """Direct access to a node's database and protocol (as the CLI has it)."""
        if agency not in self._contexts:
            self._contexts[agency] = offline_context(self.config, agency)
        return self._contexts[agency]

    def store(self, agency: str) -> Store:
        if agency not in self._stores:
            self._stores[agency] = Store(c.database_url(self.config, agency))
        return self._stores[agency]

    def close(self) -> None:
        # Stop the nodes gracefully while the broker's vhost still exists (nameko's
        # container_factory would only kill them, with a page of tracebacks).
        # Each stop waits for its consumer loops to look up (entrypoints.CONSUMER_POLL_SECONDS):
        # stop them side by side.
        pool = eventlet.GreenPool()
        for agency in list(self.containers):
            if self.containers[agency].started:
                pool.spawn(self.stop, agency)
        pool.waitall()
        for context in self._contexts.values():
            context.store.dispose()
        for store in self._stores.values():
            store.dispose()
        self._contexts.clear()
        self._stores.clear()


class _OutcomeWaiter:
    """An entrypoint waiter whose result is the last matching outcome (not the whole batch)."""

    def __init__(self, waiter, seen: list):
        self._waiter, self._seen = waiter, seen

    def __enter__(self):
        self._waiter.__enter__()
        return self

    def __exit__(self, *exc):
        return self._waiter.__exit__(*exc)

    def get(self):
        return self._seen[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bus_broker_environ(tmp_path, run_id: str) -> dict:
    """A bus of the test's own: virtual hosts and account names no other test shares."""
    return {
        "CLUEBUS_BUS_URI": f"amqp://{BROKER_ADDRESS}/t-{run_id}",
        "CLUEBUS_CONTROL_URI": f"amqp://{BROKER_ADDRESS}/t-{run_id}.{{agency}}.control",
        "CLUEBUS_BROKER_USER_PREFIX": f"t-{run_id}.",
        "CLUEBUS_CREDENTIALS_DIR": str(tmp_path / "credentials"),
        "CLUEBUS_BROKER_ADMIN_URI": MANAGEMENT_URI,
    }


@pytest.fixture
def bus(tmp_path, database_url, container_factory, bus_environ) -> Bus:
    environ = {
        **bus_broker_environ(tmp_path, uuid.uuid4().hex[:10]),
        "CLUEBUS_DATA_DIR": str(tmp_path / "data"),
        "CLUEBUS_KEYS_DIR": str(tmp_path / "keys"),
        "CLUEBUS_DATABASE_URL": database_url,
        "CLUEBUS_RELAY_INTERVAL_SECONDS": "0.2",
        "CLUEBUS_RECEIPT_TIMEOUT_SECONDS": "60",
        "CLUEBUS_MAX_ATTEMPTS": "3",
        "CLUEBUS_OFFICE_SCAN_SECONDS": "0.2",
        "CLUEBUS_OFFICE_HTTP": f"127.0.0.1:{free_port()}",
        "CLUEBUS_OFFICE_ACCOUNTS_FILE": str(tmp_path / "office-accounts.yaml"),
        **bus_environ,
    }
    config = c.load_config(environ=environ)
    clock = FakeClock()
    # Keys valid from a day before the earlier of the fake and the real clock: nodes run on
    # either, and the fixed fake time may lie after the machine's date.
    valid_from = min(clock.now, utc_now()) - timedelta(days=1)
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=3650),
                             now=valid_from)
    # The administrator keeps its rights on the test's virtual hosts, to inspect queues.
    provisioning.setup(config, keep_admin_access=True)
    bus = Bus(config, container_factory, clock, environ)
    try:
        yield bus
    finally:
        try:
            bus.close()
        finally:
            provisioning.remove(config)
