"""The outbox relay without a broker: a list stands in for the publish function (it is the
handler's port, not RabbitMQ), SQLite and PyNaCl are real."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.storage.store import Store
from adapters.storage.tables import FAILED, PENDING, PUBLISHED, RECEIPTED
from services.handlers import relay, workflows
from services.handlers.context import DeliveryPolicy, NodeContext
from services.handlers.relay import PublishFailed
from tests.fixtures.bodies import sample_body


@pytest.fixture
def sender(make_agent, tmp_path, clock):
    agent = make_agent("medical_security")
    store = Store(f"sqlite:///{tmp_path}/ms.sqlite3")
    store.create_schema()
    policy = DeliveryPolicy(receipt_timeout=timedelta(seconds=30), backoff_factor=2, max_attempts=2,
                            publish_retry=timedelta(seconds=5))
    return NodeContext("medical_security", store, agent.composer, agent.verifier, clock, policy)


def _state(ctx, message_id):
    with ctx.store.transaction() as repo:
        entry = repo.outbox_entry(message_id)
        return entry.state, entry.attempts


def test_refused_publications_are_retried_without_using_up_attempts(sender, clock):
    [transfer] = workflows.refer_clue(sender, sample_body("clue_transfer"), "public_security", copy_to=None)

    def refuse(raw, key):
        raise PublishFailed("transport.unroutable", "no queue")

    for _ in range(5):
        report = relay.relay_due(sender, refuse)
        assert transfer.message_id in report.errors
        clock.advance(seconds=6)
    assert _state(sender, transfer.message_id) == (PENDING, 0)


def test_a_failed_message_can_be_retried_by_an_operator_with_the_same_bytes(sender, clock):
    [transfer] = workflows.refer_clue(sender, sample_body("clue_transfer"), "public_security", copy_to=None)
    published = []
    publish = lambda raw, key: published.append((raw, key))  # noqa: E731
    relay.relay_due(sender, publish)
    clock.advance(seconds=31)
    relay.relay_due(sender, publish)
    assert _state(sender, transfer.message_id) == (PUBLISHED, 2)
    clock.advance(seconds=61)
    assert relay.relay_due(sender, publish).failed == [transfer.message_id]
    assert _state(sender, transfer.message_id) == (FAILED, 2)

    relay.retry_failed(sender, transfer.message_id)
    assert relay.relay_due(sender, publish).published == [transfer.message_id]
    assert {raw for raw, _ in published} == {transfer.raw} and len(published) == 3
    with sender.store.transaction() as repo:
        assert "delivery.retried" in [e.event for e in repo.audit_entries()]
    with pytest.raises(relay.NotRetryable):
        relay.retry_failed(sender, transfer.message_id)  # no longer failed


def test_a_resend_overtaken_by_its_receipt_is_neither_recorded_nor_audited(sender, clock):
    """The receipt is recorded while the resend is being published: the receipt wins, and no
    `delivery.resent` is written for a resend the outbox does not record."""
    [transfer] = workflows.refer_clue(sender, sample_body("clue_transfer"), "public_security", copy_to=None)
    relay.relay_due(sender, lambda raw, key: None)
    clock.advance(seconds=31)

    def publish_while_the_receipt_arrives(raw, key):
        with sender.store.transaction() as repo:   # as the receiving path records a receipt
            repo.outbox_entry(transfer.message_id).state = RECEIPTED

    report = relay.relay_due(sender, publish_while_the_receipt_arrives)
    assert report.resent == [transfer.message_id]       # it was published again...
    assert _state(sender, transfer.message_id) == (RECEIPTED, 1)   # ...but the receipt won
    with sender.store.transaction() as repo:
        events = [e.event for e in repo.audit_entries(transfer.envelope["referral_id"])]
    assert "delivery.resent" not in events

    # A resend that is recorded is audited.
    [other] = workflows.refer_clue(sender, sample_body("clue_transfer") | {"clue_no": "YB-2026-0999"},
                                   "public_security", copy_to=None)
    relay.relay_due(sender, lambda raw, key: None)
    clock.advance(seconds=31)
    relay.relay_due(sender, lambda raw, key: None)
    with sender.store.transaction() as repo:
        events = [(e.event, e.detail) for e in repo.audit_entries(other.envelope["referral_id"])]
    assert ("delivery.resent", {"attempt": 2}) in events
