"""The bus operator's side: broker accounts and topology from the configuration
(``cluebus broker setup | definitions | credentials | remove``)."""

from __future__ import annotations

from typing import Mapping

from adapters.transport.credentials import AgencyCredentials, BrokerAccount, CredentialsError
from adapters.transport import uris
from adapters.transport.management import ManagementApi, ManagementError, SetupReport
from adapters.transport.provisioning import OPERATOR, BrokerPlan, definitions

from . import config as c
from . import settings


def credentials_for_plan(config: Mapping, plan: BrokerPlan, *, rotate: bool = False) -> dict[str, AgencyCredentials]:
    """Every agency's credentials: kept from its file, or made (and written, 0600) when it has
    none, or when ``rotate``."""
    store = settings.credential_store(config)
    names = settings.broker_names(config)
    result = {}
    for agency in plan.agencies:
        existing = None
        if store.exists(agency) and not rotate:
            existing = store.load(agency)
            if existing.bus.user != names.bus_user(agency) or existing.control.user != names.control_user(agency):
                raise CredentialsError(
                    f"{store.path_for(agency)} holds accounts {existing.bus.user}/{existing.control.user}, but the "
                    f"configuration names {names.bus_user(agency)}/{names.control_user(agency)}: use --rotate")
        if existing is None:
            existing = AgencyCredentials(agency, BrokerAccount.generate(names.bus_user(agency)),
                                         BrokerAccount.generate(names.control_user(agency)))
            store.save(existing)
        result[agency] = existing
    # The bus operator's account, for keyring updates: a bus account only.
    operator_user = names.bus_user(OPERATOR)
    operator = store.load(OPERATOR, control=False) if store.exists(OPERATOR) and not rotate else None
    if operator is None or operator.bus.user != operator_user:
        operator = AgencyCredentials(OPERATOR, BrokerAccount.generate(operator_user), None)
        store.save(operator)
    result[OPERATOR] = operator
    return result


def check_one_broker(config: Mapping) -> None:
    """The plan puts both planes on one broker (the one behind ADMIN_URI): refuse a
    CONTROL_URI on other hosts than BUS_URI's rather than make its virtual hosts on the wrong
    broker. With BROKER.ADDRESSES both planes use those addresses, so they agree."""
    if settings.broker_hosts(config):
        return
    broker = config[c.BROKER]
    bus = sorted({uris.host_port(a) for a in uris.addresses(str(broker[c.BUS_URI]))})
    control = sorted({uris.host_port(a) for a in uris.addresses(str(broker[c.CONTROL_URI]))})
    if bus != control:
        raise ManagementError(
            f"BROKER.CONTROL_URI is on {_hosts(control)} but BUS_URI on {_hosts(bus)}: broker setup provisions "
            f"both planes on the one broker behind ADMIN_URI; put both URIs on that broker (or list its "
            f"members in BROKER.ADDRESSES)")


def _hosts(hosts: list[tuple[str, int]]) -> str:
    return ", ".join(f"{host}:{port}" for host, port in hosts)


def setup(config: Mapping, admin_uri: str | None = None, *, rotate: bool = False,
          keep_admin_access: bool = False) -> tuple[BrokerPlan, SetupReport]:
    check_one_broker(config)
    plan = settings.broker_plan(config)
    credentials = credentials_for_plan(config, plan, rotate=rotate)
    api = ManagementApi(admin_uri or config[c.BROKER][c.ADMIN_URI])
    return plan, api.apply(plan, credentials, keep_admin_access=keep_admin_access)


def definitions_document(config: Mapping) -> dict:
    check_one_broker(config)
    plan = settings.broker_plan(config)
    return definitions(plan, credentials_for_plan(config, plan))


def remove(config: Mapping, admin_uri: str | None = None, *, forget_credentials: bool = True) -> BrokerPlan:
    """Delete the plan's virtual hosts (queues and messages with them) and accounts."""
    plan = settings.broker_plan(config)
    ManagementApi(admin_uri or config[c.BROKER][c.ADMIN_URI]).remove(plan)
    if forget_credentials:
        store = settings.credential_store(config)
        for agency in [*plan.agencies, OPERATOR]:
            store.remove(agency)
    return plan
