"""On PostgreSQL a transaction's new rows, its request ids and its audit entries go in one
statement each (adapters/storage/pg_statements.py, NodeRepository.write): every transaction
two nodes wrote in a round of traffic is replayed into one real PostgreSQL database that way
and into another through SQLAlchemy Core, and the two are compared value for value; a
request id stored meanwhile is still a DuplicateRequest, with nothing of the call kept."""

from __future__ import annotations

import copy
import uuid
from contextlib import ExitStack

import pytest
from sqlalchemy import select, text, update

from adapters.storage import pg_statements
from adapters.storage.exceptions import DuplicateRequest
from adapters.storage.repository import AUDIT, CONTROL_REQUESTS, MESSAGES, NodeRepository
from adapters.storage.store import Store
from tests.integration.conftest import fresh_postgres_database
from tests.unit import test_direct_statements
from tests.unit.test_direct_statements import MS, PS, _stored

pytestmark = pytest.mark.integration

traffic = test_direct_statements.traffic  # the same round of traffic, as a fixture here


@pytest.fixture
def postgres_url():
    with ExitStack() as databases:
        def make() -> str:
            name, _ = databases.enter_context(fresh_postgres_database())
            return f"postgresql+pg8000://postgres@127.0.0.1:5432/{name}"
        yield make


def _replayed(url: str, writes_list, *, together: bool, monkeypatch) -> Store:
    store = Store(url)
    store.create_schema()
    with monkeypatch.context() as patch:
        if not together:  # every statement through Core, as before
            patch.setattr(pg_statements, "insert_values", lambda *args: None)
            store._direct = None
        for writes in writes_list:
            with store.transaction() as repo:
                repo.write(copy.deepcopy(writes))
    return store


@pytest.mark.parametrize("agency", [MS, PS])
def test_one_statement_stores_what_core_stores(postgres_url, traffic, agency, monkeypatch):
    statements = []
    original = NodeRepository._insert_together_pg

    def counting(self, *args):
        statements.append(args)
        return original(self, *args)

    monkeypatch.setattr(NodeRepository, "_insert_together_pg", counting)
    together = _replayed(postgres_url(), traffic[agency], together=True, monkeypatch=monkeypatch)
    core = _replayed(postgres_url(), traffic[agency], together=False, monkeypatch=monkeypatch)
    try:
        stored = _stored(together)
        assert stored == _stored(core)
        assert stored["messages"] and stored["audit_log"] and stored["audit_head"]
        assert len(statements) == 2 * len(traffic[agency])
        if agency == MS:
            assert stored["control_requests"]
        with together.transaction() as repo:
            assert repo.verify_audit_chain() == len(stored["audit_log"])
    finally:
        together.dispose()
        core.dispose()


def test_a_request_id_stored_meanwhile_is_a_duplicate_request(postgres_url, traffic):
    [first, *_] = [writes for writes in traffic[MS] if writes.control_requests]
    store = _replayed(postgres_url(), [first], together=True, monkeypatch=pytest.MonkeyPatch())
    again = copy.deepcopy(first)
    for row in again.messages:  # new messages; the same request id
        row["message_id"] = str(uuid.uuid4())
    again.outbox = []
    again.referrals_new = {}
    try:
        before = _stored(store)
        with pytest.raises(DuplicateRequest):
            with store.transaction() as repo:
                repo.write(again)
        assert _stored(store) == before
    finally:
        store.dispose()


def test_shapes_it_does_not_take_go_to_core(postgres_url):
    store = Store(postgres_url())
    try:
        dialect = store.engine.dialect
        assert pg_statements.insert_values(MESSAGES, [{"message_id": "a"}, {"message_id": "b", "kind": "x"}],
                                           dialect) is None          # rows of different keys
        assert pg_statements.insert_values(AUDIT, [{"not_a_column": 1}], dialect) is None
        sql, params = pg_statements.insert_values(CONTROL_REQUESTS, [{"request_id": "r", "action": "a", "at": None,
                                                                     "result": None}], dialect)
        assert sql.startswith("INSERT INTO control_requests (request_id, action, at, result) VALUES (%s::VARCHAR(200)")
        assert params[-1] == "null"  # a JSON column's None is JSON null, as Core stores it
    finally:
        store.dispose()


def test_an_update_stores_none_as_core_does(postgres_url, traffic, monkeypatch):
    """``UPDATE ... FROM (VALUES ...)`` (NodeRepository._update_many on PostgreSQL) binds every
    value as Core does: a JSON column's None is JSON null, a nullable text column's NULL."""
    store = _replayed(postgres_url(), traffic[PS], together=True, monkeypatch=monkeypatch)
    try:
        with store.transaction() as repo:
            first, second = [row[0] for row in repo._core(select(MESSAGES.c.message_id).order_by(
                MESSAGES.c.message_id).limit(2))]
            repo._update_many(MESSAGES, "message_id", [(first, None, {"reason_codes": None, "detail": None})])
            repo._core(update(MESSAGES).where(MESSAGES.c.message_id == second).values(reason_codes=None, detail=None))
        with store.transaction() as repo:
            stored = {row[0]: row[1:] for row in repo._core(
                select(MESSAGES.c.message_id, text("reason_codes IS NULL"), text("reason_codes::text"),
                       MESSAGES.c.detail).where(MESSAGES.c.message_id.in_([first, second])))}
        assert stored[first] == stored[second] == (False, "null", None)
    finally:
        store.dispose()
