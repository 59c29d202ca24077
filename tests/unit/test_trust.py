"""The trust anchor, signed keyrings, key requests, rotation with overlap and the key chain,
without a broker: adapters/crypto/trust.py, keychain.py and services/key_management.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from adapters.crypto.canonical import canonical_bytes
from adapters.crypto.exceptions import KeyRevoked, KeyStoreError, UnknownKey
from adapters.crypto.keychain import KeyChain
from adapters.crypto.keys import ED25519, X25519, KeyDirectory, initialise_key_directory
from adapters.crypto.trust import KeyRequest, KeyringUpdateError, SignedKeyring, TrustedKeyring
from schemas.routes import RouteTable
from services import key_management as km
from services.protocol import rules
from services.protocol.compose import Composer
from services.protocol.exceptions import Rejection
from services.protocol.verify import Verifier
from tests.fixtures.bodies import REFERRAL_ID, sample_body

MS, PS = "medical_security", "public_security"
AGENCIES = [MS, PS]
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
TIMES = km.KeyTimes(activation=timedelta(minutes=5), overlap=timedelta(days=7), validity=timedelta(days=365))


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def directory(tmp_path) -> KeyDirectory:
    directory, _ = initialise_key_directory(tmp_path / "keys", AGENCIES, validity=timedelta(days=365), now=T0)
    return directory


def _next(directory: KeyDirectory, change: km.KeyringChange, now: datetime) -> SignedKeyring:
    held = directory.load_signed_keyring()
    keyring = km.next_keyring(held, change, now, TIMES)
    return SignedKeyring.issue(keyring, version=held.version + 1, issued_at=now, key=directory.load_anchor_private())


# -- signed keyrings ------------------------------------------------------------------------------
def test_a_fresh_directory_holds_a_signed_keyring_that_its_anchor_verifies(directory):
    signed = directory.load_signed_keyring()
    assert signed.version == 1
    assert set(signed.keyring.records) == set(json.loads(directory.keyring_path.read_text())["keys"][i]["key_id"]
                                              for i in range(4))
    assert oct(directory.anchor_private_path.stat().st_mode & 0o777) == "0o600"
    # The anchor's private key is not in anything a node is given.
    seed = json.loads(directory.anchor_private_path.read_text())["seed"]
    for shared in (directory.trust_anchor_path, directory.signed_keyring_path, directory.keyring_path):
        assert seed not in shared.read_text()


@pytest.mark.parametrize("tamper, rule", [
    (lambda d: d.pop("signature"), rules.KEYRING_SIGNATURE),
    (lambda d: d.update(signature=d["signature"][:-4] + "AAA="), rules.KEYRING_SIGNATURE),
    (lambda d: d["keyring"]["keys"][0].update(valid_until="2099-01-01T00:00:00Z"), rules.KEYRING_SIGNATURE),
    (lambda d: d.update(version=d["version"] + 1), rules.KEYRING_SIGNATURE),
    (lambda d: d.update(anchor_key_id="bus_operator:ed25519:" + "0" * 32), rules.KEYRING_SIGNATURE),
    (lambda d: d.update(format="cluebus-keyring/1"), rules.KEYRING_INVALID),
    (lambda d: d.update(extra=1), rules.KEYRING_INVALID),
], ids=["unsigned", "bad_signature", "key_changed", "version_changed", "other_anchor", "plain_keyring", "extra_member"])
def test_a_tampered_or_unsigned_keyring_is_refused(directory, tamper, rule):
    document = json.loads(directory.signed_keyring_path.read_text())
    tamper(document)
    with pytest.raises(KeyringUpdateError) as info:
        SignedKeyring.verify(canonical_bytes(document), directory.load_trust_anchor())
    assert info.value.rule == rule


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", "信".encode()], ids=["empty", "broken", "array", "null", "text"])
def test_bytes_that_are_no_keyring_get_a_typed_answer(directory, raw):
    with pytest.raises(KeyringUpdateError) as info:
        SignedKeyring.verify(raw, directory.load_trust_anchor())
    assert info.value.rule == rules.KEYRING_INVALID


def test_a_signed_keyring_file_that_fails_is_never_replaced_by_the_plain_one(directory):
    document = json.loads(directory.signed_keyring_path.read_text())
    document["keyring"]["keys"].pop()
    directory.signed_keyring_path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreError) as info:
        directory.load_keyring()
    assert "[keyring.signature]" in info.value.detail


def test_the_trusted_keyring_takes_newer_versions_only(directory):
    trusted = TrustedKeyring(directory, directory.load_keyring())
    v1 = directory.load_signed_keyring()
    assert trusted.check(v1.raw) is None                       # the held version again: a duplicate
    ms_key = directory.load_private(MS).signing_key_id
    v2 = _next(directory, km.KeyringChange(revocations=[(ms_key, T0 + timedelta(days=1))]), T0)
    assert trusted.check(v2.raw).version == 2
    trusted.take(v2)
    assert trusted.keyring.records[ms_key].revoked
    assert directory.load_signed_keyring().version == 2       # written before use
    with pytest.raises(KeyringUpdateError) as info:
        trusted.check(v1.raw)                                  # older: refused
    assert info.value.rule == rules.KEYRING_STALE
    # The same version with other contents.
    other = SignedKeyring.issue(v1.keyring, version=2, issued_at=T0, key=directory.load_anchor_private())
    with pytest.raises(KeyringUpdateError) as info:
        trusted.check(other.raw)
    assert info.value.rule == rules.KEYRING_STALE


def test_an_update_may_not_drop_a_key_or_lift_a_revocation(directory):
    trusted = TrustedKeyring(directory, directory.load_keyring())
    anchor = directory.load_anchor_private()
    held = directory.load_signed_keyring()
    fewer = held.keyring.copy()
    dropped = next(iter(fewer.records))
    del fewer.records[dropped]
    with pytest.raises(KeyringUpdateError) as info:
        trusted.check(SignedKeyring.issue(fewer, version=2, issued_at=T0, key=anchor).raw)
    assert info.value.rule == rules.KEYRING_DROPS_KEY and dropped in info.value.detail

    revoked = held.keyring.copy()
    revoked.revoke(dropped, T0)
    v2 = SignedKeyring.issue(revoked, version=2, issued_at=T0, key=anchor)
    trusted.take(trusted.check(v2.raw))
    with pytest.raises(KeyringUpdateError) as info:
        trusted.check(SignedKeyring.issue(held.keyring, version=3, issued_at=T0, key=anchor).raw)
    assert info.value.rule == rules.KEYRING_DROPS_KEY and "lifts the revocation" in info.value.detail


def test_a_node_without_a_trust_anchor_takes_no_updates(tmp_path, directory):
    plain = KeyDirectory(tmp_path / "plain")
    plain.path.mkdir()
    directory.load_keyring().save(plain.keyring_path)
    trusted = TrustedKeyring(plain, plain.load_keyring())
    with pytest.raises(KeyringUpdateError) as info:
        trusted.check(directory.load_signed_keyring().raw)
    assert info.value.rule == rules.KEYRING_SIGNATURE


# -- dated revocation -------------------------------------------------------------------------------
def test_a_dated_revocation_keeps_earlier_messages_verifying(directory):
    keyring = directory.load_keyring()
    key_id = directory.load_private(MS).signing_key_id
    keyring.revoke(key_id, T0 + timedelta(hours=1))
    assert keyring.key_for(key_id, agency=MS, algorithm=ED25519, at=T0 + timedelta(minutes=59))
    with pytest.raises(KeyRevoked):
        keyring.key_for(key_id, agency=MS, algorithm=ED25519, at=T0 + timedelta(hours=1))
    # It travels: revoked_at is kept in the keyring's JSON.
    again = type(keyring).from_json(keyring.to_json())
    assert again.records[key_id].revoked_at == T0 + timedelta(hours=1)


# -- requests and rotation ----------------------------------------------------------------------------
def test_a_key_request_must_be_signed_by_the_new_key_and_the_key_it_replaces(directory):
    request = km.rotate_agency_keys(directory, PS, T0)
    request.check_against(directory.load_keyring(), T0)        # signed by the current key: fine
    document = json.loads(request.to_text())
    document["signature"].pop(request.replaces)
    forged = KeyRequest.load(document)                          # its own signature is still there...
    with pytest.raises(KeyStoreError):
        forged.check_against(directory.load_keyring(), T0)      # ...but not the replaced key's
    document = json.loads(request.to_text())
    document["keys"][0]["public_key"], document["keys"][1]["public_key"] = (document["keys"][1]["public_key"],
                                                                            document["keys"][0]["public_key"])
    with pytest.raises(KeyStoreError):
        KeyRequest.load(document)


def test_rotation_signs_with_the_old_key_until_the_new_one_is_valid_and_both_verify_meanwhile(directory):
    clock = Clock(T0)
    routes = RouteTable.load().restricted_to(AGENCIES)
    police_keyring = directory.load_keyring()
    chain = KeyChain(PS, police_keyring, directory.load_private_generations(PS), clock=clock)
    police = Composer(chain.signer, routes, police_keyring, chain.box_key, clock=clock)
    bureau_keyring = directory.load_keyring()
    bureau = Verifier(bureau_keyring, routes, AGENCIES, clock=clock, max_age=timedelta(days=7))
    old_key = directory.load_private(PS).signing_key_id

    request = km.rotate_agency_keys(directory, PS, T0)
    # The police's node holds the new private key but no keyring with it yet: it signs with the old.
    chain.reload(directory.load_private_generations(PS))
    before = police.compose("filing_decision", MS, sample_body("filing_decision"), referral_id=REFERRAL_ID)
    assert before.envelope["sender_key_id"] == old_key

    v2 = _next(directory, km.KeyringChange(requests=[request]), T0)
    police_keyring.replace_with(v2.keyring)
    bureau_keyring.replace_with(v2.keyring)
    new_key = request.signing_record.key_id
    assert v2.keyring.records[new_key].valid_from == T0 + TIMES.activation
    assert v2.keyring.records[old_key].valid_until == T0 + TIMES.activation + TIMES.overlap

    clock.now = T0 + timedelta(minutes=4)          # not yet valid: still the old key
    assert police.compose("filing_decision", MS, sample_body("filing_decision"),
                          referral_id=REFERRAL_ID).envelope["sender_key_id"] == old_key
    clock.now = T0 + timedelta(minutes=6)          # valid: the new key
    after = police.compose("filing_decision", MS, sample_body("filing_decision"), referral_id=REFERRAL_ID)
    assert after.envelope["sender_key_id"] == new_key
    assert bureau.verify(after.raw).sender == PS
    assert bureau.verify(before.raw).sender == PS  # the old one's message still verifies in the overlap
    # ... and after the overlap, judged at its own sent_at (as `trace` does).
    clock.now = T0 + timedelta(days=30)
    assert bureau_keyring.key_for(old_key, agency=PS, algorithm=ED25519, at=T0) is not None


def test_a_body_sealed_for_the_old_box_key_still_opens_after_the_rotation(directory):
    clock = Clock(T0)
    routes = RouteTable.load().restricted_to(AGENCIES)
    ms_material = directory.load_private(MS)
    ms_keyring = directory.load_keyring()
    bureau_chain = KeyChain(MS, ms_keyring, [ms_material], clock=clock)
    bureau = Composer(bureau_chain.signer, routes, ms_keyring, bureau_chain.box_key, clock=clock)
    sealed = bureau.compose("clue_transfer", PS, sample_body("clue_transfer"), referral_id=REFERRAL_ID, seal=True)

    request = km.rotate_agency_keys(directory, PS, T0)
    v2 = _next(directory, km.KeyringChange(requests=[request]), T0)
    police_keyring = v2.keyring
    chain = KeyChain(PS, police_keyring, directory.load_private_generations(PS), clock=clock)
    police = Verifier(police_keyring, routes, AGENCIES, box_key=chain.box_key, clock=clock,
                      max_age=timedelta(days=7))
    clock.now = T0 + timedelta(hours=1)            # the new box key is the current one now
    assert chain.box_key.key_id != sealed.envelope["body"]["recipient_box_key_id"]
    assert police.verify(sealed.raw).body["clue_no"] == sample_body("clue_transfer")["clue_no"]
    # Sealed now, for the new box key: opens too.
    ms_keyring.replace_with(v2.keyring)
    fresh = bureau.compose("clue_transfer", PS, sample_body("clue_transfer"), referral_id=REFERRAL_ID, seal=True)
    assert fresh.envelope["body"]["recipient_box_key_id"] == chain.box_key.key_id
    assert police.verify(fresh.raw).sender == MS


def test_publish_refuses_an_unknown_key_and_a_request_for_keys_held(directory):
    held = directory.load_signed_keyring()
    with pytest.raises(UnknownKey):
        km.next_keyring(held, km.KeyringChange(revocations=[("court:ed25519:" + "0" * 32, None)]), T0, TIMES)
    request = km.rotate_agency_keys(directory, PS, T0)
    v2 = _next(directory, km.KeyringChange(requests=[request]), T0)
    with pytest.raises(KeyStoreError):
        km.next_keyring(v2, km.KeyringChange(requests=[request]), T0, TIMES)


def test_the_old_private_keys_are_kept_owner_only_after_a_rotation(directory):
    old = directory.load_private(PS)
    km.rotate_agency_keys(directory, PS, T0)
    generations = directory.load_private_generations(PS)
    assert [g.signing_key_id for g in generations][1:] == [old.signing_key_id]
    retired = directory.retired_private_path(old)
    assert oct(retired.stat().st_mode & 0o777) == "0o600"
    assert X25519 in generations[0].box_key_id
