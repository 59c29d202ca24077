"""An office database made before steps could lack a limit ("calendar missing": revision
office_0001) is refused when opened, and `cluebus db upgrade` migrates it (office_0002: SQLite
rebuilds deadline_steps in batch mode) with its steps and their indexes kept."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import inspect, insert, select

from adapters.storage import migrations
from adapters.storage.office_tables import StepRow
from adapters.storage.store import Store
from services import bootstrap
from services import config as c
from services.cli.main import main
from tests.fixtures import round1_schema as round1

UTC = timezone.utc
OFFICE = "joint_office"


def test_an_old_sqlite_office_database_is_upgraded_with_its_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CLUEBUS_DATABASE_URL", raising=False)
    config = c.load_config(environ={"CLUEBUS_DATA_DIR": str(tmp_path / "data")})
    store = Store(c.database_url(config, OFFICE))
    with store.engine.begin() as connection:
        alembic = migrations.alembic_config(connection, office=True)
        command.upgrade(alembic, "node@head")
        command.upgrade(alembic, "office_0001")
    due = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    with store.engine.begin() as connection:
        connection.execute(insert(round1.StepRow.__table__).values(
            step_id="filing_decision:m1", rule="filing_decision", referral_id="r1", start_message_id="m1",
            started_at=datetime(2026, 11, 24, 2, 0, tzinfo=UTC), due_at=due, late_agency="public_security",
            counterpart="medical_security", state="open", urged_at=due))
    with pytest.raises(migrations.DatabaseBehind, match="office_0001, this release needs node_0003 [+] office_0002"):
        bootstrap.open_store(config, OFFICE)

    assert main(["db", "upgrade", "--agency", OFFICE]) == 0
    assert capsys.readouterr().out.strip() == f"{OFFICE}: office tables office_0001 → office_0002"
    columns = {column["name"]: column for column in inspect(store.engine).get_columns("deadline_steps")}
    assert columns["due_at"]["nullable"] and "calendar_missing" in columns
    assert {i["name"] for i in inspect(store.engine).get_indexes("deadline_steps")} == \
        {i.name for i in StepRow.__table__.indexes}
    with store.transaction() as repo:
        [row] = repo.session.scalars(select(StepRow)).all()
        assert (row.step_id, row.due_at, row.urged_at, row.calendar_missing) == ("filing_decision:m1", due, due, None)
        repo.session.add(StepRow(step_id="handling_result:m2", rule="handling_result", referral_id="r2",
                                 start_message_id="m2", started_at=datetime(2026, 12, 2, 2, 0, tzinfo=UTC),
                                 due_at=None, calendar_missing=2027, late_agency="health",
                                 counterpart="medical_security", state="open"))
    store.dispose()
    bootstrap.open_store(config, OFFICE).dispose()   # current now


def test_a_new_office_database_is_created_at_head(tmp_path):
    config = c.load_config(environ={"CLUEBUS_DATA_DIR": str(tmp_path / "data")})
    store = bootstrap.open_store(config, OFFICE)
    with store.engine.connect() as connection:
        assert migrations.schema_diff(connection, migrations.target_metadata(True)) == []
    store.dispose()
