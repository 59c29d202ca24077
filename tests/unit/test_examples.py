"""The sample bodies under docs/examples/: readable UTF-8, each valid against its kind's
schema, their dates in an order that makes sense, and accepted when a clerk sends them with
the commands docs/examples/README.md gives (played here without a broker)."""

import json
from datetime import datetime
from pathlib import Path

import pytest

from adapters.transport.credentials import AgencyCredentials, BrokerAccount, CredentialStore
from schemas import registry as k
from services import config as c
from services.bootstrap import offline_context
from services.cli.main import main
from services.handlers import queries, receiving
from services.handlers.receiving import Delivery
from services.protocol.transport import CONTENT_TYPE

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
MEDICAL, POLICE, HEALTH = "medical_security", "public_security", "health"


def _kind(path: Path) -> str:
    """clue_transfer_medical_conduct.json → clue_transfer: the longest kind its name starts with."""
    return max((kind for kind in k.KINDS if path.stem == kind or path.stem.startswith(kind + "_")), key=len)


def _examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.json"))


def _body(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_there_are_examples_of_the_kinds_a_clerk_starts_with():
    kinds = {_kind(path) for path in _examples()}
    assert {k.CLUE_TRANSFER, k.FILING_DECISION, k.HANDLING_RESULT, k.MATERIALS_HANDOVER} <= kinds


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_each_example_is_readable_utf8_and_valid_against_its_schema(path):
    text = path.read_text(encoding="utf-8")
    assert "\\u" not in text and any("\u4e00" <= ch <= "\u9fff" for ch in text), "Chinese as UTF-8, not escapes"
    kind = _kind(path)
    k.load_body(kind, k.latest_version(kind), json.loads(text))  # raises BodyInvalid if not


def test_the_examples_dates_follow_one_another():
    clue, filed, handover = _body("clue_transfer.json"), _body("filing_decision.json"), _body("materials_handover.json")
    assert _at(clue["team_reported_at"]) < _at(clue["approved_at"]) < _at(filed["decided_at"]) \
        < _at(handover["handed_over_at"])
    assert handover["case_no"] == filed["case_no"]
    assert _at(clue["approved_at"]) < _at(_body("filing_decision_not_filed.json")["decided_at"])
    conduct, result = _body("clue_transfer_medical_conduct.json"), _body("handling_result.json")
    assert _at(conduct["team_reported_at"]) < _at(conduct["approved_at"]) < _at(result["decided_at"])
    assert result["amount_recovered_fen"] <= conduct["amount_involved_fen"]


def test_the_readme_of_the_examples_names_every_file():
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for path in _examples():
        assert path.name in readme


# -- played through the command line, as docs/examples/README.md says --------------------------
@pytest.fixture
def offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("CLUEBUS_CREDENTIALS_DIR", str(tmp_path / "credentials"))
    monkeypatch.setenv("CLUEBUS_BUS_URI", "amqp://127.0.0.1:1/cluebus")  # no broker: kept in the outbox
    monkeypatch.delenv("CLUEBUS_DATABASE_URL", raising=False)
    assert main(["keys", "init"]) == 0
    for agency in (MEDICAL, POLICE, HEALTH):
        CredentialStore(tmp_path / "credentials").save(AgencyCredentials(
            agency, BrokerAccount(f"cluebus.{agency}", "pw"), BrokerAccount(f"cluebus.{agency}.control", "pw")))
    capsys.readouterr()
    return c.load_config()


def _cli(capsys, *argv) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, out + err
    return out


def _deliver(config, sender: str, recipient: str) -> list[dict]:
    """What ``sender`` keeps in its outbox for ``recipient``, received by ``recipient``'s node."""
    source, target = offline_context(config, sender), offline_context(config, recipient)
    try:
        outcomes = []
        for row in queries.outbox(source, ["pending"]):
            if row["recipient"] != recipient:
                continue
            with source.store.transaction() as repo:
                raw = repo.message(row["message_id"]).raw
            outcome = receiving.receive(target, Delivery(raw, CONTENT_TYPE, f"cluebus.{sender}", sender))
            outcomes.append({"message_id": row["message_id"], "referral_id": row["referral_id"],
                             "status": outcome.status, "kind": row["kind"]})
        return outcomes
    finally:
        source.store.dispose()
        target.store.dispose()


def test_the_examples_are_accepted_when_sent_as_the_readme_says(offline, capsys):
    ex = str(EXAMPLES)
    _cli(capsys, "send", "--as", MEDICAL, "--file", f"{ex}/clue_transfer.json", "--to", POLICE)
    [clue] = _deliver(offline, MEDICAL, POLICE)
    assert clue["status"] == "accepted"
    assert "YB-2026-0231 康宁骨科医院挂床住院骗取医保基金" in _cli(capsys, "inbox", "--as", POLICE)
    _cli(capsys, "answer", clue["message_id"], "--as", POLICE, "--kind", k.FILING_DECISION,
         "--file", f"{ex}/filing_decision.json")
    assert [o["status"] for o in _deliver(offline, POLICE, MEDICAL) if o["kind"] == k.FILING_DECISION] == ["accepted"]
    _cli(capsys, "send", "--as", MEDICAL, "--kind", k.MATERIALS_HANDOVER, "--referral", clue["referral_id"],
         "--to", POLICE, "--file", f"{ex}/materials_handover.json")
    assert [o["status"] for o in _deliver(offline, MEDICAL, POLICE) if o["kind"] == k.MATERIALS_HANDOVER] == ["accepted"]

    _cli(capsys, "send", "--as", MEDICAL, "--file", f"{ex}/clue_transfer_medical_conduct.json", "--to", HEALTH)
    [conduct] = _deliver(offline, MEDICAL, HEALTH)
    assert conduct["status"] == "accepted"
    _cli(capsys, "answer", conduct["message_id"], "--as", HEALTH, "--kind", k.HANDLING_RESULT,
         "--file", f"{ex}/handling_result.json")
    assert [o["status"] for o in _deliver(offline, HEALTH, MEDICAL) if o["kind"] == k.HANDLING_RESULT] == ["accepted"]
