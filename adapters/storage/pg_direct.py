"""The hot statements of the batched paths, on PostgreSQL, run on pg8000's cursor.

As on SQLite (adapters/storage/direct.py): through SQLAlchemy Core each statement costs an
execution context, its parameter and result objects and the session's connection lookup, and
a single call's transactions run 4 to 8 of them; at half the single-call maximum that was
about 8% of each node's CPU (bench/README.md, eleventh session). SQLAlchemy still writes the
SQL, once per shape, values go through each column's bind processing and results through
its result processing. The multi-row statements the repository writes itself (its new rows,
its guarded updates, the audit chain) run here too, and those whose answer nobody reads are
deferred: written at once, they go with the transaction's next statement or its COMMIT
(``defer``; adapters/storage/pg_wire.py).

A driver error goes through the SQLAlchemy connection's own handling
(``Connection._handle_dbapi_exception``, what Core calls): it comes out as SQLAlchemy's
exception (an ``IntegrityError`` stays one), and a connection found broken is invalidated with
the pool's other connections, exactly as when Core ran the statement
(tests/integration/test_pg_direct.py).
"""

from __future__ import annotations

from typing import Any

import pg8000.legacy
from sqlalchemy import Table
from sqlalchemy.engine import Connection

from . import pg_statements
from .direct import CompiledShapes, NotDirect, _apply, _keys


class PgDirect(CompiledShapes):
    """One per PostgreSQL engine; runs on the transaction's SQLAlchemy connection's pg8000
    connection (pg8000 begins the transaction with the first statement)."""

    DIALECT = "postgresql"
    MARK = "%s"

    def __init__(self, dialect, parameter_limit: int):
        super().__init__(dialect)
        self.parameter_limit = parameter_limit

    def connection_of(self, connection: Connection) -> Connection:
        return connection  # errors go through it (see the module's docstring)

    def _rows(self, connection: Connection, sql: str, parameters) -> list:
        return self.execute(connection, sql, parameters) or []

    def rows_by_many(self, connection: Connection, reads: list[tuple]) -> list[list[dict]]:
        """``rows_by`` of each ``(table, key, ids, columns, for_update)``, in order, in one
        round trip: every read but the last deferred to go with it (the server runs them in
        this order, so row locks are taken in it)."""
        shapes = [(self._select(table, key, columns, len(ids), for_update), ids)
                  for table, key, ids, columns, for_update in reads]
        if not shapes:
            return []
        contexts = [self.defer(connection, shape[0], _keys(shape, ids)) for shape, ids in shapes[:-1]]
        last_shape, last_ids = shapes[-1]
        last_rows = self._rows(connection, last_shape[0], _keys(last_shape, last_ids))
        return [*(self._select_rows(shape, context.rows or []) for (shape, _), context in zip(shapes, contexts)),
                self._select_rows(last_shape, last_rows)]

    def execute(self, connection: Connection, sql: str, parameters) -> list | None:
        """``sql`` (``%s`` placeholders) with ``parameters`` as they go to the driver; its
        rows, or None for a statement that gives none."""
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(sql, parameters)
            return cursor.fetchall() if cursor.description is not None else None
        except Exception as error:
            connection._handle_dbapi_exception(error, sql, parameters, cursor, None)  # raises

    def defer(self, connection: Connection, sql: str, parameters):
        """``sql`` written now, run by the server before the next statement, which it goes
        with (pg_wire.OneTripConnection.defer, the engine's connections: store.make_engine);
        its error is raised by that statement, the transaction's COMMIT included. The
        context its rows arrive in."""
        try:
            statement, values = pg8000.legacy.convert_paramstyle("format", sql, parameters)
            return connection.connection.dbapi_connection.defer(statement, values)
        except Exception as error:
            connection._handle_dbapi_exception(error, sql, parameters, None, None)  # raises

    def settle(self, connection: Connection) -> None:
        """Every deferred statement's answer now; the first error raised."""
        dbapi = connection.connection.dbapi_connection
        if dbapi._deferred:
            try:
                dbapi.settle_deferred()
            except Exception as error:
                connection._handle_dbapi_exception(error, "(deferred statements)", (), None, None)  # raises

    def insert_many(self, connection: Connection, table: Table, rows: list[dict]) -> None:
        """``rows`` (all with the same keys) in one multi-row INSERT."""
        written = pg_statements.insert_values(table, rows, self.dialect)
        if written is None:
            raise NotDirect(f"a shape of {table.name} pg_statements does not write")
        sql, params = written
        if len(params) > self.parameter_limit:
            raise NotDirect(f"{len(params)} parameters in one statement")
        self.execute(connection, sql, tuple(params))

    def execute_many(self, connection: Connection, statement, parameters: list[dict]) -> None:
        """``statement`` once for each parameter set."""
        sql, names, processors, constants = self._bound(statement)
        for given in parameters:
            values: list[Any] = [given[n] if n not in constants else constants[n] for n in names]
            self.execute(connection, sql, _apply(processors, values))
