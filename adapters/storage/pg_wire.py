"""pg8000's connection with one round trip per statement, and the statements it runs again
kept prepared on the server.

pg8000 (1.31) sends a statement with parameters in three exchanges, each waiting for the
server's answer: Parse, then Describe, then Bind and Execute, each ended by its own Sync. Nothing
it sends depends on those answers (every parameter and result goes as text), so here the
messages are sent together (one flush of pg8000's buffer) and the answers are read in one
pass: the same messages, in the same order, with one Sync. ``commit`` and ``rollback`` are
such statements too. The ``begin transaction`` that pg8000 sends before a transaction's first
statement waits in the buffer and goes with that statement, its answer read first.

A node runs the same few statement texts over and over (a batch of one call writes the same
multi-row statement each time), and the server parsed and analysed each anew. A text with
parameters run PREPARE_AFTER times on a connection becomes a named prepared statement there:
later runs send only Bind and Execute. At most MAX_PREPARED per connection (the least recently
used is closed), none longer than MAX_PREPARED_TEXT. A kept statement whose run fails is
closed and made again at its next run, so a schema changed under it (``cached plan must not
change result type``) fails one transaction; statements the session lost (``DEALLOCATE ALL``)
are all forgotten at the first that is missing. So the connections must be the server's own
sessions: a pooler in transaction mode in between would hand the names to sessions that never
prepared them (docs/architecture.md section 10).

An error stops the server at the failing message and it skips to the Sync; the error is raised
as before (tests/integration/test_pg_wire.py)."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import pg8000.legacy
from pg8000.converters import make_params
from pg8000.core import (BIND, CLOSE, DESCRIBE, EXECUTE_MSG, IN_TRANSACTION, NULL_BYTE, PARSE, QUERY, STATEMENT,
                         SYNC_MSG, Context, DatabaseError, H_pack, _flush, _write, i_pack)

BEGIN = "begin transaction"  # what pg8000's cursors send before a transaction's first statement
PREPARE_AFTER = 2             # runs of a text on a connection before it is kept prepared there
MAX_PREPARED = 64             # statements kept per connection
MAX_PREPARED_TEXT = 32_768    # characters: longer texts (large batches) are not kept
_MISSING_STATEMENT = "26000"  # SQLSTATE invalid_sql_statement_name


class OneTripConnection(pg8000.legacy.Connection):
    """pg8000's DB-API connection (the one SQLAlchemy's pg8000 dialect makes), with each
    statement in one round trip, a transaction's BEGIN sent with its first statement, and
    the statements it runs again kept prepared."""

    _begin_pending: Context | None = None

    def __init__(self, *args, **kwargs):
        self._kept: OrderedDict[str, tuple[bytes, list | None, list]] = OrderedDict()  # text -> name, result
        self._runs: dict[str, int] = {}
        self._names = itertools.count(1)
        self._to_close: list[bytes] = []
        super().__init__(*args, **kwargs)

    def execute_unnamed(self, statement, vals=(), oids=(), stream=None):
        if vals and stream is None and not oids and len(statement) <= MAX_PREPARED_TEXT:
            kept = self._kept.get(statement)
            if kept is not None:
                return self._run_kept(statement, kept, vals)
            runs = self._runs.get(statement, 0) + 1
            if runs >= PREPARE_AFTER:
                return self._prepare_and_run(statement, vals)
            if len(self._runs) >= 8 * MAX_PREPARED:
                self._runs.clear()
            self._runs[statement] = runs
        context = Context(statement, stream=stream)
        bind = self._bind_body(NULL_BYTE, vals)  # before anything is written: it may raise
        self._send_closes()
        self._send_message(PARSE, _parse_body(NULL_BYTE, statement.encode(self._client_encoding), oids))
        self._send_message(DESCRIBE, STATEMENT + NULL_BYTE)
        self._send_bind_execute_sync(bind)
        self.handle_messages(context)
        return context

    def _prepare_and_run(self, statement, vals):
        name = f"cluebus_{next(self._names)}".encode("ascii") + NULL_BYTE
        context = Context(statement)
        bind = self._bind_body(name, vals)
        self._send_closes()
        self._send_message(PARSE, _parse_body(name, statement.encode(self._client_encoding)))
        self._send_message(DESCRIBE, STATEMENT + name)
        self._send_bind_execute_sync(bind)
        try:
            self.handle_messages(context)
        except Exception:
            self._to_close.append(name)  # made or not: closing a missing statement is no error
            raise
        self._runs.pop(statement, None)
        self._kept[statement] = (name, context.columns, context.input_funcs)
        if len(self._kept) > MAX_PREPARED:
            _, (oldest, _, _) = self._kept.popitem(last=False)
            self._to_close.append(oldest)
        return context

    def _run_kept(self, statement, kept, vals):
        name, columns, input_funcs = kept
        self._kept.move_to_end(statement)
        context = Context(statement, columns=columns, input_funcs=input_funcs)
        bind = self._bind_body(name, vals)
        self._send_closes()
        self._send_bind_execute_sync(bind)
        try:
            self.handle_messages(context)
        except Exception as error:
            # Whatever failed (the values, a schema changed under it), it is made again at
            # its next run; a missing one means the session lost them all.
            if isinstance(error, DatabaseError) and _sqlstate(error) == _MISSING_STATEMENT:
                self._kept.clear()
            else:
                self._kept.pop(statement, None)
                self._to_close.append(name)
            raise
        return context

    def _send_bind_execute_sync(self, bind: bytearray) -> None:
        self._send_message(BIND, bind)
        _write(self._sock, EXECUTE_MSG)
        _write(self._sock, SYNC_MSG)
        _flush(self._sock)

    def _send_closes(self) -> None:
        for name in self._to_close:
            self._send_message(CLOSE, STATEMENT + name)
        self._to_close = []

    def _bind_body(self, statement_name: bytes, vals) -> bytearray:
        """Bind of a statement to the unnamed portal: every value as text (as pg8000's
        send_BIND), every result as text."""
        params = make_params(self.py_types, vals)
        message = bytearray(NULL_BYTE + statement_name + H_pack(0) + H_pack(len(params)))
        for value in params:
            if value is None:
                message += i_pack(-1)
            else:
                encoded = value.encode(self._client_encoding)
                message += i_pack(len(encoded))
                message += encoded
        message += H_pack(0)
        return message

    def execute_simple(self, statement):
        if statement == BEGIN and self._begin_pending is None:
            # Sent with the next statement; until then the connection counts as in a
            # transaction, as it will be once the server has read it.
            self._send_message(QUERY, statement.encode(self._client_encoding) + NULL_BYTE)
            self._begin_pending = Context(statement)
            self._transaction_status = IN_TRANSACTION
            return self._begin_pending
        return super().execute_simple(statement)

    def handle_messages(self, context):
        """The answers to a BEGIN sent with this statement come first: read them, then this
        statement's; an error of either is raised once both are read, so that nothing is
        left unread on the connection."""
        begin, self._begin_pending = self._begin_pending, None
        if begin is None:
            return super().handle_messages(context)
        try:
            super().handle_messages(begin)
        except Exception as error:
            super().handle_messages(context)
            raise error
        return super().handle_messages(context)


def _parse_body(statement_name: bytes, text: bytes, oids=()) -> bytearray:
    body = bytearray(statement_name)
    body += text + NULL_BYTE
    body += H_pack(len(oids))
    for oid in oids:
        body += i_pack(0 if oid == -1 else oid)
    return body


def _sqlstate(error: DatabaseError) -> str | None:
    detail = error.args[0] if error.args else None
    return detail.get("C") if isinstance(detail, dict) else None
