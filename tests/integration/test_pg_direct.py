"""PostgreSQL's hot statements on pg8000's cursor (adapters/storage/pg_direct.py) read what
SQLAlchemy Core reads, row locks included, and fail as Core fails: a constraint violation is
SQLAlchemy's IntegrityError, and a connection found broken is invalidated so that the next
transaction gets a fresh one. That they store what Core stores is
tests/integration/test_pg_statements.py (its Core side runs without them)."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from adapters.storage import repository
from adapters.storage.direct import NotDirect
from adapters.storage.pg_direct import PgDirect
from adapters.storage.repository import INBOX, MESSAGES, REFERRALS, _rows_query
from adapters.storage.store import Store
from tests.integration.conftest import fresh_postgres_database
from tests.unit import test_direct_statements
from tests.unit.test_direct_statements import MS, PS, assert_direct_reads_are_cores

pytestmark = pytest.mark.integration

traffic = test_direct_statements.traffic  # the same round of traffic, as a fixture here


@pytest.fixture
def pg_store(request):
    query = getattr(request, "param", "")  # the database URL's query (indirect parametrisation)
    with fresh_postgres_database() as (name, as_admin):
        store = Store(f"postgresql+pg8000://postgres@127.0.0.1:5432/{name}{query}")
        store.create_schema()
        try:
            yield store, as_admin
        finally:
            store.dispose()


def _backend(repo) -> int:
    [(pid,)] = repo._driver_sql("SELECT pg_backend_pid()", ())
    return pid


def test_the_store_runs_them_on_postgresql(pg_store):
    store, _ = pg_store
    assert isinstance(store._direct, PgDirect)
    with store.transaction() as repo:
        assert repo.direct is store._direct


def _replay(store: Store, writes_list) -> None:
    for writes in writes_list:
        with store.transaction() as repo:
            repo.write(copy.deepcopy(writes))


# With none kept prepared (for a pooler in transaction mode) the deferred and pipelined
# statements go unnamed, and still read and write the same.
@pytest.mark.parametrize("pg_store", ["", "?prepared_statement_cache_size=0"], indirect=True,
                         ids=["kept", "none-kept"])
@pytest.mark.parametrize("agency", [MS, PS])
def test_direct_reads_give_what_core_reads(pg_store, traffic, agency, request):
    store, _ = pg_store
    _replay(store, traffic[agency])
    with store.transaction() as repo:
        assert_direct_reads_are_cores(repo, locks=(False, True))
        assert repo.verify_audit_chain() > 0
        [(prepared,)] = repo._driver_sql("SELECT count(*) FROM pg_prepared_statements", ())
    assert (prepared == 0) == request.node.callspec.params["pg_store"].endswith("=0")


def test_rows_read_for_update_stay_locked_until_the_commit(pg_store, traffic):
    store, _ = pg_store
    with store.transaction() as repo:
        repo.write(copy.deepcopy(traffic[MS][0]))
        [referral_id] = [row[0] for row in repo._core(select(REFERRALS.c.referral_id))]
    lock = "SELECT referral_id FROM referrals WHERE referral_id = %s FOR UPDATE NOWAIT"
    with store.engine.connect() as other:  # another transaction, on another connection
        with store.transaction() as repo:
            assert repo.referral_rows([referral_id])  # locked now (the direct path)
            with pytest.raises(DBAPIError) as refused:  # 55P03: the row is locked
                other.exec_driver_sql(lock, (referral_id,))
            assert "55P03" in str(refused.value)
            other.rollback()
        assert other.exec_driver_sql(lock, (referral_id,)).scalar() == referral_id  # free after the commit
        other.rollback()


def test_a_constraint_violation_is_sqlalchemys_integrity_error(pg_store, traffic):
    store, _ = pg_store
    with store.transaction() as repo:
        repo.write(copy.deepcopy(traffic[PS][0]))
    with pytest.raises(IntegrityError):
        with store.transaction() as repo:
            repo.write(copy.deepcopy(traffic[PS][0]))  # the same message ids again
    with store.transaction() as repo:  # the connection is usable after it
        assert repo.inbox_rows(["not-there"]) == {}


def test_a_connection_broken_meanwhile_fails_one_transaction_and_is_let_go(pg_store, monkeypatch):
    from adapters.storage import store as store_module
    store, as_admin = pg_store
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_SECONDS", 3600.0)  # no ping before use
    with store.transaction() as repo:
        first = _backend(repo)
    assert as_admin(f"SELECT pg_terminate_backend({int(first)})")
    with pytest.raises(DBAPIError) as failed:
        with store.transaction() as repo:
            repo.inbox_rows(["any"])  # the transaction's first statement, on the direct path
    assert failed.value.connection_invalidated
    with store.transaction() as repo:
        assert _backend(repo) != first


def test_shapes_it_does_not_take_go_to_core(pg_store, monkeypatch):
    store, _ = pg_store
    with store.transaction() as repo:
        with pytest.raises(NotDirect):
            repo.direct.insert_many(repo._driver(), INBOX, [{"message_id": "a"}, {"sha256": "b"}])
        with pytest.raises(NotDirect):
            repo.direct.fetch(repo._driver(), _rows_query(INBOX, "message_id", ("message_id",), False), {"ids": []})
        monkeypatch.setattr(repo.direct, "parameter_limit", 3)
        rows = [{"message_id": f"m{i}", "sha256": "a" * 64, "received_at": datetime.now(timezone.utc),
                 "outcome": "accepted", "receipt_message_id": None} for i in range(2)]
        with pytest.raises(NotDirect):
            repo.direct.insert_many(repo._driver(), INBOX, rows)
        repo._insert_many(INBOX, rows)  # Core writes it instead
        assert set(repo.inbox_rows(["m0", "m1"])) == {"m0", "m1"}
    with pytest.raises(ValueError):
        PgDirect(type("SQLite", (), {"name": "sqlite"})(), 10)


class _RoundTrips:
    """How many times the transaction's connection hands its buffer to the server."""

    def __init__(self, repo):
        sock = repo._driver().connection.dbapi_connection._sock
        self.count, flush = 0, sock.flush

        def counted():
            self.count += 1
            return flush()
        sock.flush = counted


@pytest.mark.parametrize("agency", [MS, PS])
def test_reads_asked_together_take_one_round_trip_and_read_what_they_read_apart(pg_store, traffic, agency):
    store, _ = pg_store
    _replay(store, traffic[agency])
    with store.transaction() as repo:
        ids = [row[0] for row in repo._core(select(MESSAGES.c.message_id))] + ["not-there"]
        referral_ids = [row[0] for row in repo._core(select(REFERRALS.c.referral_id))]
        apart = (repo.inbox_rows(ids), repo.message_rows(ids), repo.outbox_rows(ids, for_update=True),
                 repo.referral_rows(referral_ids))
        trips = _RoundTrips(repo)
        together = (*repo.inbox_and_message_rows(ids, ids), *repo.outbox_and_referral_rows(ids, referral_ids))
        assert trips.count == 2
        assert together == apart and all(together[1:])


def test_a_write_nobody_reads_goes_with_the_next_statement_and_its_error_with_that(pg_store, traffic):
    store, _ = pg_store
    with store.transaction() as repo:
        repo.write(copy.deepcopy(traffic[PS][0]))
        message_id = repo._core(select(MESSAGES.c.message_id).limit(1)).scalar_one()
    with store.transaction() as repo:
        trips = _RoundTrips(repo)
        repo._driver_write("UPDATE messages SET status = %s WHERE message_id = %s", ("accepted", message_id))
        assert trips.count == 0
        assert repo.message_rows([message_id])[message_id]["status"] == "accepted"
        assert trips.count == 1
    with pytest.raises(IntegrityError):
        with store.transaction() as repo:
            repo._driver_write("INSERT INTO audit_head (id, seq, hash) VALUES (%s, %s, %s)", (1, 0, "0" * 64))
            repo.inbox_rows(["any"])  # raises the deferred write's error


def test_a_deferred_writes_error_is_not_taken_for_a_savepoints(pg_store, traffic, monkeypatch):
    """A transaction whose rows do not fit one statement stores its request ids under a
    savepoint, where a duplicate key means "stored meanwhile": a deferred write's error
    before it must stay what it is."""
    store, _ = pg_store
    [first, *_] = [writes for writes in traffic[MS] if writes.control_requests]
    with store.transaction() as repo:
        repo.write(copy.deepcopy(first))
    again = copy.deepcopy(first)
    for row in again.messages:
        row["message_id"] = f"new-{row['message_id']}"
    for row in again.outbox:
        row["message_id"] = f"new-{row['message_id']}"
    again.referrals_new, again.audit = {}, []
    for row in again.control_requests:
        row["request_id"] = f"new-{row['request_id']}"
    stored = first.messages[0]["message_id"]
    again.message_updates = {f"new-{stored}": {"message_id": stored}}  # a duplicate key, deferred
    monkeypatch.setattr(repository, "PG_PARAMETERS", 1)  # not one statement: the savepoint's way
    with pytest.raises(IntegrityError):
        with store.transaction() as repo:
            repo.write(again)
