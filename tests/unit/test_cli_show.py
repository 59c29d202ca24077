"""`cluebus show MESSAGE_ID --as AGENCY`: one stored message verified again from its bytes,
its body opened for its own agency when sealed; `inbox` names the clue it carries."""

import json

import pytest
from sqlalchemy import update

from adapters.storage.tables import Message
from adapters.transport.credentials import AgencyCredentials, BrokerAccount, CredentialStore
from schemas import registry as k
from services import config as c
from services.bootstrap import offline_context
from services.cli.main import main
from services.handlers import queries, receiving
from services.handlers.receiving import Delivery
from services.protocol.transport import CONTENT_TYPE
from tests.fixtures.bodies import sample_body

MEDICAL, POLICE = "medical_security", "public_security"


@pytest.fixture
def referred(tmp_path, monkeypatch, capsys):
    """A sealed clue sent by the medical security bureau (no broker: kept in its outbox) and
    received by the police, each node on its own SQLite file."""
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("CLUEBUS_CREDENTIALS_DIR", str(tmp_path / "credentials"))
    monkeypatch.setenv("CLUEBUS_BUS_URI", "amqp://127.0.0.1:1/cluebus")  # nothing listens: transient
    monkeypatch.delenv("CLUEBUS_DATABASE_URL", raising=False)
    assert main(["keys", "init"]) == 0
    CredentialStore(tmp_path / "credentials").save(AgencyCredentials(
        MEDICAL, BrokerAccount("cluebus.medical_security", "pw"), BrokerAccount("cluebus.medical_security.control", "pw")))
    clue = tmp_path / "clue.json"
    clue.write_text(json.dumps(sample_body(k.CLUE_TRANSFER), ensure_ascii=False), encoding="utf-8")
    assert main(["send", "--as", MEDICAL, "--file", str(clue), "--to", POLICE, "--seal"]) == 0
    assert "kept in the outbox" in capsys.readouterr().out
    config = c.load_config()
    sender = offline_context(config, MEDICAL)
    [message_id] = [row["message_id"] for row in queries.outbox(sender) if row["kind"] == k.CLUE_TRANSFER]
    with sender.store.transaction() as repo:
        raw = repo.message(message_id).raw
    police = offline_context(config, POLICE)
    outcome = receiving.receive(police, Delivery(raw, CONTENT_TYPE, "cluebus.medical_security", MEDICAL))
    assert outcome.status == "accepted", outcome
    sender.store.dispose()
    police.store.dispose()
    capsys.readouterr()
    return message_id


def test_show_verifies_the_message_and_opens_its_sealed_body_for_its_recipient(referred, capsys):
    assert main(["show", referred, "--as", POLICE, "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["signature"] == {"ok": True}
    assert detail["sealed"] is True and detail["body_source"] == f"sealed for {POLICE}, opened here"
    assert detail["body"]["clue_no"] == "YB-2026-0001"
    assert (detail["kind"], detail["sender"], detail["recipient"]) == (k.CLUE_TRANSFER, MEDICAL, POLICE)
    assert detail["referral_id"] and detail["sent_at"] and detail["stored_at"]

    assert main(["show", referred, "--as", POLICE]) == 0
    out = capsys.readouterr().out
    assert "signature ok" in out and f"{MEDICAL} → {POLICE}" in out and "referral " in out
    assert "明德康复医院虚构住院骗取医保基金" in out  # readable UTF-8, not \\u escapes


def test_show_as_the_sender_gives_its_own_copy_and_its_delivery(referred, capsys):
    assert main(["show", referred, "--as", MEDICAL, "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["signature"] == {"ok": True} and detail["direction"] == "out"
    assert detail["body_source"] == f"sealed for {POLICE}; this node's copy as it composed it"
    assert detail["body"]["title"] == "明德康复医院虚构住院骗取医保基金"
    assert detail["delivery"]["state"] == "pending"


def test_show_of_stored_bytes_that_no_longer_verify_fails_and_shows_no_body(referred, capsys):
    police = offline_context(c.load_config(), POLICE)
    with police.store.transaction() as repo:
        raw = repo.message(referred).raw
        repo.session.execute(update(Message).where(Message.message_id == referred)
                             .values(raw=raw.replace(b'"sent_at":"', b'"sent_at":"1')))
    police.store.dispose()
    assert main(["show", referred, "--as", POLICE]) == 1
    out = capsys.readouterr().out
    assert "signature FAILED [" in out and "not shown: the message does not verify" in out
    assert "YB-2026-0001" not in out


def test_show_of_a_message_the_agency_does_not_hold_is_one_line(referred, capsys):
    assert main(["show", "00000000-0000-4000-8000-000000000000", "--as", POLICE]) == 2
    assert "holds no message 00000000-0000-4000-8000-000000000000" in capsys.readouterr().err


def test_inbox_shows_the_clue_number_and_title(referred, capsys):
    assert main(["inbox", "--as", POLICE]) == 0
    out = capsys.readouterr().out
    assert referred in out and "YB-2026-0001 明德康复医院虚构住院骗取医保基金" in out
