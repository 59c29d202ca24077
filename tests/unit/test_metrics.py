"""The metrics module without a broker: counters from receiving outcomes and relay reports,
gauges read from a real SQLite node database at scrape time, one registry per node, the
readiness check, and where each node's HTTP port is."""

from __future__ import annotations

from datetime import timedelta

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.storage.store import Store
from adapters.storage.tables import OutboxEntry
from services import config as c
from services.handlers import relay, workflows
from services.handlers.context import DeliveryPolicy, NodeContext
from services.handlers.receiving import ReceiveOutcome
from services.handlers.relay import RelayReport
from services.nodes import metrics as m
from services.nodes.factory import build_node_service
from tests.fixtures.bodies import sample_body


@pytest.fixture
def sender(make_agent, tmp_path, clock):
    agent = make_agent("medical_security")
    store = Store(f"sqlite:///{tmp_path}/ms.sqlite3")
    store.create_schema()
    policy = DeliveryPolicy(receipt_timeout=timedelta(seconds=30), backoff_factor=2, max_attempts=2,
                            publish_retry=timedelta(seconds=5))
    yield NodeContext("medical_security", store, agent.composer, agent.verifier, clock, policy)
    store.dispose()


def _samples(metrics: m.NodeMetrics, now) -> dict:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition(now).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _v(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_counters_by_kind_outcome_and_rule_in_a_registry_of_the_node_own():
    one, other = m.NodeMetrics("medical_security", lambda: None), m.NodeMetrics("public_security", lambda: None)
    one.batch_received([ReceiveOutcome("accepted", "m1", "clue_transfer"),
                        ReceiveOutcome("rejected", "m2", "case_transfer", rule="schema.invalid"),
                        ReceiveOutcome("quarantined", None, rule="signature.invalid"),
                        {"status": "duplicate", "message_id": "m1"},
                        None])
    one.relay_report(RelayReport(published=["a", "b"], resent=["c"], failed=["d"], errors={"e": "unroutable"}),
                     {"a": "clue_transfer", "b": "receipt", "c": "clue_transfer", "d": "clue_transfer"})
    got = _samples(one, None)
    assert _v(got, "cluebus_messages_in_total", kind="clue_transfer", outcome="accepted") == 1
    assert _v(got, "cluebus_messages_in_total", kind="case_transfer", outcome="rejected") == 1
    assert _v(got, "cluebus_messages_in_total", kind="unknown", outcome="quarantined") == 1
    assert _v(got, "cluebus_messages_in_total", kind="unknown", outcome="duplicate") == 1
    assert _v(got, "cluebus_messages_in_total", kind="unknown", outcome="requeued") == 1
    assert _v(got, "cluebus_rejections_total", rule="schema.invalid", outcome="rejected") == 1
    assert _v(got, "cluebus_rejections_total", rule="signature.invalid", outcome="quarantined") == 1
    assert _v(got, "cluebus_messages_out_total", kind="clue_transfer", outcome="published") == 1
    assert _v(got, "cluebus_messages_out_total", kind="receipt", outcome="published") == 1
    assert _v(got, "cluebus_messages_out_total", kind="clue_transfer", outcome="resent") == 1
    assert _v(got, "cluebus_messages_out_total", kind="clue_transfer", outcome="failed") == 1
    assert _v(got, "cluebus_messages_out_total", kind="unknown", outcome="not_taken") == 1
    assert _v(got, "cluebus_failed_deliveries_total") == 1
    # No database yet: no gauges, and nothing fails.
    assert not any(name == "cluebus_outbox_depth" for name, _ in got)
    # The other node's registry is untouched, and the process-wide default registry has none.
    assert _v(_samples(other, None), "cluebus_messages_in_total", kind="clue_transfer", outcome="accepted") is None
    assert prometheus_client.REGISTRY.get_sample_value("cluebus_messages_in_total",
                                                       {"kind": "clue_transfer", "outcome": "accepted"}) is None


def test_a_receipt_with_a_reason_counts_as_rejected_by_the_recipient():
    metrics = m.NodeMetrics("medical_security", lambda: None)
    metrics.received([ReceiveOutcome("receipt", "r1", "receipt", rule="lifecycle.illegal_transition")])
    got = _samples(metrics, None)
    assert _v(got, "cluebus_rejections_total", rule="lifecycle.illegal_transition",
              outcome="rejected_by_recipient") == 1


def test_gauges_are_read_from_the_database_when_scraped(sender, clock):
    metrics = m.NodeMetrics("medical_security", lambda: sender.store)
    empty = _samples(metrics, clock())
    assert {_v(empty, "cluebus_outbox_depth", state=s) for s in m.OUTBOX_STATES} == {0}
    assert _v(empty, "cluebus_quarantine_size") == 0
    assert _v(empty, "cluebus_relay_lag_seconds") == 0
    assert _v(empty, "cluebus_database_up") == 1

    [transfer] = workflows.refer_clue(sender, sample_body("clue_transfer"), "public_security", copy_to=None)
    clock.advance(seconds=90)  # committed, never published: due for 90 s
    waiting = _samples(metrics, clock())
    assert _v(waiting, "cluebus_outbox_depth", state="pending") == 1
    assert _v(waiting, "cluebus_relay_lag_seconds") == 90

    published = []
    report = relay.relay_due(sender, lambda raw, key: published.append(key))
    metrics.relay_report(report)  # kinds read back from the database
    clock.advance(seconds=4)
    with sender.store.transaction() as repo:  # the receipt arrives: what receiving writes
        entry = repo.session.query(OutboxEntry).filter_by(message_id=transfer.message_id).one()
        entry.state, entry.receipted_at, entry.receipt_message_id = "receipted", clock(), "r-1"
    metrics.batch_received([ReceiveOutcome("receipt", "r-1", "receipt")])
    done = _samples(metrics, clock())
    assert _v(done, "cluebus_messages_out_total", kind="clue_transfer", outcome="published") == 1
    assert _v(done, "cluebus_outbox_depth", state="receipted") == 1
    assert _v(done, "cluebus_outbox_depth", state="pending") == 0
    assert _v(done, "cluebus_relay_lag_seconds") == 0
    assert _v(done, "cluebus_receipt_latency_seconds_count") == 1
    assert _v(done, "cluebus_receipt_latency_seconds_sum") == 4
    assert _v(done, "cluebus_receipt_latency_seconds_bucket", le="5.0") == 1


def test_an_unreachable_database_is_reported_not_raised(clock):
    store = Store("postgresql+pg8000://cluebus@127.0.0.1:1/nowhere")  # nothing listens on port 1
    metrics = m.NodeMetrics("medical_security", lambda: store)
    got = _samples(metrics, clock())
    assert _v(got, "cluebus_database_up") == 0
    assert m.readiness(store, "amqp://127.0.0.1:1/x", None, "medical_security") == "database unreachable"
    store.dispose()


def test_ready_needs_the_bus(sender, config):
    from services import settings
    reason = m.readiness(sender.store, "amqp://u:secret@127.0.0.1:1/cluebus", settings.topology(config),
                         "medical_security")
    assert reason == "bus not ready"  # short: the address and the broker's words go to the log


def test_each_node_gets_its_own_port_from_one_base(config):
    assert c.node_http_address(config, "medical_security") is None  # off by default
    on = {**config, c.NODE: {c.HTTP_ADDRESS: "127.0.0.1:9100"}}
    ports = [c.node_http_address(on, agency) for agency in c.agency_codes(on)]
    assert ports[:2] == ["127.0.0.1:9100", "127.0.0.1:9101"] and len(set(ports)) == len(ports)
    with pytest.raises(c.ConfigError):
        c.node_http_address({**config, c.NODE: {c.HTTP_ADDRESS: "localhost"}}, "medical_security")


def test_probes_are_entrypoints_only_when_a_port_is_configured(config):
    off = build_node_service("medical_security", config)
    on = build_node_service("medical_security", {**config, c.NODE: {c.HTTP_ADDRESS: "127.0.0.1:9100"}})
    assert not hasattr(off, "http_metrics")
    assert {"http_metrics", "http_health", "http_ready"} <= set(vars(on))
