"""Commands that need the broker say so in one line, with the fix, when it is not there."""

import tempfile

from services.cli.main import main


def _keys(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("CLUEBUS_CREDENTIALS_DIR", str(tmp_path / "credentials"))
    assert main(["keys", "init"]) == 0
    capsys.readouterr()


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_demo_without_a_reachable_broker_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUEBUS_BROKER_ADMIN_URI", "http://guest:guest@127.0.0.1:1/")  # nothing listens there
    _keys(tmp_path, monkeypatch, capsys)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where the demo makes its data directory
    assert main(["demo"]) == 2
    err = _one_line(capsys)
    assert "cannot reach the management API" in err and "rabbitmq-server -detached" in err
    assert "guest:guest" not in err
    assert list(temporary.iterdir()) == []  # its data directory, broker credentials included, is gone


def test_run_without_credentials_says_who_makes_them(tmp_path, monkeypatch, capsys):
    _keys(tmp_path, monkeypatch, capsys)
    assert main(["run", "--agency", "public_security"]) == 2
    err = _one_line(capsys)
    assert "broker credentials of public_security" in err and "cluebus broker setup" in err


def test_run_with_an_unreachable_bus_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUEBUS_BUS_URI", "amqp://127.0.0.1:1/cluebus")  # nothing listens there
    _keys(tmp_path, monkeypatch, capsys)
    from adapters.transport.credentials import AgencyCredentials, BrokerAccount, CredentialStore
    CredentialStore(tmp_path / "credentials").save(AgencyCredentials(
        "public_security", BrokerAccount("cluebus.public_security", "s3cret-password"),
        BrokerAccount("cluebus.public_security.control", "other-s3cret")))
    assert main(["run", "--agency", "public_security"]) == 2
    err = _one_line(capsys)
    assert "cannot reach the bus" in err and "rabbitmq-server -detached" in err
    assert "s3cret" not in err


def test_each_address_of_a_failover_list_is_tried_once_and_without_a_pause(monkeypatch):
    """kombu's own retry would sleep 2 s after the last address and try the first again:
    every caller of connect_once_per_address tries again later by itself."""
    import pytest
    from kombu import Connection
    from kombu.exceptions import OperationalError

    from adapters.transport.topology import connect_once_per_address

    slept = []
    monkeypatch.setattr("kombu.utils.functional.sleep", slept.append)
    for uri, ports in (("amqp://u:p@127.0.0.1:1/x", [1]),
                       ("amqp://u:p@127.0.0.1:1/x;amqp://u:p@127.0.0.1:2/x;amqp://u:p@127.0.0.1:3/x", [1, 2, 3])):
        connection = Connection(uri, connect_timeout=1)
        tried = []
        establish = connection._establish_connection

        def tracked(connection=connection, tried=tried, establish=establish):
            tried.append(connection.port)
            return establish()
        monkeypatch.setattr(connection, "_establish_connection", tracked)
        with pytest.raises(OperationalError):  # nothing listens on those ports
            connect_once_per_address(connection)
        assert tried == ports
        connection.release()
    assert not [seconds for seconds in slept if seconds]
