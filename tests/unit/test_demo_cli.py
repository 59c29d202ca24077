"""What `cluebus demo` tells its user: the dashboard goes with the demo (unless --stay), and
after --keep the exact commands that inspect its data with its own keys."""

import shlex
from pathlib import Path

from services import config as c
from services.cli import demo_cmd


def _environ_of(export_line: str) -> dict:
    words = shlex.split(export_line)
    assert words[0] == "export"
    return dict(word.split("=", 1) for word in words[1:])


def test_the_printed_environment_makes_the_configuration_the_demo_ran_with(tmp_path):
    base = c.load_config(environ={})
    demo = demo_cmd.demo_config(base, tmp_path / "demo data", "abc123")
    export, trace, inbox = demo_cmd.inspect_commands(demo, "0f1e2d3c-referral")
    again = c.load_config(environ=_environ_of(export))
    for agency in c.agency_codes(demo):
        assert c.database_url(again, agency) == c.database_url(demo, agency)
    assert again[c.KEYS_DIR] == demo[c.KEYS_DIR] == str(tmp_path / "demo data" / "keys")
    assert again[c.DATA_DIR] == demo[c.DATA_DIR]
    for key in (c.BUS_URI, c.CONTROL_URI, c.USER_PREFIX, c.CREDENTIALS_DIR):
        assert again[c.BROKER][key] == demo[c.BROKER][key], key
    assert again[c.OFFICE][c.ACCOUNTS_FILE] == demo[c.OFFICE][c.ACCOUNTS_FILE]
    assert trace == "cluebus trace 0f1e2d3c-referral"
    assert inbox.startswith("cluebus inbox --as ")


def test_a_chosen_configuration_file_is_named_in_the_commands(tmp_path):
    demo = demo_cmd.demo_config(c.load_config(environ={}), tmp_path, "abc123")
    _, trace, _ = demo_cmd.inspect_commands(demo, None, "my config.yaml")
    assert trace == "cluebus --config 'my config.yaml' trace REFERRAL_ID"


class _Plan:
    accounts = ()


class _Nodes:
    def stop(self):
        pass


class _Clients:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Demo:
    def __init__(self, *args, **kwargs):
        self.referrals = [("a referral", "5a7e-referral")]

    def play(self):
        pass

    def print_traces(self):
        return True


def _played(tmp_path, monkeypatch, capsys, *argv) -> str:
    """`cluebus demo` with the broker, the nodes and the scenario replaced by stand-ins."""
    from services.cli.main import main
    monkeypatch.setattr(demo_cmd.provisioning, "setup", lambda config: (_Plan(), None))
    monkeypatch.setattr(demo_cmd.provisioning, "remove", lambda config: None)
    monkeypatch.setattr(demo_cmd, "start_nodes", lambda *args, **kwargs: _Nodes())
    monkeypatch.setattr(demo_cmd, "ControlClients", _Clients)
    monkeypatch.setattr(demo_cmd, "Demo", _Demo)
    assert main(["demo", "--data-dir", str(tmp_path / "demo"), *argv]) == 0
    return capsys.readouterr().out


def test_the_demo_says_its_dashboard_is_gone_when_it_ends(tmp_path, monkeypatch, capsys):
    out = _played(tmp_path, monkeypatch, capsys)
    assert "gone when the demo ends: use --stay to keep it" in out
    assert "To inspect it" not in out


def test_after_keep_the_demo_prints_the_commands_that_inspect_its_data(tmp_path, monkeypatch, capsys):
    out = _played(tmp_path, monkeypatch, capsys, "--keep")
    lines = [line.strip() for line in out.splitlines()]
    export = next(line for line in lines if line.startswith("export "))
    environ = _environ_of(export)
    assert environ["CLUEBUS_KEYS_DIR"] == str((tmp_path / "demo" / "keys").resolve())
    assert (tmp_path / "demo" / "keys").is_dir()
    assert "cluebus trace 5a7e-referral" in lines
