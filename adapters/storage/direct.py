"""The hot statements of the batched paths, on SQLite, run on the driver's cursor.

Through SQLAlchemy Core each of them costs 80-90 µs of Python (an execution context, its
parameter and result objects) against about 3 µs on sqlite3's own cursor, and a single call's
transaction runs 7-11 of them (bench/README.md, fifth session). Here SQLAlchemy still writes
the SQL: each statement is compiled once per shape for the dialect, exactly as Core would
compile it. Values go through each column's own bind processing (``TypeEngine.bind_processor``,
as ``NodeRepository._update_from_values`` does on PostgreSQL), Python-side scalar defaults are
filled in as Core fills them, results go through each column's result processing, and driver
errors come out as SQLAlchemy's (an ``IntegrityError`` stays an ``IntegrityError``).

PostgreSQL has its own (adapters/storage/pg_direct.py): the same reads, on pg8000's cursor.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any, Callable, Iterable

from sqlalchemy import Table, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

Processor = Callable[[Any], Any] | None


class NotDirect(Exception):
    """A statement of a shape this module does not run (the caller uses Core instead)."""


def _apply(processors: tuple[Processor, ...], values: Iterable) -> tuple:
    return tuple(value if process is None else process(value) for process, value in zip(processors, values))


def _remembered(compile_shape: Callable, maxsize: int) -> Callable:
    """``compile_shape`` cached per shape, its refusals too (a shape refused once goes to Core
    at once, not compiled again for every transaction)."""
    @functools.lru_cache(maxsize=maxsize)
    def outcome(*shape):
        try:
            return True, compile_shape(*shape)
        except NotDirect as refusal:
            return False, refusal

    def compiled(*shape):
        taken, value = outcome(*shape)
        if not taken:
            raise NotDirect(*value.args)
        return value
    return compiled


def scalar_defaults(compiled) -> dict[str, Any] | None:
    """The Python-side defaults Core fills in for the columns an INSERT leaves out, by column
    key; None when one is computed per row (callers then leave the insert to Core)."""
    defaults = {}
    for column in compiled.insert_prefetch:
        if column.default is None or not column.default.is_scalar:
            return None
        defaults[column.key] = column.default.arg
    return defaults


def _processed(results: tuple, rows) -> list[dict]:
    """Rows as dicts by column name, each value through its column's result processing
    (``results``: ``(name, processor)`` in the statement's order)."""
    return [{name: value if process is None else process(value)
             for (name, process), value in zip(results, row)} for row in rows]


def _keys(shape, ids: list[str]) -> tuple:
    """The parameters of a select by ids (``CompiledShapes._compile_select``'s shape)."""
    key_processor = shape[1]
    return tuple(ids) if key_processor is None else tuple(key_processor(i) for i in ids)


def _run(call: Callable, sql: str, parameters):
    try:
        return call(sql, parameters)
    except sqlite3.Error as error:
        raise DBAPIError.instance(sql, parameters, error, sqlite3.Error) from error


class CompiledShapes:
    """What the direct statements of both databases share: SQLAlchemy writes each shape's SQL
    once for the dialect, with each parameter's bind processing and each result column's
    processing. A subclass names its dialect and placeholder and runs the SQL on its driver
    (``_rows``)."""

    DIALECT = ""
    MARK = ""

    def __init__(self, dialect: Dialect):
        if dialect.name != self.DIALECT:
            raise ValueError(f"{type(self).__name__} is for {self.DIALECT}, not {dialect.name}")
        self.dialect = dialect
        # Per instance (not functools.lru_cache on the methods, which would keep every
        # instance alive); keyed by the statements and tables, which live as long.
        self._select = _remembered(self._compile_select, 256)
        self._bound = _remembered(self._compile_bound, 128)
        self._results = _remembered(self._compile_results, 128)

    def connection_of(self, connection):
        """What ``_rows`` runs on, from the transaction's SQLAlchemy connection."""
        raise NotImplementedError

    def _rows(self, connection, sql: str, parameters) -> list:
        """The rows ``sql`` gives (none for a statement without)."""
        raise NotImplementedError

    def settle(self, connection) -> None:
        """Every statement written and not yet answered has run, its error raised (a driver
        that defers none has nothing to do)."""

    # The dialect's own form of a type (SQLite's DATETIME writes and reads its text form; a
    # TypeDecorator wraps that), as Core processes it.
    def _binder(self, type_) -> Processor:
        return type_.dialect_impl(self.dialect).bind_processor(self.dialect)

    def _reader(self, type_) -> Processor:
        return type_.dialect_impl(self.dialect).result_processor(self.dialect, None)

    # -- selects by ids -------------------------------------------------------------------
    def rows_by(self, connection, table: Table, key: str, ids: list[str], columns: tuple, *,
                for_update: bool = False) -> list[dict]:
        """``SELECT columns FROM table WHERE key IN (ids)`` as dicts; ``for_update`` locks
        them where the database has row locks (SQLite has none: its writer holds the whole
        database, BEGIN IMMEDIATE)."""
        shape = self._select(table, key, columns, len(ids), for_update)
        return self._select_rows(shape, self._rows(connection, shape[0], _keys(shape, ids)))

    def rows_by_many(self, connection, reads: list[tuple]) -> list[list[dict]]:
        """``rows_by`` of each ``(table, key, ids, columns, for_update)``, in order."""
        return [self.rows_by(connection, table, key, ids, columns, for_update=for_update)
                for table, key, ids, columns, for_update in reads]

    def _select_rows(self, shape, rows) -> list[dict]:
        return _processed(shape[2], rows)

    def _compile_select(self, table: Table, key: str, columns: tuple, count: int, for_update: bool):
        query = select(*[table.c[name] for name in columns])
        base = query.compile(dialect=self.dialect).string
        quoted = self.dialect.identifier_preparer.quote
        sql = f"{base} \nWHERE {quoted(table.name)}.{quoted(key)} IN ({', '.join([self.MARK] * count)})"
        if for_update:
            # The dialect's own locking clause (SQLite's compiler writes none).
            sql += self.dialect.statement_compiler(self.dialect, None).for_update_clause(query.with_for_update())
        results = tuple((name, self._reader(table.c[name].type)) for name in columns)
        return sql, self._binder(table.c[key].type), results

    # -- statements of bound parameters (UPDATEs, the audit head) ---------------------------
    def fetch(self, connection, statement, parameters: dict | None = None) -> list[dict]:
        """The rows of a SELECT of bound parameters, as dicts by column name."""
        sql, names, processors, constants = self._bound(statement)
        values = _apply(processors, [constants[n] if n in constants else parameters[n] for n in names])
        return _processed(self._results(statement), self._rows(connection, sql, values))

    def _compile_bound(self, statement) -> tuple[str, tuple, tuple, dict]:
        """SQL, parameter names in order, their bind processing (from the types SQLAlchemy gave
        them: a column's, when compared with or assigned to one), and the values of the
        literals the statement holds (``id == 1``)."""
        compiled = statement.compile(dialect=self.dialect)
        names = tuple(compiled.positiontup or ())
        if any(bind.expanding for bind in compiled.binds.values()):
            raise NotDirect("expanding parameters")
        constants = {name: bind.value for name, bind in compiled.binds.items()
                     if not bind.required and bind.callable is None and name in names and bind.value is not None}
        processors = tuple(self._binder(compiled.binds[name].type) for name in names)
        return compiled.string, names, processors, constants

    def _compile_results(self, statement) -> tuple:
        return tuple((column.key, self._reader(column.type)) for column in statement.selected_columns)


class DirectStatements(CompiledShapes):
    """One per SQLite engine; shapes compiled on first use. Runs on the transaction's own
    sqlite3 connection (BEGIN IMMEDIATE already issued on it)."""

    DIALECT = "sqlite"
    MARK = "?"

    def __init__(self, dialect: Dialect):
        super().__init__(dialect)
        self._insert = _remembered(self._compile_insert, 128)

    def connection_of(self, connection) -> sqlite3.Connection:
        return connection.connection.dbapi_connection

    def _rows(self, connection: sqlite3.Connection, sql: str, parameters) -> list:
        return _run(connection.execute, sql, parameters).fetchall()

    # -- inserts ---------------------------------------------------------------------------
    def insert_many(self, connection: sqlite3.Connection, table: Table, rows: list[dict]) -> None:
        """``INSERT`` of ``rows`` (all with the same keys) in one executemany."""
        first = rows[0].keys()
        if any(row.keys() != first for row in rows):
            raise NotDirect("rows with different keys")
        names = tuple(first)
        sql, processors, slots = self._insert(table, names)
        values = [_apply(processors, [row[key] if given else value for key, given, value in slots]) for row in rows]
        _run(connection.executemany, sql, values)

    def _compile_insert(self, table: Table, names: tuple) -> tuple[str, tuple, tuple]:
        """SQL, each parameter's bind processing, and its slot in the compiled order
        (``(key, given, default)``: a row's value when given, else the column's scalar default)."""
        unknown = [name for name in names if name not in table.c]
        if unknown:
            raise NotDirect(f"not columns of {table.name}: {unknown}")
        compiled = insert(table).compile(dialect=self.dialect, column_keys=list(names))
        defaults = scalar_defaults(compiled)
        if defaults is None:
            raise NotDirect(f"{table.name} has a default computed per row")
        order = list(compiled.positiontup or [])  # the table's column order, not the rows'
        if sorted(order) != sorted([*names, *defaults]):
            raise NotDirect(f"unexpected parameters {order} for {[*names, *defaults]}")
        processors = tuple(self._binder(table.c[key].type) for key in order)
        slots = tuple((key, key not in defaults, defaults.get(key)) for key in order)
        return compiled.string, processors, slots

    def execute_many(self, connection: sqlite3.Connection, statement, parameters: list[dict]) -> None:
        """``statement`` once for each parameter set, in one executemany."""
        sql, names, processors, constants = self._bound(statement)
        _run(connection.executemany, sql, [_apply(processors, [p[n] if n not in constants else constants[n]
                                                                for n in names]) for p in parameters])
