"""``cluebus keys`` and ``cluebus schemas``, run in-process through services.cli.main.main."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone

import pytest

from adapters.crypto.keys import KeyDirectory
from adapters.crypto.trust import KeyRequest
from adapters.crypto.signing import Signer
from schemas.envelope import ENVELOPE_FIELDS
from schemas.registry import BODY_SCHEMAS, KINDS
from schemas.routes import RouteTable
from services.cli.main import main
from services.config import agency_codes, load_config
from services.protocol.compose import Composer
from services.protocol.exceptions import Rejection
from services.protocol.verify import Verifier
from tests.fixtures.bodies import REFERRAL_ID, sample_body

SHIPPED_AGENCIES = agency_codes(load_config(environ={}))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The commands read os.environ: make sure nothing from the outside leaks in."""
    for name in list(os.environ):
        if name.startswith("CLUEBUS_"):
            monkeypatch.delenv(name)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("cluebus: ")
    return lines[0]


# -- keys ------------------------------------------------------------------------------------
def test_keys_init_then_list(tmp_path, capsys):
    directory = tmp_path / "keys"
    code, out, err = run(capsys, "keys", "init", "--dir", str(directory))
    assert code == 0 and err == ""
    assert f"wrote {len(SHIPPED_AGENCIES)} agencies' keys" in out
    keyring = KeyDirectory(directory).load_keyring()
    assert len(keyring.records) == 2 * len(SHIPPED_AGENCIES)
    assert {r.agency for r in keyring.records.values()} == set(SHIPPED_AGENCIES)
    for agency in SHIPPED_AGENCIES:
        private = directory / "private" / f"{agency}.key.json"
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "private").stat().st_mode) == 0o700

    code, out, err = run(capsys, "keys", "list", "--dir", str(directory))
    assert code == 0 and err == ""
    assert "keyring version 1" in out and "signed by the trust anchor bus_operator:ed25519:" in out
    lines = [line for line in out.splitlines() if ":ed25519:" in line or ":x25519:" in line][1:]
    assert len(lines) == len(keyring.records)
    for key_id in keyring.records:
        assert sum(key_id in line for line in lines) == 1
    assert all(" valid " in line for line in lines)
    # the listing never shows private material
    for agency in SHIPPED_AGENCIES:
        secret = json.loads((directory / "private" / f"{agency}.key.json").read_text())
        assert secret["signing_seed"] not in out and secret["box_secret"] not in out


def test_keys_init_for_an_agency_makes_only_its_own_keys_and_a_request(tmp_path, capsys):
    """An agency makes its own key pair on its own machine; the keyring is the bus operator's."""
    directory = tmp_path / "keys"
    code, out, _ = run(capsys, "keys", "init", "--dir", str(directory), "--agency", "medical_security",
                       "--agency", "public_security")
    assert code == 0
    assert not (directory / "keyring.json").exists() and not (directory / "keyring.signed.json").exists()
    for agency in ("medical_security", "public_security"):
        material = KeyDirectory(directory).load_private(agency)
        request = KeyRequest.load(json.loads((directory / "requests" / f"{agency}.request.json").read_text()))
        assert request.agency == agency and request.replaces is None
        assert {r.key_id for r in request.records} == {material.signing_key_id, material.box_key_id}
        assert f"cluebus keys publish --add {agency}.request.json" in out
    assert not (directory / "private" / "court.key.json").exists()
    # Again: refused, the key in use is not replaced by accident.
    code, _, err = run(capsys, "keys", "init", "--dir", str(directory), "--agency", "medical_security")
    assert code == 2 and "keys rotate --agency medical_security" in _one_line_error(err)


def test_keys_init_twice_fails_with_exit_code_2_and_one_line(tmp_path, capsys):
    directory = tmp_path / "keys"
    assert run(capsys, "keys", "init", "--dir", str(directory))[0] == 0
    before = (directory / "keyring.json").read_bytes()
    code, out, err = run(capsys, "keys", "init", "--dir", str(directory))
    assert code == 2 and out == ""
    line = _one_line_error(err)
    assert "[keystore.error]" in line and "already exists" in line and "--force" in line
    assert (directory / "keyring.json").read_bytes() == before


def test_keys_init_force_replaces_the_keys(tmp_path, capsys):
    directory = tmp_path / "keys"
    run(capsys, "keys", "init", "--dir", str(directory))
    old = set(KeyDirectory(directory).load_keyring().records)
    code, _, _ = run(capsys, "keys", "init", "--dir", str(directory), "--force")
    assert code == 0
    assert not old & set(KeyDirectory(directory).load_keyring().records)


def test_keys_init_for_an_unconfigured_agency(tmp_path, capsys):
    code, out, err = run(capsys, "keys", "init", "--dir", str(tmp_path / "k"), "--agency", "customs")
    assert code == 2
    assert "customs" in _one_line_error(err)
    assert not (tmp_path / "k" / "keyring.json").exists()


def test_keys_list_without_a_key_directory(tmp_path, capsys):
    code, _, err = run(capsys, "keys", "list", "--dir", str(tmp_path / "absent"))
    assert code == 2
    assert "[keystore.error]" in _one_line_error(err)


def test_keys_revoke_then_verification_fails(tmp_path, capsys):
    directory = KeyDirectory(tmp_path / "keys")
    run(capsys, "keys", "init", "--dir", str(directory.path))
    material = directory.load_private("medical_security")

    code, out, err = run(capsys, "keys", "revoke", material.signing_key_id, "--dir", str(directory.path),
                         "--no-send")
    assert code == 0 and err == "" and material.signing_key_id in out
    assert "signed keyring version 2" in out

    keyring = directory.load_keyring()
    assert keyring.records[material.signing_key_id].revoked is True
    assert keyring.records[material.box_key_id].revoked is False
    listing = run(capsys, "keys", "list", "--dir", str(directory.path))[1]
    assert [line for line in listing.splitlines() if material.signing_key_id in line][0].split()[1] == "revoked"

    # A message signed with the revoked key no longer verifies.
    agencies = SHIPPED_AGENCIES
    routes = RouteTable.load().restricted_to(agencies)
    now = datetime.now(timezone.utc)
    composer = Composer(Signer("medical_security", material.signing_key_id, material.signing_seed),
                        routes, keyring, clock=lambda: now)
    message = composer.compose("clue_transfer", "public_security", sample_body("clue_transfer"),
                               referral_id=REFERRAL_ID)
    verifier = Verifier(keyring, routes, agencies, clock=lambda: now)
    with pytest.raises(Rejection) as info:
        verifier.verify(message.raw)
    assert (info.value.rule, info.value.authenticated) == ("key.revoked", False)
    # ...while another agency's key still works.
    police = directory.load_private("public_security")
    reply = Composer(Signer("public_security", police.signing_key_id, police.signing_seed), routes,
                     keyring, clock=lambda: now).compose(
        "filing_decision", "medical_security", sample_body("filing_decision"), referral_id=REFERRAL_ID)
    assert verifier.verify(reply.raw).sender == "public_security"


def test_keys_revoke_an_unknown_key(tmp_path, capsys):
    run(capsys, "keys", "init", "--dir", str(tmp_path / "keys"))
    code, _, err = run(capsys, "keys", "revoke", "medical_security:ed25519:" + "0" * 32,
                       "--dir", str(tmp_path / "keys"), "--no-send")
    assert code == 2
    assert "[key.unknown]" in _one_line_error(err)


def test_keys_dir_from_the_configuration(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(tmp_path / "from-env"))
    assert run(capsys, "keys", "init", "--agency", "court")[0] == 0
    assert (tmp_path / "from-env" / "private" / "court.key.json").exists()


def test_config_option(tmp_path, capsys):
    config = tmp_path / "two.yaml"
    config.write_text("AGENCIES:\n  medical_security: {name: MSB}\n  health: {name: HC}\n"
                      "KEYS:\n  VALIDITY_DAYS: 10\n", encoding="utf-8")
    code, out, _ = run(capsys, "--config", str(config), "keys", "init", "--dir", str(tmp_path / "k"))
    assert code == 0 and "wrote 2 agencies' keys" in out
    keyring = KeyDirectory(tmp_path / "k").load_keyring()
    assert {r.agency for r in keyring.records.values()} == {"medical_security", "health"}


def test_missing_configuration_file(tmp_path, capsys):
    code, _, err = run(capsys, "--config", str(tmp_path / "absent.yaml"), "keys", "list",
                       "--dir", str(tmp_path))
    assert code == 2
    _one_line_error(err)


# -- schemas ---------------------------------------------------------------------------------
@pytest.fixture
def exported(tmp_path, capsys):
    directory = tmp_path / "schemas"
    code, out, err = run(capsys, "schemas", "export", str(directory))
    assert code == 0 and err == ""
    return directory, out


def test_schemas_export_writes_one_file_per_kind_and_the_envelope(exported):
    directory, out = exported
    expected = {"envelope.schema.json"} | {f"{kind}.v{version}.schema.json"
                                          for kind in KINDS for version in BODY_SCHEMAS[kind]}
    assert {p.name for p in directory.iterdir()} == expected
    assert f"wrote {len(expected)} JSON Schema files" in out


def _strict_json(path):
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), path
        return dict(pairs)
    return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)


def _objects(schema):
    """Every object schema in a document, nested ones included."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            yield schema
        for value in schema.values():
            yield from _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _objects(value)


def test_every_exported_file_is_json_and_closed(exported):
    directory, _ = exported
    for path in directory.iterdir():
        document = _strict_json(path)
        assert document["additionalProperties"] is False, path.name
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["type"] == "object"
        assert set(document["required"]) <= set(document["properties"])
        for nested in _objects(document):
            assert nested["additionalProperties"] is False, path.name


def test_exported_envelope_schema(exported):
    directory, _ = exported
    document = _strict_json(directory / "envelope.schema.json")
    assert list(document["properties"]) == list(ENVELOPE_FIELDS)
    assert set(document["required"]) == set(ENVELOPE_FIELDS)
    assert document["properties"]["protocol"]["const"] == "cluebus/1"
    assert "sealed_body" in document["$defs"]


def test_exported_body_schema_lists_the_sample_fields(exported):
    directory, _ = exported
    for kind in KINDS:
        document = _strict_json(directory / f"{kind}.v1.schema.json")
        assert set(sample_body(kind)) <= set(document["properties"]), kind
        assert set(document["required"]) <= set(sample_body(kind)), kind
    clue = _strict_json(directory / "clue_transfer.v1.schema.json")
    assert clue["properties"]["amount_involved_fen"]["type"] == "integer"
    assert clue["properties"]["category"]["enum"] == ["suspected_crime", "medical_conduct",
                                                      "administrative_violation"]


def test_schemas_export_into_an_existing_directory_overwrites(tmp_path, capsys):
    directory = tmp_path / "schemas"
    directory.mkdir()
    (directory / "envelope.schema.json").write_text("stale")
    assert run(capsys, "schemas", "export", str(directory))[0] == 0
    assert _strict_json(directory / "envelope.schema.json")["additionalProperties"] is False
