"""`cluebus broker setup | definitions | credentials | remove` against the real broker."""

from __future__ import annotations

import uuid

import pytest
from amqp.exceptions import AccessRefused

from adapters.transport.management import ManagementApi
from services import config as c
from services import provisioning, settings
from services.cli.main import main
from services.runner import BrokerUnreachable, check_bus
from tests.integration.conftest import MANAGEMENT_URI, bus_broker_environ

AGENCIES = ("medical_security", "public_security", "procuratorate", "court", "health", "finance", "joint_office")


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A configuration naming a bus nobody provisioned yet; everything made is removed after."""
    environ = bus_broker_environ(tmp_path, uuid.uuid4().hex[:10])
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    config = c.load_config(environ=environ)
    yield config
    provisioning.remove(config)


def test_setup_is_idempotent_and_keeps_passwords(fresh, capsys):
    assert main(["broker", "setup"]) == 0
    out = capsys.readouterr().out
    assert "created virtual host" in out and "created user" in out
    before = {a: settings.credential_store(fresh).load(a) for a in AGENCIES}
    for agency in AGENCIES:
        check_bus(fresh, agency)
    assert main(["broker", "setup"]) == 0  # again: nothing new, nothing broken
    assert "created" not in capsys.readouterr().out
    assert {a: settings.credential_store(fresh).load(a) for a in AGENCIES} == before
    for agency in AGENCIES:
        check_bus(fresh, agency)


def test_rotate_gives_new_passwords_and_the_old_ones_stop_working(fresh, capsys):
    assert main(["broker", "setup"]) == 0
    old_uri = settings.bus_uri(fresh, "court")
    assert main(["broker", "setup", "--rotate"]) == 0
    assert settings.bus_uri(fresh, "court") != old_uri
    check_bus(fresh, "court")
    from kombu import Connection
    with pytest.raises(AccessRefused):
        Connection(old_uri, connect_timeout=5).ensure_connection(max_retries=1)


def test_setup_removes_the_administrators_rights_unless_asked(fresh):
    provisioning.setup(fresh)
    api = ManagementApi(MANAGEMENT_URI)
    plan = settings.broker_plan(fresh)
    for vhost in plan.vhosts:
        users = {p["user"] for p in api.get(f"/vhosts/{vhost.replace('/', '%2F')}/permissions")}
        assert api.user not in users
        # On the bus: every agency's bus account and the bus operator's (keyring updates).
        assert len(users) == (len(AGENCIES) + 1 if vhost == plan.bus_vhost else 1)


def test_setup_removes_a_stale_binding(fresh):
    provisioning.setup(fresh, keep_admin_access=True)
    api = ManagementApi(MANAGEMENT_URI)
    vhost = settings.broker_names(fresh).bus_vhost
    api.request("POST", f"/bindings/{vhost}/e/cluebus/q/cluebus.joint_office", {"routing_key": "#", "arguments": {}})
    _, report = provisioning.setup(fresh)
    assert report.removed == ["binding cluebus '#' → cluebus.joint_office"]


def test_credentials_prints_the_agencys_own_uri(fresh, capsys):
    assert main(["broker", "setup"]) == 0
    capsys.readouterr()
    assert main(["broker", "credentials", "court"]) == 0
    uri = capsys.readouterr().out.strip()
    creds = settings.credential_store(fresh).load("court")
    assert uri == settings.bus_uri(fresh, "court") and creds.bus.user in uri
    assert main(["broker", "credentials", "court", "--control"]) == 0
    assert creds.control.user in capsys.readouterr().out


def test_an_imported_definitions_file_gives_the_same_bus(fresh, tmp_path, capsys):
    out = tmp_path / "definitions.json"
    assert main(["broker", "definitions", "--out", str(out)]) == 0
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    import json
    ManagementApi(MANAGEMENT_URI).import_definitions(json.loads(out.read_text()))
    for agency in AGENCIES:
        check_bus(fresh, agency)  # the accounts log in, and their queues exist


def test_a_node_without_a_provisioned_bus_says_what_to_do(fresh):
    provisioning.credentials_for_plan(fresh, settings.broker_plan(fresh))  # credentials, but no broker setup
    with pytest.raises(BrokerUnreachable, match="cluebus broker setup"):
        check_bus(fresh, "court")


def test_an_agency_taken_out_of_the_configuration_loses_its_accounts(fresh, capsys):
    provisioning.setup(fresh)
    check_bus(fresh, "finance")
    finance_uri = settings.bus_uri(fresh, "finance")
    api = ManagementApi(MANAGEMENT_URI)
    names = settings.broker_names(fresh)
    # A hand-made account with rights on the bus: the configuration does not name it either.
    stranger = f"stranger-{uuid.uuid4().hex[:10]}"
    api.put(f"/users/{stranger}", {"password": "pw", "tags": ""})
    bus_vhost = names.bus_vhost.replace("/", "%2F")
    api.put(f"/permissions/{bus_vhost}/{stranger}", {"configure": "", "write": ".*", "read": ".*"})
    try:
        smaller = {**fresh, c.AGENCIES: {k: v for k, v in fresh[c.AGENCIES].items() if k != "finance"}}
        _, report = provisioning.setup(smaller)
        assert f"user {names.bus_user('finance')} (finance is no longer in AGENCIES)" in report.removed
        assert f"user {names.control_user('finance')} (finance is no longer in AGENCIES)" in report.removed
        assert any(line.startswith(f"{stranger}'s rights on") for line in report.removed)
        assert api.get(f"/users/{names.bus_user('finance')}", allow=(404,)) is None
        assert {p["user"] for p in api.get(f"/vhosts/{bus_vhost}/permissions")} == \
            {names.bus_user(a) for a in smaller[c.AGENCIES]} | {names.bus_user("bus_operator")}
        from kombu import Connection
        with pytest.raises(AccessRefused):
            Connection(finance_uri, connect_timeout=5).ensure_connection(max_retries=1)
        # Its queues keep what they hold, and are named so the operator can drain them.
        assert any(line.startswith("queue cluebus.finance ") for line in report.left)
        for agency in smaller[c.AGENCIES]:
            check_bus(smaller, agency)
        # Again: nothing more to take away.
        _, again = provisioning.setup(smaller)
        assert again.removed == []
    finally:
        api.delete(f"/users/{stranger}")
        api.delete(f"/vhosts/{names.control_vhost('finance').replace('/', '%2F')}")
