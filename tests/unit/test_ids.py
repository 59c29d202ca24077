"""Fresh message and referral ids (services/protocol/ids.py): the protocol's UUID form,
version 7, ordered by the millisecond they were made in, unique."""

from __future__ import annotations

import re
import uuid

from services.protocol import ids

UUID_FORM = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")  # docs/protocol.md 3.2


def test_an_id_is_a_lowercase_version_7_uuid_carrying_its_millisecond(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_796_295_187_123_456_789)
    made = ids.new_id()
    assert UUID_FORM.match(made)
    parsed = uuid.UUID(made)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert parsed.int >> 80 == 1_796_295_187_123


def test_ids_made_later_sort_after_and_ids_of_the_same_millisecond_differ(monkeypatch):
    now = {"ns": 1_796_295_187_000_000_000}
    monkeypatch.setattr(ids.time, "time_ns", lambda: now["ns"])
    same_millisecond = {ids.new_id() for _ in range(10_000)}
    assert len(same_millisecond) == 10_000  # 74 random bits apart
    now["ns"] += 1_000_000
    later = ids.new_id()
    assert all(later > earlier for earlier in same_millisecond)  # as text, as the indexes compare them


def test_a_referral_and_its_messages_get_such_ids(tmp_path, clock):
    from services.demo import story
    from tests.support.inprocess_bus import InProcessBus, make_config

    config, _ = make_config(tmp_path)
    bus = InProcessBus(config, clock)
    try:
        sent = bus.refer_clue("medical_security", story.crime_clue(clock(), "YB-ID-0001"), "public_security")
        [outcome] = [o for o in bus.deliver("public_security") if o.kind == "clue_transfer"]
    finally:
        bus.close()
    made = [sent.referral_id, *(m.message_id for m in sent.messages), outcome.receipt_message_id]
    assert len(made) == 4  # the referral, the clue, its copy to the procuratorate, the police's receipt
    assert all(UUID_FORM.match(i) and uuid.UUID(i).version == 7 for i in made), made
    assert outcome.status == "accepted"
