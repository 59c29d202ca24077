"""The broker plan from the configuration: accounts, permissions (least privilege), topology,
the definitions file, credentials files and URIs. No broker needed."""

from __future__ import annotations

import re
import stat
from urllib.parse import urlsplit

import pytest

from adapters.transport import uris
from adapters.transport.credentials import (AgencyCredentials, BrokerAccount, CredentialsError,
                                            CredentialStore)
from adapters.transport.provisioning import allowed_routing_keys, definitions, rabbit_password_hash
from services import config as c
from services import provisioning, settings

AGENCIES = ["medical_security", "public_security", "procuratorate", "court", "health", "finance",
            "joint_office"]


@pytest.fixture
def config(tmp_path):
    return c.load_config(environ={"CLUEBUS_CREDENTIALS_DIR": str(tmp_path / "credentials")})


@pytest.fixture
def plan(config):
    return settings.broker_plan(config)


def _permission(plan, user, vhost=None):
    [found] = [p for p in plan.permissions if p.user == user and (vhost is None or p.vhost == vhost)]
    return found


def test_every_configured_agency_has_a_bus_and_a_control_account(plan):
    assert plan.agencies == AGENCIES
    assert sorted(a.user for a in plan.accounts) == sorted(
        [f"cluebus.{a}" for a in AGENCIES] + [f"cluebus.{a}.control" for a in AGENCIES]
        + ["cluebus.bus_operator"])
    assert plan.bus_vhost == "cluebus"
    assert plan.control_vhosts["public_security"] == "cluebus.public_security.control"
    assert len(set(plan.vhosts)) == len(AGENCIES) + 1


@pytest.mark.parametrize("agency", AGENCIES)
def test_an_agency_configures_nothing_writes_the_bus_exchange_and_reads_its_own_queues(plan, agency):
    permission = _permission(plan, f"cluebus.{agency}", "cluebus")
    assert permission.configure == "^$"
    assert re.fullmatch(permission.write, "cluebus")
    for other in ("cluebus.dlx", "amq.default", "", "nameko-rpc", "cluebusX"):
        assert not re.fullmatch(permission.write, other)
    assert re.fullmatch(permission.read, f"cluebus.{agency}")
    assert re.fullmatch(permission.read, f"cluebus.{agency}.quarantine")
    for other in AGENCIES:
        if other != agency:
            assert not re.fullmatch(permission.read, f"cluebus.{other}")
            assert not re.fullmatch(permission.read, f"cluebus.{other}.quarantine")
    assert not re.fullmatch(permission.read, "cluebus")  # no binding of its own queue either


def test_the_bus_account_has_no_rights_on_any_control_plane(plan):
    bus_users = {f"cluebus.{a}" for a in AGENCIES}
    for permission in plan.permissions:
        if permission.vhost != "cluebus":
            assert permission.user not in bus_users
            assert permission.user == f"{permission.vhost.removesuffix('.control')}.control"


def test_only_its_own_control_account_may_use_an_agencys_control_plane(plan):
    for agency in AGENCIES:
        users = [p.user for p in plan.permissions if p.vhost == plan.control_vhosts[agency]]
        assert users == [f"cluebus.{agency}.control"]


def test_topic_permissions_follow_the_route_table(plan, config):
    topic = {t.user: t for t in plan.topic_permissions}
    medical = topic["cluebus.medical_security"]
    assert medical.exchange == "cluebus" and medical.read == "^$"
    assert re.fullmatch(medical.write, "public_security.clue_transfer")
    assert re.fullmatch(medical.write, "procuratorate.copy_notice")
    assert re.fullmatch(medical.write, "finance.receipt")  # a receipt may answer anyone
    assert not re.fullmatch(medical.write, "public_security.filing_decision")  # the police's to send
    assert not re.fullmatch(medical.write, "medical_security.receipt")  # never to itself
    assert not re.fullmatch(medical.write, "public_security.#")
    office = topic["cluebus.joint_office"]
    # The observer writes only what it sends itself: urges, escalations, receipts, and (as every
    # agency may) reconciliation messages.
    allowed = allowed_routing_keys("joint_office", settings.route_table(config), AGENCIES)
    assert {key.split(".")[1] for key in allowed} == {"urge", "supervision_notice", "receipt",
                                                      "reconciliation_summary", "reconciliation_answer"}
    assert not re.fullmatch(office.write, "public_security.clue_transfer")


def test_the_observer_reads_its_own_queue_bound_to_every_agency(plan):
    queues = {q.name: q for q in plan.queues}
    office = queues["cluebus.joint_office"]
    assert sorted(key for _, key in office.bindings) == sorted(f"{a}.*" for a in AGENCIES)
    assert queues["cluebus.public_security"].bindings == (("cluebus", "public_security.*"),)
    assert re.fullmatch(_permission(plan, "cluebus.joint_office", "cluebus").read, "cluebus.joint_office")


def test_queues_are_quorum_with_dead_lettering_and_quarantine_queues_are_quorum(plan):
    queues = {q.name: q for q in plan.queues}
    main = queues["cluebus.court"].arguments
    assert main["x-queue-type"] == "quorum" and main["x-delivery-limit"] == 20
    assert main["x-dead-letter-exchange"] == "cluebus.dlx"
    assert main["x-dead-letter-routing-key"] == "cluebus.court"
    quarantine = queues["cluebus.court.quarantine"]
    assert quarantine.arguments == {"x-queue-type": "quorum"}
    assert quarantine.bindings == (("cluebus.dlx", "cluebus.court"),)


def test_credentials_are_made_once_and_kept(config, plan):
    first = provisioning.credentials_for_plan(config, plan)
    again = provisioning.credentials_for_plan(config, plan)
    assert first == again
    rotated = provisioning.credentials_for_plan(config, plan, rotate=True)
    assert all(rotated[a].bus.password != first[a].bus.password for a in AGENCIES)
    path = settings.credential_store(config).path_for("court")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_readable_credentials_file_is_refused(config, plan):
    provisioning.credentials_for_plan(config, plan)
    path = settings.credential_store(config).path_for("court")
    path.chmod(0o644)
    with pytest.raises(CredentialsError, match="readable by others"):
        settings.credential_store(config).load("court")


def test_passwords_never_show_in_repr(config, plan):
    creds = provisioning.credentials_for_plan(config, plan)["court"]
    assert creds.bus.password not in repr(creds) and creds.control.password not in repr(creds)


def test_the_bus_operator_may_publish_keyring_updates_and_nothing_else(config, plan):
    operator = "cluebus.bus_operator"
    permission = _permission(plan, operator, "cluebus")
    assert (permission.configure, permission.read) == ("^$", "^$")
    assert re.fullmatch(permission.write, "cluebus") and not re.fullmatch(permission.write, "cluebus.dlx")
    [topic] = [t for t in plan.topic_permissions if t.user == operator]
    for agency in AGENCIES:
        assert re.fullmatch(topic.write, f"{agency}.keyring_update")
        assert not re.fullmatch(topic.write, f"{agency}.clue_transfer")
        assert not re.fullmatch(topic.write, f"{agency}.receipt")
    assert not any(p.user == operator for p in plan.permissions if p.vhost != "cluebus")
    # Its credentials file holds a bus account only.
    creds = provisioning.credentials_for_plan(config, plan)["bus_operator"]
    assert creds.bus.user == operator and creds.control is None
    # No agency may publish a keyring update.
    for t in plan.topic_permissions:
        if t.user != operator:
            assert not any(re.fullmatch(t.write, f"{a}.keyring_update") for a in AGENCIES)


def test_credentials_for_other_account_names_need_rotate(config, plan, tmp_path):
    store = CredentialStore(tmp_path / "credentials")
    store.save(AgencyCredentials("court", BrokerAccount("someone.else", "pw-1"), BrokerAccount("x.control", "pw-2")))
    with pytest.raises(CredentialsError, match="--rotate"):
        provisioning.credentials_for_plan(config, plan)


def test_definitions_file_matches_the_plan(config, plan):
    document = provisioning.definitions_document(config)
    creds = provisioning.credentials_for_plan(config, plan)
    users = {u["name"]: u for u in document["users"]}
    assert set(users) == {a.user for a in plan.accounts}
    assert {v["name"] for v in document["vhosts"]} == set(plan.vhosts)
    assert len(document["permissions"]) == len(plan.permissions)
    assert len(document["topic_permissions"]) == len(AGENCIES) + 1   # and the bus operator's
    assert {q["name"] for q in document["queues"]} == {q.name for q in plan.queues}
    # No password in clear; the hash is RabbitMQ's salted SHA-256.
    text = repr(document)
    assert creds["court"].bus.password not in text
    salted = users["cluebus.court"]["password_hash"]
    import base64
    salt = base64.b64decode(salted)[:4]
    assert rabbit_password_hash(creds["court"].bus.password, salt) == salted


def test_uris_get_and_lose_credentials():
    uri = "amqp://127.0.0.1:5672/cluebus;amqp://10.0.0.2:5673/cluebus"
    with_creds = uris.with_credentials(uri, "cluebus.court", "p@ss/word:1")
    assert with_creds == ("amqp://cluebus.court:p%40ss%2Fword%3A1@127.0.0.1:5672/cluebus;"
                          "amqp://cluebus.court:p%40ss%2Fword%3A1@10.0.0.2:5673/cluebus")
    assert "p%40ss" not in uris.without_credentials(with_creds)
    assert uris.without_credentials(with_creds).startswith("amqp://cluebus.court@127.0.0.1:5672/cluebus")
    assert uris.vhost(with_creds) == "cluebus"
    assert uris.vhost("amqp://h:1/") == "/" and uris.vhost("amqp://h:1") == "/"
    assert uris.vhost("amqp://h:1/a%2Fb") == "a/b"


def test_bus_user_names_map_back_to_agencies(config):
    names = settings.broker_names(config)
    assert names.agency_of_bus_user("cluebus.court", AGENCIES) == "court"
    assert names.agency_of_bus_user("cluebus.court.control", AGENCIES) is None
    assert names.agency_of_bus_user("guest", AGENCIES) is None
    assert names.agency_of_bus_user(None, AGENCIES) is None


def test_a_list_of_broker_addresses_makes_both_planes_failover_lists(tmp_path):
    config = c.load_config(environ={"CLUEBUS_CREDENTIALS_DIR": str(tmp_path / "credentials"),
                                    "CLUEBUS_BROKER_ADDRESSES": "10.0.0.1:5672, 10.0.0.2:5673,10.0.0.3:5674"})
    creds = provisioning.credentials_for_plan(config, settings.broker_plan(config))["court"]
    bus = settings.bus_uri(config, "court", creds)
    assert uris.addresses(bus) == [f"amqp://cluebus.court:{creds.bus.password}@10.0.0.{i}:{5671 + i}/cluebus"
                                   for i in (1, 2, 3)]
    control = uris.addresses(settings.control_uri(config, "court", creds))
    assert [urlsplit(a).netloc.rsplit("@", 1)[1] for a in control] == ["10.0.0.1:5672", "10.0.0.2:5673", "10.0.0.3:5674"]
    assert all(urlsplit(a).path == "/cluebus.court.control" for a in control)
    assert settings.broker_names(config).bus_vhost == "cluebus"
    assert creds.bus.password not in uris.without_credentials(bus)
    # kombu takes the ;-separated list as one connection with alternates, in this order
    from kombu import Connection
    connection = Connection(bus)
    assert [urlsplit(a).port for a in connection.alt] == [5672, 5673, 5674]


def test_without_addresses_the_uris_are_used_as_written(config, tmp_path):
    creds = provisioning.credentials_for_plan(config, settings.broker_plan(config))["court"]
    assert uris.addresses(settings.bus_uri(config, "court", creds)) == [
        f"amqp://cluebus.court:{creds.bus.password}@127.0.0.1:5672/cluebus"]


def test_the_quorum_group_size_is_the_brokers_unless_configured(tmp_path, plan):
    assert all("x-quorum-initial-group-size" not in q.arguments for q in plan.queues)
    config = c.load_config(environ={"CLUEBUS_CREDENTIALS_DIR": str(tmp_path / "credentials"),
                                    "CLUEBUS_QUORUM_GROUP_SIZE": "3"})
    assert all(q.arguments["x-quorum-initial-group-size"] == 3 for q in settings.broker_plan(config).queues)


def test_a_former_agency_is_recognised_by_its_bus_account_name_alone(plan):
    prefix = plan.names.user_prefix
    assert plan.former_agency(f"{prefix}tax_bureau") == "tax_bureau"
    # Not former: a configured agency, the bus operator, a control account, someone else's name.
    assert plan.former_agency(f"{prefix}court") is None
    assert plan.former_agency(f"{prefix}bus_operator") is None
    assert plan.former_agency(f"{prefix}tax_bureau.control") is None
    assert plan.former_agency("monitoring") is None
    assert plan.former_agency(prefix) is None


def test_without_a_user_prefix_no_account_is_taken_for_a_former_agencys(config):
    config[c.BROKER][c.USER_PREFIX] = ""
    plan = settings.broker_plan(config)
    assert plan.former_agency("guest") is None
    assert plan.former_agency("tax_bureau") is None


def test_setup_refuses_a_control_plane_on_another_broker_than_the_bus(config):
    from adapters.transport.management import ManagementError
    config[c.BROKER][c.CONTROL_URI] = "amqp://10.0.0.9:5672/cluebus.{agency}.control"
    with pytest.raises(ManagementError, match=r"CONTROL_URI is on 10\.0\.0\.9:5672 but BUS_URI on 127\.0\.0\.1:5672"):
        provisioning.setup(config, "http://guest:guest@127.0.0.1:1/")
    with pytest.raises(ManagementError, match="one broker"):
        provisioning.definitions_document(config)
    # A cluster's members listed once serve both planes.
    config[c.BROKER][c.ADDRESSES] = "10.0.0.9:5672"
    provisioning.check_one_broker(config)
