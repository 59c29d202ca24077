"""The node's publisher on the real broker: one publication the account may not make (403,
which closes the channel) does not take the others of its batch down with it (before, they
were all reported refused and, retried together, stayed so while the bad one was among them)."""

from __future__ import annotations

import pytest

from tests.integration import helpers as h

pytestmark = pytest.mark.integration

MEDICAL, POLICE = "medical_security", "public_security"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_refused_routing_key_fails_alone_in_its_batch(bus):
    publisher = h.agency_publisher(bus, MEDICAL)
    try:
        failures = publisher.publish_many([
            ("a", b"first", f"{POLICE}.clue_transfer"),
            ("forbidden", b"not ours to send", "court.judgment"),   # only the court sends judgments
            ("b", b"second", f"{POLICE}.clue_transfer"),
            ("c", b"third", f"{POLICE}.materials_handover"),
        ])
    finally:
        publisher.close()
    assert set(failures) == {"forbidden"}
    assert failures["forbidden"].rule == "transport.refused"
    # Each arrived; one that had reached the queue before the channel closed, unconfirmed, is
    # published again (at least once: the recipient's inbox takes the same bytes once).
    queue = h.queue_name(bus, POLICE)
    arrived = [m.body for m in h.take_from_queue(bus, queue, 3)] + [m.body for m in h.drain_queue(bus, queue)]
    assert set(arrived) == {b"first", b"second", b"third"}
