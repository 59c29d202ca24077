"""A node's waiting calls and a checked delivery batch in one transaction
(services/handlers/together.py), and the call batcher that takes them together or, when that
fails, apart (services/nodes/batching.py). Real nodes wired by services.bootstrap on their own
SQLite files (tests/support/inprocess_bus.py), real keys, no broker."""

from __future__ import annotations

import eventlet
import pytest
from sqlalchemy import event

from services.handlers import receiving, together, workflows
from services.handlers.receiving import OUTCOME_RECEIPT
from services.handlers.requests import Sent
from services.nodes.batching import CallBatcher
from tests.fixtures.bodies import sample_body
from tests.support.inprocess_bus import InProcessBus, make_config
from schemas.registry import CLUE_TRANSFER

MS, PS = "medical_security", "public_security"


@pytest.fixture
def bus(tmp_path, clock):
    config, _ = make_config(tmp_path)
    yield from InProcessBus(config, clock).closing_audited()


def a_receipt_waiting(bus: InProcessBus) -> str:
    """A clue from the bureau that the police accepted: its receipt waits in the bureau's
    queue. The clue's message id."""
    [clue] = bus.refer_clue(MS, sample_body(CLUE_TRANSFER), PS, copy_to=None)
    [outcome] = bus.deliver(PS)
    assert outcome.status == "accepted"
    return clue.message_id


def a_call():
    return workflows.refer_clue_call(sample_body(CLUE_TRANSFER), PS, copy_to=None)


def commits(bus: InProcessBus, agency: str) -> list:
    seen = []
    event.listen(bus.node(agency).store.engine, "commit", lambda connection: seen.append(1))
    return seen


def outbox_state(bus: InProcessBus, agency: str, message_id: str) -> str | None:
    with bus.node(agency).store.engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT state FROM outbox WHERE message_id = ?", (message_id,)).first()
    return row[0] if row else None


def stored(bus: InProcessBus, agency: str, message_id: str) -> bool:
    with bus.node(agency).store.engine.connect() as connection:
        return connection.exec_driver_sql("SELECT count(*) FROM messages WHERE message_id = ?",
                                          (message_id,)).scalar() == 1


# -- the handler -------------------------------------------------------------------------------------------
def test_calls_and_a_receipt_commit_once_and_each_is_what_it_would_be_alone(bus):
    clue_id = a_receipt_waiting(bus)
    ctx = bus.ctx(MS)
    checked = receiving.check_batch(ctx, bus.take(MS))
    seen = commits(bus, MS)

    [sent], [decided] = together.commit_together(ctx, [a_call()], [checked])

    assert len(seen) == 1
    assert isinstance(sent, Sent) and stored(bus, MS, sent.messages[0].message_id)
    [outcome] = decided.results()
    assert outcome.status == OUTCOME_RECEIPT
    assert outbox_state(bus, MS, clue_id) == "receipted"


def test_an_error_in_the_deliveries_rolls_the_calls_back_too(bus, monkeypatch):
    clue_id = a_receipt_waiting(bus)
    ctx = bus.ctx(MS)
    checked = receiving.check_batch(ctx, bus.take(MS))
    staged = []

    def fails(*args):
        raise RuntimeError("the disk went away")
    original = together.sending.stage_calls
    monkeypatch.setattr(together.sending, "stage_calls",
                        lambda *a, **k: staged.extend(original(*a, **k)) or staged)
    monkeypatch.setattr(together.receiving, "decide_batch", fails)

    with pytest.raises(RuntimeError):
        together.commit_together(ctx, [a_call()], [checked])

    [sent] = staged
    assert not stored(bus, MS, sent.messages[0].message_id)
    assert outbox_state(bus, MS, clue_id) == "published"


# -- the batcher -------------------------------------------------------------------------------------------
def both_at_once(batcher: CallBatcher, ctx, deliveries) -> tuple[list, receiving._Batch | BaseException]:
    """A call and a delivery batch handed to the batcher before it runs (they join one group)."""
    call = eventlet.spawn(batcher.submit, ctx, [a_call()], lambda ctx, sents: None)
    received = eventlet.spawn(batcher.receive, ctx, deliveries)
    results = call.wait()
    try:
        return results, received.wait()
    except Exception as error:
        return results, error


def test_the_batcher_commits_a_waiting_call_with_the_deliveries(bus):
    clue_id = a_receipt_waiting(bus)
    batcher = CallBatcher(eventlet.spawn)
    seen = commits(bus, MS)

    [sent], decided = both_at_once(batcher, bus.ctx(MS), bus.take(MS))

    assert len(seen) == 1
    assert stored(bus, MS, sent.messages[0].message_id)
    assert [o.status for o in decided.results()] == [OUTCOME_RECEIPT]
    assert outbox_state(bus, MS, clue_id) == "receipted"


def test_when_together_fails_the_batcher_takes_them_apart(bus, monkeypatch, caplog):
    clue_id = a_receipt_waiting(bus)
    batcher = CallBatcher(eventlet.spawn)

    def fails(*args):
        raise RuntimeError("one statement too many")
    monkeypatch.setattr(together, "commit_together", fails)
    seen = commits(bus, MS)

    [sent], decided = both_at_once(batcher, bus.ctx(MS), bus.take(MS))

    assert len(seen) == 2                                    # each in its own transaction
    assert stored(bus, MS, sent.messages[0].message_id)
    assert [o.status for o in decided.results()] == [OUTCOME_RECEIPT]
    assert outbox_state(bus, MS, clue_id) == "receipted"
    assert "could not be committed together; taking them apart" in caplog.text


def test_deliveries_that_fail_alone_raise_to_their_worker_and_leave_the_call_committed(bus, monkeypatch):
    clue_id = a_receipt_waiting(bus)
    batcher = CallBatcher(eventlet.spawn)

    def fails(*args):
        raise RuntimeError("the inbox is locked")
    monkeypatch.setattr(receiving, "decide_batch", fails)

    [sent], outcome = both_at_once(batcher, bus.ctx(MS), bus.take(MS))

    assert isinstance(outcome, RuntimeError)                 # the node then takes them one by one
    assert stored(bus, MS, sent.messages[0].message_id)
    assert outbox_state(bus, MS, clue_id) == "published"


def test_a_delivery_batch_alone_goes_through_at_once(bus):
    clue_id = a_receipt_waiting(bus)
    batcher = CallBatcher(eventlet.spawn)
    seen = commits(bus, MS)

    decided = batcher.receive(bus.ctx(MS), bus.take(MS))

    assert len(seen) == 1
    assert [o.status for o in decided.results()] == [OUTCOME_RECEIPT]
    assert outbox_state(bus, MS, clue_id) == "receipted"
