"""A contract's plan (schemas/fastload.py) loads exactly what marshmallow loads and refuses
exactly what marshmallow refuses, with marshmallow's own messages: for every body kind and
the envelope, on the valid samples and on every single-point change of them a test can think
of (each member dropped, nulled, given a value of each wrong type or shape, an unknown member
added), one level down into nested objects and lists too."""

from __future__ import annotations

import copy

import pytest
from marshmallow import ValidationError, fields, post_load

from schemas import fastload
from schemas.base import Contract
from schemas.envelope import EnvelopeSchema, SealedBodySchema
from schemas.registry import body_schema, latest_version
from tests.fixtures.bodies import sample_body, sample_kinds

# Values of every JSON type, valid and not for the fields of the contracts.
ODD_VALUES = (None, "", " \u3000", "x", "x" * 300, 0, -1, 2**60, 1.5, True, [], ["x"], [{}], {}, {"x": 1},
              "2026-02-29", "2026-03-01T08:00:00Z", "0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5", "suspect")

ENVELOPE = {
    "protocol": "cluebus/1", "message_id": "0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5", "kind": "clue_transfer",
    "schema_version": 1, "sender": "medical_security", "recipient": "public_security",
    "referral_id": "5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70", "in_reply_to": None,
    "sent_at": "2026-03-01T08:00:00.250Z", "sender_key_id": "medical_security:ed25519:" + "ab" * 16,
    "body_encoding": "plain", "body": {"clue_no": "YB-1"}, "body_sha256": "0f" * 32, "signature": "c2ln",
}
SEALED = {**ENVELOPE, "body_encoding": "sealed", "body": {
    "alg": "x25519-xsalsa20poly1305", "sender_box_key_id": "medical_security:x25519:" + "cd" * 16,
    "recipient_box_key_id": "public_security:x25519:" + "ef" * 16, "nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy",
    "facts": {"clue_no": "YB-1"}}}


@pytest.fixture
def marshmallow_only(monkeypatch):
    """Every contract loaded by marshmallow alone, nested ones included."""
    def load(schema, data):
        monkeypatch.setattr(Contract, "_plan", lambda self: None)
        try:
            return _outcome(lambda: schema.load(data))
        finally:
            monkeypatch.undo()
    return load


def _outcome(load):
    try:
        return "loaded", load()
    except ValidationError as error:
        return "refused", error.messages


def _variants(value, depth: int = 0):
    """``value`` changed in one place each time."""
    if isinstance(value, dict):
        yield {**value, "unexpected": "x"}
        for key in value:
            yield {name: item for name, item in value.items() if name != key}
            for odd in ODD_VALUES:
                yield {**value, key: copy.deepcopy(odd)}
            if depth < 2:
                for changed in _variants(value[key], depth + 1):
                    yield {**value, key: changed}
    elif isinstance(value, list) and value:
        yield []
        yield value + value
        yield value + [None]
        for changed in _variants(value[0], depth + 1):
            yield [changed] + value[1:]


def _cases():
    for kind in sample_kinds():
        yield kind, body_schema(kind, latest_version(kind)), sample_body(kind)
    yield "envelope", EnvelopeSchema(), ENVELOPE
    yield "sealed envelope", EnvelopeSchema(), SEALED
    yield "sealed body", SealedBodySchema(), SEALED["body"]


@pytest.mark.parametrize("name, schema, sample", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_plan_loads_and_refuses_what_marshmallow_does(name, schema, sample, marshmallow_only):
    assert schema._plan() is not None, f"{name} has no plan: its loads would stay slow"
    checked = refused = 0
    for data in [sample, *_variants(sample), "not an object", None, []]:
        expected = marshmallow_only(schema, data)
        assert _outcome(lambda: schema.load(data)) == expected, (name, data)
        assert schema.validate(data) == ({} if expected[0] == "loaded" else expected[1]), (name, data)
        # The plan alone: it may give up where marshmallow would load, never load otherwise.
        try:
            planned = schema._plan()(data)
        except Exception:
            pass
        else:
            assert expected == ("loaded", planned), (name, data)
        checked += 1
        refused += expected[0] == "refused"
    assert expected[0] == "refused" and refused > checked // 2  # the changes do break things
    assert marshmallow_only(schema, sample)[0] == "loaded"


def _all_contracts(cls=Contract):
    for sub in cls.__subclasses__():
        if sub.__module__.startswith("schemas."):
            yield sub
        yield from _all_contracts(sub)


def _nested_in(schema):
    for field in schema.load_fields.values():
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested):
            yield type(inner.schema)


def test_every_contract_is_covered():
    """Each contract is tested above, alone or nested in one that is (the variants reach
    two levels down)."""
    tested = {type(schema) for _, schema, _ in _cases()}
    reached = tested | {nested for cls in tested for nested in _nested_in(cls())}
    assert set(_all_contracts()) - reached == set()


def test_what_a_plan_does_not_reproduce_has_none():
    class Hooked(Contract):
        name = fields.String()


        @post_load
        def _upper(self, data, **kwargs):
            return {"name": data["name"].upper()}

    class Partial(Contract):
        name = fields.String(required=True)

    assert fastload.plan_for(Hooked()) is None
    assert Hooked().load({"name": "a"}) == {"name": "A"}
    assert fastload.plan_for(Partial(partial=True)) is None
    assert Partial(partial=True).load({}) == {}
    assert fastload.plan_for(Partial(many=True)) is None
    assert Partial().load([{"name": "a"}], many=True) == [{"name": "a"}]
    assert Partial().load({}, partial=True) == {}
    with pytest.raises(ValidationError):
        Partial().load({})


def test_a_copied_schema_makes_its_own_plan():
    class Named(Contract):
        name = fields.String(required=True)
        note = fields.String()

    original = Named()
    original.load({"name": "a"})
    copied = copy.copy(original)
    copied.only = {"name"}
    copied._init_fields()
    assert copied._plan() is not original._plan()
    with pytest.raises(ValidationError) as refused:
        copied.load({"name": "a", "note": "b"})
    assert refused.value.messages == {"note": ["Unknown field."]}
    assert original.load({"name": "a", "note": "b"}) == {"name": "a", "note": "b"}
