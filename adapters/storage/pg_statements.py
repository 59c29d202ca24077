"""Multi-row INSERTs written for PostgreSQL, to be put together into one statement.

A transaction's new rows go to several tables (a sent clue: messages, outbox, referrals, the
call's request id, the audit chain), and each statement is a round trip to the server: on a
busy machine each one waits for the server process to be scheduled, and the node's batcher
waits meanwhile. PostgreSQL runs data-modifying CTEs of one statement together, foreign keys
between them included (checked at the end of the statement), so the repository sends them
as one (``NodeRepository.write``).

Values go through each column's own bind processing and are cast to the column's type, as
SQLAlchemy's pg8000 dialect writes them; columns a row leaves out get their Python-side
scalar defaults, as Core fills them in. A shape this does not take (a default computed per
row, an unknown column) gives None, and the caller uses Core.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect

from .direct import scalar_defaults


@functools.lru_cache(maxsize=256)
def _shape(table: Table, names: tuple, dialect: Dialect):
    if any(name not in table.c for name in names):
        return None
    defaults = scalar_defaults(insert(table).compile(dialect=dialect, column_keys=list(names)))
    if defaults is None:
        return None
    keys = [*names, *defaults]
    columns = [table.c[key] for key in keys]
    quote = dialect.identifier_preparer.quote
    into = f'{quote(table.name)} ({", ".join(quote(column.name) for column in columns)})'
    row, processors = cast_row(columns, dialect)
    slots = tuple((key, key not in defaults, defaults.get(key)) for key in keys)
    return into, row, processors, slots


def cast_row(columns, dialect: Dialect) -> tuple[str, tuple]:
    """``(%s::type, ...)`` for ``columns``, and each one's bind processing."""
    row = "(" + ", ".join(f"%s::{column.type.compile(dialect=dialect)}" for column in columns) + ")"
    return row, tuple(column.type.bind_processor(dialect) for column in columns)


def insert_values(table: Table, rows: list[dict], dialect: Dialect) -> tuple[str, list[Any]] | None:
    """``INSERT INTO table (...) VALUES (...), ...`` of ``rows`` (all with the same keys) and
    its parameters in order; None for a shape Core must write (or no rows)."""
    if not rows:
        return None
    first = rows[0].keys()
    if any(row.keys() != first for row in rows):
        return None
    shape = _shape(table, tuple(first), dialect)
    if shape is None:
        return None
    into, row_sql, processors, slots = shape
    params: list[Any] = []
    for row in rows:
        # Every value through its processor, None too: a JSON column stores None as JSON
        # null, exactly as Core does.
        params.extend(value if process is None else process(value)
                      for process, value in zip(processors, [row[key] if given else default
                                                             for key, given, default in slots]))
    return f"INSERT INTO {into} VALUES {', '.join([row_sql] * len(rows))}", params
