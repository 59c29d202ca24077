"""A node's PostgreSQL pool pings a connection before use only when it has been idle
(adapters/storage/store._ping_when_idle): a connection reused at once costs no round trip; an
idle one whose server process is gone is replaced before the transaction runs; a busy one
broken meanwhile fails one transaction, and the next gets a fresh connection."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from adapters.storage import store as store_module
from adapters.storage.store import Store
from tests.integration.conftest import fresh_postgres_database

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_store():
    with fresh_postgres_database() as (name, as_admin):
        store = Store(f"postgresql+pg8000://postgres@127.0.0.1:5432/{name}")
        store.create_schema()

        def kill_backend(pid: int) -> None:
            assert as_admin(f"SELECT pg_terminate_backend({int(pid)})")

        try:
            yield store, kill_backend
        finally:
            store.dispose()


def _backend(store: Store) -> int:
    with store.transaction() as repo:
        return repo.session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()


def _pings(store: Store, monkeypatch) -> list:
    pings = []
    original = store.engine.dialect.do_ping
    monkeypatch.setattr(store.engine.dialect, "do_ping", lambda connection: (pings.append(1), original(connection))[1])
    return pings


def test_a_connection_reused_at_once_is_not_pinged(pg_store, monkeypatch):
    store, _ = pg_store
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = _backend(store)
    pings = _pings(store, monkeypatch)
    assert [_backend(store) for _ in range(3)] == [first] * 3
    assert pings == []


def test_an_idle_connection_whose_server_is_gone_is_replaced_before_use(pg_store, monkeypatch):
    store, kill_backend = pg_store
    first = _backend(store)
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every connection counts as idle
    pings = _pings(store, monkeypatch)
    kill_backend(first)
    second = _backend(store)  # the transaction itself does not fail
    assert second != first and pings


def test_a_busy_connection_broken_meanwhile_fails_one_transaction(pg_store, monkeypatch):
    store, kill_backend = pg_store
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = _backend(store)
    kill_backend(first)
    with pytest.raises(DBAPIError) as failed:
        _backend(store)
    assert failed.value.connection_invalidated
    assert _backend(store) != first  # the pool has let go of the broken connection
