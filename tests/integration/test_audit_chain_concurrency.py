"""The audit chain takes concurrent writers on a fresh PostgreSQL database.

Round 1 locked the ``audit_head`` row, which did not exist yet on a fresh database, so
transactions arriving together all wrote audit entry 1 and all but one died on a duplicate
key. Here many transactions of their own (one connection pool each, as separate processes
or a node and its CLI would have) send at the same moment, then the node's RPC takes a
burst of calls side by side: every call succeeds and the chain verifies, one entry after
another with no gap and no fork."""

from __future__ import annotations

import eventlet
import pytest
from sqlalchemy import func, select

from adapters.storage.tables import AuditEntry, Referral
from schemas import registry as k
from services import bootstrap
from services import config as c
from services.handlers import workflows
from tests.fixtures.bodies import sample_body
from tests.integration import helpers as h

MEDICAL, POLICE = "medical_security", "public_security"
WRITERS = 16


def clue(n: int) -> dict:
    body = sample_body(k.CLUE_TRANSFER)
    body.update(clue_no=f"YB-2026-C{n:04d}", category="administrative_violation")
    return body


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_sends_on_a_fresh_postgresql_database_keep_one_chain(bus):
    assert c.database_url(bus.config, MEDICAL).startswith("postgresql")
    stores = [bootstrap.open_store(bus.config, MEDICAL) for _ in range(WRITERS)]
    with stores[0].transaction() as repo:  # fresh: nothing written yet, no audit head
        assert repo.session.scalar(select(func.count()).select_from(AuditEntry)) == 0
    contexts = [bootstrap.offline_context(bus.config, MEDICAL, store=store) for store in stores]

    start = eventlet.event.Event()

    def send(n: int):
        start.wait()  # every writer begins together
        return workflows.refer_clue(contexts[n], clue(n), POLICE, copy_to="procuratorate")

    pool = eventlet.GreenPool(WRITERS)
    threads = [pool.spawn(send, n) for n in range(WRITERS)]
    eventlet.sleep(0)  # let every writer reach the start line (not a timing wait)
    start.send()
    sent = [thread.wait() for thread in threads]  # raises if any writer failed
    assert len({messages[0].message_id for messages in sent}) == WRITERS

    # And side by side through the running node's control plane.
    bus.start(MEDICAL)
    with bus.rpc() as rpc:
        # All requests on the broker before the first answer is read.
        calls = [rpc.medical_security.refer_clue.call_async(clue(100 + n)) for n in range(WRITERS)]
        answers = [call.result() for call in calls]
    assert all(answer["messages"] for answer in answers)

    with h.db(bus, MEDICAL) as repo:
        assert repo.session.scalar(select(func.count()).select_from(Referral)) == 2 * WRITERS
        entries = repo.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))  # no gap, no fork
        assert repo.verify_audit_chain() == len(entries) >= 2 * WRITERS
    for store in stores:
        store.dispose()
