"""Starting agency nodes: one, or all of them in one process (the demo)."""

from __future__ import annotations

from typing import Iterable, Mapping

from kombu import Connection
from nameko.runners import ServiceRunner

from services import config as c
from services import settings
from services.handlers.context import NodeContext
from services.nodes.dependencies import utc_now
from services.nodes.factory import build_node_service, container_config
from adapters.storage.store import Store

class BrokerUnreachable(Exception):
    pass


def node_agencies(config: Mapping) -> list[str]:
    """Agencies that run an agency node (observers such as the joint office run their own)."""
    return [a for a in c.agency_codes(config) if a not in c.observer_codes(config)]


def check_broker(amqp_uri: str, timeout: float = 5.0) -> None:
    """Raise BrokerUnreachable with a one-line explanation and fix."""
    try:
        with Connection(amqp_uri, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # kombu raises several kinds; all mean the same to a user
        safe = Connection(amqp_uri).as_uri()  # hides the password
        raise BrokerUnreachable(
            f"cannot reach RabbitMQ at {safe} ({exc.__class__.__name__}: {exc}); "
            f"start it with `rabbitmq-server -detached` or point CLUEBUS_AMQP_URI at a running broker"
        ) from None


def start_nodes(config: Mapping, agencies: Iterable[str], *, office: bool = False, clock=None) -> ServiceRunner:
    """Start agency nodes (and the joint office's node) in this process."""
    runner = ServiceRunner(container_config(config))
    for agency in agencies:
        runner.add_service(build_node_service(agency, config, clock=clock))
    if office:
        from services.office.service import build_office_service
        runner.add_service(build_office_service(config, clock=clock))
    runner.start()
    return runner


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
    return NodeContext(agency, store, composer, verifier, utc_now, settings.delivery_policy(config))
