"""Integration fixtures: a real RabbitMQ (one virtual host per test, from nameko's
``rabbit_config``), and every node on SQLite files or on its own real PostgreSQL database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import sqlalchemy
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter, replace_dependencies

from adapters.crypto.keys import initialise_key_directory
from adapters.storage.store import Store
from services import config as c
from services.handlers.context import NodeContext
from services.nodes.factory import build_node_service, container_config
from services.runner import node_agencies, offline_context
from tests.fixtures.keys import FakeClock

POSTGRES_ADMIN_URL = "postgresql+pg8000://postgres@127.0.0.1:5432/postgres"


def _postgres_admin():
    return sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A DATABASE_URL template with {agency}: one database per node, fresh for the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/db/{{agency}}.sqlite3"
        return
    prefix = f"cluebus_test_{uuid.uuid4().hex[:10]}"
    agencies = node_agencies(c.load_config(environ={}))
    engine = _postgres_admin()
    try:
        with engine.connect() as connection:
            for agency in agencies:
                connection.exec_driver_sql(f'CREATE DATABASE "{prefix}_{agency}"')
        yield f"postgresql+pg8000://postgres@127.0.0.1:5432/{prefix}_{{agency}}"
    finally:
        with engine.connect() as connection:
            for agency in agencies:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{prefix}_{agency}" WITH (FORCE)')
        engine.dispose()


@dataclass
class Bus:
    """The bus under test: configuration, started nodes, an RPC proxy and a moveable clock."""

    config: dict
    container_factory: object
    clock: FakeClock
    containers: dict = field(default_factory=dict)

    @property
    def nameko_config(self) -> dict:
        return container_config(self.config)

    def start(self, *agencies: str, fake_clock: bool = False):
        for agency in agencies or node_agencies(self.config):
            container = self.container_factory(build_node_service(agency, self.config), self.nameko_config)
            if fake_clock:
                replace_dependencies(container, clock=self.clock)
            container.start()
            self.containers[agency] = container
        return self

    def stop(self, agency: str) -> None:
        self.containers.pop(agency).stop()

    def rpc(self, timeout: float = 30):
        return ClusterRpcProxy(self.nameko_config, timeout=timeout)

    def waiter(self, agency: str, *, kind: str | None = None, status: str | None = None,
               timeout: float = 30):
        """Wait until ``agency``'s node has handled an envelope (of ``kind``, with ``status``)."""
        def matches(worker_ctx, result, exc_info):
            if exc_info is not None or result is None:
                return False
            return ((kind is None or result.get("kind") == kind)
                    and (status is None or result.get("status") == status))
        return entrypoint_waiter(self.containers[agency], "on_envelope", timeout=timeout, callback=matches)

    def context(self, agency: str) -> NodeContext:
        """Direct access to a node's database and protocol (as the CLI has it)."""
        return offline_context(self.config, agency)

    def store(self, agency: str) -> Store:
        return Store(c.database_url(self.config, agency))


@pytest.fixture
def bus(rabbit_config, tmp_path, database_url, container_factory) -> Bus:
    environ = {
        "CLUEBUS_AMQP_URI": rabbit_config["AMQP_URI"],
        "CLUEBUS_DATA_DIR": str(tmp_path / "data"),
        "CLUEBUS_KEYS_DIR": str(tmp_path / "keys"),
        "CLUEBUS_DATABASE_URL": database_url,
        "CLUEBUS_RELAY_INTERVAL_SECONDS": "0.2",
        "CLUEBUS_RECEIPT_TIMEOUT_SECONDS": "60",
        "CLUEBUS_MAX_ATTEMPTS": "3",
    }
    config = c.load_config(environ=environ)
    clock = FakeClock()
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=3650),
                             now=clock.now - timedelta(days=1))
    return Bus(config, container_factory, clock)
