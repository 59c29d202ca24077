"""The route table (schemas/routes.yaml): who may send which kind to whom."""

from __future__ import annotations

import pytest
import yaml

from schemas.exceptions import ForbiddenRoute, RouteTableError
from schemas.registry import KINDS
from schemas.routes import RouteTable
from services.protocol.exceptions import ComposeError
from tests.fixtures.bodies import ROUTE_FOR_KIND, sample_body, sample_message

SHIPPED_AGENCIES = {"medical_security", "public_security", "procuratorate", "court", "health",
                    "finance", "joint_office"}


@pytest.fixture(scope="module")
def shipped():
    return RouteTable.load()


def test_every_kind_is_routed(shipped):
    for kind in KINDS:
        assert kind in shipped.any_pair_kinds or shipped.routes.get(kind), kind
    assert shipped.reply_kinds == {"receipt"}
    assert shipped.peer_kinds == {"reconciliation_summary", "reconciliation_answer"}


def test_every_route_names_shipped_agencies(shipped):
    for kind, pairs in shipped.routes.items():
        for sender, recipient in pairs:
            assert {sender, recipient} <= SHIPPED_AGENCIES, (kind, sender, recipient)
            assert sender != recipient


def test_suspected_crime_transfers_to_the_police_can_be_copied_to_the_procuratorate(shipped):
    for sender, recipient in shipped.routes["clue_transfer"]:
        if recipient == "public_security":
            assert shipped.allows("copy_notice", sender, "procuratorate"), sender


@pytest.mark.parametrize("kind", KINDS)
def test_sample_route_is_allowed(routes, kind):
    sender, recipient = ROUTE_FOR_KIND[kind]
    assert routes.allows(kind, sender, recipient)
    routes.check(kind, sender, recipient)


@pytest.mark.parametrize("kind, sender, recipient", [
    ("clue_transfer", "medical_security", "court"),
    ("clue_transfer", "public_security", "medical_security"),
    ("filing_decision", "medical_security", "public_security"),   # reversed direction
    ("copy_notice", "public_security", "procuratorate"),
    ("judgment", "procuratorate", "medical_security"),
    ("urge", "medical_security", "joint_office"),
    ("reward_payment", "medical_security", "finance"),
    ("invoice_verification_request", "health", "finance"),
    ("clue_transfer", "medical_security", "medical_security"),
])
def test_forbidden_routes(routes, kind, sender, recipient):
    assert not routes.allows(kind, sender, recipient)
    with pytest.raises(ForbiddenRoute) as info:
        routes.check(kind, sender, recipient)
    assert info.value.rule == "route.forbidden"
    assert sender in info.value.detail and kind in info.value.detail and recipient in info.value.detail


@pytest.mark.parametrize("sender, recipient", [
    ("public_security", "medical_security"), ("medical_security", "public_security"),
    ("finance", "court"), ("joint_office", "health"),
])
def test_receipts_go_between_any_two_configured_agencies(routes, sender, recipient):
    assert routes.allows("receipt", sender, recipient)


@pytest.mark.parametrize("sender, recipient", [
    ("court", "court"), ("customs", "medical_security"), ("medical_security", "customs"),
])
def test_receipts_never_to_oneself_nor_outside_the_configuration(routes, sender, recipient):
    assert not routes.allows("receipt", sender, recipient)


def test_unknown_kind_is_forbidden(routes):
    with pytest.raises(ForbiddenRoute):
        routes.check("fraud_report", "medical_security", "public_security")


def test_restricted_to_drops_routes_of_unconfigured_agencies(shipped):
    table = shipped.restricted_to(["medical_security", "public_security"])
    assert table.allows("clue_transfer", "medical_security", "public_security")
    assert not table.allows("clue_transfer", "medical_security", "health")
    assert not table.allows("copy_notice", "medical_security", "procuratorate")
    assert not table.allows("receipt", "medical_security", "health")
    assert table.recipients("clue_transfer", "medical_security") == ["public_security"]
    # the original is unchanged
    assert shipped.allows("clue_transfer", "medical_security", "health")


def test_recipients(shipped):
    assert shipped.recipients("clue_transfer", "medical_security") == ["health", "public_security"]
    assert shipped.recipients("urge", "joint_office") == sorted(SHIPPED_AGENCIES - {"joint_office"})
    assert shipped.recipients("judgment", "medical_security") == []


def test_load_from_a_file(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("reply_kinds: [receipt]\nroutes:\n  clue_transfer:\n    - [medical_security, health]\n")
    table = RouteTable.load(path)
    assert table.allows("clue_transfer", "medical_security", "health")
    assert not table.allows("clue_transfer", "medical_security", "public_security")


@pytest.mark.parametrize("data", [
    None, [], {"routes": []}, {},
    {"routes": {"fraud_report": [["medical_security", "public_security"]]}},
    {"routes": {"clue_transfer": [["medical_security", "medical_security"]]}},
    {"routes": {"clue_transfer": [["medical_security"]]}},
    {"routes": {"clue_transfer": [["medical_security", "public_security", "court"]]}},
    {"routes": {"clue_transfer": [["medical_security", 7]]}},
    {"routes": {"clue_transfer": ["medical_security->public_security"]}},
    {"reply_kinds": ["receipt"], "routes": {"receipt": [["court", "finance"]]}},
    {"reply_kinds": ["thanks"], "routes": {}},
], ids=["none", "list", "routes_list", "empty", "unknown_kind", "to_self", "one_agency",
        "three_agencies", "non_string", "string_pair", "reply_kind_routed", "unknown_reply_kind"])
def test_malformed_route_tables(data):
    with pytest.raises(RouteTableError) as info:
        RouteTable.from_data(data)
    assert info.value.rule == "routes.malformed"


def test_route_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("routes: {clue_transfer: [[medical_security, health]\n")
    with pytest.raises(RouteTableError):
        RouteTable.load(path)


# -- the route table as the composer and verifier use it -----------------------------------------
def test_composer_refuses_a_forbidden_route(medical):
    with pytest.raises(ComposeError) as info:
        sample_message(medical, "judgment", "court")
    assert info.value.rule == "route.forbidden"


def test_composer_sends_receipts_back_to_anyone(police):
    message = sample_message(police, "receipt", "court", body=sample_body("receipt"))
    assert message.envelope["recipient"] == "court"
