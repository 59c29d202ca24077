"""Agency keys: the key directory, the public keyring and keeping private material private."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from datetime import timedelta

import pytest

from adapters.crypto.exceptions import (KeyAgencyMismatch, KeyExpired, KeyNotYetValid,
                                        KeyPurposeMismatch, KeyRevoked, KeyStoreError, UnknownKey)
from adapters.crypto.keys import (ED25519, X25519, AgencyKeyMaterial, KeyDirectory, Keyring,
                                  initialise_key_directory, key_id_for)
from adapters.crypto.sealing import BoxKey
from adapters.crypto.signing import Signer
from schemas.envelope import KEY_ID
from tests.fixtures.keys import FIXED_NOW

VALIDITY = timedelta(days=365)
AGENCIES = ["medical_security", "public_security", "procuratorate"]


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def fresh(tmp_path):
    directory, keyring = initialise_key_directory(tmp_path / "keys", AGENCIES, validity=VALIDITY,
                                                  now=FIXED_NOW)
    return directory, keyring


# -- the key directory -------------------------------------------------------------------------
def test_private_files_are_0600_and_the_private_dir_0700(fresh):
    directory, _ = fresh
    private_dir = directory.path / "private"
    assert _mode(private_dir) == 0o700
    files = sorted(private_dir.iterdir())
    assert [f.name for f in files] == sorted(f"{a}.key.json" for a in AGENCIES)
    for path in files:
        assert _mode(path) == 0o600, path
    assert _mode(directory.keyring_path) & 0o022 == 0  # the public keyring is not writable by others
    assert not list(directory.path.rglob("*.tmp"))


def test_private_files_are_0600_even_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        directory, _ = initialise_key_directory(tmp_path / "k", AGENCIES[:1], validity=VALIDITY, now=FIXED_NOW)
    finally:
        os.umask(old)
    assert _mode(directory.private_path(AGENCIES[0])) == 0o600
    assert _mode(directory.path / "private") == 0o700


def test_refuses_to_overwrite_without_force(fresh):
    directory, keyring = fresh
    before = directory.keyring_path.read_bytes()
    with pytest.raises(KeyStoreError) as info:
        initialise_key_directory(directory.path, AGENCIES, validity=VALIDITY, now=FIXED_NOW)
    assert info.value.rule == "keystore.error" and "--force" in info.value.detail
    assert directory.keyring_path.read_bytes() == before
    assert directory.load_private(AGENCIES[0]).signing_key_id in keyring.records


def test_force_replaces_every_key(fresh):
    directory, old = fresh
    _, new = initialise_key_directory(directory.path, AGENCIES, validity=VALIDITY, now=FIXED_NOW, force=True)
    assert not set(old.records) & set(new.records)
    assert directory.load_keyring().to_json() == new.to_json()
    assert directory.load_private(AGENCIES[0]).signing_key_id in new.records


def test_key_ids_are_unique_and_derived_from_the_public_key(fresh):
    directory, keyring = fresh
    assert len(keyring.records) == 2 * len(AGENCIES)
    publics = [r.public_key for r in keyring.records.values()]
    assert len(set(publics)) == len(publics)
    for key_id, record in keyring.records.items():
        assert key_id == record.key_id == key_id_for(record.agency, record.algorithm, record.public_key)
        assert KEY_ID.match(key_id)
        assert key_id.startswith(f"{record.agency}:{record.algorithm}:")
    for agency in AGENCIES:
        material = directory.load_private(agency)
        assert keyring.records[material.signing_key_id].public_key == material.signing_public
        assert keyring.records[material.box_key_id].public_key == material.box_public
        assert keyring.records[material.signing_key_id].algorithm == ED25519
        assert keyring.records[material.box_key_id].algorithm == X25519


def test_key_id_format():
    public = bytes(range(32))
    key_id = key_id_for("court", ED25519, public)
    assert key_id == "court:ed25519:" + hashlib.sha256(public).hexdigest()[:32]
    assert key_id_for("court", X25519, public) != key_id
    assert key_id_for("health", ED25519, public) != key_id


def test_validity_written_to_the_keyring(fresh):
    _, keyring = fresh
    for record in keyring.records.values():
        assert record.valid_from == FIXED_NOW and record.valid_until == FIXED_NOW + VALIDITY
        assert record.revoked is False


def test_keyring_round_trips_through_json(fresh):
    directory, keyring = fresh
    assert Keyring.from_json(json.loads(json.dumps(keyring.to_json()))).to_json() == keyring.to_json()
    assert directory.load_keyring().records == keyring.records


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_load_private_refuses_a_file_readable_by_others(fresh, mode):
    directory, _ = fresh
    path = directory.private_path(AGENCIES[0])
    os.chmod(path, mode)
    with pytest.raises(KeyStoreError) as info:
        directory.load_private(AGENCIES[0])
    assert "chmod 600" in info.value.detail


def test_load_private_accepts_0400(fresh):
    directory, _ = fresh
    os.chmod(directory.private_path(AGENCIES[0]), 0o400)
    assert directory.load_private(AGENCIES[0]).agency == AGENCIES[0]


def test_load_private_of_an_agency_without_keys(fresh):
    directory, _ = fresh
    with pytest.raises(KeyStoreError) as info:
        directory.load_private("court")
    assert "keys init" in info.value.detail


@pytest.mark.parametrize("change", [
    lambda d: d.update(signing_key_id=d["box_key_id"]),
    lambda d: d.update(agency="court"),
    lambda d: d.update(format="cluebus-private-key/2"),
    lambda d: d.update(signing_seed=base64.b64encode(b"\x00" * 31).decode()),
    lambda d: d.update(box_secret="not base64"),
    lambda d: d.pop("signing_seed"),
], ids=["key_id_mismatch", "other_agency", "format", "short_seed", "bad_base64", "missing_seed"])
def test_load_private_refuses_a_tampered_file(fresh, change):
    directory, _ = fresh
    path = directory.private_path(AGENCIES[0])
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreError):
        directory.load_private(AGENCIES[0])


# -- the public keyring ------------------------------------------------------------------------
def _keyring_document(directory: KeyDirectory) -> dict:
    return json.loads(directory.keyring_path.read_text())


def test_keyring_entry_whose_key_id_does_not_match_its_public_key(fresh):
    directory, keyring = fresh
    document = _keyring_document(directory)
    first, second = document["keys"][0], document["keys"][1]
    first["public_key"] = second["public_key"]  # someone swapped in another key
    directory.keyring_path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreError) as info:
        Keyring.load(directory.keyring_path)
    assert "does not match its public key" in info.value.detail


@pytest.mark.parametrize("field, value", [
    ("agency", "court"), ("algorithm", "x25519"), ("key_id", None),
])
def test_keyring_entry_relabelled(fresh, field, value):
    directory, _ = fresh
    document = _keyring_document(directory)
    entry = next(e for e in document["keys"] if e["algorithm"] == "ed25519")
    if value is None:  # the last hex digit of the key id changed
        value = entry["key_id"][:-1] + ("0" if entry["key_id"][-1] != "0" else "1")
    entry[field] = value
    directory.keyring_path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreError):
        Keyring.load(directory.keyring_path)


@pytest.mark.parametrize("change", [
    lambda e: e.update(public_key=base64.b64encode(b"\x01" * 31).decode()),
    lambda e: e.update(algorithm="rsa"),
    lambda e: e.update(valid_from="2026-11-24 09:00:00"),
    lambda e: e.pop("public_key"),
], ids=["short_key", "unknown_algorithm", "bad_timestamp", "missing_public_key"])
def test_malformed_keyring_entry(fresh, change):
    directory, _ = fresh
    document = _keyring_document(directory)
    change(document["keys"][0])
    with pytest.raises(KeyStoreError):
        Keyring.from_json(document)


@pytest.mark.parametrize("document", [{}, [], {"format": "cluebus-keyring/2", "keys": []}, None])
def test_not_a_keyring_document(document):
    with pytest.raises(KeyStoreError):
        Keyring.from_json(document)


def test_unreadable_keyring_file(tmp_path):
    (tmp_path / "keyring.json").write_text("{not json")
    with pytest.raises(KeyStoreError):
        KeyDirectory(tmp_path).load_keyring()
    with pytest.raises(KeyStoreError):
        KeyDirectory(tmp_path / "missing").load_keyring()


# -- selecting a key ---------------------------------------------------------------------------
def _two_generations():
    """medical_security's old signing key [t0, t0+100d) and new one [t0+90d, t0+465d)."""
    old = AgencyKeyMaterial.generate("medical_security")
    new = AgencyKeyMaterial.generate("medical_security")
    t0 = FIXED_NOW
    ring = Keyring()
    for record in old.public_records(t0, t0 + timedelta(days=100)):
        ring.add(record)
    for record in new.public_records(t0 + timedelta(days=90), t0 + timedelta(days=465)):
        ring.add(record)
    return ring, old, new


@pytest.mark.parametrize("offset, which", [
    (timedelta(0), "old"), (timedelta(days=89, hours=23), "old"),
    (timedelta(days=90), "new"),            # overlap: the newest valid key wins
    (timedelta(days=99, hours=23), "new"),
    (timedelta(days=200), "new"),
])
def test_keyring_selects_the_key_valid_at_the_time(offset, which):
    ring, old, new = _two_generations()
    expected = {"old": old, "new": new}[which]
    at = FIXED_NOW + offset
    assert ring.current_key_id("medical_security", ED25519, at) == expected.signing_key_id
    assert ring.current_key_id("medical_security", X25519, at) == expected.box_key_id


@pytest.mark.parametrize("offset", [timedelta(seconds=-1), timedelta(days=465)])
def test_no_key_valid_at_the_time(offset):
    ring, _, _ = _two_generations()
    with pytest.raises(UnknownKey):
        ring.current_key_id("medical_security", ED25519, FIXED_NOW + offset)


def test_revoked_key_is_never_selected():
    ring, old, new = _two_generations()
    ring.revoke(new.signing_key_id)
    at = FIXED_NOW + timedelta(days=95)
    assert ring.current_key_id("medical_security", ED25519, at) == old.signing_key_id


@pytest.mark.parametrize("offset, error", [
    (timedelta(days=50), None),
    (timedelta(days=99, hours=23, minutes=59, seconds=59), None),
    (timedelta(days=100), KeyExpired),          # valid_until itself is outside
    (timedelta(seconds=-1), KeyNotYetValid),
])
def test_key_for_checks_validity_at_the_given_time(offset, error):
    ring, old, _ = _two_generations()
    at = FIXED_NOW + offset
    if error is None:
        assert ring.key_for(old.signing_key_id, agency="medical_security", algorithm=ED25519,
                            at=at).public_key == old.signing_public
    else:
        with pytest.raises(error):
            ring.key_for(old.signing_key_id, agency="medical_security", algorithm=ED25519, at=at)


def test_key_for_checks_revocation_agency_purpose_and_existence():
    ring, old, _ = _two_generations()
    at = FIXED_NOW + timedelta(days=1)
    with pytest.raises(KeyAgencyMismatch):
        ring.key_for(old.signing_key_id, agency="public_security", algorithm=ED25519, at=at)
    with pytest.raises(KeyPurposeMismatch):
        ring.key_for(old.signing_key_id, agency="medical_security", algorithm=X25519, at=at)
    with pytest.raises(UnknownKey):
        ring.key_for("medical_security:ed25519:" + "0" * 32, agency="medical_security",
                     algorithm=ED25519, at=at)
    ring.revoke(old.signing_key_id)
    with pytest.raises(KeyRevoked) as info:
        ring.key_for(old.signing_key_id, agency="medical_security", algorithm=ED25519, at=at)
    assert info.value.rule == "key.revoked"
    with pytest.raises(UnknownKey):
        ring.revoke("medical_security:ed25519:" + "0" * 32)


def test_revocation_survives_save_and_load(tmp_path):
    ring, old, _ = _two_generations()
    ring.revoke(old.signing_key_id)
    ring.save(tmp_path / "keyring.json")
    loaded = Keyring.load(tmp_path / "keyring.json")
    assert loaded.records[old.signing_key_id].revoked is True
    assert loaded.records[old.box_key_id].revoked is False


# -- never printing a secret -------------------------------------------------------------------
def _spellings(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("="), repr(secret)[2:-1]]


def test_repr_never_contains_the_seed(fresh):
    directory, _ = fresh
    material = directory.load_private(AGENCIES[0])
    signer = Signer(material.agency, material.signing_key_id, material.signing_seed)
    box_key = BoxKey(material.agency, material.box_key_id, material.box_secret)
    shown = " ".join(text for obj in (material, signer, box_key)
                     for text in (repr(obj), str(obj), f"{obj!r}", f"{[obj]}", f"{ {'k': obj} }"))
    for secret in (material.signing_seed, material.box_secret):
        for spelling in _spellings(secret):
            assert spelling not in shown
    assert material.agency in repr(material)
    assert material.signing_key_id in repr(signer) and material.box_key_id in repr(box_key)


def test_signer_and_box_key_expose_no_secret_attribute(fresh):
    directory, _ = fresh
    material = directory.load_private(AGENCIES[0])
    signer = Signer(material.agency, material.signing_key_id, material.signing_seed)
    box_key = BoxKey(material.agency, material.box_key_id, material.box_secret)
    for obj in (signer, box_key):
        assert not hasattr(obj, "__dict__")  # __slots__: nothing extra can be hung on them
        public = {name: getattr(obj, name) for name in dir(obj) if not name.startswith("_")}
        for value in public.values():
            if isinstance(value, (bytes, str)):
                assert value not in (material.signing_seed, material.box_secret)


def test_generated_seeds_are_32_random_bytes():
    one, two = AgencyKeyMaterial.generate("court"), AgencyKeyMaterial.generate("court")
    assert len(one.signing_seed) == len(one.box_secret) == 32
    assert one.signing_seed != two.signing_seed and one.box_secret != two.box_secret
    with pytest.raises(KeyStoreError):
        AgencyKeyMaterial.from_seeds("court", b"\x00" * 31, b"\x00" * 32)
