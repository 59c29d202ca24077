"""Queries and writes on one node database, inside one transaction."""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime, timezone
from typing import Iterable, Sequence

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.crypto.canonical import canonical_bytes
from adapters.crypto.timestamps import format_timestamp

from . import pg_statements
from .direct import CompiledShapes, NotDirect
from .exceptions import AuditChainBroken, DuplicateRequest
from .writes import AuditEvent, Writes
from .tables import (INBOUND, OUTBOUND, PENDING, PUBLISHED, AuditEntry, AuditHead, ControlRequest, InboxEntry,
                     Lease, Message, OutboxEntry, QuarantineEntry, Reconciliation, Referral)

GENESIS_HASH = "0" * 64

MESSAGES = Message.__table__
OUTBOX = OutboxEntry.__table__
INBOX = InboxEntry.__table__
QUARANTINE = QuarantineEntry.__table__
REFERRALS = Referral.__table__
AUDIT = AuditEntry.__table__
AUDIT_HEAD = AuditHead.__table__
CONTROL_REQUESTS = ControlRequest.__table__
LEASES = Lease.__table__
RECONCILIATIONS = Reconciliation.__table__

LONG_AGO = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Keep IN (...) lists well below every database's limit on bound parameters.
IN_CHUNK = 500
# Bound parameters in one multi-row statement on PostgreSQL (its limit is 65535).
PG_PARAMETERS = 20_000


@functools.lru_cache(maxsize=64)
def _rows_query(table, key: str, columns: tuple, for_update: bool):
    """One statement per shape, built once (building a statement costs more than running it)."""
    query = select(*[table.c[name] for name in columns]).where(table.c[key].in_(bindparam("ids", expanding=True)))
    return query.with_for_update() if for_update else query


_HEAD_LOCKED = select(AUDIT_HEAD.c.seq, AUDIT_HEAD.c.hash).where(AUDIT_HEAD.c.id == 1).with_for_update()
_HEAD_MOVE = update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1).values(seq=bindparam("b_seq"), hash=bindparam("b_hash"))


@functools.lru_cache(maxsize=64)
def _insert(table):
    return insert(table)


@functools.lru_cache(maxsize=128)
def _update_statement(table, key: str, guard: str | None, names: tuple):
    where = [table.c[key] == bindparam("b_key")]
    if guard is not None:
        where.append(table.c[guard] == bindparam("b_guard"))
    return update(table).where(*where).values(**{name: bindparam(f"b_{name}") for name in names})


def _chunks(values: Iterable[str], size: int = IN_CHUNK) -> Iterable[list[str]]:
    values = list(dict.fromkeys(values))
    for start in range(0, len(values), size):
        yield values[start:start + size]


def audit_hash(seq: int, at: datetime, event: str, referral_id: str | None,
               message_id: str | None, detail: dict, prev_hash: str) -> str:
    document = {"seq": seq, "at": format_timestamp(at), "event": event, "referral_id": referral_id,
                "message_id": message_id, "detail": detail, "prev_hash": prev_hash}
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


class NodeRepository:
    def __init__(self, session: Session, direct: CompiledShapes | None = None):
        self.session = session
        # The hot statements on the driver's cursor (adapters/storage/direct.py for SQLite,
        # pg_direct.py for PostgreSQL); None: all of them through Core.
        self.direct = direct
        self._direct_connection = None

    # -- messages ------------------------------------------------------------------
    def message(self, message_id: str) -> Message | None:
        return self.session.scalar(select(Message).where(Message.message_id == message_id))

    def messages_for_referral(self, referral_id: str) -> Sequence[Message]:
        return self.session.scalars(
            select(Message).where(Message.referral_id == referral_id)
            .order_by(Message.sent_at, Message.id)).all()

    def inbound_messages(self, *, kind: str | None = None, status: str | None = None,
                         limit: int = 100) -> Sequence[Message]:
        query = select(Message).where(Message.direction == INBOUND)
        if kind:
            query = query.where(Message.kind == kind)
        if status:
            query = query.where(Message.status == status)
        return self.session.scalars(query.order_by(Message.id.desc()).limit(limit)).all()

    # -- inbox -------------------------------------------------------------------------
    def inbox_entry(self, message_id: str) -> InboxEntry | None:
        return self.session.get(InboxEntry, message_id)

    # -- outbox ------------------------------------------------------------------------
    def outbox_entry(self, message_id: str) -> OutboxEntry | None:
        return self.session.scalar(select(OutboxEntry).where(OutboxEntry.message_id == message_id))

    def outbox_entries(self, states: Iterable[str] | None = None) -> Sequence[OutboxEntry]:
        query = select(OutboxEntry)
        if states:
            query = query.where(OutboxEntry.state.in_(list(states)))
        return self.session.scalars(query.order_by(OutboxEntry.id)).all()

    # -- quarantine --------------------------------------------------------------------
    def quarantined(self, limit: int = 100) -> Sequence[QuarantineEntry]:
        return self.session.scalars(select(QuarantineEntry).order_by(QuarantineEntry.id.desc())
                                    .limit(limit)).all()

    # -- referrals ---------------------------------------------------------------------
    def referral(self, referral_id: str, *, for_update: bool = False) -> Referral | None:
        query = select(Referral).where(Referral.referral_id == referral_id)
        if for_update:
            query = query.with_for_update()
        return self.session.scalar(query)

    def referrals(self, limit: int = 100) -> Sequence[Referral]:
        return self.session.scalars(select(Referral).order_by(Referral.updated_at.desc()).limit(limit)).all()

    # -- bulk reads and writes of the batched paths (Core: no ORM objects) -----------------
    def _core(self, statement, parameters=None):
        """Run a Core statement on the transaction's connection, past the ORM's execution
        layer (which costs more than the statement itself for the small ones)."""
        return self.session.connection().execute(statement, parameters)

    def _driver(self):
        """What the direct statements run on in this transaction; one repository serves one
        transaction, so it is looked up once."""
        if self._direct_connection is None:
            self._direct_connection = self.direct.connection_of(self.session.connection())
        return self._direct_connection

    def _driver_write(self, sql: str, parameters: tuple) -> None:
        """A write the repository wrote for the driver, whose answer nobody reads: on
        PostgreSQL's direct path it goes with the transaction's next statement (or its
        COMMIT), which raises its error (adapters/storage/pg_direct.PgDirect.defer)."""
        if self.direct is not None:
            self.direct.defer(self._driver(), sql, parameters)
        else:
            self.session.connection().exec_driver_sql(sql, parameters)

    def _settle(self) -> None:
        """The writes deferred so far have run, their errors raised: before a savepoint whose
        errors the caller takes for its own work's."""
        if self.direct is not None:
            self.direct.settle(self._driver())

    def _driver_sql(self, sql: str, parameters: tuple) -> list | None:
        """A statement the repository wrote for the driver (``%s`` placeholders, PostgreSQL):
        its rows, or None."""
        if self.direct is not None:
            return self.direct.execute(self._driver(), sql, parameters)
        result = self.session.connection().exec_driver_sql(sql, parameters)
        return [tuple(row) for row in result] if result.returns_rows else None

    def _rows_by(self, table, key, ids: Iterable[str], columns, *, for_update: bool = False) -> dict[str, dict]:
        [found] = self._reads([(table, key, ids, columns, for_update)])
        return found

    def _reads(self, reads: list[tuple]) -> list[dict[str, dict]]:
        """Rows by ids of each ``(table, key, ids, columns, for_update)``, by key, in order; on
        PostgreSQL's direct path all in one round trip (row locks taken in this order)."""
        plans = []
        for index, (table, key, ids, columns, for_update) in enumerate(reads):
            if for_update:
                ids = sorted(set(ids))  # one lock order for every transaction
            plans += [(index, table, key, chunk, tuple(columns), for_update) for chunk in _chunks(ids)]
        if self.direct is not None:
            results = self.direct.rows_by_many(self._driver(), [plan[1:] for plan in plans])
        else:
            results = [[dict(row) for row in self._core(_rows_query(table, key, columns, for_update),
                                                        {"ids": chunk}).mappings()]
                       for _, table, key, chunk, columns, for_update in plans]
        found: list[dict[str, dict]] = [{} for _ in reads]
        for (index, _, key, *_), rows in zip(plans, results):
            for row in rows:
                found[index][row[key]] = row
        return found

    _INBOX_COLUMNS = ("message_id", "sha256", "receipt_message_id", "deliveries")
    _MESSAGE_COLUMNS = ("message_id", "direction", "kind", "sender", "recipient", "referral_id", "sha256", "status")
    _OUTBOX_COLUMNS = ("message_id", "state", "needs_receipt", "attempts", "last_published_at")
    _REFERRAL_COLUMNS = ("referral_id", "state", "reference")

    def inbox_rows(self, message_ids: Iterable[str]) -> dict[str, dict]:
        return self._rows_by(INBOX, "message_id", message_ids, self._INBOX_COLUMNS)

    def message_rows(self, message_ids: Iterable[str]) -> dict[str, dict]:
        return self._rows_by(MESSAGES, "message_id", message_ids, self._MESSAGE_COLUMNS)

    def inbox_and_message_rows(self, inbox_ids: Iterable[str],
                               message_ids: Iterable[str]) -> tuple[dict[str, dict], dict[str, dict]]:
        """``inbox_rows`` and ``message_rows`` together (one round trip on PostgreSQL)."""
        inbox, messages = self._reads([(INBOX, "message_id", inbox_ids, self._INBOX_COLUMNS, False),
                                       (MESSAGES, "message_id", message_ids, self._MESSAGE_COLUMNS, False)])
        return inbox, messages

    def outbox_rows(self, message_ids: Iterable[str], *, for_update: bool = False) -> dict[str, dict]:
        """With ``for_update``, the rows are locked: a state read here stays true until the
        commit (a relay recording a publication waits, then finds the receipt won)."""
        return self._rows_by(OUTBOX, "message_id", message_ids, self._OUTBOX_COLUMNS, for_update=for_update)

    def referral_rows(self, referral_ids: Iterable[str], *, for_update: bool = True) -> dict[str, dict]:
        return self._rows_by(REFERRALS, "referral_id", referral_ids, self._REFERRAL_COLUMNS, for_update=for_update)

    def outbox_and_referral_rows(self, message_ids: Iterable[str],
                                 referral_ids: Iterable[str]) -> tuple[dict[str, dict], dict[str, dict]]:
        """``outbox_rows`` and ``referral_rows``, both locked, the outbox rows first (one round
        trip on PostgreSQL)."""
        outbox, referrals = self._reads([(OUTBOX, "message_id", message_ids, self._OUTBOX_COLUMNS, True),
                                         (REFERRALS, "referral_id", referral_ids, self._REFERRAL_COLUMNS, True)])
        return outbox, referrals

    def control_request_rows(self, request_ids: Iterable[str]) -> dict[str, dict]:
        return self._rows_by(CONTROL_REQUESTS, "request_id", request_ids, ("request_id", "action", "result"))

    def due_rows(self, now: datetime, limit: int, *, resends: bool = True,
                 message_ids: Iterable[str] | None = None) -> list[dict]:
        """Outbox entries to publish now (oldest first) with their bytes: never published, and
        (with ``resends``) published and still unreceipted; only ``message_ids`` if given."""
        due = OUTBOX.c.state == PENDING
        if resends:
            due = or_(due, (OUTBOX.c.state == PUBLISHED) & OUTBOX.c.needs_receipt)
        query = (select(OUTBOX.c.message_id, OUTBOX.c.routing_key, OUTBOX.c.state, OUTBOX.c.attempts,
                        OUTBOX.c.needs_receipt, MESSAGES.c.raw, MESSAGES.c.referral_id, MESSAGES.c.kind,
                        MESSAGES.c.recipient)
                 .join(MESSAGES, MESSAGES.c.message_id == OUTBOX.c.message_id)
                 .where(due))
        if message_ids is None:
            query = query.where(OUTBOX.c.next_attempt_at <= now)
        else:  # those, now: never-published ones at once, resends only when due
            query = query.where(or_(OUTBOX.c.state == PENDING, OUTBOX.c.next_attempt_at <= now))
            ids = list(message_ids)
            if not ids:
                return []
            query = query.where(OUTBOX.c.message_id.in_(ids[:IN_CHUNK]))
        query = query.order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id).limit(limit)
        return [dict(row) for row in self._core(query).mappings()]

    # -- reconciliation (docs/protocol.md §20) ---------------------------------------------
    def window_messages(self, *, direction: str, peer: str, window_from: datetime | None, until: datetime,
                        excluded_kinds: Iterable[str], limit: int | None = None) -> list[tuple[datetime, str]]:
        """``(sent_at, message_id)`` of the messages sent to ``peer`` (OUTBOUND) or received
        from it (INBOUND) with ``window_from <= sent_at < until``, except ``excluded_kinds``,
        by sent_at (the caller puts them in protocol order); at most ``limit``."""
        party = MESSAGES.c.recipient if direction == OUTBOUND else MESSAGES.c.sender
        query = (select(MESSAGES.c.sent_at, MESSAGES.c.message_id)
                 .where(MESSAGES.c.direction == direction, party == peer, MESSAGES.c.sent_at < until,
                        MESSAGES.c.kind.not_in(sorted(excluded_kinds))))
        if window_from is not None:
            query = query.where(MESSAGES.c.sent_at >= window_from)
        query = query.order_by(MESSAGES.c.sent_at, MESSAGES.c.message_id)
        if limit is not None:
            query = query.limit(limit)
        return [(row.sent_at, row.message_id) for row in self._core(query)]

    def reconciliation_rows(self, summary_ids: Iterable[str], *, for_update: bool = False) -> dict[str, dict]:
        return self._rows_by(RECONCILIATIONS, "summary_message_id", summary_ids,
                             [c.name for c in RECONCILIATIONS.columns], for_update=for_update)

    def reconciliation(self, summary_id: str) -> Reconciliation | None:
        return self.session.get(Reconciliation, summary_id)

    def agreed_until(self, peer: str) -> datetime | None:
        """The last agreed point with ``peer``: the latest window end it answered in agreement."""
        return self._core(select(func.max(RECONCILIATIONS.c.window_until))
                          .where(RECONCILIATIONS.c.peer == peer, RECONCILIATIONS.c.agreed.is_(True))).scalar()

    def recipients_sent_to(self, excluded_kinds: Iterable[str]) -> list[str]:
        """Every agency this node has sent a message of a counted kind to."""
        return sorted(self._core(select(MESSAGES.c.recipient).distinct()
                                 .where(MESSAGES.c.direction == OUTBOUND,
                                        MESSAGES.c.kind.not_in(sorted(excluded_kinds)))).scalars())

    @property
    def _postgresql(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def _insert_many(self, table, rows: list[dict]) -> None:
        """Many rows in one statement on the driver: an executemany on SQLite (one C loop), a
        multi-row INSERT on PostgreSQL. A shape the direct statements do not take goes through
        Core, where the engine turns it into multi-row VALUES pages (store.make_engine: pg8000
        would send a statement a row)."""
        if not rows:
            return
        if self.direct is not None:
            try:
                self.direct.insert_many(self._driver(), table, rows)
                return
            except NotDirect:
                pass  # a shape it does not take: Core's way
        self._core(_insert(table), rows)

    def write(self, writes: Writes) -> None:
        """Everything one transaction decided, in a few statements; the audit events are
        chained in order under one lock of the chain's head."""
        new_rows = [(MESSAGES, writes.messages), (OUTBOX, writes.outbox), (INBOX, writes.inbox),
                    (QUARANTINE, writes.quarantine), (REFERRALS, list(writes.referrals_new.values()))]
        together = self._postgresql and self._insert_together_pg(new_rows, writes.control_requests)
        if not together:  # each table apart, the request ids below
            for table, rows in new_rows:
                self._insert_many(table, rows)
        self._update_many(REFERRALS, "referral_id", [(k, None, v) for k, v in writes.referrals_changed.items()])
        self._update_many(OUTBOX, "message_id", writes.outbox_updates, guard="state")
        self._update_many(MESSAGES, "message_id", [(k, None, v) for k, v in writes.message_updates.items()])
        self._update_many(INBOX, "message_id", [(k, None, {"deliveries": v}) for k, v in writes.inbox_deliveries.items()])
        self._insert_many(RECONCILIATIONS, writes.reconciliations)
        self._update_many(RECONCILIATIONS, "summary_message_id",
                          [(k, None, v) for k, v in writes.reconciliation_updates.items()])
        if writes.control_requests and not together:
            self._settle()
            try:
                with self.session.begin_nested():
                    self._insert_many(CONTROL_REQUESTS, writes.control_requests)
            except IntegrityError:
                raise DuplicateRequest("a request id was stored meanwhile") from None
        if writes.audit:
            self.append_audit_events(writes.audit)

    def _insert_together_pg(self, new_rows: list[tuple], control_requests: list[dict]) -> bool:
        """PostgreSQL: every new row and the calls' request ids in one statement (a
        data-modifying CTE per table, adapters/storage/pg_statements.py) instead of a round
        trip per table and three for the request ids' savepoint. A request id stored
        meanwhile by a concurrent transaction is left out by ON CONFLICT and raises
        DuplicateRequest (the caller rolls back and takes the calls again). False, with
        nothing written, when they do not fit in one statement: the caller writes them apart."""
        dialect = self.session.get_bind().dialect
        parts, params = [], []
        for index, (table, rows) in enumerate([*new_rows, (CONTROL_REQUESTS, control_requests)]):
            if not rows:
                continue
            written = pg_statements.insert_values(table, rows, dialect)
            if written is None:
                return False
            sql, values = written
            if table is CONTROL_REQUESTS:
                parts.append(f"requests AS ({sql} ON CONFLICT DO NOTHING RETURNING 1)")
            else:
                parts.append(f"new_{index} AS ({sql})")
            params += values
        if len(params) > PG_PARAMETERS:
            return False
        if not parts:
            return True
        if not control_requests:  # nothing to read back
            self._driver_write(f"WITH {', '.join(parts)} SELECT 0", tuple(params))
            return True
        [(stored,)] = self._driver_sql(f"WITH {', '.join(parts)} SELECT count(*) FROM requests", tuple(params))
        if stored != len(control_requests):
            raise DuplicateRequest("a request id was stored meanwhile")
        return True

    def _update_many(self, table, key: str, changes: list[tuple[str, str | None, dict]], *,
                     guard: str | None = None) -> None:
        """``(key value, expected value of the guard column or None, new columns)``: rows whose
        guard no longer holds are left alone. One statement per set of columns changed: an
        executemany on SQLite, ``UPDATE ... FROM (VALUES ...)`` on PostgreSQL."""
        groups: dict[tuple, list[tuple]] = {}
        for value, expected, columns in changes:
            names = tuple(sorted(columns))
            groups.setdefault(names, []).append((value, expected, *[columns[name] for name in names]))
        for names, rows in groups.items():
            if self._postgresql:
                self._update_from_values(table, key, guard, names, rows)
                continue
            params = [{"b_key": row[0], "b_guard": row[1], **{f"b_{n}": v for n, v in zip(names, row[2:])}}
                      for row in rows]
            self._execute_many(_update_statement(table, key, guard, names), params)

    def _execute_many(self, statement, params: list[dict]) -> None:
        if self.direct is not None:
            self.direct.execute_many(self._driver(), statement, params)
        else:
            self._core(statement, params)

    def _update_from_values(self, table, key: str, guard: str | None, names: tuple, rows: list[tuple]) -> None:
        """One ``UPDATE ... FROM (VALUES ...)`` per page of rows, written directly for the
        driver (compiling a statement of a new length each time would cost more than it saves).
        Values go through each column's own bind processing, None included (a JSON column's
        None is JSON null, as Core and SQLite's direct statements store it), and are cast to
        its type."""
        dialect = self.session.get_bind().dialect
        columns = [table.c[key], table.c[guard] if guard else table.c[key]] + [table.c[name] for name in names]
        row_sql, processors = pg_statements.cast_row(columns, dialect)
        aliases = ["b_key", "b_guard"] + [f"b_{name}" for name in names]
        assignments = ", ".join(f'"{name}" = v."b_{name}"' for name in names)
        condition = f't."{key}" = v.b_key' + (f' AND t."{guard}" = v.b_guard' if guard else "")
        size = max(1, PG_PARAMETERS // len(columns))
        for start in range(0, len(rows), size):
            page = rows[start:start + size]
            params = []
            for row in page:
                params.extend(v if p is None else p(v) for p, v in zip(processors, row))
            self._driver_write(
                f'UPDATE {table.name} AS t SET {assignments} FROM (VALUES {", ".join([row_sql] * len(page))}) '
                f'AS v({", ".join(aliases)}) WHERE {condition}', tuple(params))

    def publication_updates(self, updates: list[dict]) -> None:
        """Guarded updates of outbox rows after publishing: each dict has ``b_message_id``,
        ``b_expected`` (the state it was in) and the new columns."""
        self._update_many(OUTBOX, "message_id",
                          [(u["b_message_id"], u["b_expected"], {k: v for k, v in u.items() if not k.startswith("b_")})
                           for u in updates], guard="state")

    def message_statuses(self, statuses: dict[str, tuple[str, str]]) -> None:
        """``{message_id: (from status, to status)}``: guarded status updates."""
        self._update_many(MESSAGES, "message_id", [(k, old, {"status": new}) for k, (old, new) in statuses.items()
                                                   if old != new], guard="status")

    def take_lease(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``until``: True when it is
        ours (it was, it had expired, or nobody had it)."""
        taken = self._core(
            update(LEASES).where(LEASES.c.name == name, or_(LEASES.c.holder == holder, LEASES.c.expires_at <= now))
            .values(holder=holder, expires_at=until)).rowcount
        if taken:
            return True
        if self._core(select(LEASES.c.name).where(LEASES.c.name == name)).first() is not None:
            return False
        self._settle()
        try:
            with self.session.begin_nested():
                self._core(insert(LEASES).values(name=name, holder=holder, expires_at=until))
        except IntegrityError:
            return False
        return True

    def lease_holder(self, name: str) -> str | None:
        return self._core(select(LEASES.c.holder).where(LEASES.c.name == name)).scalar()

    def take_lease_from(self, name: str, previous: str, holder: str, until: datetime) -> bool:
        """Take the lease from ``previous`` (known dead), unless someone else took it meanwhile."""
        return bool(self._core(update(LEASES).where(LEASES.c.name == name, LEASES.c.holder == previous)
                               .values(holder=holder, expires_at=until)).rowcount)

    def release_lease(self, name: str, holder: str) -> None:
        """Expired for anyone, whatever their clock says."""
        self._core(update(LEASES).where(LEASES.c.name == name, LEASES.c.holder == holder)
                             .values(expires_at=LONG_AGO))

    def _locked_head(self) -> tuple[int, str]:
        row = self._head()
        if row is None:
            # A fresh database: make the head, racing writers included (only one insert wins;
            # every writer then waits for the lock on that one row).
            self._settle()
            try:
                with self.session.begin_nested():
                    self._core(insert(AUDIT_HEAD).values(id=1, seq=0, hash=GENESIS_HASH))
            except IntegrityError:
                pass
            row = self._head()
        return row["seq"], row["hash"]

    def _head(self) -> dict | None:
        if self.direct is not None:
            rows = self.direct.fetch(self._driver(), _HEAD_LOCKED)
            return rows[0] if rows else None
        row = self._core(_HEAD_LOCKED).mappings().first()
        return dict(row) if row is not None else None

    def append_audit_events(self, events: list[AuditEvent]) -> list[dict]:
        seq, previous = self._locked_head()
        rows = []
        for event in events:
            seq += 1
            digest = audit_hash(seq, event.at, event.event, event.referral_id, event.message_id, event.detail,
                                previous)
            rows.append({"seq": seq, "at": event.at, "event": event.event, "referral_id": event.referral_id,
                         "message_id": event.message_id, "detail": event.detail, "prev_hash": previous,
                         "hash": digest})
            previous = digest
        written = pg_statements.insert_values(AUDIT, rows, self.session.get_bind().dialect) \
            if self._postgresql else None
        if written is not None and len(written[1]) <= PG_PARAMETERS:
            # The entries and the head's move in one round trip.
            sql, params = written
            self._driver_write(
                f'WITH entries AS ({sql}) UPDATE audit_head SET seq = %s::INTEGER, hash = %s::VARCHAR(64) WHERE id = 1',
                (*params, seq, previous))
        else:
            self._insert_many(AUDIT, rows)
            self._execute_many(_HEAD_MOVE, [{"b_seq": seq, "b_hash": previous}])
        return rows

    # -- audit log ---------------------------------------------------------------------
    def append_audit(self, at: datetime, event: str, *, referral_id: str | None = None,
                     message_id: str | None = None, detail: dict | None = None) -> dict:
        self.session.flush()  # ORM changes first: the chain records them in order
        [row] = self.append_audit_events([AuditEvent(at, event, referral_id, message_id, detail or {})])
        return row

    def audit_entries(self, referral_id: str | None = None) -> Sequence[AuditEntry]:
        query = select(AuditEntry)
        if referral_id:
            query = query.where(AuditEntry.referral_id == referral_id)
        return self.session.scalars(query.order_by(AuditEntry.seq)).all()

    def verify_audit_chain(self) -> int:
        """Recompute every hash; return the number of entries, or raise AuditChainBroken."""
        previous = GENESIS_HASH
        count = 0
        for entry in self.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)):
            count += 1
            if entry.seq != count:
                raise AuditChainBroken(f"audit entry {count} is missing (found seq {entry.seq})")
            if entry.prev_hash != previous:
                raise AuditChainBroken(f"audit entry {entry.seq} does not follow entry {entry.seq - 1}")
            expected = audit_hash(entry.seq, entry.at, entry.event, entry.referral_id,
                                  entry.message_id, entry.detail, entry.prev_hash)
            if entry.hash != expected:
                raise AuditChainBroken(f"audit entry {entry.seq} has been altered")
            previous = entry.hash
        head = self.session.get(AuditHead, 1)
        if head is not None and (head.seq != count or head.hash != previous):
            raise AuditChainBroken("audit log has been truncated")
        return count
