"""Rules found by reviewing the delivery path: delayed delivery, refused publications, the
office's bindings, and who hears of a prosecution decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.transport.topology import Topology
from services import config as c
from services import settings
from services.protocol.exceptions import Rejection
from services.protocol.verify import Verifier
from tests.fixtures.bodies import sample_body


def test_a_message_delayed_in_a_durable_queue_is_still_accepted(make_agent, keyring, routes, agencies, clock):
    sender = make_agent("medical_security")
    message = sender.composer.compose("clue_transfer", "public_security", sample_body("clue_transfer"),
                                      referral_id="5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70", sent_at=clock())
    verifier = Verifier(keyring, routes, agencies, clock_skew=timedelta(seconds=300),
                        max_age=timedelta(days=7), clock=clock)
    clock.advance(hours=6)  # the police node was down for six hours
    assert verifier.verify(message.raw).kind == "clue_transfer"
    clock.advance(days=7)
    with pytest.raises(Rejection) as too_old:
        verifier.verify(message.raw)
    assert too_old.value.rule == "clock.skew" and "behind" in too_old.value.detail


def test_a_message_from_the_future_is_refused_whatever_the_delivery_delay(make_agent, keyring, routes,
                                                                          agencies, clock):
    sender = make_agent("medical_security")
    message = sender.composer.compose("clue_transfer", "public_security", sample_body("clue_transfer"),
                                      referral_id="5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70",
                                      sent_at=clock() + timedelta(seconds=301))
    verifier = Verifier(keyring, routes, agencies, max_age=timedelta(days=7), clock=clock)
    with pytest.raises(Rejection) as ahead:
        verifier.verify(message.raw)
    assert ahead.value.rule == "clock.skew" and "ahead" in ahead.value.detail


def test_the_default_verifier_keeps_the_protocol_skew_in_both_directions(make_agent, keyring, routes,
                                                                         agencies, clock):
    sender = make_agent("medical_security")
    message = sender.composer.compose("clue_transfer", "public_security", sample_body("clue_transfer"),
                                      referral_id="5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70", sent_at=clock())
    clock.advance(seconds=301)
    with pytest.raises(Rejection) as old:
        Verifier(keyring, routes, agencies, clock=clock).verify(message.raw)
    assert old.value.rule == "clock.skew"


def test_the_office_queue_is_bound_to_every_agency_but_not_to_everything():
    topology = Topology(agencies=("medical_security", "public_security", "joint_office"),
                        observers=("joint_office",))
    office = topology.queue("joint_office")
    keys = sorted(b.routing_key for b in office.bindings)
    assert keys == ["joint_office.*", "medical_security.*", "public_security.*"]
    assert "#" not in keys  # an unknown agency's key must stay unroutable (mandatory publishing)
    assert [b.routing_key for b in topology.queue("public_security").bindings] == ["public_security.*"]


def test_dead_letters_are_keyed_by_the_queue_they_leave():
    topology = Topology(agencies=("public_security", "joint_office"), observers=("joint_office",))
    for agency in topology.agencies:
        queue = topology.queue(agency)
        assert queue.queue_arguments["x-dead-letter-routing-key"] == topology.queue_name(agency)
        assert topology.quarantine_queue(agency).routing_key == topology.queue_name(agency)


@pytest.mark.parametrize("decision, expected", [
    ("prosecute", ["court", "medical_security", "public_security"]),
    ("not_prosecute", ["medical_security", "public_security"]),
    ("return_for_investigation", ["medical_security", "public_security"]),
])
def test_the_court_hears_of_a_prosecution_decision_only_when_prosecuting(decision, expected):
    roles = settings.role_actions(c.load_config(environ={}))
    action = next(a for a in roles["procuratorate"] if a.name == "decide_prosecution")
    assert action.default_recipients({"decision": decision}) == expected


def test_a_body_sealed_to_a_revoked_key_of_ours_is_refused(make_agent, keyring, clock):
    sender, police = make_agent("medical_security"), make_agent("public_security")
    message = sender.composer.compose("clue_transfer", "public_security", sample_body("clue_transfer"),
                                      referral_id="5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70", sent_at=clock(),
                                      seal=True)
    assert police.verifier.verify(message.raw).body["clue_no"]
    keyring.revoke(police.material.box_key_id)
    with pytest.raises(Rejection) as refused:
        police.verifier.verify(message.raw)
    assert refused.value.rule == "key.revoked" and refused.value.authenticated
