"""Reading commands never make a database for an agency whose node never ran here, and a
database that is not there is one line naming it (and, for PostgreSQL, how to create it:
tests/integration/test_cli.py)."""

import pytest

from services import config as c
from services.bootstrap import open_store
from services.cli.main import main

POLICE, MEDICAL = "public_security", "medical_security"


@pytest.fixture
def here(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("CLUEBUS_CREDENTIALS_DIR", str(tmp_path / "credentials"))
    monkeypatch.delenv("CLUEBUS_DATABASE_URL", raising=False)
    assert main(["keys", "init"]) == 0
    capsys.readouterr()
    return tmp_path / "data"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def _databases(data_dir) -> list[str]:
    return sorted(p.name for p in data_dir.glob("*.sqlite3")) if data_dir.exists() else []


@pytest.mark.parametrize("argv", [["inbox", "--as", POLICE], ["outbox", "--as", POLICE],
                                  ["quarantine", "--as", POLICE], ["trace", "some-referral", "--as", POLICE],
                                  ["inbox", "--as", POLICE, "--json"]])
def test_a_reading_command_on_an_agency_that_never_ran_is_one_line_and_makes_no_database(here, capsys, argv):
    assert main(argv) == 2
    err = _one_line(capsys)
    assert f"no database for {POLICE} at {here / (POLICE + '.sqlite3')}: has its node run here?" in err
    assert _databases(here) == []


def test_trace_without_as_and_no_database_here_is_one_line_and_makes_none(here, capsys):
    assert main(["trace", "some-referral"]) == 2
    err = _one_line(capsys)
    assert "no node database found here" in err and "--as" in err
    assert _databases(here) == []


def test_trace_without_as_reads_the_databases_that_are_here_and_makes_no_other(here, capsys):
    open_store(c.load_config(), MEDICAL).dispose()  # the one node that ran here
    before = _databases(here)
    assert main(["trace", "some-referral"]) == 2
    err = _one_line(capsys)
    assert f"not in the database of {MEDICAL}" in err
    assert _databases(here) == before


def test_a_reading_command_on_a_database_that_is_here_reads_it(here, capsys):
    open_store(c.load_config(), POLICE).dispose()
    assert main(["inbox", "--as", POLICE]) == 0
    assert capsys.readouterr().out.strip() == "(nothing)"


def test_an_empty_database_file_is_not_given_tables_by_a_reading_command(here, capsys):
    here.mkdir(parents=True, exist_ok=True)
    (here / f"{POLICE}.sqlite3").write_bytes(b"")
    assert main(["outbox", "--as", POLICE]) == 2
    assert "has no tables: has its node run here?" in _one_line(capsys)


OFFICE = "joint_office"


@pytest.mark.parametrize("argv", [["overdue"], ["overdue", "--json"], ["stats"], ["stats", "--csv"]])
def test_an_office_reading_command_where_the_office_never_ran_is_one_line_and_makes_no_database(here, capsys,
                                                                                                  argv):
    assert main(argv) == 2
    err = _one_line(capsys)
    assert f"no database for {OFFICE} at {here / (OFFICE + '.sqlite3')}: has its node run here?" in err
    assert _databases(here) == []


def test_an_office_reading_command_on_the_office_database_reads_it(here, capsys):
    open_store(c.load_config(), OFFICE).dispose()
    assert main(["overdue", "--json"]) == 0
    assert '"steps": []' in capsys.readouterr().out
    assert _databases(here) == [f"{OFFICE}.sqlite3"]
