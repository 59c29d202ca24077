"""SQLite's hot statements on the driver's cursor (adapters/storage/direct.py) write and read
exactly what SQLAlchemy Core does: every transaction two nodes wrote in a round of traffic
(accepted, sealed, duplicated, tampered, rejected, receipted, with a request id) is replayed
into one database through the direct statements and into another through Core, and the two
are compared value for value, as stored and as read back."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from adapters.storage import repository
from adapters.storage.direct import DirectStatements, NotDirect
from adapters.storage.repository import (AUDIT, AUDIT_HEAD, CONTROL_REQUESTS, INBOX, MESSAGES, OUTBOX, QUARANTINE,
                                         REFERRALS, NodeRepository, _rows_query)
from adapters.storage.store import Store
from schemas.registry import CLUE_TRANSFER
from services.handlers import workflows
from services.handlers.requests import Request
from tests.fixtures.bodies import sample_body
from tests.support.inprocess_bus import InProcessBus, make_config

MS, PS = "medical_security", "public_security"
TABLES = (MESSAGES, OUTBOX, INBOX, QUARANTINE, REFERRALS, AUDIT, AUDIT_HEAD, CONTROL_REQUESTS)


@pytest.fixture
def traffic(tmp_path, clock, monkeypatch):
    """Every Writes each node committed in a round of traffic, in order, by agency."""
    written: dict[str, list] = {MS: [], PS: []}
    original = NodeRepository.write

    def recording(self, writes):
        path = self.session.get_bind().url.database
        [agency] = [a for a in written if a in path]
        written[agency].append(copy.deepcopy(writes))
        return original(self, writes)

    monkeypatch.setattr(NodeRepository, "write", recording)
    config, _ = make_config(tmp_path)
    bus = InProcessBus(config, clock)
    try:
        bus.send(MS, workflows.refer_clue_call(sample_body(CLUE_TRANSFER), PS, copy_to=None,
                                               request=Request("req-1", "refer_clue")))
        bus.refer_clue(MS, sample_body(CLUE_TRANSFER), PS, copy_to=None, seal=True)
        [first, _] = bus.waiting(PS)
        bus.inject(PS, first, by=MS)                                    # a duplicate
        bus.inject(PS, first[:-40] + b"0" * 38 + first[-2:], by=MS)     # tampered
        bus.deliver(PS)
        bus.deliver(MS)                                                 # the receipts
        bus.deliver(MS)
    finally:
        monkeypatch.setattr(NodeRepository, "write", original)
        bus.close()
    assert {agency for agency, writes in written.items() if writes} == {MS, PS}, written.keys()
    return written


def _replayed(path, writes_list, *, direct: bool) -> Store:
    store = Store(f"sqlite:///{path}")
    store.create_schema()
    if not direct:
        store._direct = None
    for writes in writes_list:
        with store.transaction() as repo:
            assert (repo.direct is not None) == direct
            repo.write(copy.deepcopy(writes))
    return store


def _stored(store: Store) -> dict[str, list[tuple]]:
    """Each table's rows exactly as SQLite holds them (its own text for datetimes)."""
    with store.engine.connect() as connection:
        return {table.name: [tuple(row) for row in connection.exec_driver_sql(
                    f"SELECT * FROM {table.name} ORDER BY 1").all()] for table in TABLES}


@pytest.mark.parametrize("agency", [MS, PS])
def test_direct_statements_store_what_core_stores(tmp_path, traffic, agency):
    direct = _replayed(tmp_path / "direct.db", traffic[agency], direct=True)
    core = _replayed(tmp_path / "core.db", traffic[agency], direct=False)
    try:
        stored = _stored(direct)
        assert stored == _stored(core)
        assert stored["messages"] and stored["audit_log"] and stored["audit_head"]
        if agency == MS:
            assert stored["control_requests"]
        else:
            assert stored["quarantine"] and stored["inbox"]
        with direct.transaction() as repo:
            assert repo.verify_audit_chain() == len(stored["audit_log"])
    finally:
        direct.dispose()
        core.dispose()


@pytest.mark.parametrize("agency", [MS, PS])
def test_every_insert_of_the_traffic_runs_direct(tmp_path, traffic, agency):
    """No insert the nodes make falls back to Core: rows whose keys come in another order
    than the table's columns (a new referral's) are taken too."""
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    direct = DirectStatements(store.engine.dialect)
    inserts = {MESSAGES: "messages", OUTBOX: "outbox", INBOX: "inbox", QUARANTINE: "quarantine",
               CONTROL_REQUESTS: "control_requests"}
    try:
        shapes = set()
        for writes in traffic[agency]:
            for table, attribute in inserts.items():
                shapes.update((table, tuple(row)) for row in getattr(writes, attribute))
            shapes.update((REFERRALS, tuple(row)) for row in writes.referrals_new.values())
        assert REFERRALS in {table for table, _ in shapes}
        # The audit chain's rows (NodeRepository.append_audit_events) have one shape.
        shapes.add((AUDIT, ("seq", "at", "event", "referral_id", "message_id", "detail", "prev_hash", "hash")))
        for table, names in shapes:
            direct._compile_insert(table, names)  # raises NotDirect for a shape Core would take
    finally:
        store.dispose()


# The hot reads' shapes (those of the batched paths, and two more columns of messages).
READ_SHAPES = [(INBOX, "message_id", ("message_id", "sha256", "receipt_message_id", "deliveries")),
               (MESSAGES, "message_id", ("message_id", "direction", "kind", "sender", "recipient", "referral_id",
                                         "sha256", "status", "sent_at", "sealed")),
               (OUTBOX, "message_id", ("message_id", "state", "needs_receipt", "attempts", "last_published_at")),
               (REFERRALS, "referral_id", ("referral_id", "state", "reference"))]


def assert_direct_reads_are_cores(repo, *, locks=(False,)) -> None:
    """Every shape of READ_SHAPES, by every stored id and one that is not, read directly (with
    and without row locks, as ``locks`` says) and through Core: the same rows, datetimes in
    UTC; the audit head too."""
    for table, key, columns in READ_SHAPES:
        ids = [row[0] for row in repo._core(select(table.c[key]))] + ["not-there"]
        for for_update in locks:
            direct = {row[key]: row for row in repo.direct.rows_by(repo._driver(), table, key, ids, columns,
                                                                   for_update=for_update)}
            core = {row[key]: dict(row) for row in repo._core(_rows_query(table, key, columns, for_update),
                                                              {"ids": ids}).mappings()}
            assert direct == core and len(direct) == len(ids) - 1, table.name
            for row in direct.values():
                for value in row.values():
                    if isinstance(value, datetime):
                        assert value.tzinfo is timezone.utc
    [head] = repo.direct.fetch(repo._driver(), repository._HEAD_LOCKED)
    assert head == dict(repo._core(repository._HEAD_LOCKED).mappings().one())


@pytest.mark.parametrize("agency", [MS, PS])
def test_direct_reads_give_what_core_reads(tmp_path, traffic, agency):
    store = _replayed(tmp_path / "direct.db", traffic[agency], direct=True)
    try:
        with store.transaction() as repo:
            assert_direct_reads_are_cores(repo)
    finally:
        store.dispose()


def test_a_constraint_violation_is_sqlalchemys_integrity_error(tmp_path, traffic):
    from sqlalchemy.exc import IntegrityError
    store = _replayed(tmp_path / "direct.db", traffic[MS][:1], direct=True)
    try:
        with pytest.raises(IntegrityError):
            with store.transaction() as repo:
                repo.write(copy.deepcopy(traffic[MS][0]))  # the same message ids again
    finally:
        store.dispose()


def test_shapes_it_does_not_take_are_refused_for_core(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.create_schema()
    direct = DirectStatements(store.engine.dialect)
    try:
        with store.transaction() as repo:
            with pytest.raises(NotDirect):
                direct.insert_many(repo._driver(), INBOX, [{"message_id": "a"}, {"sha256": "b"}])
            with pytest.raises(NotDirect):
                direct.insert_many(repo._driver(), INBOX, [{"no_such_column": 1}])
            with pytest.raises(NotDirect):
                direct.fetch(repo._driver(), _rows_query(INBOX, "message_id", ("message_id",), False), {"ids": []})
    finally:
        store.dispose()
    with pytest.raises(ValueError):
        DirectStatements(type("PG", (), {"name": "postgresql"})())


def test_columns_left_out_take_their_defaults_as_with_core(tmp_path):
    """A row without ``deliveries`` (default 1) or ``truncated`` (default False) is stored
    as Core stores it; odd values (microseconds 0, a time zone other than UTC, empty bytes)
    too."""
    from datetime import timedelta
    at = datetime(2026, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=8)))
    inbox = [{"message_id": f"m{i}", "sha256": "a" * 64, "received_at": at + timedelta(microseconds=i),
              "outcome": "accepted", "receipt_message_id": None} for i in range(3)]
    quarantine = [{"received_at": at, "rule": "message.empty", "detail": "x", "sha256": "b" * 64, "size": 0,
                   "raw": b"", "claimed_message_id": None, "claimed_sender": None}]
    stores = []
    for name, direct in (("direct.db", True), ("core.db", False)):
        store = Store(f"sqlite:///{tmp_path / name}")
        store.create_schema()
        if not direct:
            store._direct = None
        with store.transaction() as repo:
            repo._insert_many(INBOX, copy.deepcopy(inbox))
            repo._insert_many(QUARANTINE, copy.deepcopy(quarantine))
        stores.append(store)
    try:
        direct, core = (_stored(store) for store in stores)
        assert direct == core
        assert [row[-1] for row in direct["inbox"]] == [1, 1, 1]
        with stores[0].transaction() as repo:
            read = repo.inbox_rows(["m0", "m2"])
        assert read["m2"]["deliveries"] == 1
    finally:
        for store in stores:
            store.dispose()
