"""Typed views of the configuration for the node's building blocks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Mapping

from adapters.crypto.keys import KeyDirectory
from adapters.crypto.sealing import BoxKey
from adapters.crypto.signing import Signer
from adapters.transport.topology import Topology
from schemas.routes import RouteTable

from . import config as c
from .handlers.context import DeliveryPolicy
from .protocol.compose import Composer
from .protocol.verify import Verifier


def topology(config: Mapping) -> Topology:
    transport = config[c.TRANSPORT]
    return Topology(agencies=tuple(c.agency_codes(config)), exchange_name=transport[c.EXCHANGE],
                    dead_letter_exchange_name=transport[c.DEAD_LETTER_EXCHANGE],
                    queue_type=transport[c.QUEUE_TYPE], delivery_limit=int(transport[c.DELIVERY_LIMIT]),
                    observers=tuple(c.observer_codes(config)))


def delivery_policy(config: Mapping) -> DeliveryPolicy:
    delivery = config[c.DELIVERY]
    return DeliveryPolicy(receipt_timeout=timedelta(seconds=float(delivery[c.RECEIPT_TIMEOUT_SECONDS])),
                          backoff_factor=int(delivery[c.BACKOFF_FACTOR]),
                          max_attempts=int(delivery[c.MAX_ATTEMPTS]),
                          publish_retry=timedelta(seconds=float(delivery[c.PUBLISH_RETRY_SECONDS])))


def route_table(config: Mapping) -> RouteTable:
    return RouteTable.load(config.get(c.ROUTES_FILE) or None).restricted_to(c.agency_codes(config))


def key_directory(config: Mapping) -> KeyDirectory:
    return KeyDirectory(Path(config[c.KEYS_DIR]).expanduser())


def protocol_for(config: Mapping, agency: str, clock) -> tuple[Composer, Verifier]:
    """The composer and verifier of ``agency``; private keys stay inside Signer and BoxKey."""
    directory = key_directory(config)
    keyring = directory.load_keyring()
    material = directory.load_private(agency)
    signer = Signer(agency, material.signing_key_id, material.signing_seed)
    box_key = BoxKey(agency, material.box_key_id, material.box_secret)
    routes = route_table(config)
    protocol = config[c.PROTOCOL]
    composer = Composer(signer, routes, keyring, box_key, clock=clock)
    verifier = Verifier(keyring, routes, c.agency_codes(config),
                        max_message_bytes=int(protocol[c.MAX_MESSAGE_BYTES]),
                        clock_skew=timedelta(seconds=float(protocol[c.CLOCK_SKEW_SECONDS])),
                        max_age=timedelta(seconds=float(protocol[c.MAX_DELIVERY_DELAY_SECONDS])),
                        box_key=box_key, clock=clock)
    return composer, verifier
