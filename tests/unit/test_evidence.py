"""Evidence bundles (docs/evidence.md): a referral between three nodes on the in-process bus
(real SQLite, real keys), exported, verified, tampered with; the CLI in process; the
independent verifier of tests/independent/cluebus_ref.py."""

from __future__ import annotations

import json
import random
import string
from datetime import datetime, timedelta, timezone

import pytest

from adapters.crypto.timestamps import parse_timestamp
from adapters.storage.repository import audit_hash as repository_audit_hash
from services.cli.main import main
from services.evidence import verify as ev
from services.evidence.export import bundle_text, export_bundle
from services.evidence.format import item_sha256, manifest_signing_input
from tests.fixtures.bodies import sample_body
from tests.fixtures.keys import FakeClock
from tests.independent import cluebus_ref as ref
from tests.support.inprocess_bus import InProcessBus, make_config

MS, PS, PROC = "medical_security", "public_security", "procuratorate"


@pytest.fixture
def referral(tmp_path, monkeypatch):
    """A sealed clue to the police (copied to the procuratorate), its receipts, the police's
    filing decision and its receipt; the CLI's environment points at the same files."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    config, _ = make_config(tmp_path, now=now)
    monkeypatch.setenv("CLUEBUS_DATA_DIR", config["DATA_DIR"])
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", config["KEYS_DIR"])
    clock = FakeClock(now)
    bus = InProcessBus(config, clock)
    clue = bus.refer_clue(MS, sample_body("clue_transfer"), PS, seal=True)[0]
    bus.exchange()
    clock.advance(minutes=5)
    bus.reply(PS, clue.message_id, "filing_decision", sample_body("filing_decision"), seal=True)
    bus.exchange()
    yield bus, clue.envelope["referral_id"]
    bus.close()


def bundle_of(bus, agency, referral_id) -> dict:
    return json.loads(bundle_text(export_bundle(bus.ctx(agency), referral_id)))


def data(bundle: dict) -> bytes:
    return bundle_text(bundle).encode("utf-8")


def resign(bus, agency, bundle: dict) -> dict:
    """What a dishonest exporter could do: a fresh manifest over altered contents."""
    manifest = bundle["manifest"]
    manifest["messages"] = [{"message_id": m["message_id"], "direction": m["direction"],
                             "sha256": ev.sha256_hex(__import__("base64").b64decode(m["raw"]))}
                            for m in bundle["messages"]]
    manifest["audit_sha256"] = item_sha256(bundle["audit"])
    manifest["keys_sha256"] = item_sha256(bundle["keys"])
    bundle["manifest_signature"] = bus.ctx(agency).composer.signer.sign(manifest_signing_input(manifest))
    return bundle


def failure(*bundles: bytes) -> str:
    with pytest.raises(ev.EvidenceFailure) as caught:
        ev.verify_bundles([(f"b{i}", b) for i, b in enumerate(bundles)])
    return caught.value.detail


def test_a_bundle_verifies_and_holds_the_referral(referral):
    bus, referral_id = referral
    bundle = bundle_of(bus, MS, referral_id)
    [checked] = ev.verify_bundles([("ms.json", data(bundle))])
    assert checked.exporter == MS and checked.referral_id == referral_id
    kinds = sorted(m.kind for m in checked.messages)
    assert kinds == sorted(["clue_transfer", "copy_notice", "receipt", "receipt", "filing_decision", "receipt"])
    stored = {m["message_id"]: m["raw"] for m in bus.messages(MS)}
    assert all(stored[m.message_id] == m.raw for m in checked.messages)     # byte for byte
    assert [e["seq"] for e in checked.entries] == [e["seq"] for e in bus.audit(MS) if e["referral_id"] == referral_id]
    assert checked.head["seq"] == len(bus.audit(MS))


def test_the_verifier_audit_hash_is_the_repository_one(referral):
    bus, _ = referral
    for row in bus.audit(MS) + bus.audit(PS):
        from adapters.crypto.timestamps import format_timestamp
        ours = ev.audit_hash(row["seq"], format_timestamp(row["at"]), row["event"], row["referral_id"],
                             row["message_id"], row["detail"], row["prev_hash"])
        assert ours == row["hash"] == repository_audit_hash(row["seq"], row["at"], row["event"], row["referral_id"],
                                                            row["message_id"], row["detail"], row["prev_hash"])
        assert ref.evidence_audit_hash(row["seq"], format_timestamp(row["at"]), row["event"], row["referral_id"],
                                       row["message_id"], row["detail"], row["prev_hash"]) == row["hash"]


def _flip(text: str, index: int) -> bytes:
    raw = bytearray(text.encode("utf-8"))
    raw[index] ^= 0x01
    return bytes(raw)


BASE64_LETTERS = frozenset(string.ascii_letters + string.digits)
HEX_DIGITS = frozenset("0123456789abcdef")


def _still_a_letter(text: str, index: int, alphabet: frozenset = BASE64_LETTERS) -> int:
    """The first index from ``index`` whose character stays in ``alphabet`` when flipped (a
    flipped base64 or hex character may otherwise become one that is no base64 or hex at all,
    which fails earlier, for another reason, in some runs: a UUID's "f" becomes "g")."""
    while not (text[index] in alphabet and chr(ord(text[index]) ^ 0x01) in alphabet):
        index += 1
    return index


def test_flipping_a_byte_of_a_message_a_chain_hash_or_the_manifest_fails(referral):
    bus, referral_id = referral
    bundle = bundle_of(bus, MS, referral_id)
    text = bundle_text(bundle)
    raw_at = _still_a_letter(text, text.index(bundle["messages"][1]["raw"]) + 40)
    assert "bytes do not match the manifest" in failure(_flip(text, raw_at))
    hash_at = _still_a_letter(text, text.index(bundle["audit"]["hashes"][0]) + 3, HEX_DIGITS)
    assert "audit section does not match" in failure(_flip(text, hash_at))
    manifest_at = _still_a_letter(text, text.index(bundle["manifest"]["bundle_id"]) + 1, HEX_DIGITS)
    assert "manifest signature" in failure(_flip(text, manifest_at))
    signature_at = _still_a_letter(text, text.index(bundle["manifest_signature"]) + 5)
    assert "manifest signature" in failure(_flip(text, signature_at))


def test_flipping_any_byte_fails(referral):
    bus, referral_id = referral
    text = bundle_text(bundle_of(bus, PS, referral_id))
    for index in random.Random(11).sample(range(len(text.encode("utf-8"))), 150):
        with pytest.raises(ev.EvidenceFailure):
            ev.verify_bundles([("b", _flip(text, index))])


def test_altered_contents_under_a_fresh_manifest_fail_on_what_was_altered(referral):
    bus, referral_id = referral
    # a message's bytes altered (re-signed manifest): its own signature fails
    bundle = bundle_of(bus, MS, referral_id)
    raw = bytearray(__import__("base64").b64decode(bundle["messages"][0]["raw"]))
    raw[raw.index(b'"sent_at":"') + 11 + 18] ^= 0x01  # a second later
    bundle["messages"][0]["raw"] = __import__("base64").b64encode(bytes(raw)).decode()
    assert "[signature.invalid]" in failure(data(resign(bus, MS, bundle)))
    # a chain hash altered
    bundle = bundle_of(bus, MS, referral_id)
    bundle["audit"]["hashes"][0] = "f" * 64
    assert "audit entry 1 (message.sent): its hash is not the chain's hash at seq 1" in \
        failure(data(resign(bus, MS, bundle)))
    # an entry's contents altered
    bundle = bundle_of(bus, MS, referral_id)
    bundle["audit"]["entries"][0]["event"] = "message.forgotten"
    assert "altered" in failure(data(resign(bus, MS, bundle)))


def test_removing_a_message_fails(referral):
    bus, referral_id = referral
    bundle = bundle_of(bus, MS, referral_id)
    del bundle["messages"][0]
    assert "the manifest lists 6 message(s), the bundle holds 5" in failure(data(bundle))
    # re-signed without it: its audit entry still names it
    assert "which the bundle does not hold" in failure(data(resign(bus, MS, bundle)))
    # and without its audit entry too: the other side's receipt answers a message it sent
    bundle = bundle_of(bus, MS, referral_id)
    clue_id = next(m["message_id"] for m in bundle["messages"]
                   if json.loads(__import__("base64").b64decode(m["raw"]))["kind"] == "clue_transfer")
    bundle["messages"] = [m for m in bundle["messages"] if m["message_id"] != clue_id]
    bundle["audit"]["entries"] = [e for e in bundle["audit"]["entries"] if e["message_id"] != clue_id]
    ms = data(resign(bus, MS, bundle))
    ev.verify_bundles([("ms", ms)])          # alone, only the exporter's signature vouches for it
    assert f"answers {clue_id}, which {MS}'s bundle" in failure(ms, data(bundle_of(bus, PS, referral_id)))


def test_reordering_the_chain_fails(referral):
    bus, referral_id = referral
    bundle = bundle_of(bus, MS, referral_id)
    entries = bundle["audit"]["entries"]
    entries[0], entries[1] = entries[1], entries[0]
    assert "audit section does not match" in failure(data(bundle))
    assert "not in chain order" in failure(data(resign(bus, MS, bundle)))
    bundle = bundle_of(bus, MS, referral_id)
    hashes = bundle["audit"]["hashes"]
    hashes[0], hashes[1] = hashes[1], hashes[0]
    assert "is not the chain's hash at seq 1" in failure(data(resign(bus, MS, bundle)))


def test_a_key_revoked_before_sent_at_fails(referral):
    bus, referral_id = referral
    ms_key = bus.ctx(MS).composer.signer.key_id
    bus.ctx(PS).verifier.keyring.revoke(ms_key)        # the police's keyring, after `keys revoke`
    detail = failure(data(bundle_of(bus, PS, referral_id)))
    assert "[key.revoked]" in detail and MS in detail


def test_a_dated_revocation_fails_only_what_was_signed_from_then_on(referral):
    """`keys publish --revoke KEY --revoked-at T`: what was signed before T still verifies,
    with this verifier and the independent one."""
    bus, referral_id = referral
    ms_key = bus.ctx(MS).composer.signer.key_id
    sent = [parse_timestamp(json.loads(m.raw)["sent_at"]) for m in _held_messages(bus, PS, referral_id)
            if json.loads(m.raw)["sender"] == MS]
    keyring = bus.ctx(PS).verifier.keyring
    keyring.revoke(ms_key, max(sent) + timedelta(seconds=1))   # after every message of the bureau
    later = data(bundle_of(bus, PS, referral_id))
    assert ev.verify_bundles([("ps", later)])
    assert ref.verify_evidence([later])
    keyring.revoke(ms_key, min(sent))                           # from the first of them on
    detail = failure(data(bundle_of(bus, PS, referral_id)))
    assert "[key.revoked]" in detail and MS in detail
    with pytest.raises(ref.RefEvidenceFailure, match="key.revoked"):
        ref.verify_evidence([data(bundle_of(bus, PS, referral_id))])


def _held_messages(bus, agency, referral_id):
    with bus.ctx(agency).store.transaction() as repo:
        return list(repo.messages_for_referral(referral_id))


def test_a_key_not_yet_valid_at_sent_at_fails(referral):
    bus, referral_id = referral
    bundle = bundle_of(bus, PS, referral_id)
    ms_key = bus.ctx(MS).composer.signer.key_id
    record = next(k for k in bundle["keys"] if k["key_id"] == ms_key)
    record["valid_from"] = "2099-01-01T00:00:00Z"
    assert "[key.not_yet_valid]" in failure(data(resign(bus, PS, bundle)))


def test_two_and_three_bundles_agree_and_give_one_timeline(referral):
    bus, referral_id = referral
    files = [data(bundle_of(bus, a, referral_id)) for a in (MS, PS, PROC)]
    bundles = ev.verify_bundles([(a, f) for a, f in zip((MS, PS, PROC), files)])
    steps = ev.timeline(bundles)
    assert len(steps) == 6 and len({s["message_id"] for s in steps}) == 6
    instants = [parse_timestamp(s["sent_at"]) for s in steps]
    assert instants == sorted(instants)
    clue = next(s for s in steps if s["kind"] == "clue_transfer")
    assert clue["held_by"] == {MS: "out", PS: "in"} and clue["answered"] == ["accepted"]
    assert len(ev.timeline(ev.verify_bundles([("a", files[0]), ("b", files[1])]))) == 6


def test_bundles_that_disagree_fail(referral):
    bus, referral_id = referral
    ms, ps = bundle_of(bus, MS, referral_id), bundle_of(bus, PS, referral_id)
    # the police's copy of the bureau's clue replaced by other bytes signed by the bureau
    clue = next(m for m in ps["messages"] if m["direction"] == "in")
    envelope = json.loads(__import__("base64").b64decode(clue["raw"]))
    other = bus.compose(MS, envelope["kind"], PS, sample_body("clue_transfer"), referral_id=referral_id,
                        message_id=envelope["message_id"], seal=True)
    clue["raw"] = __import__("base64").b64encode(other.raw).decode()
    detail = failure(data(ms), data(resign(bus, PS, ps)))
    assert "message_sha256 is not the hash" in detail or "differs from its copy" in detail
    other_referral = bus.refer_clue(MS, sample_body("clue_transfer"), PS)[0].envelope["referral_id"]
    bus.exchange()
    assert "referral" in failure(data(bundle_of(bus, MS, referral_id)), data(bundle_of(bus, MS, other_referral)))


def test_the_independent_verifier_checks_a_bundle(referral):
    bus, referral_id = referral
    files = [data(bundle_of(bus, a, referral_id)) for a in (MS, PS)]
    steps = ref.verify_evidence(files)
    assert [s["message_id"] for s in steps] == [s["message_id"] for s in ev.timeline(
        ev.verify_bundles([("a", files[0]), ("b", files[1])]))]
    text = files[0].decode("utf-8")
    bundle = json.loads(text)
    with pytest.raises(ref.RefEvidenceFailure):
        ref.verify_evidence([_flip(text, text.index(bundle["messages"][0]["raw"]) + 10)])
    ms_key = bus.ctx(MS).composer.signer.key_id
    bus.ctx(PS).verifier.keyring.revoke(ms_key)
    with pytest.raises(ref.RefEvidenceFailure, match="key.revoked"):
        ref.verify_evidence([data(bundle_of(bus, PS, referral_id))])


def test_cli_export_and_verify(referral, tmp_path, capsys):
    bus, referral_id = referral
    ms, ps = tmp_path / "ms.json", tmp_path / "ps.json"
    assert main(["evidence", "export", referral_id, "--as", MS, "--out", str(ms)]) == 0
    assert main(["evidence", "export", referral_id, "--as", PS, "--out", str(ps)]) == 0
    capsys.readouterr()
    assert main(["evidence", "verify", str(ms), str(ps)]) == 0
    out = capsys.readouterr().out
    assert f"referral {referral_id}" in out and "evidence verified: 2 bundle(s) and agree" in out
    assert out.count("clue_transfer") == 1
    text = ms.read_text(encoding="utf-8")
    first = json.loads(text)["messages"][0]["raw"]
    ms.write_bytes(_flip(text, text.index(first) + 20))
    assert main(["evidence", "verify", str(ms), str(ps)]) == 1
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("cluebus: evidence FAILED: ") and "manifest" in line
    assert main(["evidence", "export", "00000000-0000-4000-8000-000000000000", "--as", MS,
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "referral.unknown" in capsys.readouterr().err
    assert main(["evidence", "verify", str(tmp_path / "missing.json")]) == 2
