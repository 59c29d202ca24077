"""Body contracts: every kind's sample, field types and the cross-field rules."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from adapters.crypto.canonical import canonical_bytes, strict_loads
from schemas.exceptions import BodyInvalid, UnknownKind, UnknownSchemaVersion
from schemas.registry import BODY_SCHEMAS, KINDS, body_schema, dump_body, latest_version, load_body
from tests.fixtures.bodies import ROUTE_FOR_KIND, sample_body, sample_kinds


def load(kind: str, body: dict) -> dict:
    return load_body(kind, latest_version(kind), body)


def assert_invalid(kind: str, body: dict, field: str) -> BodyInvalid:
    with pytest.raises(BodyInvalid) as info:
        load(kind, body)
    assert info.value.rule == "body.invalid"
    assert field in info.value.messages, info.value.messages
    assert field in info.value.detail
    return info.value


def changed(kind: str, **changes) -> dict:
    body = sample_body(kind)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


# -- the samples -------------------------------------------------------------------------------
def test_every_kind_has_a_sample_and_a_route():
    assert set(sample_kinds()) == set(KINDS)
    assert set(ROUTE_FOR_KIND) == set(KINDS)
    with pytest.raises(KeyError):
        sample_body("no_such_kind")


@pytest.mark.parametrize("kind", KINDS)
def test_every_sample_loads(kind):
    for version in BODY_SCHEMAS[kind]:
        loaded = load_body(kind, version, sample_body(kind))
        assert isinstance(loaded, dict) and loaded


@pytest.mark.parametrize("kind", KINDS)
def test_every_sample_is_in_wire_form(kind):
    body = sample_body(kind)
    assert dump_body(kind, latest_version(kind), body) == body
    assert strict_loads(canonical_bytes(body)) == body  # JSON-native: no floats, no datetimes


def test_samples_are_fresh_copies():
    first = sample_body("clue_transfer")
    first["subjects"][0]["name"] = "changed"
    assert sample_body("clue_transfer")["subjects"][0]["name"] != "changed"


def test_loaded_timestamps_and_dates_are_typed():
    clue = load("clue_transfer", sample_body("clue_transfer"))
    assert clue["approved_at"] == dt.datetime(2026, 11, 21, 8, 15, tzinfo=dt.timezone.utc)
    invoices = load("invoice_verification_request", sample_body("invoice_verification_request"))
    assert invoices["invoices"][0]["issued_on"] == dt.date(2026, 5, 17)


def test_unknown_kind_and_version():
    with pytest.raises(UnknownKind) as info:
        load_body("fraud_report", 1, {})
    assert info.value.rule == "kind.unknown"
    with pytest.raises(UnknownSchemaVersion) as info:
        body_schema("clue_transfer", 2)
    assert info.value.rule == "kind.version_unknown"
    assert "known: 1" in info.value.detail


# -- cross-field rules -------------------------------------------------------------------------
_NO_REQUIRED_DOCS = [a for a in sample_body("clue_transfer")["attachments"]
                     if a["category"] not in ("transfer_letter", "investigation_report")]


@pytest.mark.parametrize("kind, changes, field", [
    # filing decisions
    ("filing_decision", dict(decision="not_filed", case_no=...), "reasons"),
    ("filing_decision", dict(decision="not_filed", case_no=..., reasons=[]), "reasons"),
    ("filing_decision", dict(decision="filed", case_no=...), "case_no"),
    ("filing_decision", dict(decision="not_filed", reasons=["证据不足"]), "case_no"),  # no case, no case_no
    ("filing_decision", dict(decision="not_competent", case_no=...), "forwarded_to"),
    # receipts
    ("receipt", dict(status="rejected", reason_codes=[]), "reason_codes"),
    ("receipt", dict(status="accepted", reason_codes=["route.forbidden"]), "reason_codes"),
    ("receipt", dict(status="rejected", reason_codes=["forbidden"]), "reason_codes"),
    # suspected-crime transfers must carry the transfer letter and the investigation report
    ("clue_transfer", dict(attachments=_NO_REQUIRED_DOCS), "attachments"),
    ("clue_transfer", dict(attachments=[sample_body("clue_transfer")["attachments"][0]]), "attachments"),
    ("clue_transfer", dict(attachments=[sample_body("clue_transfer")["attachments"][1]]), "attachments"),
    # approval cannot precede the team's report
    ("clue_transfer", dict(approved_at="2026-11-20T02:29:59Z"), "approved_at"),
    # withdrawal and closure need a reason
    ("withdrawal", dict(reason=...), "reason"),
    ("withdrawal", dict(reason=""), "reason"),
    ("withdrawal", dict(reason=" \t\n"), "reason"),
    ("closure", dict(reason=...), "reason"),
    ("closure", dict(reason="   "), "reason"),
    # others
    ("reconsideration_decision", dict(outcome="reversed", case_no=...), "case_no"),
    ("prosecution_decision", dict(decision="prosecute", charges=...), "charges"),
    ("prosecution_decision", dict(decision="not_prosecute", reasons=...), "reasons"),
    ("handling_result", dict(result="penalised", measures=[]), "measures"),
    ("materials_handover", dict(items=[], attachments=[]), "items"),
])
def test_cross_field_rules(kind, changes, field):
    assert_invalid(kind, changed(kind, **changes), field)


@pytest.mark.parametrize("kind, changes", [
    ("filing_decision", dict(decision="not_filed", case_no=..., reasons=["证据不足，不符合立案条件"])),
    ("filing_decision", dict(decision="not_competent", case_no=..., forwarded_to="health")),
    ("receipt", dict(status="rejected", reason_codes=["route.forbidden", "body.invalid"])),
    ("clue_transfer", dict(category="medical_conduct", attachments=_NO_REQUIRED_DOCS)),
    ("clue_transfer", dict(category="administrative_violation", attachments=[])),
    ("clue_transfer", dict(approved_at="2026-11-20T02:30:00Z")),  # the same moment is fine
    ("reconsideration_decision", dict(outcome="upheld", case_no=...)),
    ("prosecution_decision", dict(decision="not_prosecute", charges=..., reasons=["情节轻微"])),
    ("handling_result", dict(result="no_violation", measures=[])),
    ("materials_handover", dict(items=[])),
    ("closure", dict(amount_recovered_fen=...)),
])
def test_cross_field_rules_allow(kind, changes):
    load(kind, changed(kind, **changes))


def test_invoice_amount_mismatch_needs_the_registered_amount():
    body = sample_body("invoice_verification_result")
    del body["results"][1]["registered_amount_fen"]
    error = assert_invalid("invoice_verification_result", body, "results")
    assert "registered_amount_fen" in error.messages["results"][1]


# -- types -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, field, value", [
    # booleans are JSON true/false only
    ("reward_request", "insider", 1),
    ("reward_request", "insider", 0),
    ("reward_request", "insider", "true"),
    ("judgment", "effective", 1),
    ("judgment", "effective", None),
    # integers (money in fen, counts) are JSON integers only
    ("clue_transfer", "amount_involved_fen", "100"),
    ("clue_transfer", "amount_involved_fen", 1.0),
    ("clue_transfer", "amount_involved_fen", 100.5),
    ("clue_transfer", "amount_involved_fen", True),
    ("clue_transfer", "amount_involved_fen", -1),
    ("clue_transfer", "amount_involved_fen", 2**53),
    ("judgment", "fine_fen", "10000000"),
    ("reward_payment", "reward_fen", 1.0),
    ("urge", "overdue_seconds", "100"),
    ("urge", "overdue_seconds", False),
    # timestamps are RFC 3339 UTC with a Z
    ("clue_transfer", "approved_at", "2026-11-21 08:15:00Z"),
    ("clue_transfer", "approved_at", "2026-11-21T16:15:00+08:00"),
    ("clue_transfer", "approved_at", "2026-11-21T08:15:00"),
    ("clue_transfer", "approved_at", "2026-11-21"),
    ("clue_transfer", "approved_at", "2026-13-21T08:15:00Z"),
    ("clue_transfer", "approved_at", 1795250100),
    # closed vocabularies, strings, ids
    ("clue_transfer", "category", "fraud"),
    ("clue_transfer", "clue_no", ""),
    ("clue_transfer", "clue_no", "   "),
    ("clue_transfer", "clue_no", 1),
    ("clue_transfer", "clue_no", "Y" * 65),
    ("clue_transfer", "subjects", []),
    ("copy_notice", "transferred_to", "Public Security"),
    ("copy_notice", "transfer_message_sha256", "ABCDEF"),
    ("withdrawal", "subject_message_id", "A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D"),
    ("receipt", "status", "ok"),
])
def test_wrong_types_are_rejected(kind, field, value):
    assert_invalid(kind, changed(kind, **{field: value}), field)


@pytest.mark.parametrize("kind, field, value", [
    ("invoice_verification_request", "issued_on", "2026/05/17"),
    ("invoice_verification_request", "issued_on", "2026-02-30"),
    ("invoice_verification_request", "amount_fen", "1865000"),
    ("invoice_verification_request", "amount_fen", 18650.0),
])
def test_wrong_types_in_nested_objects(kind, field, value):
    body = sample_body(kind)
    body["invoices"][0][field] = value
    error = assert_invalid(kind, body, "invoices")
    assert field in error.messages["invoices"][0]


@pytest.mark.parametrize("kind", ["clue_transfer", "receipt", "judgment", "urge", "closure"])
def test_unknown_top_level_field(kind):
    assert_invalid(kind, changed(kind, remarks="备注"), "remarks")


def test_unknown_nested_field():
    body = sample_body("clue_transfer")
    body["subjects"][0]["phone"] = "13800000000"
    error = assert_invalid("clue_transfer", body, "subjects")
    assert "phone" in error.messages["subjects"][0]


@pytest.mark.parametrize("kind", KINDS)
def test_every_required_field_is_required(kind):
    schema = body_schema(kind, latest_version(kind))
    required = [name for name, field in schema.fields.items() if field.required]
    assert required, kind
    for name in required:
        body = sample_body(kind)
        body.pop(name, None)
        assert_invalid(kind, body, name)


def test_body_that_is_not_an_object():
    with pytest.raises(BodyInvalid):
        load("closure", ["not", "an", "object"])


def test_load_does_not_change_its_input():
    body = sample_body("judgment")
    before = copy.deepcopy(body)
    load("judgment", body)
    assert body == before


# -- dumping a body without marshmallow's dump gives what dump would -----------------------------
def _field_types(schema, seen=None):
    from marshmallow import fields as mf
    seen = set() if seen is None else seen
    for field in schema.fields.values():
        stack = [field]
        while stack:
            current = stack.pop()
            seen.add(type(current))
            if isinstance(current, mf.Nested):
                nested = current.schema
                _field_types(nested, seen)
            elif isinstance(current, mf.List):
                stack.append(current.inner)
    return seen


def test_every_contract_dumps_to_its_wire_values():
    """registry.dump_body uses _wire_values(loaded) instead of schema.dump(loaded): that holds
    only while no field dumps differently from its loaded value (no data_key, no custom
    _serialize beyond timestamps and dates). A new kind of field must be added here on purpose."""
    from marshmallow import fields as mf

    from schemas import fields as cf
    from schemas.registry import BODY_SCHEMAS, _wire_values, body_schema
    allowed = {mf.String, mf.Integer, mf.Boolean, mf.Dict, mf.List, mf.Nested, cf.StrictString, cf.PatternString,
               cf.Count, cf.MoneyFen, cf.UtcTimestamp, cf.IsoDate, cf.StrictBoolean}
    for kind, versions in BODY_SCHEMAS.items():
        for version in versions:
            schema = body_schema(kind, version)
            types = _field_types(schema)
            assert types <= allowed, (kind, types - allowed)
            for field in schema.fields.values():
                assert field.data_key is None and field.attribute is None, (kind, field.name)
            try:
                body = sample_body(kind)
            except KeyError:
                continue
            loaded = schema.load(body)
            assert _wire_values(loaded) == schema.dump(loaded), kind


def test_wire_values_of_mappings_that_are_not_dicts_tuples_and_dates():
    """_wire_values takes exact dicts, lists and scalars first; anything else a caller may
    hand in (a read-only mapping, a tuple, datetimes and dates at any depth) still comes out
    as the same wire values."""
    import datetime as dt
    from types import MappingProxyType

    from schemas.registry import _wire_values
    at = dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    value = MappingProxyType({"when": at, "days": (dt.date(2026, 3, 1), "x"), "n": 3, "ok": True, "none": None,
                              "inner": MappingProxyType({"list": [at, 1]})})
    assert _wire_values(value) == {"when": "2026-03-01T00:30:00Z", "days": ["2026-03-01", "x"], "n": 3,
                                   "ok": True, "none": None, "inner": {"list": ["2026-03-01T00:30:00Z", 1]}}
    assert _wire_values(dt.datetime(2026, 3, 1)) == "naive datetime (timezone required)"


@pytest.mark.parametrize("body, error", [
    ({"a": 1, "b": {"c": 2}}, None),
    ({}, None),
    (["a"], "Not a valid mapping type."),
    ("a", "Not a valid mapping type."),
    ({1: "a"}, "Member names must be strings."),  # only a Python caller can build it
])
def test_an_envelope_body_is_a_json_object(body, error):
    """The envelope's body (and a sealed body's facts): a mapping with string member names,
    checked in one pass (schemas.fields.JsonObject)."""
    from schemas.envelope import EnvelopeSchema, SealedBodySchema
    problems = EnvelopeSchema(only=("body",)).validate({"body": body})
    assert problems == ({} if error is None else {"body": [error]})
    problems = SealedBodySchema(only=("facts",)).validate({"facts": body})
    assert problems == ({} if error is None else {"facts": [error]})
