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
prepared them (docs/architecture.md section 10). ``max_prepared=0`` (the database URL's
``prepared_statement_cache_size=0``, store.make_engine) keeps none, for such a pooler.

A statement whose answer nobody waits for (``defer``: a write whose rows nobody reads, or
one of several reads asked for together) is written without its Sync and goes with the next
statement, the transaction's COMMIT included: its answers are read first, then that
statement's. When a deferred statement fails, the server skips everything after it up to the
Sync (the statement it went with too), and its error is raised by that statement: the
transaction fails as a whole, as it would have at the deferred statement. A ROLLBACK is
sent after the deferred statements' answers are read (and their errors dropped), so that
it is never skipped.

An error stops the server at the failing message and it skips to the Sync; the error is raised
as before (tests/integration/test_pg_wire.py)."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import pg8000.legacy
from pg8000.converters import make_params
from pg8000.legacy import IntegrityError, InterfaceError, ProgrammingError
from pg8000.core import (BIND, CLOSE, COMMAND_COMPLETE, DESCRIBE, EMPTY_QUERY_RESPONSE, EXECUTE_MSG, IN_TRANSACTION,
                         NULL_BYTE, PARSE, QUERY, READY_FOR_QUERY, STATEMENT, SYNC_MSG, Context, DatabaseError, H_pack,
                         _flush, _read, _write, ci_unpack, i_pack)

BEGIN = "begin transaction"  # what pg8000's cursors send before a transaction's first statement
PREPARE_AFTER = 2             # runs of a text on a connection before it is kept prepared there
MAX_PREPARED = 64             # statements kept per connection
MAX_PREPARED_TEXT = 32_768    # characters: longer texts (large batches) are not kept
_MISSING_STATEMENT = "26000"  # SQLSTATE invalid_sql_statement_name
_STATEMENT_ENDS = (COMMAND_COMPLETE, EMPTY_QUERY_RESPONSE)  # a statement's last answer (all its rows asked for)


class _Sent:
    """A statement written to the server, waiting for its answers: what to remember of it
    once they are read (``done``), once it failed (``failed``), or when the server skipped it
    after an earlier statement's failure (``skipped``)."""

    __slots__ = ("context", "done", "failed", "skipped")

    def __init__(self, context: Context, done=None, failed=None, skipped=None):
        self.context = context
        self.done, self.failed, self.skipped = done, failed, skipped


class OneTripConnection(pg8000.legacy.Connection):
    """pg8000's DB-API connection (the one SQLAlchemy's pg8000 dialect makes), with each
    statement in one round trip, a transaction's BEGIN sent with its first statement,
    statements deferred to go with the next, and the statements it runs again kept
    prepared."""

    _begin_pending: Context | None = None

    def __init__(self, *args, max_prepared: int = MAX_PREPARED, **kwargs):
        if max_prepared < 0:
            raise ValueError(f"statements kept prepared must be 0 or more, not {max_prepared}")
        self._max_prepared = max_prepared  # 0: every statement unnamed, for a pooler in transaction mode
        self._kept: OrderedDict[str, tuple[bytes, list | None, list]] = OrderedDict()  # text -> name, result
        self._runs: dict[str, int] = {}
        self._names = itertools.count(1)
        self._to_close: list[bytes] = []
        self._deferred: list[_Sent] = []
        super().__init__(*args, **kwargs)

    # -- running statements -----------------------------------------------------------------
    def execute_unnamed(self, statement, vals=(), oids=(), stream=None):
        if stream is not None:
            self.settle_deferred()  # COPY's answers are read by pg8000's own loop
        sent = self._send(statement, vals, oids, stream)
        self._sync_and_read(sent)
        return sent.context

    def defer(self, statement: str, vals=()) -> Context:
        """Write ``statement`` (pg8000's numbered parameters) now; its answers are read with
        the next statement's, into the context returned (its ``rows``, ``row_count``). In the
        transaction, as pg8000's cursors run statements: one is begun if none is open."""
        if not self._in_transaction and not self.autocommit:
            self.execute_simple(BEGIN)
        sent = self._send(statement, vals, (), None)
        self._deferred.append(sent)
        return sent.context

    def execute_simple(self, statement):
        if statement == BEGIN and self._begin_pending is None and not self._deferred:
            # Sent with the next statement; until then the connection counts as in a
            # transaction, as it will be once the server has read it.
            self._send_message(QUERY, statement.encode(self._client_encoding) + NULL_BYTE)
            self._begin_pending = Context(statement)
            self._transaction_status = IN_TRANSACTION
            return self._begin_pending
        self.settle_deferred()  # a simple query after unsynced ones would be skipped on an error
        return super().execute_simple(statement)

    def rollback(self):
        if self._deferred:
            try:
                self.settle_deferred()
            except DatabaseError:
                pass  # rolled back now in any case
        super().rollback()

    def settle_deferred(self) -> None:
        """The deferred statements' answers now (with a Sync of their own); the first error
        is raised. For a caller that must know they succeeded before it goes on (a
        savepoint whose errors it takes as its own)."""
        if self._deferred:
            self._sync_and_read(self._deferred.pop(-1))

    def _send(self, statement, vals, oids, stream) -> _Sent:
        """Write the messages of one statement, all but the Sync: unnamed, made kept, or kept."""
        if self._max_prepared and vals and stream is None and not oids and len(statement) <= MAX_PREPARED_TEXT:
            kept = self._kept.get(statement)
            if kept is not None:
                return self._send_kept(statement, kept, vals)
            runs = self._runs.get(statement, 0) + 1
            if runs >= PREPARE_AFTER:
                return self._send_prepared(statement, vals)
            if len(self._runs) >= 8 * self._max_prepared:
                self._runs.clear()
            self._runs[statement] = runs
        context = Context(statement, stream=stream)
        bind = self._bind_body(NULL_BYTE, vals)  # before anything is written: it may raise
        self._send_closes()
        self._send_message(PARSE, _parse_body(NULL_BYTE, statement.encode(self._client_encoding), oids))
        self._send_message(DESCRIBE, STATEMENT + NULL_BYTE)
        self._send_bind_execute(bind)
        return _Sent(context)

    def _send_prepared(self, statement, vals) -> _Sent:
        name = f"cluebus_{next(self._names)}".encode("ascii") + NULL_BYTE
        context = Context(statement)
        bind = self._bind_body(name, vals)
        self._send_closes()
        self._send_message(PARSE, _parse_body(name, statement.encode(self._client_encoding)))
        self._send_message(DESCRIBE, STATEMENT + name)
        self._send_bind_execute(bind)

        def done():
            self._runs.pop(statement, None)
            if statement in self._kept:  # made twice in one exchange: the first one stays
                self._to_close.append(name)
                return
            self._kept[statement] = (name, context.columns, context.input_funcs)
            if len(self._kept) > self._max_prepared:
                _, (oldest, _, _) = self._kept.popitem(last=False)
                self._to_close.append(oldest)

        def not_made(_error=None):
            self._to_close.append(name)  # made or not: closing a missing statement is no error
        return _Sent(context, done=done, failed=not_made, skipped=not_made)

    def _send_kept(self, statement, kept, vals) -> _Sent:
        name, columns, input_funcs = kept
        self._kept.move_to_end(statement)
        context = Context(statement, columns=columns, input_funcs=input_funcs)
        bind = self._bind_body(name, vals)
        self._send_closes()
        self._send_bind_execute(bind)

        def failed(error):
            # Whatever failed (the values, a schema changed under it), it is made again at
            # its next run; a missing one means the session lost them all.
            if isinstance(error, DatabaseError) and _sqlstate(error) == _MISSING_STATEMENT:
                self._kept.clear()
            elif self._kept.get(statement, (None,))[0] == name:
                self._kept.pop(statement)
                self._to_close.append(name)
        return _Sent(context, failed=failed)

    def _send_bind_execute(self, bind: bytearray) -> None:
        self._send_message(BIND, bind)
        _write(self._sock, EXECUTE_MSG)

    def _sync_and_read(self, sent: _Sent) -> None:
        _write(self._sock, SYNC_MSG)
        _flush(self._sock)
        self._read_answers(sent)

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

    # -- reading answers --------------------------------------------------------------------
    def handle_messages(self, context):
        """pg8000's own reads (a simple query's): the answers to a BEGIN sent with it come
        first; an error of either is raised once both are read."""
        begin, self._begin_pending = self._begin_pending, None
        if begin is None:
            return super().handle_messages(context)
        try:
            super().handle_messages(begin)
        except Exception as error:
            super().handle_messages(context)
            raise error
        return super().handle_messages(context)

    def _read_answers(self, last: _Sent) -> None:
        """The answers to a BEGIN sent with this exchange come first (a simple query, ended
        by its own ReadyForQuery), then those of the deferred statements and of ``last``, up
        to the Sync's ReadyForQuery. Every answer is read before an error is raised, so that
        nothing is left unread on the connection."""
        begin, self._begin_pending = self._begin_pending, None
        batch, self._deferred = [*self._deferred, last], []
        begin_error = None
        if begin is not None:
            try:
                super().handle_messages(begin)
            except Exception as error:
                begin_error = error
        try:
            error = self._read_batch(batch)
        except Exception as broken:  # the connection failed under the answers
            self._after(batch, broken)
            raise
        self._after(batch, error)
        if begin_error or error:
            raise _classified(begin_error or error)

    def _read_batch(self, batch: list[_Sent]):
        """Each statement's answers into its own context (a statement's end is its
        CommandComplete); the first error, if any."""
        index, code, last = 0, None, len(batch) - 1
        while code != READY_FOR_QUERY:
            code, data_len = ci_unpack(_read(self._sock, 5))
            self.message_types[code](_read(self._sock, data_len - 4), batch[min(index, last)].context)
            if code in _STATEMENT_ENDS:
                index += 1
        return next((sent.context.error for sent in batch if sent.context.error is not None), None)

    @staticmethod
    def _after(batch: list[_Sent], error) -> None:
        """Each statement's bookkeeping: done before the failing one, failed, then skipped."""
        failing = next((i for i, sent in enumerate(batch) if sent.context.error is not None),
                       len(batch) - 1 if error is not None else None)
        for index, sent in enumerate(batch):
            if failing is None or index < failing:
                if sent.done:
                    sent.done()
            elif index == failing:
                if sent.failed:
                    sent.failed(sent.context.error or error)
            elif sent.skipped:
                sent.skipped()


def _parse_body(statement_name: bytes, text: bytes, oids=()) -> bytearray:
    body = bytearray(statement_name)
    body += text + NULL_BYTE
    body += H_pack(len(oids))
    for oid in oids:
        body += i_pack(0 if oid == -1 else oid)
    return body


def _classified(error: Exception) -> Exception:
    """The server's error as pg8000's cursors raise it (by SQLSTATE: a unique violation is an
    IntegrityError), also where no cursor is in between: a deferred statement's error raised by
    the COMMIT it went with, or by ``settle_deferred``."""
    if type(error) is not DatabaseError or not isinstance(error.args[0] if error.args else None, dict):
        return error
    code = error.args[0].get("C")
    kind = {"28000": InterfaceError, "23505": IntegrityError}.get(code, ProgrammingError)
    return kind(*error.args)


def _sqlstate(error: DatabaseError) -> str | None:
    detail = error.args[0] if error.args else None
    return detail.get("C") if isinstance(detail, dict) else None
