"""The office's staff accounts (services/office/accounts.py) and ``cluebus office account``
(services/cli/office_cmd.py), broker-free: a temporary accounts file named by the
environment or by ``--config``."""

from __future__ import annotations

import base64
import io
import os
import re
import stat

import pytest
import yaml

from services import config as c
from services.cli.main import main
from services.display_time import TimeFormat
from services.office.accounts import (AccountsError, AccountsFile, accounts_file, check_password, hash_password,
                                      is_loopback, refuse_exposed_without_accounts)

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _no_cluebus_environment(monkeypatch):
    """Only what a test sets: nothing from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("CLUEBUS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "var" / "office-accounts.yaml"


# -- hashes ------------------------------------------------------------------------------------
def test_hash_is_self_describing_scrypt_with_a_random_salt():
    stored = hash_password(PASSWORD)
    match = re.fullmatch(r"scrypt\$n=16384,r=8,p=1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", stored)
    assert match, stored
    assert len(base64.b64decode(match.group(1))) == 16 and len(base64.b64decode(match.group(2))) == 32
    assert hash_password(PASSWORD) != stored  # another salt
    assert PASSWORD not in stored


def test_hash_is_scrypt_of_the_utf8_password():
    import hashlib

    salt = bytes(range(16))
    stored = hash_password("密码 password 12", salt=salt)
    expected = hashlib.scrypt("密码 password 12".encode(), salt=salt, n=16384, r=8, p=1, dklen=32)
    assert stored.split("$")[3] == base64.b64encode(expected).decode()


def test_verify_right_and_wrong_password():
    stored = hash_password(PASSWORD)
    assert check_password(PASSWORD, stored)
    assert not check_password(PASSWORD + " ", stored)
    assert not check_password("", stored)


@pytest.mark.parametrize("stored", [
    "", "plain", "scrypt$n=16384,r=8,p=1$$", "scrypt$n=16384,r=8,p=1$!!!$AAAA",
    "scrypt$n=1000,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",  # n not a power of two
    "scrypt$n=1073741824,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",  # too costly
    "bcrypt$n=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
])
def test_a_malformed_hash_never_verifies(stored):
    assert not check_password(PASSWORD, stored)


# -- the file ------------------------------------------------------------------------------------
def test_missing_file_means_no_accounts(path):
    assert AccountsFile(path).accounts() == {}


def test_add_writes_a_0600_yaml_file_without_the_password(path):
    accounts = AccountsFile(path)
    account = accounts.add("wang.li", PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    assert PASSWORD not in text
    [entry] = yaml.safe_load(text)["accounts"]
    assert entry == {"name": "wang.li", "password_hash": account.password_hash, "created_at": account.created_at}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["created_at"])
    assert PASSWORD not in repr(account) and account.password_hash not in repr(account)
    assert AccountsFile(path).verify("wang.li", PASSWORD)


def test_verify_checks_name_and_password(path):
    accounts = AccountsFile(path)
    accounts.add("wang.li", PASSWORD)
    assert accounts.verify("wang.li", PASSWORD)
    assert not accounts.verify("wang.li", "wrong password 123")
    assert not accounts.verify("li.wang", PASSWORD)
    assert not accounts.verify("", PASSWORD)


def test_add_refuses_an_existing_name_unless_replace(path):
    accounts = AccountsFile(path)
    first = accounts.add("wang.li", PASSWORD)
    with pytest.raises(AccountsError, match="already exists; pass --replace"):
        accounts.add("wang.li", "another password 1")
    assert accounts.verify("wang.li", PASSWORD)
    second = accounts.add("wang.li", "another password 1", replace=True)
    assert second.password_hash != first.password_hash
    assert accounts.verify("wang.li", "another password 1") and not accounts.verify("wang.li", PASSWORD)


@pytest.mark.parametrize("password, message", [("", "empty"), ("elevenchars", "at least 12 characters")])
def test_add_refuses_empty_and_short_passwords(path, password, message):
    with pytest.raises(AccountsError, match=message):
        AccountsFile(path).add("wang.li", password)
    assert not path.exists()


@pytest.mark.parametrize("name", ["", "two words", "a/b", "x" * 65, "line\nbreak"])
def test_add_refuses_bad_names(path, name):
    with pytest.raises(AccountsError, match="is not an account name"):
        AccountsFile(path).add(name, PASSWORD)


def test_remove(path):
    accounts = AccountsFile(path)
    accounts.add("wang.li", PASSWORD)
    accounts.add("李明", PASSWORD)
    accounts.remove("wang.li")
    assert AccountsFile(path).names() == ["李明"]
    with pytest.raises(AccountsError, match="no account wang.li"):
        accounts.remove("wang.li")


def test_a_running_office_sees_changes_made_by_another_process(path):
    office = AccountsFile(path)
    assert office.accounts() == {}
    AccountsFile(path).add("wang.li", PASSWORD)
    assert office.verify("wang.li", PASSWORD)
    AccountsFile(path).remove("wang.li")
    assert office.accounts() == {}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_file_group_or_others_can_read_is_refused(path, mode):
    AccountsFile(path).add("wang.li", PASSWORD)
    os.chmod(path, mode)
    with pytest.raises(AccountsError) as refused:
        AccountsFile(path).accounts()
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and "chmod 600" in message


@pytest.mark.parametrize("text", ["accounts: 3\n", "- a\n", "accounts:\n- name: x\n", "accounts: [\n",
                                  "accounts:\n- {name: x, password_hash: h}\n- {name: x, password_hash: h}\n"])
def test_a_malformed_file_is_refused_in_one_line(path, text):
    path.parent.mkdir(parents=True)
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(AccountsError, match="is malformed") as refused:
        AccountsFile(path).accounts()
    assert "\n" not in str(refused.value)


def test_accounts_file_comes_from_the_configuration(tmp_path):
    config = c.load_config(environ={"CLUEBUS_OFFICE_ACCOUNTS_FILE": str(tmp_path / "a.yaml")})
    assert accounts_file(config).path == tmp_path / "a.yaml"
    shipped = c.load_config(environ={})[c.OFFICE]
    assert shipped[c.ACCOUNTS_FILE] == "./var/office-accounts.yaml"
    assert shipped[c.SESSION_HOURS] == 8 and shipped[c.COOKIE_SECURE] is False


# -- where the office may listen ----------------------------------------------------------------
@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1:8000", True), ("127.8.9.10:8000", True), ("localhost:8000", True), ("LOCALHOST:80", True),
    ("::1:8000", True), ("[::1]:8000", True),
    ("0.0.0.0:8000", False), ("8000", False), ("10.0.0.5:8000", False), ("office.example:8000", False),
    ("[::]:8000", False),
])
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


def test_listening_beyond_loopback_needs_an_account(path):
    accounts = AccountsFile(path)
    refuse_exposed_without_accounts("127.0.0.1:8000", accounts)  # no account, but loopback: fine
    with pytest.raises(AccountsError) as refused:
        refuse_exposed_without_accounts("0.0.0.0:8000", accounts)
    message = str(refused.value)
    assert "\n" not in message and "0.0.0.0:8000" in message and "cluebus office account add NAME" in message
    accounts.add("wang.li", PASSWORD)
    refuse_exposed_without_accounts("0.0.0.0:8000", accounts)


# -- cluebus office account ------------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch, path):
    """Runs ``cluebus ...`` with the accounts file in a temporary directory (from the environment)."""
    monkeypatch.setenv("CLUEBUS_OFFICE_ACCOUNTS_FILE", str(path))

    def run(*argv, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(list(argv))
    return run


def test_cli_add_from_stdin_then_list_and_remove(cli, path, capsys):
    assert cli("office", "account", "add", "wang.li", "--password-stdin", stdin=PASSWORD + "\n") == 0
    assert "added account wang.li" in capsys.readouterr().out
    assert AccountsFile(path).verify("wang.li", PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    assert cli("office", "account", "list") == 0
    out = capsys.readouterr().out
    created = AccountsFile(path).accounts()["wang.li"].created_at
    assert out == f"wang.li  created {TimeFormat()(created)}\n"  # local time, to the minute
    assert cli("--utc", "office", "account", "list") == 0
    assert capsys.readouterr().out == f"wang.li  created {created}\n"  # as stored: UTC to the second
    assert "scrypt" not in out

    assert cli("office", "account", "remove", "wang.li") == 0
    assert AccountsFile(path).accounts() == {}
    assert cli("office", "account", "list") == 0
    assert "no accounts" in capsys.readouterr().out


def test_cli_refuses_short_password_and_existing_name(cli, path, capsys):
    assert cli("office", "account", "add", "wang.li", "--password-stdin", stdin="short\n") == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert cli("office", "account", "add", "wang.li", "--password-stdin", stdin="\n") == 2
    assert "empty" in capsys.readouterr().err
    assert not path.exists()

    assert cli("office", "account", "add", "wang.li", "--password-stdin", stdin=PASSWORD + "\n") == 0
    assert cli("office", "account", "add", "wang.li", "--password-stdin", stdin="another password 1\n") == 2
    err = capsys.readouterr().err
    assert err.startswith("cluebus: account wang.li already exists") and "--replace" in err and err.count("\n") == 1
    assert AccountsFile(path).verify("wang.li", PASSWORD)
    assert cli("office", "account", "add", "wang.li", "--replace", "--password-stdin",
               stdin="another password 1\n") == 0
    assert AccountsFile(path).verify("wang.li", "another password 1")


def test_cli_asks_twice_at_a_terminal(cli, path, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert cli("office", "account", "add", "wang.li") == 2
    assert "differ" in capsys.readouterr().err and not path.exists()

    answers = iter([PASSWORD, PASSWORD])
    assert cli("office", "account", "add", "wang.li") == 0
    assert AccountsFile(path).verify("wang.li", PASSWORD)


def test_cli_without_a_terminal_needs_password_stdin(cli, path, capsys):
    assert cli("office", "account", "add", "wang.li", stdin="") == 2
    assert "--password-stdin" in capsys.readouterr().err


def test_cli_remove_unknown_and_unsafe_file(cli, path, capsys):
    assert cli("office", "account", "remove", "nobody") == 2
    assert "no account nobody" in capsys.readouterr().err
    AccountsFile(path).add("wang.li", PASSWORD)
    os.chmod(path, 0o644)
    assert cli("office", "account", "list") == 2
    err = capsys.readouterr().err
    assert "readable by others" in err and err.count("\n") == 1


def test_cli_reads_the_path_from_a_config_file(tmp_path, capsys):
    shipped = c.load_config(environ={})
    config_file = tmp_path / "cluebus.yaml"
    target = tmp_path / "elsewhere" / "accounts.yaml"
    office = {**shipped[c.OFFICE], c.ACCOUNTS_FILE: str(target)}
    config_file.write_text(yaml.safe_dump({**shipped, c.OFFICE: office}, allow_unicode=True), encoding="utf-8")
    AccountsFile(target).add("wang.li", PASSWORD)
    assert main(["--config", str(config_file), "office", "account", "list"]) == 0
    assert capsys.readouterr().out.startswith("wang.li  created ")
