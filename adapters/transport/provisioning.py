"""What the bus operator provisions on RabbitMQ, as data: virtual hosts, one bus account and
one control account per agency, their permissions, and the bus topology.

The plan is computed from the configuration alone (agencies, observers, route table,
topology, broker names), so ``cluebus broker setup`` (applied through the management API)
and ``cluebus broker definitions`` (a definitions file to import) give the same broker.

Permissions (docs/architecture.md §11):

- on the bus virtual host an agency may *configure* nothing (no queue, no binding of its own:
  nobody can bind a spy queue), *write* only to the bus exchange, and there only the routing
  keys ``<recipient>.<kind>`` its routes allow plus receipts and reconciliation messages to
  any other agency (topic permissions), and *read* only its own queue and its own quarantine queue;
- on its control virtual host only the agency's control account may do anything.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from schemas.routes import RouteTable

from .credentials import AgencyCredentials
from .topology import Topology

NOTHING = "^$"
EVERYTHING = ".*"

# The bus operator's own bus account (USER_PREFIX + this): it publishes the signed keyring
# updates (docs/protocol.md 5.5), `<agency>.keyring_update` to every agency, and nothing else.
OPERATOR = "bus_operator"
KEYRING_UPDATE_KIND = "keyring_update"


def exactly(*names: str) -> str:
    """A permission regex matching exactly these names."""
    if not names:
        return NOTHING
    return "^(?:" + "|".join(re.escape(name) for name in names) + ")$"


@dataclass(frozen=True)
class BrokerNames:
    """How agencies map to broker users and virtual hosts."""

    bus_vhost: str
    control_vhost_template: str   # with {agency}
    user_prefix: str

    def bus_user(self, agency: str) -> str:
        return f"{self.user_prefix}{agency}"

    def control_user(self, agency: str) -> str:
        return f"{self.user_prefix}{agency}.control"

    def control_vhost(self, agency: str) -> str:
        return self.control_vhost_template.replace("{agency}", agency)

    def agency_of_bus_user(self, user: str | None, agencies: Iterable[str]) -> str | None:
        """The agency whose bus account ``user`` is, or None."""
        if not user or not user.startswith(self.user_prefix):
            return None
        agency = user[len(self.user_prefix):]
        return agency if agency in set(agencies) else None


@dataclass(frozen=True)
class Permission:
    vhost: str
    user: str
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class TopicPermission:
    vhost: str
    user: str
    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class ExchangeSpec:
    vhost: str
    name: str
    type: str = "topic"


@dataclass(frozen=True)
class QueueSpec:
    vhost: str
    name: str
    arguments: Mapping
    bindings: tuple[tuple[str, str], ...]   # (exchange, routing key)


@dataclass(frozen=True)
class Account:
    agency: str
    plane: str      # "bus" or "control"
    user: str


@dataclass
class BrokerPlan:
    bus_vhost: str
    control_vhosts: dict[str, str]
    accounts: list[Account]
    permissions: list[Permission]
    topic_permissions: list[TopicPermission]
    exchanges: list[ExchangeSpec]
    queues: list[QueueSpec]
    agencies: list[str] = field(default_factory=list)
    names: BrokerNames | None = None   # how accounts are named: which stale ones are ours

    def former_agency(self, bus_user: str) -> str | None:
        """The agency that ``bus_user`` (an account on the bus virtual host) was made for by an
        earlier plan and that this plan no longer names, or None (it is in the plan, or is not
        an account of cluebus's naming)."""
        if self.names is None or not self.names.user_prefix or not bus_user.startswith(self.names.user_prefix):
            return None
        agency = bus_user[len(self.names.user_prefix):]
        if not agency or agency.endswith(".control") or agency == OPERATOR or agency in self.agencies:
            return None
        return agency

    @property
    def vhosts(self) -> list[str]:
        return [self.bus_vhost, *[v for v in self.control_vhosts.values() if v != self.bus_vhost]]


def allowed_routing_keys(agency: str, routes: RouteTable, agencies: Iterable[str]) -> list[str]:
    """``<recipient>.<kind>`` for every route from ``agency``, and its replies and
    reconciliation messages (the table's peer kinds) to anyone."""
    agencies = list(agencies)
    keys = set()
    for kind, pairs in routes.routes.items():
        keys.update(f"{recipient}.{kind}" for sender, recipient in pairs
                    if sender == agency and recipient in agencies)
    for kind in routes.any_pair_kinds:
        keys.update(f"{other}.{kind}" for other in agencies if other != agency)
    return sorted(keys)


def build_plan(topology: Topology, routes: RouteTable, names: BrokerNames) -> BrokerPlan:
    agencies = list(topology.agencies)
    vhost = names.bus_vhost
    plan = BrokerPlan(bus_vhost=vhost, control_vhosts={a: names.control_vhost(a) for a in agencies},
                      accounts=[], permissions=[], topic_permissions=[], exchanges=[], queues=[],
                      agencies=agencies, names=names)
    plan.exchanges = [ExchangeSpec(vhost, topology.exchange_name),
                      ExchangeSpec(vhost, topology.dead_letter_exchange_name)]
    for agency in agencies:
        queue = topology.queue(agency)
        plan.queues.append(QueueSpec(vhost, queue.name, dict(queue.queue_arguments or {}),
                                     tuple((topology.exchange_name, b.routing_key) for b in queue.bindings)))
        quarantine = topology.quarantine_queue(agency)
        plan.queues.append(QueueSpec(vhost, quarantine.name, dict(quarantine.queue_arguments or {}),
                                     ((topology.dead_letter_exchange_name, quarantine.routing_key),)))
        bus_user, control_user = names.bus_user(agency), names.control_user(agency)
        plan.accounts += [Account(agency, "bus", bus_user), Account(agency, "control", control_user)]
        plan.permissions.append(Permission(
            vhost, bus_user, configure=NOTHING, write=exactly(topology.exchange_name),
            read=exactly(topology.queue_name(agency), topology.quarantine_queue_name(agency))))
        plan.topic_permissions.append(TopicPermission(
            vhost, bus_user, topology.exchange_name,
            write=exactly(*allowed_routing_keys(agency, routes, agencies)), read=NOTHING))
        plan.permissions.append(Permission(plan.control_vhosts[agency], control_user,
                                           EVERYTHING, EVERYTHING, EVERYTHING))
    operator = names.bus_user(OPERATOR)
    plan.accounts.append(Account(OPERATOR, "bus", operator))
    plan.permissions.append(Permission(vhost, operator, configure=NOTHING,
                                       write=exactly(topology.exchange_name), read=NOTHING))
    plan.topic_permissions.append(TopicPermission(
        vhost, operator, topology.exchange_name,
        write=exactly(*(f"{agency}.{KEYRING_UPDATE_KIND}" for agency in agencies)), read=NOTHING))
    return plan


def rabbit_password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt ‖ SHA-256(salt ‖ password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def definitions(plan: BrokerPlan, credentials: Mapping[str, AgencyCredentials]) -> dict:
    """The plan as a RabbitMQ definitions document (``rabbitmqctl import_definitions``, or
    the management API's POST /api/definitions)."""
    users = []
    for account in plan.accounts:
        creds = credentials[account.agency]
        password = (creds.bus if account.plane == "bus" else creds.control).password
        users.append({"name": account.user, "password_hash": rabbit_password_hash(password),
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [],
                      "limits": {}})
    return {
        "users": users,
        "vhosts": [{"name": v, "limits": [], "metadata": {"description": "cluebus", "tags": []}}
                   for v in plan.vhosts],
        "permissions": [{"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write,
                         "read": p.read} for p in plan.permissions],
        "topic_permissions": [{"user": t.user, "vhost": t.vhost, "exchange": t.exchange, "write": t.write,
                               "read": t.read} for t in plan.topic_permissions],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        "queues": [{"name": q.name, "vhost": q.vhost, "durable": True, "auto_delete": False,
                    "arguments": dict(q.arguments)} for q in plan.queues],
        "exchanges": [{"name": e.name, "vhost": e.vhost, "type": e.type, "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}} for e in plan.exchanges],
        "bindings": [{"source": exchange, "vhost": q.vhost, "destination": q.name, "destination_type": "queue",
                      "routing_key": key, "arguments": {}} for q in plan.queues for exchange, key in q.bindings],
    }
