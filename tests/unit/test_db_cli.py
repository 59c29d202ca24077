"""`cluebus db upgrade` / `db current` and the start-up check (adapters/storage/migrations),
on SQLite files: what each prints, what it exits with, and what it leaves alone."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

from adapters.storage import migrations
from adapters.storage.office_tables import OfficeBase
from adapters.storage.store import make_engine
from adapters.storage.tables import Base
from services import bootstrap
from services import config as c
from services.cli.main import main
from tests.fixtures import round1_schema as round1

NODE, OFFICE = "medical_security", "joint_office"


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("CLUEBUS_DATABASE_URL", raising=False)
    return c.load_config(environ={"CLUEBUS_DATA_DIR": str(tmp_path / "data")})


def _engine(config, agency):
    return make_engine(c.database_url(config, agency))


def _at(config, agency, *revisions):
    engine = _engine(config, agency)
    with engine.begin() as connection:
        for revision in revisions:
            command.upgrade(migrations.alembic_config(connection, office=agency == OFFICE), revision)
    engine.dispose()


def _files(tmp_path):
    return sorted(p.name for p in (tmp_path / "data").rglob("*.sqlite3")) if (tmp_path / "data").exists() else []


def test_upgrade_needs_an_agency_or_all(config, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["db", "upgrade"])
    assert exited.value.code == 2
    assert main(["db", "upgrade", "--agency", "nobody"]) == 2
    assert "'nobody' is not a configured agency" in capsys.readouterr().err


def test_current_creates_no_database(config, tmp_path, capsys):
    assert main(["db", "current"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(c.agency_codes(config)) and all("no database here" in line for line in out)
    assert _files(tmp_path) == []


def test_upgrade_all_upgrades_what_is_here_and_creates_nothing_else(config, tmp_path, capsys):
    engine = _engine(config, NODE)
    round1.Base.metadata.create_all(engine)   # round 1's node database, no version table
    engine.dispose()
    assert main(["db", "upgrade", "--all"]) == 0
    out = capsys.readouterr().out
    assert f"{NODE}: node tables node_0001 (not recorded: made before migrations) → node_0003" in out
    assert "public_security: no database here" in out
    assert _files(tmp_path) == [f"{NODE}.sqlite3"]
    assert main(["db", "upgrade", "--all"]) == 0
    assert f"{NODE}: already at node_0003" in capsys.readouterr().out
    assert main(["db", "current", "--agency", NODE]) == 0
    assert capsys.readouterr().out.strip() == f"{NODE}: node_0003 (current)"


def test_a_new_database_is_created_at_head_when_opened(config, capsys):
    store = bootstrap.open_store(config, OFFICE)
    store.dispose()
    assert main(["db", "current", "--agency", OFFICE]) == 0
    assert capsys.readouterr().out.strip() == f"{OFFICE}: node_0003 + office_0002 (current)"


def test_a_database_behind_is_refused_by_every_command_in_one_line(config, capsys):
    _at(config, NODE, "node_0001")
    with pytest.raises(migrations.DatabaseBehind) as behind:
        bootstrap.open_store(config, NODE)
    assert str(behind.value) == (f"{NODE}: database at revision node_0001, this release needs node_0003: "
                                 f"run `cluebus db upgrade --agency {NODE}`")
    assert main(["keys", "init"]) == 0
    capsys.readouterr()
    assert main(["inbox", "--as", NODE]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"cluebus: {behind.value}"
    assert main(["db", "current", "--agency", NODE]) == 1
    assert main(["db", "upgrade", "--agency", NODE]) == 0
    assert f"{NODE}: node tables node_0001 → node_0003" in capsys.readouterr().out
    bootstrap.open_store(config, NODE).dispose()


def test_an_unrecorded_database_at_head_is_recorded_not_refused(config):
    """Made by create_all of this release (before migrations existed): the schema is current."""
    engine = _engine(config, OFFICE)
    Base.metadata.create_all(engine)
    OfficeBase.metadata.create_all(engine)
    engine.dispose()
    bootstrap.open_store(config, OFFICE).dispose()
    engine = _engine(config, OFFICE)
    assert [(s.revision, s.recorded) for s in migrations.current(engine, office=True)] == \
        [("node_0003", True), ("office_0002", True)]
    engine.dispose()


def test_tables_of_no_known_revision_are_left_alone(config, capsys):
    engine = _engine(config, NODE)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE messages (id INTEGER PRIMARY KEY, note TEXT)"))
    engine.dispose()
    assert main(["db", "upgrade", "--agency", NODE]) == 1
    assert "match no revision of this release" in capsys.readouterr().out
    with pytest.raises(migrations.DatabaseUnrecognised, match=f"^{NODE}: node tables"):
        bootstrap.open_store(config, NODE)
    engine = _engine(config, NODE)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).scalars().all() == \
            ["messages"]
    engine.dispose()


def test_an_unknown_revision_is_a_newer_release(config, capsys):
    bootstrap.open_store(config, NODE).dispose()
    engine = _engine(config, NODE)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'node_0099'"))
    engine.dispose()
    assert main(["db", "current", "--agency", NODE]) == 1
    assert "node_0099, unknown to this release (made by a newer one?)" in capsys.readouterr().out
