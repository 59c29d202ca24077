"""Starting agency nodes: one, or all of them in one process (the demo).

Each node's Nameko container gets its own configuration: its control plane (its own virtual
host, with its own control account) as Nameko's AMQP_URI, and its bus account for envelopes.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import eventlet
from nameko.runners import ServiceRunner

from adapters.storage.store import Store
from adapters.transport.credentials import CredentialsError
from adapters.transport.topology import BusNotReady, check_provisioned
from services import config as c
from services import settings
from services.handlers.context import NodeContext
from services.nodes.dependencies import utc_now
from services.nodes.factory import build_node_service, container_config


class BrokerUnreachable(Exception):
    pass


def node_agencies(config: Mapping) -> list[str]:
    """Agencies that run an agency node (observers such as the joint office run their own)."""
    return [a for a in c.agency_codes(config) if a not in c.observer_codes(config)]


def check_bus(config: Mapping, agency: str, timeout: float = 5.0) -> None:
    """Raise BrokerUnreachable with one line saying why ``agency`` cannot use the bus, and
    what to do: no credentials, wrong password, no virtual host, not provisioned, no broker."""
    try:
        check_provisioned(settings.bus_uri(config, agency), settings.topology(config), agency, timeout=timeout)
    except (CredentialsError, BusNotReady) as exc:
        raise BrokerUnreachable(str(exc)) from None


class NodeGroup:
    """Several node containers in one process, each with its own configuration."""

    def __init__(self):
        self.runners: dict[str, ServiceRunner] = {}

    def add(self, agency: str, service_cls, config: Mapping) -> None:
        runner = ServiceRunner(config)
        runner.add_service(service_cls)
        self.runners[agency] = runner

    def start(self) -> None:
        started = []
        try:
            for runner in self.runners.values():
                runner.start()
                started.append(runner)
        except BaseException:
            for runner in started:
                runner.kill()
            raise

    def stop(self) -> None:
        pool = eventlet.GreenPool()
        for runner in self.runners.values():
            pool.spawn(runner.stop)
        pool.waitall()

    def kill(self) -> None:
        for runner in self.runners.values():
            runner.kill()

    def wait(self) -> None:
        """Until every node has stopped; re-raises the error that ended one (its other nodes
        are then stopped too)."""
        waiters = [eventlet.spawn(runner.wait) for runner in self.runners.values()]
        try:
            for waiter in waiters:
                waiter.wait()
        except BaseException:
            self.kill()
            raise


def start_nodes(config: Mapping, agencies: Iterable[str], *, office: bool = False, clock=None) -> NodeGroup:
    """Start agency nodes (and the joint office's node) in this process."""
    group = NodeGroup()
    for agency in agencies:
        group.add(agency, build_node_service(agency, config, clock=clock), container_config(config, agency))
    if office:
        from services.office.service import build_office_service
        group.add("joint_office", build_office_service(config, clock=clock), container_config(config, "joint_office"))
    group.start()
    return group


def office_context(config: Mapping):
    """The office's context on its own database, without a running office node (for the CLI)."""
    from adapters.storage.office_tables import OfficeBase
    from services.office.handlers import OfficeContext
    from services.office.service import office_rules
    node = offline_context(config, "joint_office")
    OfficeBase.metadata.create_all(node.store.engine)
    rules = office_rules(config)
    return OfficeContext(node, rules.tracker, rules.warn_before, rules.escalate_after, node_agencies(config))


def offline_context(config: Mapping, agency: str) -> NodeContext:
    """A node's context without a running node: for the CLI acting as that agency on its own
    database. What it sends goes to the outbox and is published by the node's relay."""
    store = Store(c.database_url(config, agency))
    store.create_schema()
    composer, verifier = settings.protocol_for(config, agency, clock=utc_now)
    return NodeContext(agency, store, composer, verifier, utc_now, settings.delivery_policy(config),
                       bool(config[c.DELIVERY][c.SEAL_BODIES]))
