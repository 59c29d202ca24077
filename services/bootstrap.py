"""The one place that wires a node: from the configuration, what an agency's handlers need
(services/handlers/context.NodeContext) and what the office adds to it (OfficeContext).

Used by the running node's dependency providers (services/nodes/dependencies.py), the office
service, the CLI acting on a node's database without a running node, and the tests, which
swap in their own clock or store. No Nameko here: the framework stays at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping

from adapters.storage.store import Store
from services import config as c
from services import settings
from services.domain.money import MoneyRules, load_money_rules
from services.handlers.context import DeliveryPolicy, NodeContext, TransactionFactory
from services.office.calendar import Calendar
from services.office.handlers import OfficeContext
from services.office.rules import load_rules
from services.office.tracking import Tracker
from services.protocol.compose import Composer
from services.protocol.verify import Verifier

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class NodeParts:
    """What an agency's node is made of, built once per process: signing, sealing and
    verification (the composer holds a Signer, never the private key itself) and the delivery
    settings."""

    agency: str
    composer: Composer
    verifier: Verifier
    policy: DeliveryPolicy
    seal_by_default: bool
    # The jurisdiction's reward and fine rules (OFFICE.REWARD_RULES, FINE_RULES).
    money_rules: MoneyRules | None = None


def node_parts(config: Mapping, agency: str, *, clock: Clock = utc_now) -> NodeParts:
    composer, verifier = settings.protocol_for(config, agency, clock=clock)
    return NodeParts(agency, composer, verifier, settings.delivery_policy(config),
                     bool(config[c.DELIVERY][c.SEAL_BODIES]), money_rules(config))


def money_rules(config: Mapping) -> MoneyRules | None:
    """The reward and fine rules of the configuration (services/domain/money.py)."""
    return load_money_rules(config.get(c.OFFICE))


def open_store(config: Mapping, agency: str) -> Store:
    """The agency's own database at this release's schema (the office's tables too, for the
    office). A new, empty database is created by the migrations; one behind this release
    raises DatabaseBehind (one line: run `cluebus db upgrade --agency AGENCY`), it is never
    upgraded silently (adapters/storage/migrations)."""
    store = Store(c.database_url(config, agency))
    try:
        store.ensure_schema(agency, office=agency in c.observer_codes(config))
    except BaseException:
        store.dispose()
        raise
    return store


def node_context(parts: NodeParts, store: TransactionFactory, clock: Clock, *,
                 publishes_at_once: bool = False) -> NodeContext:
    """``publishes_at_once``: a running node, which publishes what it commits right after the
    commit (services/domain/delivery.py, HANDED_OVER); the CLI and the office leave it to the
    relay."""
    return NodeContext(parts.agency, store, parts.composer, parts.verifier, clock, parts.policy,
                       parts.seal_by_default, publishes_at_once=publishes_at_once, money_rules=parts.money_rules)


def offline_context(config: Mapping, agency: str, *, clock: Clock = utc_now,
                    store: Store | None = None) -> NodeContext:
    """A node's context without a running node: for the CLI acting as that agency on its own
    database. What it sends goes to the outbox and is published by the node's relay."""
    return node_context(node_parts(config, agency, clock=clock), store or open_store(config, agency), clock)


def node_agencies(config: Mapping) -> list[str]:
    """Agencies that run an agency node (observers such as the joint office run their own)."""
    return [a for a in c.agency_codes(config) if a not in c.observer_codes(config)]


# -- the office ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfficeRules:
    tracker: Tracker
    warn_before: timedelta
    escalate_after: timedelta


def office_calendar(config: Mapping) -> Calendar:
    """The working-day calendar (OFFICE.CALENDAR_FILE, else the shipped one) in OFFICE.TIMEZONE."""
    office = config[c.OFFICE]
    calendar = Calendar.from_yaml(office.get(c.CALENDAR_FILE) or None)
    if office.get(c.TIMEZONE) and office[c.TIMEZONE] != calendar.timezone:
        calendar = calendar.with_timezone(office[c.TIMEZONE])
    return calendar


def office_rules(config: Mapping) -> OfficeRules:
    """Deadline rules, the holiday calendar and the fine rules, from the configuration."""
    office = config[c.OFFICE]
    money = money_rules(config)
    tracker = Tracker(load_rules(office[c.DEADLINES]), office_calendar(config),
                      fine_rules=money.fines if money else ())
    return OfficeRules(tracker,
                       timedelta(hours=float(office[c.WARN_BEFORE_HOURS])),
                       timedelta(hours=float(office[c.ESCALATE_AFTER_HOURS])))


def office_context_for(node: NodeContext, rules: OfficeRules, agencies: list[str]) -> OfficeContext:
    return OfficeContext(node, rules.tracker, rules.warn_before, rules.escalate_after, list(agencies))


def office_context(config: Mapping, *, clock: Clock = utc_now, store: Store | None = None) -> OfficeContext:
    """The office's context on its own database, without a running office node (for the CLI)."""
    office = next(iter(c.observer_codes(config)))
    return office_context_for(offline_context(config, office, clock=clock, store=store),
                              office_rules(config), node_agencies(config))
