"""Engine set-up and transactions. One Store per node database."""

from __future__ import annotations

import itertools
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import eventlet
import eventlet.patcher
from eventlet import tpool
from eventlet.semaphore import Semaphore
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from . import migrations
from .direct import DirectStatements
from .pg_direct import PgDirect
from .repository import PG_PARAMETERS, NodeRepository


SQLITE_CACHE_KIB = 32 * 1024


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Greenthreads look like threads to sqlite3: allow a pooled connection to move between
        # them (the pool hands each to one user at a time).
        # LIFO: the connection used last (its page cache warm) is taken again.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               poolclass=QueuePool, pool_size=5, max_overflow=10, pool_use_lifo=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets the CLI read while a node writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=FULL")
            # The indexes of a large history stay in memory (SQLite's default is 2 MiB).
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cursor.close()
            # Take the write lock at BEGIN so concurrent writers queue instead of deadlocking.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        if _green():
            # The commit waits for fsync; sqlite3 would hold the whole process (every
            # greenthread: RPC, publishing, confirms) meanwhile. Wait in an OS thread instead.
            commit = engine.dialect.do_commit
            engine.dialect.do_commit = lambda dbapi_connection: tpool.execute(commit, dbapi_connection)
        return engine
    _memoize_pg8000_paramstyle()
    parsed, max_prepared = _statements_kept(parsed)
    engine = create_engine(parsed, pool_size=10, max_overflow=10, insertmanyvalues_page_size=500)
    _ping_when_idle(engine)

    @event.listens_for(engine, "do_connect")
    def _one_trip(_dialect, _record, cargs, cparams):
        # pg8000's own connection waits for three answers per statement (adapters/storage/pg_wire.py).
        from .pg_wire import OneTripConnection
        return OneTripConnection(*cargs, max_prepared=max_prepared, **cparams)

    # Batched inserts as multi-row VALUES pages (pg8000 would send one statement per row).
    engine.dialect.use_insertmanyvalues_wo_returning = True

    @event.listens_for(engine, "connect")
    def _no_delay(dbapi_connection, _record):
        # pg8000 leaves Nagle's algorithm on: a large statement's last small segment then waits
        # for the server's delayed ACK (tens of ms a statement on loopback).
        sock = getattr(dbapi_connection, "_usock", None)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    return engine


# The PostgreSQL URL's query parameter for how many statements a connection keeps prepared
# (adapters/storage/pg_wire.py); 0 for a pooler in transaction mode. The name and meaning are
# those of SQLAlchemy's asyncpg dialect, which operators set for the same reason.
STATEMENTS_KEPT_PARAMETER = "prepared_statement_cache_size"


def _statements_kept(parsed):
    """The URL without STATEMENTS_KEPT_PARAMETER (pg8000 would refuse it) and its value."""
    from .pg_wire import MAX_PREPARED
    if STATEMENTS_KEPT_PARAMETER not in parsed.query:
        return parsed, MAX_PREPARED
    value = parsed.query[STATEMENTS_KEPT_PARAMETER]
    try:
        kept = int(value)
        if kept < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"the database URL's {STATEMENTS_KEPT_PARAMETER} must be a whole number, 0 or more "
                         f"(0 for a pooler in transaction mode), not {value!r}") from None
    return parsed.difference_update_query([STATEMENTS_KEPT_PARAMETER]), kept


# A pooled PostgreSQL connection is pinged before use only after this long unused.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for connections that have been idle: it pings on every
    checkout, a round trip of its own for every transaction (a sent clue's transaction makes
    five others). A connection back in use within PING_AFTER_IDLE_SECONDS is taken as it is;
    one that was broken meanwhile (the server restarted) fails that transaction, and
    SQLAlchemy then discards every connection the pool held (a disconnect invalidates the
    pool), so the next transaction gets a fresh one. An idle one is pinged, and replaced when
    the ping fails (DisconnectionError: the pool checks out another)."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_connection, record):
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"a pooled connection did not answer: {error}") from error


def _memoize_pg8000_paramstyle() -> None:
    """pg8000 rewrites every statement's text (``%s`` to ``$1``) character by character in
    Python on every execution; for the multi-row statements of the batched paths that costs
    more than the database does. The rewritten text depends only on the text (for the
    ``format`` style SQLAlchemy uses, the values pass through unchanged), so it is kept."""
    try:
        import pg8000.legacy as legacy
    except ImportError:  # pragma: no cover - SQLite only
        return
    original = legacy.convert_paramstyle
    if getattr(original, "memoized", False):
        return
    cache: dict[str, str] = {}

    def convert_paramstyle(style, query, args):
        if style != "format":
            return original(style, query, args)
        statement = cache.get(query)
        if statement is None:
            statement = _plain_format_to_numeric(query)
            if statement is None:
                statement, _ = original(style, query, args)
            if len(cache) >= 2048:
                cache.clear()
            cache[query] = statement
        return statement, args
    convert_paramstyle.memoized = True
    legacy.convert_paramstyle = convert_paramstyle


_FORMAT_MARKS = re.compile(r"%%|%s")
# Where pg8000's scanner enters strings, comments or dollar quotes.
_NOT_PLAIN = re.compile(r"['$-]|/\*")


def _plain_format_to_numeric(query: str) -> str | None:
    """pg8000's rewrite of a statement without strings, comments or dollar quotes, in one
    pass over its placeholders instead of a loop over its characters (a batch's multi-row
    VALUES statement has a new text for each number of rows). None for any other statement, for a
    ``%`` inside a quoted name, or a ``%`` pg8000 refuses: its own scanner takes those."""
    if _NOT_PLAIN.search(query) or "%" in _FORMAT_MARKS.sub("", query):
        return None
    names = query.split('"')  # the odd pieces are inside quoted names, copied as they are
    if len(names) % 2 == 0 or any("%" in name for name in names[1::2]):
        return None
    if "%%" not in query:  # the common case: placeholders only
        pieces = query.split("%s")
        numbered = [pieces[0]]
        for number, piece in enumerate(pieces[1:], 1):
            numbered += ("$", str(number), piece)
        return "".join(numbered)
    numbers = itertools.count(1)
    return _FORMAT_MARKS.sub(lambda mark: "%" if mark.group() == "%%" else f"${next(numbers)}", query)


def _green() -> bool:
    """Under eventlet (a running node), not in a plain process (the CLI)."""
    return eventlet.patcher.is_monkey_patched("thread")


class _WriterTurn:
    """SQLite takes one writer at a time (every transaction here begins IMMEDIATE). Under
    eventlet a second writer would wait inside sqlite3's busy handler, holding the whole
    process; here it waits its turn as a greenthread. Re-entrant for the greenthread that
    holds it."""

    def __init__(self, timeout: float = 30.0):
        self._semaphore = Semaphore(1)
        self._holder = None
        self._depth = 0
        self._timeout = timeout

    @contextmanager
    def __call__(self) -> Iterator[None]:
        me = eventlet.getcurrent()
        if self._holder is me:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        if not self._semaphore.acquire(timeout=self._timeout):
            raise TimeoutError(f"the database stayed locked by another writer for {self._timeout:.0f} s")
        self._holder, self._depth = me, 1
        try:
            yield
        finally:
            self._holder, self._depth = None, 0
            self._semaphore.release()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _direct_statements(dialect):
    """The hot statements on the driver's cursor, for the databases that have them."""
    if dialect.name == "sqlite":
        return DirectStatements(dialect)
    if dialect.name == "postgresql" and dialect.driver == "pg8000":
        return PgDirect(dialect, PG_PARAMETERS)
    return None


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._turn = _WriterTurn() if self.engine.dialect.name == "sqlite" and _green() else _nothing
        self._direct = _direct_statements(self.engine.dialect)

    def create_schema(self, *, office: bool = False) -> None:
        """Bring the database to this release's schema with the migrations (the office's
        tables too if ``office``): a new database is created, an older one upgraded."""
        migrations.upgrade(self.engine, office=office)

    def ensure_schema(self, name: str, *, office: bool = False) -> None:
        """Refuse a database behind this release (migrations.DatabaseBehind, one line naming
        the command to run); a new, empty one is created at the current schema."""
        migrations.ensure_current(self.engine, name, office=office)

    @contextmanager
    def transaction(self) -> Iterator[NodeRepository]:
        """One database transaction: committed on success, rolled back on any error."""
        with self._turn():
            session: Session = self._sessions()
            try:
                with session.begin():
                    yield NodeRepository(session, self._direct)
            finally:
                session.close()

    def dispose(self) -> None:
        self.engine.dispose()
