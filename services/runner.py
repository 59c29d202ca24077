"""Starting agency nodes: one, or all of them in one process (the demo).

Each node's Nameko container gets its own configuration: its control plane (its own virtual
host, with its own control account) as Nameko's AMQP_URI, and its bus account for envelopes.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import gc

import eventlet
from nameko.runners import ServiceRunner

from adapters.transport.credentials import CredentialsError
from adapters.transport.topology import BusNotReady, check_control_plane, check_provisioned
from services import config as c
from services import settings
from services.nodes.factory import build_node_service, container_config


class BrokerUnreachable(Exception):
    """One line saying why an agency cannot use the bus; ``transient`` as BusNotReady's (a
    broker that cannot be reached), False for configuration (credentials, virtual host,
    provisioning)."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def check_bus(config: Mapping, agency: str, timeout: float = 5.0) -> None:
    """Raise BrokerUnreachable with one line saying why ``agency`` cannot use the bus, and
    what to do: no credentials, wrong password, no virtual host, not provisioned, no broker."""
    try:
        check_provisioned(settings.bus_uri(config, agency), settings.topology(config), agency, timeout=timeout)
    except CredentialsError as exc:
        raise BrokerUnreachable(str(exc)) from None
    except BusNotReady as exc:
        raise BrokerUnreachable(str(exc), transient=exc.transient) from None


def check_control(config: Mapping, agency: str, timeout: float = 5.0) -> None:
    """As check_bus, for ``agency``'s control plane (a node does not start without it)."""
    try:
        check_control_plane(settings.control_uri(config, agency), agency, timeout=timeout)
    except CredentialsError as exc:
        raise BrokerUnreachable(str(exc)) from None
    except BusNotReady as exc:
        raise BrokerUnreachable(str(exc), transient=exc.transient) from None


def settle_heap() -> None:
    """Move everything made while starting (modules, the framework, the node's wiring) out of
    the garbage collector's sight. A full collection then scans only what was made since,
    instead of pausing the whole node for 60-100 ms every few seconds under load (measured:
    bench/README.md, latency), which was most of the round trip's p99."""
    gc.collect()
    gc.freeze()


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
        settle_heap()

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
        office_agency = c.office_code(config)
        group.add(office_agency, build_office_service(config, clock=clock), container_config(config, office_agency))
    group.start()
    return group
