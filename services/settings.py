"""Typed views of the configuration for the node's building blocks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Mapping

from adapters.crypto.keychain import KeyChain
from adapters.crypto.keys import KeyDirectory
from adapters.crypto.trust import TrustedKeyring
from adapters.transport import uris
from adapters.transport.credentials import AgencyCredentials, CredentialStore
from adapters.transport.provisioning import BrokerNames, BrokerPlan, build_plan
from adapters.transport.topology import Topology
from schemas.routes import RouteTable

from . import config as c
from .handlers.context import DeliveryPolicy
from .protocol.compose import Composer
from .protocol.verify import Verifier
from .roles import Action, check_routes, first_refer_action, load_roles


def topology(config: Mapping) -> Topology:
    transport = config[c.TRANSPORT]
    return Topology(agencies=tuple(c.agency_codes(config)), exchange_name=transport[c.EXCHANGE],
                    dead_letter_exchange_name=transport[c.DEAD_LETTER_EXCHANGE],
                    queue_type=transport[c.QUEUE_TYPE], delivery_limit=int(transport[c.DELIVERY_LIMIT]),
                    observers=tuple(c.observer_codes(config)),
                    quorum_group_size=int(transport.get(c.QUORUM_GROUP_SIZE) or 0) or None)


def broker_names(config: Mapping) -> BrokerNames:
    broker = config[c.BROKER]
    return BrokerNames(bus_vhost=uris.vhost(broker[c.BUS_URI]),
                       control_vhost_template=uris.vhost(broker[c.CONTROL_URI]),
                       user_prefix=str(broker[c.USER_PREFIX]))


def credential_store(config: Mapping) -> CredentialStore:
    return CredentialStore(Path(config[c.BROKER][c.CREDENTIALS_DIR]).expanduser())


def broker_plan(config: Mapping) -> BrokerPlan:
    return build_plan(topology(config), route_table(config), broker_names(config))


def broker_hosts(config: Mapping) -> list[str]:
    """BROKER.ADDRESSES as a list of host:port (empty: the URIs' own hosts)."""
    return uris.split_hosts(config[c.BROKER].get(c.ADDRESSES))


def bus_address(config: Mapping) -> str:
    """The bus URI without credentials: one address per member of BROKER.ADDRESSES when it
    lists any (kombu's ``;`` failover list), else BROKER.BUS_URI as written."""
    return uris.with_addresses(str(config[c.BROKER][c.BUS_URI]), broker_hosts(config))


def control_address(config: Mapping, agency: str) -> str:
    """The agency's control-plane URI without credentials (a failover list likewise)."""
    uri = str(config[c.BROKER][c.CONTROL_URI]).replace("{agency}", agency)
    return uris.with_addresses(uri, broker_hosts(config))


def bus_uri(config: Mapping, agency: str, credentials: AgencyCredentials | None = None) -> str:
    """The bus URI with ``agency``'s own bus account (read from its credentials file)."""
    account = (credentials or credential_store(config).load(agency)).bus
    return uris.with_credentials(bus_address(config), account.user, account.password)


def control_uri(config: Mapping, agency: str, credentials: AgencyCredentials | None = None) -> str:
    """``agency``'s control-plane URI with its control account."""
    account = (credentials or credential_store(config).load(agency)).control
    return uris.with_credentials(control_address(config, agency), account.user, account.password)


def delivery_policy(config: Mapping) -> DeliveryPolicy:
    delivery = config[c.DELIVERY]
    return DeliveryPolicy(receipt_timeout=timedelta(seconds=float(delivery[c.RECEIPT_TIMEOUT_SECONDS])),
                          backoff_factor=int(delivery[c.BACKOFF_FACTOR]),
                          max_attempts=int(delivery[c.MAX_ATTEMPTS]),
                          publish_retry=timedelta(seconds=float(delivery[c.PUBLISH_RETRY_SECONDS])))


def route_table(config: Mapping) -> RouteTable:
    return RouteTable.load(config.get(c.ROUTES_FILE) or None).restricted_to(c.agency_codes(config))


def role_actions(config: Mapping) -> dict[str, tuple[Action, ...]]:
    """Each configured agency's actions (its role RPCs), from ROLES_FILE, checked against the
    route table."""
    roles = load_roles(config.get(c.ROLES_FILE) or None, c.agency_codes(config))
    check_routes(roles, route_table(config), c.agency_codes(config))
    return roles


def refer_action(config: Mapping, agency: str) -> Action | None:
    """``agency``'s clue-referring action (ROLES_FILE), or None: its usual recipient and the
    copy target of a suspected crime."""
    return first_refer_action(role_actions(config).get(agency, ()))


def key_directory(config: Mapping) -> KeyDirectory:
    keyring_dir = config.get(c.KEYRING_DIR) or None
    return KeyDirectory(Path(config[c.KEYS_DIR]).expanduser(),
                        Path(keyring_dir).expanduser() if keyring_dir else None)


def protocol_for(config: Mapping, agency: str, clock) -> tuple[Composer, Verifier, TrustedKeyring]:
    """The composer and verifier of ``agency``, and its keyring as keyring updates change it;
    private keys stay inside the key chain's Signers and BoxKeys."""
    directory = key_directory(config)
    signed = directory.load_signed_keyring()  # read and verified once, for both below
    keyring = signed.keyring if signed is not None else directory.load_keyring()
    chain = KeyChain(agency, keyring, directory.load_private_generations(agency), clock=clock)
    signer, box_key = chain.signer, chain.box_key
    routes = route_table(config)
    protocol = config[c.PROTOCOL]
    composer = Composer(signer, routes, keyring, box_key, clock=clock)
    verifier = Verifier(keyring, routes, c.agency_codes(config),
                        max_message_bytes=int(protocol[c.MAX_MESSAGE_BYTES]),
                        clock_skew=timedelta(seconds=float(protocol[c.CLOCK_SKEW_SECONDS])),
                        max_age=timedelta(seconds=float(protocol[c.MAX_DELIVERY_DELAY_SECONDS])),
                        box_key=box_key, clock=clock)
    return composer, verifier, TrustedKeyring(directory, keyring, chain, held=signed)
