"""Reconciliation between two agencies (docs/protocol.md §20), broker-free: the order, the
hash, the window and the comparison as data; the bodies' schemas; and the whole exchange
between real nodes on SQLite over the in-process bus (tests/support/inprocess_bus.py): a
message the recipient lost is found, sent again byte for byte and stored once; bad answers
are rejected with their rule."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete

from adapters.storage import tables as t
from adapters.transport.provisioning import allowed_routing_keys
from schemas.bodies.reconciliation import MAX_WINDOW_IDS
from schemas.exceptions import BodyInvalid
from schemas.registry import (CLUE_TRANSFER, RECEIPT, RECONCILIATION_ANSWER, RECONCILIATION_KINDS,
                              RECONCILIATION_SUMMARY, dump_body, load_body)
from schemas.routes import RouteTable
from services.domain import delivery as d
from services.domain import reconciliation as r
from services.handlers import reconciliation, relay
from services.handlers.receiving import OUTCOME_ACCEPTED, OUTCOME_DUPLICATE, OUTCOME_REJECTED
from services.protocol import rules
from tests.fixtures.bodies import sample_body
from tests.support.inprocess_bus import InProcessBus, make_config

MS, PS, PROC = "medical_security", "public_security", "procuratorate"
SETTLE = timedelta(seconds=60)
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
ID_A = "00000000-0000-4000-8000-00000000000a"
ID_B = "00000000-0000-4000-8000-00000000000b"
ID_C = "00000000-0000-4000-8000-00000000000c"


# -- the rule as data -----------------------------------------------------------------------------
def test_the_hash_is_over_each_id_and_a_line_feed_and_the_empty_list_hashes_no_bytes():
    assert r.ids_sha256([]) == hashlib.sha256(b"").hexdigest()
    assert r.ids_sha256([ID_A, ID_B]) == hashlib.sha256(f"{ID_A}\n{ID_B}\n".encode()).hexdigest()
    assert r.ids_sha256([ID_B, ID_A]) != r.ids_sha256([ID_A, ID_B])


def test_the_order_is_sent_at_then_message_id():
    later = T0 + timedelta(microseconds=1)
    assert r.in_order([(later, ID_A), (T0, ID_C), (T0, ID_B)]) == [ID_B, ID_C, ID_A]


def test_a_window_with_more_than_the_limit_ends_where_the_first_one_left_out_was_sent():
    entries = [(T0 + timedelta(seconds=i // 2), f"{i:08d}-0000-4000-8000-000000000000") for i in range(7)]
    window, kept = r.capped(entries, r.Window(None, T0 + timedelta(hours=1)), limit=4)
    # the 5th (index 4) was sent at T0+2s, with index 5: neither is in, nor anything after
    assert window == r.Window(None, T0 + timedelta(seconds=2))
    assert [e[1] for e in kept] == [e[1] for e in entries[:4]]
    same, all_of_them = r.capped(entries, r.Window(T0, T0 + timedelta(hours=1)), limit=7)
    assert same == r.Window(T0, T0 + timedelta(hours=1)) and len(all_of_them) == 7


def test_the_comparison_names_what_was_sent_and_is_not_held_and_what_is_held_and_was_not_sent():
    found = r.compare([ID_A, ID_B], [ID_B, ID_C])
    assert found.missing == [ID_A] and found.unexpected == [ID_C]
    assert r.compare([ID_A, ID_B], [ID_A, ID_B]) == r.Comparison([], [])
    # a truncated list cannot tell what is missing; what it shows unexpected still is
    assert r.compare([ID_A, ID_B], [ID_C], truncated=True) == r.Comparison([], [ID_C])


def test_an_answer_must_say_match_exactly_when_its_tally_is_the_summarys():
    summary = r.Tally.of([ID_A, ID_B])
    assert r.answer_is_consistent(summary, 2, summary.ids_sha256, True, None, False)
    assert not r.answer_is_consistent(summary, 2, summary.ids_sha256, False, [ID_A, ID_B], False)
    held = r.Tally.of([ID_A])
    assert r.answer_is_consistent(summary, 1, held.ids_sha256, False, [ID_A], False)
    assert not r.answer_is_consistent(summary, 1, held.ids_sha256, True, None, False)
    assert not r.answer_is_consistent(summary, 1, held.ids_sha256, False, [ID_B], False)  # ids not its hash


def test_the_state_machine_puts_back_only_what_was_receipted_or_given_up():
    assert d.next_delivery_state(d.RESEND_MISSING, d.RECEIPTED, True) == d.PENDING
    assert d.next_delivery_state(d.RESEND_MISSING, d.FAILED, True) == d.PENDING
    for state in (d.PENDING, d.PUBLISHED):   # on its way already
        assert d.transition(d.RESEND_MISSING, state, True) is None
    assert d.transition(d.RESEND_MISSING, d.DONE, False) is None  # receipts are not reconciled


# -- the bodies -------------------------------------------------------------------------------------
def summary_body(**changes):
    body = {"window_from": None, "window_until": "2026-03-02T08:00:00Z", "count": 1,
            "ids_sha256": r.ids_sha256([ID_A])}
    return {**body, **changes}


def answer_body(**changes):
    body = {"summary_message_id": ID_C, "count": 1, "ids_sha256": r.ids_sha256([ID_A]), "match": True}
    return {**body, **changes}


def test_bodies_as_specified_load():
    assert load_body(RECONCILIATION_SUMMARY, 1, summary_body())["window_from"] is None
    load_body(RECONCILIATION_SUMMARY, 1, summary_body(window_from="2026-03-01T08:00:00Z"))
    load_body(RECONCILIATION_ANSWER, 1, answer_body())
    load_body(RECONCILIATION_ANSWER, 1, answer_body(match=False, held_ids=[ID_A], truncated=False))
    load_body(RECONCILIATION_ANSWER, 1, answer_body(match=False, count=0, ids_sha256=r.ids_sha256([]),
                                                    held_ids=[], truncated=False))


@pytest.mark.parametrize("kind, body, field", [
    (RECONCILIATION_SUMMARY, summary_body(window_from="2026-03-02T08:00:00Z"), "window_until"),
    (RECONCILIATION_SUMMARY, summary_body(window_until=None), "window_until"),
    (RECONCILIATION_SUMMARY, summary_body(count=MAX_WINDOW_IDS + 1), "count"),
    (RECONCILIATION_SUMMARY, summary_body(count=True), "count"),
    (RECONCILIATION_SUMMARY, summary_body(ids_sha256="ABC"), "ids_sha256"),
    (RECONCILIATION_SUMMARY, summary_body(held_ids=[]), "held_ids"),
    (RECONCILIATION_ANSWER, answer_body(held_ids=[ID_A]), "held_ids"),
    (RECONCILIATION_ANSWER, answer_body(truncated=False), "truncated"),
    (RECONCILIATION_ANSWER, answer_body(match=False, truncated=False), "held_ids"),
    (RECONCILIATION_ANSWER, answer_body(match=False, held_ids=[ID_A]), "truncated"),
    (RECONCILIATION_ANSWER, answer_body(match=False, held_ids=[ID_A, ID_B], truncated=False), "held_ids"),
    (RECONCILIATION_ANSWER, answer_body(match=False, count=2, held_ids=[ID_A, ID_A], truncated=False), "held_ids"),
    (RECONCILIATION_ANSWER, answer_body(match=False, held_ids=[ID_A], truncated=True), "truncated"),
    (RECONCILIATION_ANSWER, answer_body(match=False, held_ids=["not-a-uuid"], truncated=False), "held_ids"),
    (RECONCILIATION_ANSWER, answer_body(match="yes"), "match"),
])
def test_bodies_that_break_their_schema_are_refused_naming_the_field(kind, body, field):
    with pytest.raises(BodyInvalid) as refused:
        load_body(kind, 1, body)
    assert field in refused.value.messages


# -- routes and the broker's permissions ----------------------------------------------------------------
def test_reconciliation_goes_between_any_two_configured_agencies_and_the_broker_lets_it():
    routes = RouteTable.load().restricted_to([MS, PS, PROC])
    for kind in RECONCILIATION_KINDS:
        assert routes.allows(kind, MS, PS) and routes.allows(kind, PS, PROC) and routes.allows(kind, PROC, MS)
        assert not routes.allows(kind, MS, MS)
        assert not routes.allows(kind, MS, "customs")
    keys = allowed_routing_keys(PROC, routes, [MS, PS, PROC])
    assert {f"{MS}.{k}" for k in RECONCILIATION_KINDS} | {f"{PS}.{k}" for k in RECONCILIATION_KINDS} <= set(keys)
    assert f"{PROC}.{RECONCILIATION_SUMMARY}" not in keys


def test_a_route_table_may_not_give_a_peer_kind_explicit_routes():
    from schemas.exceptions import RouteTableError
    with pytest.raises(RouteTableError):
        RouteTable.from_data({"reply_kinds": [RECEIPT], "peer_kinds": [RECONCILIATION_SUMMARY],
                              "routes": {RECONCILIATION_SUMMARY: [[MS, PS]]}})
    with pytest.raises(RouteTableError):
        RouteTable.from_data({"reply_kinds": [RECEIPT], "peer_kinds": ["gossip"], "routes": {}})


# -- the exchange between two nodes ---------------------------------------------------------------------
@pytest.fixture(params=["node", "cli"])
def bus(request, tmp_path, clock):
    """Both wirings: the running node's (publishes at once) and the command line's (the relay does)."""
    config, _ = make_config(tmp_path)
    yield from InProcessBus(config, clock, office=True, publishes_at_once=request.param == "node").closing_audited()


def flush(bus, *agencies):
    """Every node publishes what is due and takes its queue, until nothing moves."""
    for _ in range(10):
        for agency in agencies:
            bus.relay(agency)
        if not any(bus.queues[a] for a in (*agencies, "joint_office")):
            return
        bus.exchange(*agencies, "joint_office")
    raise AssertionError("the bus never settled")


def clues_receipted(bus, count=3) -> list[str]:
    ids = []
    for n in range(count):
        body = sample_body(CLUE_TRANSFER)
        body["clue_no"] = f"YB-2026-{n:04d}"
        ids.append(bus.refer_clue(MS, body, PS, copy_to=None)[0].message_id)
        bus.clock.advance(seconds=1)
    flush(bus, MS, PS)
    assert {row["state"] for row in bus.outbox(MS) if row["message_id"] in ids} == {d.RECEIPTED}
    return ids


def lose(bus, agency: str, message_id: str) -> None:
    """What a database restored from an older backup lacks of one message: its row, its inbox
    row and (a referral it opened) the referral, behind the node's back."""
    referral_id = bus.message(agency, message_id)["referral_id"]
    with bus.node(agency).store.transaction() as repo:
        repo.session.execute(delete(t.Message).where(t.Message.message_id == message_id))
        repo.session.execute(delete(t.InboxEntry).where(t.InboxEntry.message_id == message_id))
        repo.session.execute(delete(t.Referral).where(t.Referral.referral_id == referral_id))


def reconcile(bus, agency=MS, peer=PS, **options):
    """A summary from ``agency`` to ``peer`` (published as its node would), then every queue taken."""
    ctx = bus.ctx(agency)
    sent = reconciliation.send_summary(ctx, peer, settle=SETTLE, **options)
    if sent.signed is not None and ctx.publishes_at_once:
        relay.publish_committed(ctx, bus.node(agency).publisher, [relay.committed_row(sent.signed, needs_receipt=True)])
    flush(bus, agency, peer)
    return sent, reconciliation.round_of(ctx, sent.result["summary_message_id"])


def test_a_message_the_recipient_lost_is_found_sent_again_byte_for_byte_and_stored_once(bus):
    ids = clues_receipted(bus)
    lost = ids[1]
    original = bus.raw_of(MS, lost)
    lose(bus, PS, lost)
    bus.clock.advance(seconds=120)   # past the settle margin

    sent, found = reconcile(bus)
    assert sent.result["count"] == 3 and sent.result["window_from"] is None
    assert sent.result["ids_sha256"] == r.ids_sha256(sorted(ids, key=lambda i: bus.message(MS, i)["sent_at"]))
    assert found["agreed"] is False and found["peer_count"] == 2
    assert found["missing"] == [lost] and found["resent"] == [lost] and found["unexpected"] == []

    # it arrived again, the same bytes, and is stored exactly once, with its referral again
    assert [p.raw for p in bus.published if p.kind == CLUE_TRANSFER].count(original) == 2
    assert [m["message_id"] for m in bus.messages(PS)].count(lost) == 1
    assert bus.raw_of(PS, lost) == original
    assert [row["message_id"] for row in bus.inbox(PS)].count(lost) == 1
    assert bus.referral(PS, bus.message(MS, lost)["referral_id"]) is not None
    assert bus.outbox(MS)[[row["message_id"] for row in bus.outbox(MS)].index(lost)]["state"] == d.RECEIPTED
    assert "reconciliation.resent" in bus.audit_events(MS)
    [resent] = [e for e in bus.audit(MS) if e["event"] == "reconciliation.resent"]
    assert resent["detail"]["missing"] == [lost]

    # no referral, lifecycle or office step for the reconciliation messages or their receipts
    kinds = {m["kind"] for m in bus.messages(PS)}
    assert RECONCILIATION_SUMMARY in kinds and RECONCILIATION_ANSWER in kinds
    reconciling = {m["message_id"] for m in bus.messages(MS) if m["kind"] in RECONCILIATION_KINDS}
    assert all(m["referral_id"] == m["message_id"] for m in bus.messages(MS) if m["kind"] in RECONCILIATION_KINDS)
    for agency in (MS, PS):
        assert not reconciling & {row["referral_id"] for row in bus.rows(agency, "referrals")}
    observed = bus.rows("joint_office", "observed_messages")
    assert not reconciling & {row["referral_id"] for row in observed}
    assert not [row for row in observed if row["kind"] in RECONCILIATION_KINDS]

    # a second reconciliation agrees, and the one after starts where it agreed
    bus.clock.advance(seconds=120)
    _, again = reconcile(bus)
    assert again["agreed"] is True and again["count"] == 3 and again["window_from"] is None
    assert "reconciliation.agreed" in bus.audit_events(MS)
    bus.clock.advance(seconds=120)
    third, after = reconcile(bus)
    assert third.result["window_from"] == again["window_until"] and third.result["count"] == 0
    assert after["agreed"] is True


def test_nothing_lost_is_agreement_at_once_and_nothing_is_sent_again(bus):
    clues_receipted(bus, count=2)
    bus.clock.advance(seconds=120)
    published = len(bus.published)
    _, found = reconcile(bus)
    assert found["agreed"] is True and found["missing"] == []
    # the summary and the answer, each with its receipt: nothing else
    assert sorted(p.kind for p in bus.published[published:]) == sorted(
        [RECONCILIATION_SUMMARY, RECONCILIATION_ANSWER, RECEIPT, RECEIPT])


def test_messages_inside_the_settle_margin_are_not_counted(bus):
    ids = clues_receipted(bus, count=2)
    sent, found = reconcile(bus)  # the clues were sent less than SETTLE ago
    assert sent.result["count"] == 0 and found["agreed"] is True
    assert ids


def test_a_repeated_request_id_sends_no_second_summary(bus):
    from services.handlers.requests import Request
    first = reconciliation.send_summary(bus.ctx(MS), PS, settle=SETTLE, request=Request("r-1", "reconcile"))
    again = reconciliation.send_summary(bus.ctx(MS), PS, settle=SETTLE, request=Request("r-1", "reconcile"))
    assert again.signed is None and again.result["repeated"] is True
    assert again.result["summary_message_id"] == first.result["summary_message_id"]
    assert len(bus.rows(MS, "reconciliations")) == 1


@pytest.mark.parametrize("peer", [MS, "customs", None])
def test_reconciling_with_oneself_or_an_unknown_agency_is_refused(bus, peer):
    with pytest.raises(reconciliation.PeerInvalid) as refused:
        reconciliation.send_summary(bus.ctx(MS), peer, settle=SETTLE)
    assert refused.value.rule == rules.RECONCILIATION_PEER_INVALID
    assert bus.rows(MS, "reconciliations") == []


def test_the_same_receipt_again_for_a_message_put_back_settles_it_again(bus):
    """The peer claims it lacks a message it holds: it gets the same bytes, answers with its
    first receipt again, and the sender's entry is receipted again instead of resent until failed."""
    [clue] = clues_receipted(bus, count=1)
    bus.clock.advance(seconds=120)
    sent = reconciliation.send_summary(bus.ctx(MS), PS, settle=SETTLE)
    bus.take(PS)  # the police do not answer this one themselves: we answer for them, wrongly
    summary_id = sent.result["summary_message_id"]
    answer_id = str(uuid.uuid4())
    wrong = bus.compose(PS, RECONCILIATION_ANSWER, MS,
                        {"summary_message_id": summary_id, "count": 0, "ids_sha256": r.ids_sha256([]),
                         "match": False, "held_ids": [], "truncated": False},
                        referral_id=answer_id, message_id=answer_id, in_reply_to=summary_id)
    bus.inject(MS, wrong.raw, by=PS)
    [outcome] = bus.deliver(MS)
    assert outcome.status == OUTCOME_ACCEPTED
    assert reconciliation.round_of(bus.ctx(MS), summary_id)["resent"] == [clue]
    flush(bus, MS, PS)
    [entry] = [row for row in bus.outbox(MS) if row["message_id"] == clue]
    assert entry["state"] == d.RECEIPTED
    assert [row["deliveries"] for row in bus.inbox(PS) if row["message_id"] == clue] == [2]


# -- bad answers --------------------------------------------------------------------------------------------
def _answer(bus, summary_id, *, sender=PS, in_reply_to="same", **body):
    answer_id = str(uuid.uuid4())
    content = {"summary_message_id": summary_id, "count": 0, "ids_sha256": r.ids_sha256([]), "match": True, **body}
    return bus.compose(sender, RECONCILIATION_ANSWER, MS, content, referral_id=answer_id, message_id=answer_id,
                       in_reply_to=summary_id if in_reply_to == "same" else in_reply_to)


def _summary_unanswered(bus) -> str:
    sent = reconciliation.send_summary(bus.ctx(MS), PS, settle=SETTLE)
    bus.take(PS)
    return sent.result["summary_message_id"]


def _rejected(bus, signed, by=PS):
    mark = bus.mark()
    bus.inject(MS, signed.raw, by=by)
    [outcome] = bus.deliver(MS)
    assert outcome.status == OUTCOME_REJECTED
    changes = bus.since(mark)
    assert "reconciliations" not in changes.tables(MS)       # no round moved
    assert changes.tables(MS) <= {"messages", "inbox", "outbox", "audit_log"}
    [receipt] = [p for p in bus.published_to(by) if p.kind == RECEIPT][-1:]
    assert bus.read(by, receipt.raw).body["reason_codes"] == [outcome.rule]
    return outcome


def test_an_answer_that_answers_no_summary_is_rejected(bus):
    outcome = _rejected(bus, _answer(bus, str(uuid.uuid4())))
    assert outcome.rule == rules.RECONCILIATION_UNKNOWN_SUMMARY


def test_an_answer_without_in_reply_to_is_rejected(bus):
    outcome = _rejected(bus, _answer(bus, _summary_unanswered(bus), in_reply_to=None))
    assert outcome.rule == rules.RECONCILIATION_UNKNOWN_SUMMARY


def test_an_answer_from_another_agency_than_the_summarys_recipient_is_rejected(bus):
    outcome = _rejected(bus, _answer(bus, _summary_unanswered(bus), sender=PROC), by=PROC)
    assert outcome.rule == rules.RECONCILIATION_UNKNOWN_SUMMARY


def test_an_answer_naming_another_summary_than_it_replies_to_is_rejected(bus):
    summary_id = _summary_unanswered(bus)
    signed = _answer(bus, str(uuid.uuid4()), in_reply_to=summary_id)
    assert _rejected(bus, signed).rule == rules.RECONCILIATION_SUMMARY_MISMATCH


def test_an_answer_whose_match_contradicts_its_tally_is_rejected(bus):
    clues_receipted(bus, count=1)
    bus.clock.advance(seconds=120)
    summary_id = _summary_unanswered(bus)   # counts one clue; the answer says 0 and "match"
    assert _rejected(bus, _answer(bus, summary_id)).rule == rules.RECONCILIATION_ANSWER_INCONSISTENT


def test_a_second_answer_to_an_answered_summary_is_rejected(bus):
    bus.clock.advance(seconds=120)
    summary_id = _summary_unanswered(bus)
    bus.inject(MS, _answer(bus, summary_id).raw, by=PS)
    assert bus.deliver(MS)[0].status == OUTCOME_ACCEPTED
    flush(bus, MS, PS)
    assert _rejected(bus, _answer(bus, summary_id)).rule == rules.RECONCILIATION_UNKNOWN_SUMMARY


def test_the_same_answer_again_is_a_duplicate_not_a_second_round(bus):
    summary_id = _summary_unanswered(bus)
    answer = _answer(bus, summary_id)
    bus.inject(MS, answer.raw, by=PS)
    bus.inject(MS, answer.raw, by=PS)
    assert [o.status for o in bus.deliver(MS)] == [OUTCOME_ACCEPTED, OUTCOME_DUPLICATE]


def test_a_summary_from_an_agency_the_configuration_does_not_know_is_not_answered(tmp_path, clock):
    config, _ = make_config(tmp_path, extra_key_agencies=["customs"])
    bus = InProcessBus(config, clock)
    try:
        from services.protocol.compose import encode, sign_envelope
        from services.protocol.signing_input import body_sha256
        from adapters.crypto.timestamps import format_timestamp
        signer = bus.signer("customs")
        body = dump_body(RECONCILIATION_SUMMARY, 1, {"window_from": None, "window_until": clock() - SETTLE,
                                                     "count": 0, "ids_sha256": r.ids_sha256([])})
        message_id = str(uuid.uuid4())
        envelope = {"protocol": "cluebus/1", "message_id": message_id, "kind": RECONCILIATION_SUMMARY,
                    "schema_version": 1, "sender": "customs", "recipient": PS, "referral_id": message_id,
                    "in_reply_to": None, "sent_at": format_timestamp(clock()), "sender_key_id": signer.key_id,
                    "body_encoding": "plain", "body": body, "body_sha256": body_sha256(body)}
        bus.inject(PS, encode(sign_envelope(envelope, signer)))
        [outcome] = bus.deliver(PS)
        assert outcome.rule == rules.AGENCY_UNKNOWN
        assert bus.published == [] and bus.messages(PS) == []
    finally:
        bus.close()


# -- the command line's own refusals (before anything is sent) ------------------------------------------
@pytest.mark.parametrize("argv, said", [
    (["--with", "joint_office", "--as", MS], "does not reconcile"),
    (["--with", PS, "--as", "joint_office"], "does not reconcile"),
    (["--with", MS, "--as", MS], "the same agency"),
    (["--with", "customs", "--as", MS], "is not a configured agency"),
    (["--with", PS, "--as", MS, "--timeout", "0"], "--timeout must be positive"),
])
def test_the_command_refuses_in_one_line_what_cannot_be_reconciled(argv, said, capsys):
    from services.cli.main import main
    assert main(["reconcile", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("cluebus: ") and said in err and err.count("\n") == 1


def test_the_periodic_round_sends_one_summary_to_each_agency_sent_to_and_none_to_others(bus):
    clues_receipted(bus, count=1)                                  # to the police only
    bus.refer_clue(MS, sample_body(CLUE_TRANSFER), PS)             # and one copied to the procuratorate
    flush(bus, MS, PS, PROC)
    bus.clock.advance(seconds=120)
    sent = reconciliation.send_summaries(bus.ctx(MS), settle=SETTLE)
    assert sorted(s.result["peer"] for s in sent) == [PROC, PS]
    assert {s.result["peer"]: s.result["count"] for s in sent} == {PS: 2, PROC: 1}
    # the police sent the bureau only receipts, which are not counted: nobody to reconcile with
    assert reconciliation.send_summaries(bus.ctx(PS), settle=SETTLE) == []
