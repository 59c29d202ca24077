"""Keys over the real broker: the bus operator's signed keyring reaches every node over the
bus, and the police's key is rotated while clue transfers are in flight: none is rejected,
the police sign with the new key once it is valid, and what was signed with the old key
still verifies in `trace` afterwards. Unsigned, tampered and older keyrings are quarantined
and change nothing."""

from __future__ import annotations

import json

import eventlet
import pytest

from adapters.crypto.canonical import canonical_bytes
from adapters.crypto.trust import KEYRING_CONTENT_TYPE, SignedKeyring
from adapters.storage.tables import INBOUND, OUTBOUND, RECEIPTED, Message, OutboxEntry, QuarantineEntry
from schemas import registry as k
from services import config as c
from services import key_management as km
from services import settings
from services.handlers import queries
from services.handlers.keyring_updates import OUTCOME_KEYRING_TAKEN
from services.handlers.receiving import OUTCOME_QUARANTINED
from services.bootstrap import offline_context
from tests.fixtures.bodies import sample_body
from tests.integration import helpers as h

pytestmark = pytest.mark.integration

POLICE = "public_security"
MEDICAL = "medical_security"
OFFICE = "joint_office"
ACTIVATION = 2.0   # seconds between publishing the keyring and the new key's first use


def clue(n: int) -> dict:
    body = sample_body(k.CLUE_TRANSFER)
    body.update(clue_no=f"YB-2026-{n:05d}", category="administrative_violation")
    return {"body": body}


def _police_signing_keys(bus) -> dict[str, int]:
    """How many of the police's receipts each signing key signed (as the bureau stored them)."""
    counts: dict[str, int] = {}
    with h.db(bus, MEDICAL) as repo:
        for message in h.messages(repo, Message.direction == INBOUND, Message.kind == k.RECEIPT):
            key_id = json.loads(message.raw)["sender_key_id"]
            counts[key_id] = counts.get(key_id, 0) + 1
    return counts


@pytest.mark.parametrize("bus_environ", [{"CLUEBUS_KEY_ACTIVATION_SECONDS": str(ACTIVATION)}], indirect=True)
def test_rotating_the_polices_key_under_load_rejects_nothing_and_old_messages_still_verify(bus):
    bus.start(MEDICAL, POLICE, OFFICE)
    directory = settings.key_directory(bus.config)
    old_key = directory.load_private(POLICE).signing_key_id
    sent: list[str] = []
    numbers = iter(range(1_000_000))

    def send(count: int) -> None:
        with bus.rpc() as rpc:
            for _ in range(count // 10):
                answers = rpc.medical_security.refer_clues([clue(next(numbers)) for _ in range(10)])
                sent.extend(a["messages"][0]["message_id"] for a in answers)

    def send_and_wait(count: int) -> None:
        with bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=count, timeout=120):
            send(count)

    send_and_wait(50)                                        # under way with the old key
    # The rotation while 300 more are in flight, as the police and the bus operator do it: a
    # new key pair and its request, then the keyring's next version, published on the bus.
    with bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt", count=300, timeout=120), \
            bus.waiter(POLICE, kind="keyring_update", status=OUTCOME_KEYRING_TAKEN, timeout=60), \
            bus.waiter(MEDICAL, kind="keyring_update", status=OUTCOME_KEYRING_TAKEN, timeout=60), \
            bus.waiter(OFFICE, kind="keyring_update", status=OUTCOME_KEYRING_TAKEN, timeout=120):
        stream = eventlet.spawn(send, 300)
        request = km.rotate_agency_keys(directory, POLICE, h.utc_now())
        signed, failures = km.publish_keyring(bus.config, directory, km.KeyringChange(requests=[request]),
                                              h.utc_now())
        assert failures == {}
        stream.wait()
    new_key = request.signing_record.key_id
    # On until the police sign with the new key (it is valid ACTIVATION seconds after publishing).
    with eventlet.Timeout(60, exception=AssertionError("the police never signed with the new key")):
        while new_key not in _police_signing_keys(bus):
            send_and_wait(10)
    send_and_wait(50)

    with h.db(bus, MEDICAL) as repo:
        clues = h.messages(repo, Message.direction == OUTBOUND, Message.kind == k.CLUE_TRANSFER)
        assert sorted(m.message_id for m in clues) == sorted(sent)
        assert {m.status for m in clues} == {"accepted"}           # none rejected
        states = {e.message_id: e.state for e in repo.session.query(OutboxEntry)}
        assert {states[m] for m in sent} == {RECEIPTED}
        assert h.count(repo, QuarantineEntry) == 0
        assert [e.detail["version"] for e in h.audit_events(repo, "keyring.updated")] == [2]
    with h.db(bus, POLICE) as repo:
        assert {m.status for m in h.messages(repo, Message.direction == INBOUND)} == {"accepted"}
        assert h.count(repo, QuarantineEntry) == 0
    keys = _police_signing_keys(bus)
    assert set(keys) == {old_key, new_key} and keys[old_key] >= 50 and keys[new_key] >= 50
    with h.db(bus, OFFICE) as repo:
        # The observer gets one copy per agency: one taken, the others duplicates.
        assert h.count(repo, QuarantineEntry) == 0
        assert len(h.audit_events(repo, "keyring.updated")) == 1

    # `trace` afterwards, at both nodes, from their own databases: every signature verifies,
    # the old key's too (judged at each message's sent_at).
    for agency in (MEDICAL, POLICE):
        ctx = offline_context(bus.config, agency, create=False)
        try:
            with h.db(bus, agency) as repo:
                referrals = [m.referral_id for m in h.messages(repo, Message.kind == k.CLUE_TRANSFER)]
            for referral_id in referrals[:5] + referrals[-5:]:
                trace = queries.trace(ctx, referral_id)
                assert len(trace["steps"]) == 2 and all(step["signature"]["ok"] for step in trace["steps"]), trace
                assert trace["audit_chain"]["ok"]
        finally:
            ctx.store.dispose()
    assert signed.version == 2 and directory.load_signed_keyring().version == 2


def test_unsigned_tampered_and_older_keyrings_are_quarantined_and_change_nothing(bus):
    bus.start(POLICE)
    directory = settings.key_directory(bus.config)
    v1 = directory.load_signed_keyring()
    # The operator publishes version 2 (a revocation from far in the future: nothing changes in use).
    ms_key = directory.load_private(MEDICAL).signing_key_id
    with bus.waiter(POLICE, kind="keyring_update", status=OUTCOME_KEYRING_TAKEN):
        v2, failures = km.publish_keyring(
            bus.config, directory,
            km.KeyringChange(revocations=[(ms_key, h.utc_now().replace(year=2099))]), h.utc_now())
    assert failures == {}

    unsigned = dict(v2.document)
    unsigned.pop("signature")
    tampered = json.loads(json.dumps(v2.document))
    tampered["version"] = 3
    key = directory.load_anchor_private()
    cases = {
        "keyring.signature": canonical_bytes(unsigned),
        "keyring.signature ": canonical_bytes(tampered),
        "keyring.stale": v1.raw,                                   # older: a replay of version 1
        "keyring.invalid": b"",
        "keyring.drops_key": SignedKeyring.issue(type(v2.keyring)(), version=9, issued_at=h.utc_now(), key=key).raw,
    }
    operator = settings.broker_names(bus.config).bus_user("bus_operator")
    with bus.waiter(POLICE, status=OUTCOME_QUARANTINED, count=len(cases)) as waiter:
        for raw in cases.values():
            _publish_as_operator(bus, raw, operator)
    assert sorted(o["rule"] for o in waiter._seen) == sorted(r.strip() for r in cases)
    assert settings.key_directory(bus.config).load_signed_keyring().version == 2
    with h.db(bus, POLICE) as repo:
        assert len(h.quarantined(repo)) == len(cases)
    # And version 2 again (another copy): a duplicate, acknowledged, nothing new.
    with bus.waiter(POLICE, kind="keyring_update", status="duplicate"):
        assert km.distribute_keyring(bus.config, v2, [POLICE]) == {}


def test_another_agency_cannot_publish_a_keyring_update(bus):
    """Only the bus operator's account may publish <agency>.keyring_update."""
    directory = settings.key_directory(bus.config)
    from adapters.transport.publisher import EnvelopePublisher
    publisher = EnvelopePublisher(bus.bus_uri(MEDICAL), h.topology(bus), bus.bus_user(MEDICAL),
                                  content_type=KEYRING_CONTENT_TYPE)
    try:
        failures = publisher.publish_many([("x", directory.load_signed_keyring().raw, f"{POLICE}.keyring_update")])
    finally:
        publisher.close()
    assert failures["x"].rule == "transport.refused"
    assert h.queue_depth(bus, h.queue_name(bus, POLICE)) == 0


def _publish_as_operator(bus, raw: bytes, operator: str) -> None:
    credentials = settings.credential_store(bus.config).load("bus_operator", control=False)
    from adapters.transport.publisher import EnvelopePublisher
    publisher = EnvelopePublisher(settings.bus_uri(bus.config, "bus_operator", credentials), h.topology(bus),
                                  operator, content_type=KEYRING_CONTENT_TYPE)
    try:
        assert publisher.publish_many([("k", raw, f"{POLICE}.keyring_update")]) == {}
    finally:
        publisher.close()
