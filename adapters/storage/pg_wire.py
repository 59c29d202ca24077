"""pg8000's connection with one round trip per statement.

pg8000 (1.31) sends a statement with parameters in three exchanges, each waiting for the
server's answer: Parse, then Describe, then Bind and Execute, each ended by its own Sync. Nothing
it sends depends on those answers (every parameter and result goes as text), so here the five
messages are sent together (one flush of pg8000's buffer) and the answers are read in one
pass: the same messages, in the same order, with one Sync. ``commit`` and ``rollback`` are such statements too. The
``begin transaction`` that pg8000 sends before a transaction's first statement waits in the
buffer and goes with that statement, its answer read first.

What the server does is unchanged: an error stops it at the failing message and it skips to the
Sync, then the error is raised as before (tests/integration/test_pg_wire.py)."""

from __future__ import annotations

import pg8000.legacy
from pg8000.converters import make_params
from pg8000.core import (BIND, DESCRIBE, EXECUTE_MSG, IN_TRANSACTION, NULL_BYTE, PARSE, QUERY, STATEMENT,
                         SYNC_MSG, Context, H_pack, _flush, _write, i_pack)

BEGIN = "begin transaction"  # what pg8000's cursors send before a transaction's first statement


class OneTripConnection(pg8000.legacy.Connection):
    """pg8000's DB-API connection (the one SQLAlchemy's pg8000 dialect makes), with each
    statement in one round trip and a transaction's BEGIN sent with its first statement."""

    _begin_pending: Context | None = None

    def execute_unnamed(self, statement, vals=(), oids=(), stream=None):
        context = Context(statement, stream=stream)
        parse = bytearray(NULL_BYTE)
        parse += statement.encode(self._client_encoding) + NULL_BYTE
        parse += H_pack(len(oids))
        for oid in oids:
            parse += i_pack(0 if oid == -1 else oid)
        self._send_message(PARSE, parse)
        self._send_message(DESCRIBE, STATEMENT + NULL_BYTE)
        self._send_message(BIND, self._bind_message(make_params(self.py_types, vals)))
        _write(self._sock, EXECUTE_MSG)
        _write(self._sock, SYNC_MSG)
        _flush(self._sock)
        self.handle_messages(context)
        return context

    def _bind_message(self, params) -> bytearray:
        """Bind of the unnamed statement to the unnamed portal: every value as text (as
        pg8000's send_BIND), every result as text."""
        message = bytearray(NULL_BYTE + NULL_BYTE + H_pack(0) + H_pack(len(params)))
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
