"""The one place that wires a node: from the configuration, what an agency's handlers need
(services/handlers/context.NodeContext) and what the office adds to it (OfficeContext).

Used by the running node's dependency providers (services/nodes/dependencies.py), the office
service, the CLI acting on a node's database without a running node, and the tests, which
swap in their own clock or store. No Nameko here: the framework stays at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Mapping

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from adapters.crypto.trust import TrustedKeyring
from adapters.storage import migrations
from adapters.storage.store import Store
from schemas.registry import SUPERVISION_NOTICE
from services import config as c
from services import settings
from services.domain.money import MoneyRules, load_money_rules
from services.handlers.context import DeliveryPolicy, NodeContext, TransactionFactory
from services.office.calendar import Calendar
from services.office.handlers import OfficeContext
from services.office.rules import load_rules
from services.office.stats import judges_in
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
    # The keyring as keyring updates from the bus change it (adapters/crypto/trust.py).
    keyring: TrustedKeyring | None = None


def node_parts(config: Mapping, agency: str, *, clock: Clock = utc_now) -> NodeParts:
    composer, verifier, keyring = settings.protocol_for(config, agency, clock=clock)
    return NodeParts(agency, composer, verifier, settings.delivery_policy(config),
                     bool(config[c.DELIVERY][c.SEAL_BODIES]), money_rules(config), keyring)


def money_rules(config: Mapping) -> MoneyRules | None:
    """The reward and fine rules of the configuration (services/domain/money.py)."""
    return load_money_rules(config.get(c.OFFICE))


class DatabaseMissing(Exception):
    """An agency's database is not there (a SQLite file never made, a PostgreSQL database
    never created, or one without tables when asked not to create them): one line naming it
    and what to do."""


class DatabaseUnavailable(Exception):
    """An agency's database cannot be opened (server down, refused login, ...): one line."""


def open_store(config: Mapping, agency: str, *, create: bool = True) -> Store:
    """The agency's own database at this release's schema (the office's tables too, for the
    office). A new, empty database is created by the migrations; one behind this release
    raises DatabaseBehind (one line: run `cluebus db upgrade --agency AGENCY`), it is never
    upgraded silently (adapters/storage/migrations).

    ``create=False`` (the reading commands): a database that is not there, or has no tables
    yet, raises DatabaseMissing instead of being made. A PostgreSQL database that does not
    exist raises DatabaseMissing either way (a node does not create databases, only tables)."""
    url = c.database_url(config, agency)
    office = agency in c.observer_codes(config)
    parsed = make_url(url)
    if not create and _sqlite_file(parsed) and not Path(parsed.database).exists():
        raise DatabaseMissing(f"no database for {agency} at {parsed.database}: has its node run here?")
    store = Store(url)
    try:
        try:
            if not create:
                with store.engine.connect() as connection:
                    if all(s.revision is None for s in migrations.states(connection, office)):
                        raise DatabaseMissing(f"the database of {agency} at {_shown(parsed)} has no tables: "
                                              f"has its node run here?")
            store.ensure_schema(agency, office=office)
        except DBAPIError as exc:
            raise _cannot_open(agency, parsed, exc) from None
    except BaseException:
        store.dispose()
        raise
    return store


def _sqlite_file(parsed) -> bool:
    return parsed.get_backend_name() == "sqlite" and bool(parsed.database) and parsed.database != ":memory:"


def _shown(parsed) -> str:
    return parsed.render_as_string(hide_password=True)


def _cannot_open(agency: str, parsed, exc: DBAPIError) -> Exception:
    """One line for a database that cannot be opened; for a PostgreSQL database that does not
    exist, the command that creates it."""
    args = getattr(exc.orig, "args", None) or ()
    fields = args[0] if args and isinstance(args[0], dict) else {}
    if "3D000" in (fields.get("C"), getattr(exc.orig, "pgcode", None)):  # invalid_catalog_name: no such database
        where = [f"-h {parsed.host}" if parsed.host else "", f"-p {parsed.port}" if parsed.port else "",
                 f"-U {parsed.username}" if parsed.username else ""]
        command = " ".join(["createdb", *[w for w in where if w], parsed.database or ""])
        return DatabaseMissing(f"the database {parsed.database} of {agency} does not exist on "
                               f"{parsed.host or 'localhost'}:{parsed.port or 5432}: create it with `{command}`")
    reason = fields.get("M") or (str(exc.orig).strip().splitlines() or [exc.__class__.__name__])[0]
    return DatabaseUnavailable(f"cannot open the database of {agency} at {_shown(parsed)}: {reason}")


def node_context(parts: NodeParts, store: TransactionFactory, clock: Clock, *,
                 publishes_at_once: bool = False) -> NodeContext:
    """``publishes_at_once``: a running node, which publishes what it commits right after the
    commit (services/domain/delivery.py, HANDED_OVER); the CLI and the office leave it to the
    relay."""
    return NodeContext(parts.agency, store, parts.composer, parts.verifier, clock, parts.policy,
                       parts.seal_by_default, publishes_at_once=publishes_at_once, money_rules=parts.money_rules,
                       keyring=parts.keyring)


def offline_context(config: Mapping, agency: str, *, clock: Clock = utc_now,
                    store: Store | None = None, create: bool = True) -> NodeContext:
    """A node's context without a running node: for the CLI acting as that agency on its own
    database. What it sends goes to the outbox and is published by the node's relay.
    ``create=False`` for reading: a database not there raises DatabaseMissing (open_store)."""
    return node_context(node_parts(config, agency, clock=clock),
                        store or open_store(config, agency, create=create), clock)


def node_agencies(config: Mapping) -> list[str]:
    """Agencies that run an agency node (observers such as the joint office run their own)."""
    return [a for a in c.agency_codes(config) if a not in c.observer_codes(config)]


# -- the office ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfficeRules:
    tracker: Tracker
    warn_before: timedelta
    escalate_after: timedelta
    escalate_to: str
    judges: frozenset[str]  # who the route table lets send a judgment: a prosecution to one opens a trial


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
    escalate_to = str(office.get(c.ESCALATE_TO) or "").strip()
    if escalate_to not in c.agency_codes(config):
        raise c.ConfigError(f"{c.OFFICE}.{c.ESCALATE_TO} must be a configured agency, not {escalate_to!r} "
                            f"(overdue steps are escalated to it)")
    routes = settings.route_table(config)
    for observer in c.observer_codes(config):
        if not routes.allows(SUPERVISION_NOTICE, observer, escalate_to):
            raise c.ConfigError(f"{c.OFFICE}.{c.ESCALATE_TO} is {escalate_to}, but the route table (ROUTES_FILE) does "
                                f"not let {observer} send it a {SUPERVISION_NOTICE}")
    return OfficeRules(tracker,
                       timedelta(hours=float(office[c.WARN_BEFORE_HOURS])),
                       timedelta(hours=float(office[c.ESCALATE_AFTER_HOURS])),
                       escalate_to, judges_in(routes))


def office_context_for(node: NodeContext, rules: OfficeRules, agencies: list[str]) -> OfficeContext:
    return OfficeContext(node, rules.tracker, rules.warn_before, rules.escalate_after, list(agencies),
                         rules.escalate_to, rules.judges)


def office_context(config: Mapping, *, clock: Clock = utc_now, store: Store | None = None,
                   create: bool = True) -> OfficeContext:
    """The office's context on its own database, without a running office node (for the CLI);
    ``create=False`` for reading: a database not there raises DatabaseMissing (open_store)."""
    office = c.office_code(config)
    return office_context_for(offline_context(config, office, clock=clock, store=store, create=create),
                              office_rules(config), node_agencies(config))
