"""Migrations (adapters/storage/migrations) on SQLite and on PostgreSQL:

- an empty database upgraded to head has exactly the models' schema (no autogenerate diff),
  for an agency node and for the office (node and office tables);
- revision 1 is the schema round 1 shipped (tests/fixtures/round1_schema.py);
- a database made by the previous release (round 1's create_all, no version table), with rows
  in every table, upgrades without losing or changing a row, its audit chain still verifying;
- a node refuses to start on a database that is behind, in one line naming the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select

from adapters.storage import migrations
from adapters.storage.office_tables import StepRow
from adapters.storage.repository import GENESIS_HASH, audit_hash
from adapters.storage.store import Store, make_engine
from adapters.storage.tables import AuditEntry, ControlRequest, Lease
from services import config as c
from services import bootstrap
from tests.fixtures import round1_schema as round1

UTC = timezone.utc
NODE, OFFICE = "medical_security", "joint_office"
T0 = datetime(2025, 11, 24, 2, 30, 15, 123456, tzinfo=UTC)


def _config(database_url: str, tmp_path) -> dict:
    return c.load_config(environ={"CLUEBUS_DATABASE_URL": database_url, "CLUEBUS_DATA_DIR": str(tmp_path / "data"),
                                  "CLUEBUS_KEYS_DIR": str(tmp_path / "keys")})


def _url(database_url: str, agency: str) -> str:
    return database_url.format(agency=agency)


@pytest.mark.parametrize("agency", [NODE, OFFICE])
def test_an_empty_database_upgraded_to_head_equals_the_models(database_url, agency):
    office = agency == OFFICE
    engine = make_engine(_url(database_url, agency))
    try:
        done = migrations.upgrade(engine, office=office)
        assert [after for _, _, after in done] == list(migrations.heads(office))
        with engine.connect() as connection:
            assert migrations.schema_diff(connection, migrations.target_metadata(office)) == []
            assert set(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()) == \
                set(migrations.heads(office))
        assert migrations.upgrade(engine, office=office) == []   # at head: nothing more
    finally:
        engine.dispose()


def test_revision_1_is_the_schema_round_1_shipped(database_url):
    engine = make_engine(_url(database_url, OFFICE))
    try:
        with engine.begin() as connection:
            config = migrations.alembic_config(connection, office=True)
            command.upgrade(config, "node_0001")
            command.upgrade(config, "office_0001")
        with engine.connect() as connection:
            assert migrations.schema_diff(connection, [round1.Base.metadata, round1.OfficeBase.metadata]) == []
    finally:
        engine.dispose()


# -- a database of the previous release, with data ------------------------------------------------
def _round1_rows() -> dict[str, list[dict]]:
    """Rows as a round-1 office node held them: every table, realistic values."""
    referral, clue, receipt, decision = ("5f0c7d2e-2a51-4c8e-9f39-0d5b7f1c9a01", "0b8c1e55-6a34-4f5e-8d0e-2a9c3b7e4f10",
                                         "7d3a9b21-1c4e-4b6f-a8d2-5e7f9c0b1a22", "c4e2f6a8-3b5d-4e7f-9a1c-2b4d6f8e0a33")
    sent = T0
    messages = [
        dict(id=1, message_id=clue, direction="out", kind="clue_transfer", schema_version=1,
             sender="medical_security", recipient="public_security", referral_id=referral, in_reply_to=None,
             sent_at=sent, stored_at=sent + timedelta(microseconds=870), sha256="a1" * 32, sealed=True,
             raw=b'{"envelope":{"kind":"clue_transfer"},"signature":"\x00\xff"}' * 20, body=None,
             status="accepted", reason_codes=None, detail=None),
        dict(id=2, message_id=receipt, direction="in", kind="receipt", schema_version=1,
             sender="public_security", recipient="medical_security", referral_id=referral, in_reply_to=clue,
             sent_at=sent + timedelta(seconds=2), stored_at=sent + timedelta(seconds=2, milliseconds=5),
             sha256="b2" * 32, sealed=False, raw=bytes(range(256)),
             body={"status": "accepted", "reason_codes": [], "note": "已接收"}, status="accepted",
             reason_codes=[], detail=None),
        dict(id=3, message_id=decision, direction="in", kind="filing_decision", schema_version=1,
             sender="public_security", recipient="medical_security", referral_id=referral, in_reply_to=clue,
             sent_at=sent + timedelta(days=2), stored_at=sent + timedelta(days=2, seconds=1), sha256="c3" * 32,
             sealed=False, raw=b"{}", body={"decision": "filed", "case_no": "沪公(经)立字〔2025〕1024号"},
             status="rejected", reason_codes=["schema_invalid", "late"], detail="decision_date: 日期无效"),
    ]
    outbox = [dict(id=1, message_id=clue, routing_key="agency.public_security", needs_receipt=True,
                   state="receipted", attempts=2, next_attempt_at=sent + timedelta(seconds=30),
                   last_published_at=sent + timedelta(seconds=1), receipted_at=sent + timedelta(seconds=2),
                   receipt_message_id=receipt, last_error="broker did not confirm within 5 s")]
    inbox = [dict(message_id=receipt, sha256="b2" * 32, received_at=sent + timedelta(seconds=2), outcome="accepted",
                  receipt_message_id=None, deliveries=1),
             dict(message_id=decision, sha256="c3" * 32, received_at=sent + timedelta(days=2), outcome="rejected",
                  receipt_message_id="e5f7a9c1-4d6b-4f8a-b0c2-3d5e7f9a1b44", deliveries=3)]
    quarantine = [dict(id=1, received_at=sent + timedelta(hours=1), rule="signature_invalid",
                       detail="Ed25519 signature does not verify", sha256="d4" * 32, size=5_000_000,
                       raw=b"\x89PNG" + bytes(4092), truncated=True, claimed_message_id="not-a-uuid" * 3,
                       claimed_sender="public_security"),
                  dict(id=2, received_at=sent + timedelta(hours=2), rule="undecodable", detail="not JSON",
                       sha256="e5" * 32, size=3, raw=b"\xff\xfe\x00", truncated=False, claimed_message_id=None,
                       claimed_sender=None)]
    referrals = [dict(referral_id=referral, state="filed", opened_at=sent, updated_at=sent + timedelta(days=2),
                      opened_by="medical_security", first_kind="clue_transfer", reference="沪医保线索〔2025〕88号",
                      last_message_id=decision, close_reason=None)]
    audit, previous = [], GENESIS_HASH
    for seq, (event, message_id, detail) in enumerate([
            ("message_sent", clue, {"kind": "clue_transfer", "to": "public_security", "sealed": True}),
            ("receipt_received", receipt, {"status": "accepted"}),
            ("message_rejected", decision, {"reason_codes": ["schema_invalid"], "note": "日期无效"}),
            ("quarantined", None, {"rule": "signature_invalid", "size": 5_000_000})], start=1):
        at = sent + timedelta(seconds=seq, microseconds=seq * 17)
        referral_id = referral if message_id else None
        digest = audit_hash(seq, at, event, referral_id, message_id, detail, previous)
        audit.append(dict(seq=seq, at=at, event=event, referral_id=referral_id, message_id=message_id,
                          detail=detail, prev_hash=previous, hash=digest))
        previous = digest
    observed = [dict(message_id=clue, kind="clue_transfer", sender="medical_security", recipient="public_security",
                     referral_id=referral, in_reply_to=None, sent_at=sent, observed_at=sent + timedelta(seconds=1),
                     sha256="a1" * 32, sealed=True, facts={"category": "suspected_crime",
                                                            "amount_involved_fen": 128_645_000}, problem=None),
                dict(message_id=decision, kind="filing_decision", sender="public_security",
                     recipient="medical_security", referral_id=referral, in_reply_to=clue,
                     sent_at=sent + timedelta(days=2), observed_at=sent + timedelta(days=2), sha256="c3" * 32,
                     sealed=False, facts={"decision": "filed"}, problem="schema_invalid")]
    steps = [dict(step_id=f"filing_decision:{clue}", rule="filing_decision", referral_id=referral,
                  start_message_id=clue, started_at=sent, due_at=datetime(2025, 11, 27, 16, 0, tzinfo=UTC),
                  late_agency="public_security", counterpart="medical_security", state="closed",
                  closed_at=sent + timedelta(days=2), closing_message_id=decision,
                  warned_at=sent + timedelta(days=1), urged_at=None, urge_message_id=None, escalated_at=None,
                  escalation_message_id=None, note="按期答复"),
             dict(step_id=f"handling_result:{decision}", rule="handling_result", referral_id=referral,
                  start_message_id=decision, started_at=sent + timedelta(days=2),
                  due_at=datetime(2026, 1, 23, 16, 0, tzinfo=UTC), late_agency="public_security",
                  counterpart="medical_security", state="open", closed_at=None, closing_message_id=None,
                  warned_at=sent + timedelta(days=50), urged_at=sent + timedelta(days=60),
                  urge_message_id="f6a8c0e2-5b7d-4e9f-a1b3-4c6d8e0f2a55", escalated_at=sent + timedelta(days=61),
                  escalation_message_id="a7b9d1f3-6c8e-4fa0-b2c4-5d7e9f1a3b66", note=None)]
    return {"messages": messages, "outbox": outbox, "inbox": inbox, "quarantine": quarantine,
            "referrals": referrals, "audit_log": audit,
            "audit_head": [dict(id=1, seq=len(audit), hash=previous)],
            "observed_messages": observed, "deadline_steps": steps}


def _round1_metadata(office: bool):
    return [round1.Base.metadata, round1.OfficeBase.metadata] if office else [round1.Base.metadata]


def _make_round1_database(url: str, office: bool) -> dict[str, list[dict]]:
    """What round 1 made: its create_all, its rows; no version table."""
    engine = make_engine(url)
    rows = {name: table_rows for name, table_rows in _round1_rows().items()
            if office or name in round1.Base.metadata.tables}
    try:
        tables = {}
        for metadata in _round1_metadata(office):
            metadata.create_all(engine)
            tables.update(metadata.tables)
        with engine.begin() as connection:
            for name in ("messages", "outbox", "inbox", "quarantine", "referrals", "audit_log", "audit_head",
                         "observed_messages", "deadline_steps"):
                if name in rows:
                    connection.execute(insert(tables[name]), rows[name])
    finally:
        engine.dispose()
    return rows


def _read_back(store: Store, office: bool) -> dict[str, list[dict]]:
    """Every row of every round-1 table, read through the round-1 columns."""
    found = {}
    with store.engine.connect() as connection:
        for metadata in _round1_metadata(office):
            for name, table in metadata.tables.items():
                key = list(table.primary_key.columns)
                found[name] = [dict(row._mapping) for row in connection.execute(select(table).order_by(*key))]
    return found


@pytest.mark.parametrize("agency", [NODE, OFFICE])
def test_a_round1_database_with_data_upgrades_without_losing_a_row(database_url, tmp_path, agency):
    office = agency == OFFICE
    config = _config(database_url, tmp_path)
    url = c.database_url(config, agency)
    rows = _make_round1_database(url, office)

    with pytest.raises(migrations.DatabaseBehind) as behind:   # never upgraded silently
        bootstrap.open_store(config, agency)
    assert "node_0001 (not recorded" in str(behind.value) and f"cluebus db upgrade --agency {agency}" in str(behind.value)

    store = Store(url)
    try:
        done = migrations.upgrade(store.engine, office=office)
        assert [(branch, after) for branch, _, after in done] == \
            [(b, migrations.head(b)) for b in migrations.branches(office)]
        with store.engine.connect() as connection:
            assert migrations.schema_diff(connection, migrations.target_metadata(office)) == []

        after = _read_back(store, office)
        for name, expected in rows.items():
            assert after[name] == expected, name   # same rows, same values, none lost
        with store.transaction() as repo:
            assert repo.verify_audit_chain() == len(rows["audit_log"])
            if office:
                assert {s.step_id: s.calendar_missing for s in repo.session.scalars(select(StepRow))} == \
                    {row["step_id"]: None for row in rows["deadline_steps"]}
    finally:
        store.dispose()

    # The node now opens it, and what round 2 added works on it.
    store = bootstrap.open_store(config, agency)
    try:
        with store.transaction() as repo:
            repo.append_audit(T0 + timedelta(days=3), "message_sent", referral_id=rows["referrals"][0]["referral_id"],
                              message_id=rows["messages"][0]["message_id"], detail={"after": "upgrade"})
            repo.session.add(ControlRequest(request_id="cli-1", action="send", at=T0, result={"ok": True}))
            repo.session.add(Lease(name="relay", holder="host:1", expires_at=T0))
            if office:
                repo.session.add(StepRow(step_id="handling_result:x", rule="handling_result", referral_id="r2",
                                         start_message_id="x", started_at=T0, due_at=None, calendar_missing=2027,
                                         late_agency="health", counterpart="medical_security", state="open"))
        with store.transaction() as repo:
            assert repo.verify_audit_chain() == len(rows["audit_log"]) + 1
            assert repo.session.get(AuditEntry, len(rows["audit_log"]) + 1).prev_hash == rows["audit_head"][0]["hash"]
    finally:
        store.dispose()


def test_the_cli_upgrades_a_round1_database_and_reports_it(database_url, tmp_path, monkeypatch, capsys):
    from services.cli.main import main

    config = _config(database_url, tmp_path)
    for name, value in {"CLUEBUS_DATABASE_URL": database_url, "CLUEBUS_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    rows = _make_round1_database(c.database_url(config, OFFICE), office=True)
    assert main(["db", "current", "--agency", OFFICE]) == 1
    assert f"run `cluebus db upgrade --agency {OFFICE}`" in capsys.readouterr().out
    assert main(["db", "upgrade", "--agency", OFFICE]) == 0
    out = capsys.readouterr().out
    assert f"{OFFICE}: node tables node_0001 (not recorded: made before migrations) → node_0003" in out
    assert f"{OFFICE}: office tables office_0001 (not recorded: made before migrations) → office_0002" in out
    assert main(["db", "current", "--agency", OFFICE]) == 0
    assert capsys.readouterr().out.strip() == f"{OFFICE}: node_0003 + office_0002 (current)"
    store = Store(c.database_url(config, OFFICE))
    try:
        assert _read_back(store, True) == rows
    finally:
        store.dispose()


# -- a node on a database behind this release ----------------------------------------------------
def test_a_node_refuses_to_start_on_a_database_behind_in_one_line(database_url, tmp_path):
    """`cluebus run` as a user runs it: one line naming the command, exit non-zero; and the
    node's own database provider (NodeDatabase.setup, via open_store) refuses it too."""
    config = _config(database_url, tmp_path)
    engine = make_engine(c.database_url(config, NODE))
    try:
        with engine.begin() as connection:   # recorded at revision 1, as if upgraded by an older release
            command.upgrade(migrations.alembic_config(connection), "node_0001")
    finally:
        engine.dispose()
    env = {**os.environ, "CLUEBUS_DATABASE_URL": database_url, "CLUEBUS_DATA_DIR": str(tmp_path / "data"),
           "CLUEBUS_KEYS_DIR": str(tmp_path / "keys"), "CLUEBUS_CREDENTIALS_DIR": str(tmp_path / "credentials")}
    cluebus = str(Path(sys.executable).with_name("cluebus"))
    subprocess.run([cluebus, "keys", "init"], env=env, check=True, capture_output=True)
    ran = subprocess.run([cluebus, "run", "--agency", NODE], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode != 0
    assert ran.stderr.strip() == (f"cluebus: {NODE}: database at revision node_0001, this release needs node_0003: "
                                  f"run `cluebus db upgrade --agency {NODE}`")
    with pytest.raises(migrations.DatabaseBehind):
        bootstrap.open_store(config, NODE)
