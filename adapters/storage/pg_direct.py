"""The hot statements of the batched paths, on PostgreSQL, run on pg8000's cursor.

As on SQLite (adapters/storage/direct.py): through SQLAlchemy Core each statement costs an
execution context, its parameter and result objects and the session's connection lookup, and
a single call's transactions run 4 to 8 of them; at half the single-call maximum that was
about 8% of each node's CPU (bench/README.md, eleventh session). SQLAlchemy still writes the
SQL, once per shape, values go through each column's bind processing and results through
its result processing. The multi-row statements the repository writes itself (its new rows,
its guarded updates, the audit chain) run here too.

A driver error goes through the SQLAlchemy connection's own handling
(``Connection._handle_dbapi_exception``, what Core calls): it comes out as SQLAlchemy's
exception (an ``IntegrityError`` stays one), and a connection found broken is invalidated with
the pool's other connections, exactly as when Core ran the statement
(tests/integration/test_pg_direct.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection

from . import pg_statements
from .direct import CompiledShapes, NotDirect, _apply


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

    def execute(self, connection: Connection, sql: str, parameters) -> list | None:
        """``sql`` (``%s`` placeholders) with ``parameters`` as they go to the driver; its
        rows, or None for a statement that gives none."""
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(sql, parameters)
            return cursor.fetchall() if cursor.description is not None else None
        except Exception as error:
            connection._handle_dbapi_exception(error, sql, parameters, cursor, None)  # raises

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
