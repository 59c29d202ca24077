"""Reconciliation on the real broker (docs/protocol.md §20): the police lose a clue they had
received (their database is set back behind the node's back, as a restore from a backup
would), the bureau's reconciliation finds it, sends it again byte for byte, and it is stored
exactly once; the next reconciliation is in agreement. Bad answers on the bus are rejected
with their rule; a summary from an agency the configuration does not know is not answered."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select

from adapters.storage import tables as t
from schemas import registry as k
from services.cli.main import main
from services.domain import delivery as d
from services.domain.reconciliation import ids_sha256
from services.handlers import reconciliation
from services.protocol import rules
from tests.fixtures.bodies import sample_body
from tests.integration import helpers as h

MEDICAL, POLICE, PROCURATORATE, OFFICE = "medical_security", "public_security", "procuratorate", "joint_office"
SETTLED = {"CLUEBUS_RECONCILE_SETTLE_SECONDS": "0", "CLUEBUS_RECONCILE_INTERVAL_SECONDS": "0"}


def _clues_receipted(bus, count: int) -> list[str]:
    """``count`` suspected-crime clues from the bureau, each receipted by the police and by the
    procuratorate (its copy)."""
    with bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=2 * count), bus.rpc() as rpc:
        sent = []
        for n in range(count):
            body = sample_body(k.CLUE_TRANSFER)
            body["clue_no"] = f"YB-2026-R{n:03d}"
            answer = rpc.medical_security.refer_clue(body)
            sent += [m["message_id"] for m in answer["messages"] if m["kind"] == k.CLUE_TRANSFER]
    return sent


def _restore_without(bus, agency: str, message_id: str) -> None:
    """What a database restored from a backup taken before ``message_id`` arrived lacks of it:
    its row, its inbox row, the referral it opened and the receipt the node sent for it (the
    audit log is left whole: a restored log is a whole, shorter chain)."""
    with bus.store(agency).transaction() as repo:
        inbox = repo.inbox_entry(message_id)
        referral_id = repo.message(message_id).referral_id
        session = repo.session
        session.execute(delete(t.OutboxEntry).where(t.OutboxEntry.message_id == inbox.receipt_message_id))
        session.execute(delete(t.Message).where(t.Message.message_id.in_([message_id, inbox.receipt_message_id])))
        session.execute(delete(t.InboxEntry).where(t.InboxEntry.message_id == message_id))
        session.execute(delete(t.Referral).where(t.Referral.referral_id == referral_id))


def _round(bus, summary_id: str) -> dict:
    return reconciliation.round_of(bus.context(MEDICAL), summary_id)


@pytest.mark.integration
@pytest.mark.parametrize("bus_environ", [SETTLED], indirect=True)
def test_a_lost_message_is_found_sent_again_and_stored_once_then_all_agree(bus, monkeypatch, capsys):
    bus.start(MEDICAL, POLICE, PROCURATORATE, OFFICE)
    clues = _clues_receipted(bus, 3)
    lost = clues[1]
    with h.db(bus, MEDICAL) as repo:
        original = repo.message(lost).raw
        receipt_before = repo.outbox_entry(lost).receipt_message_id
    _restore_without(bus, POLICE, lost)

    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted") as again, \
            bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=2), \
            bus.waiter(MEDICAL, kind=k.RECONCILIATION_ANSWER, status="accepted"), bus.rpc() as rpc:
        summary = rpc.medical_security.reconcile(POLICE)
    assert summary["count"] == 3 and summary["window_from"] is None
    assert again.get()["message_id"] == lost
    found = _round(bus, summary["summary_message_id"])
    assert found["agreed"] is False and found["peer_count"] == 2
    assert found["missing"] == [lost] and found["resent"] == [lost] and found["unexpected"] == []

    with h.db(bus, POLICE) as repo:
        assert h.count(repo, t.Message, t.Message.message_id == lost) == 1
        assert h.count(repo, t.InboxEntry, t.InboxEntry.message_id == lost) == 1
        assert repo.message(lost).raw == original          # the same bytes, byte for byte
        assert h.count(repo, t.Referral, t.Referral.referral_id == repo.message(lost).referral_id) == 1
        assert repo.inbox_entry(lost).deliveries == 1
    with h.db(bus, MEDICAL) as repo:
        entry = repo.outbox_entry(lost)
        assert entry.state == d.RECEIPTED and entry.receipt_message_id != receipt_before
        [resent] = h.audit_events(repo, "reconciliation.resent")
        assert resent.detail["missing"] == [lost] and resent.detail["resent"] == [lost]
        # no referral for the reconciliation messages
        ids = {m.message_id for m in h.messages(repo, t.Message.kind.in_(sorted(k.RECONCILIATION_KINDS)))}
        assert h.count(repo, t.Referral, t.Referral.referral_id.in_(ids)) == 0
    # the office records neither the reconciliation nor its receipts
    with h.db(bus, OFFICE) as repo:
        from adapters.storage.office_tables import ObservedMessageRow
        observed = list(repo.session.scalars(select(ObservedMessageRow)))
        assert {row.message_id for row in observed} & ids == set()
        assert not [row for row in observed if row.referral_id in ids]
        assert lost in {row.message_id for row in observed}

    # The command line: the second reconciliation is in agreement.
    for name, value in bus.environ.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["reconcile", "--with", POLICE, "--as", MEDICAL, "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    assert f"{MEDICAL} ↔ {POLICE}: window the beginning .. " in out
    assert "counted 3 message(s)" in out and f"{POLICE} holds 3" in out and "in agreement" in out
    with h.db(bus, MEDICAL) as repo:
        agreed = repo.agreed_until(POLICE)
    assert agreed is not None
    # and the one after starts where they agreed
    assert main(["reconcile", "--with", POLICE, "--as", MEDICAL, "--json"]) == 0
    import json
    third = json.loads(capsys.readouterr().out)
    assert third["agreed"] is True and third["count"] == 0
    assert third["window_from"] is not None


@pytest.mark.integration
@pytest.mark.parametrize("bus_environ", [SETTLED], indirect=True)
def test_bad_answers_on_the_bus_are_rejected_with_their_rule(bus):
    bus.start(MEDICAL, POLICE)
    police = bus.context(POLICE)
    with bus.waiter(MEDICAL, kind=k.RECONCILIATION_ANSWER, status="accepted"), bus.rpc() as rpc:
        summary = rpc.medical_security.reconcile(POLICE)
    summary_id = summary["summary_message_id"]

    def answer(**body):
        answer_id = str(uuid.uuid4())
        content = {"summary_message_id": summary_id, "count": 0, "ids_sha256": ids_sha256([]), "match": True,
                   **body.pop("content", {})}
        return police.composer.compose(k.RECONCILIATION_ANSWER, MEDICAL, content, referral_id=answer_id,
                                       message_id=answer_id, **body).raw

    cases = [
        (answer(in_reply_to=str(uuid.uuid4()), content={"summary_message_id": str(uuid.uuid4())}),
         rules.RECONCILIATION_UNKNOWN_SUMMARY),                         # answers nothing
        (answer(in_reply_to=summary_id), rules.RECONCILIATION_UNKNOWN_SUMMARY),   # answered already
    ]
    for raw, rule in cases:
        with bus.waiter(MEDICAL, kind=k.RECONCILIATION_ANSWER, status="rejected") as refused:
            h.publish_raw(bus, raw, f"{MEDICAL}.{k.RECONCILIATION_ANSWER}", as_agency=POLICE)
        outcome = refused.get()
        assert outcome["rule"] == rule
        with h.db(bus, MEDICAL) as repo:
            # answered with a signed rejection naming the rule (the hand-made answer is no
            # message the police node sent, so the police keep that receipt aside)
            [receipt] = h.messages(repo, t.Message.in_reply_to == outcome["message_id"])
            assert receipt.kind == k.RECEIPT and receipt.body["reason_codes"] == [rule]
            assert repo.message(outcome["message_id"]).status == "rejected"
    assert _round(bus, summary_id)["agreed"] is True   # the answered round did not move


@pytest.mark.integration
def test_a_summary_not_from_a_configured_agencys_account_is_quarantined_unanswered(bus, tmp_path):
    """Signed by a key of an agency the configuration does not know, published by an account
    that is no agency's (the broker lets no such agency publish): kept aside, not answered."""
    bus.start(POLICE)
    from datetime import timedelta
    from adapters.crypto.keys import initialise_key_directory
    from adapters.crypto.signing import Signer
    from services.nodes.dependencies import utc_now
    directory, _ = initialise_key_directory(tmp_path / "outsider", ["customs"], validity=timedelta(days=30),
                                            now=utc_now() - timedelta(days=1))
    material = directory.load_private("customs")
    signer = Signer("customs", material.signing_key_id, material.signing_seed)
    body = {"window_from": None, "window_until": "2026-01-01T00:00:00Z", "count": 0, "ids_sha256": ids_sha256([])}
    _, raw = h.signed_envelope(signer, k.RECONCILIATION_SUMMARY, POLICE, body)
    with bus.waiter(POLICE, status="quarantined") as kept:
        h.publish_raw(bus, raw, f"{POLICE}.{k.RECONCILIATION_SUMMARY}")
    assert kept.get()["rule"] == rules.TRANSPORT_SENDER_MISMATCH
    with h.db(bus, POLICE) as repo:
        assert h.count(repo, t.Message) == 0 and h.count(repo, t.OutboxEntry) == 0


@pytest.mark.integration
def test_a_summary_about_messages_to_another_agency_is_rejected_not_answered(bus):
    """The bureau's own account publishes to the police a summary addressed to the
    procuratorate: the police reject it (recipient.mismatch) and answer nothing else."""
    bus.start(MEDICAL, POLICE)
    signer = bus.context(MEDICAL).composer.signer
    body = {"window_from": None, "window_until": "2026-01-01T00:00:00Z", "count": 0, "ids_sha256": ids_sha256([])}
    _, raw = h.signed_envelope(signer, k.RECONCILIATION_SUMMARY, PROCURATORATE, body)
    with bus.waiter(POLICE, status="rejected") as refused:
        h.publish_raw(bus, raw, f"{POLICE}.{k.RECONCILIATION_SUMMARY}")
    outcome = refused.get()
    assert outcome["rule"] == rules.RECIPIENT_MISMATCH
    with h.db(bus, POLICE) as repo:
        assert h.count(repo, t.Message, t.Message.kind == k.RECONCILIATION_ANSWER) == 0
        [receipt] = h.messages(repo, t.Message.in_reply_to == outcome["message_id"])
        assert receipt.kind == k.RECEIPT and receipt.body["reason_codes"] == [rules.RECIPIENT_MISMATCH]
