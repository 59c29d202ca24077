"""Commands that need the broker say so in one line, with the fix, when it is not there."""

import pytest

from services.cli.main import main


@pytest.mark.parametrize("argv", [["demo"], ["run", "--agency", "public_security"]])
def test_unreachable_broker_is_one_line_with_the_fix(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUEBUS_AMQP_URI", "amqp://guest:guest@127.0.0.1:1/")  # nothing listens there
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(tmp_path / "keys"))
    assert main(["keys", "init"]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cannot reach RabbitMQ" in err and "rabbitmq-server -detached" in err and "guest:guest" not in err
