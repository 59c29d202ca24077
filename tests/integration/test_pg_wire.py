"""pg8000's connection with one round trip per statement (adapters/storage/pg_wire.py), on a
real PostgreSQL: the same answers and errors as pg8000's own connection, one flush per
statement, a transaction's BEGIN carried by its first statement, and statements run again
kept prepared (made, kept, closed, made again after a failure, forgotten when lost)."""

from __future__ import annotations

import datetime as dt

import pg8000
import pytest
import sqlalchemy

from adapters.storage import pg_wire
from adapters.storage.pg_wire import OneTripConnection
from adapters.storage.store import make_engine
from tests.integration.conftest import fresh_postgres_database

pytestmark = pytest.mark.integration

# Every kind of statement the nodes send, with parameters of the types they bind.
STATEMENTS = [
    ("SELECT %s::int + 1, %s::text, %s::bool, %s::numeric", (41, "线索", True, "1.50")),
    ("SELECT %s::timestamptz", (dt.datetime(2026, 12, 4, 8, 30, tzinfo=dt.timezone.utc),)),
    ("SELECT %s::jsonb -> 'a', %s::text IS NULL", ('{"a": [1, "二"]}', None)),
    ("INSERT INTO wire (id, body) VALUES (%s, %s), (%s, %s)", (1, "one", 2, "two")),
    ("UPDATE wire SET body = body || %s WHERE id >= %s", ("!", 1)),
    ("SELECT id, body FROM wire ORDER BY id", ()),
    ("WITH gone AS (DELETE FROM wire WHERE id = %s RETURNING id) SELECT count(*) FROM gone", (2,)),
    ("SELECT id FROM wire WHERE id = %s", (99,)),  # no rows
    ("SELECT 1 WHERE false", ()),
]


@pytest.fixture
def database():
    with fresh_postgres_database() as (name, _):
        yield name


@pytest.fixture
def connection(database):
    """Our connection, to a database with the table ``wire``."""
    ours = _connect(OneTripConnection, database)
    try:
        yield ours
    finally:
        ours.close()


@pytest.fixture
def both(database):
    """pg8000's own connection and ours, to the same database."""
    theirs, ours = _connect(pg8000.connect, database), _connect(OneTripConnection, database)
    try:
        yield theirs, ours
    finally:
        theirs.close()
        ours.close()


def _connect(kind, database, **options):
    connection = kind("postgres", host="127.0.0.1", database=database, **options)
    cursor = connection.cursor()
    cursor.execute("CREATE TABLE IF NOT EXISTS wire (id int PRIMARY KEY, body text)")
    cursor.execute("TRUNCATE wire")
    connection.commit()
    return connection


def _run(connection, statement, values):
    cursor = connection.cursor()
    cursor.execute(statement, values) if values else cursor.execute(statement)
    rows = cursor.fetchall() if cursor.description else None
    return rows, cursor.rowcount, [column[0] for column in cursor.description or ()]


def _failure(connection, statement, values):
    with pytest.raises(pg8000.DatabaseError) as raised:
        connection.cursor().execute(statement, values)
    return raised.value.args[0]["C"]


def _kept_on_server(connection) -> list[str]:
    cursor = connection.cursor()
    cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'cluebus_%%' ORDER BY name")
    return [row[0] for row in cursor.fetchall()]


class _Wire:
    """What the connection sends: ``count``, how many times it hands its buffer to the
    server (one per round trip), and ``data``, every byte written."""

    def __init__(self, connection):
        self.count, self.data = 0, bytearray()
        flush, write = connection._sock.flush, connection._sock.write

        def counted():
            self.count += 1
            return flush()

        def written(data):
            self.data += data
            return write(data)
        connection._sock.flush, connection._sock.write = counted, written


def test_every_statement_answers_as_with_pg8000s_own_connection_once_and_kept(both):
    theirs, ours = both
    for statement, values in STATEMENTS:
        expected = _run(theirs, statement, values)
        theirs.rollback()
        for _ in range(pg_wire.PREPARE_AFTER + 2):  # unnamed, then made, then kept
            assert _run(ours, statement, values) == expected, statement
            ours.rollback()
    with_values = {statement for statement, values in STATEMENTS if values}
    assert len(ours._kept) == len(with_values)  # those with parameters only
    assert len(_kept_on_server(ours)) == len(with_values)


def test_a_transaction_costs_one_round_trip_per_statement_and_its_begin_none(connection):
    writes = _Wire(connection)
    cursor = connection.cursor()
    for number in range(5):
        cursor.execute("INSERT INTO wire (id, body) VALUES (%s, %s)", (number, str(number)))
    connection.commit()
    assert writes.count == 6  # five statements and the commit; BEGIN went with the first
    cursor.execute("SELECT count(*) FROM wire")
    assert cursor.fetchall() == ([5],)
    connection.commit()


def test_errors_are_the_servers_and_leave_the_connection_usable(both):
    theirs, ours = both
    failing = [("SELEC %s", (1,)),                                   # fails at Parse
               ("SELECT %s::int", ("not a number",)),                # fails at Bind
               ("INSERT INTO wire (id) VALUES (%s), (%s)", (7, 7)),  # fails at Execute
               ("SELECT * FROM no_such_table WHERE id = %s", (1,))]
    for statement, values in failing:
        expected = _failure(theirs, statement, values)
        theirs.rollback()
        # First in its transaction (the BEGIN goes with it) and after another statement.
        assert _failure(ours, statement, values) == expected, statement
        ours.rollback()
        _run(ours, "SELECT %s::int", (1,))
        assert _failure(ours, statement, values) == expected, statement
        ours.rollback()
        assert _run(ours, "SELECT %s::int", (2,))[0] == ([2],)
        ours.commit()


def test_a_statement_after_a_failure_in_the_same_transaction_is_refused(connection):
    _failure(connection, "SELEC %s", (1,))
    with pytest.raises(pg8000.DatabaseError) as raised:
        connection.cursor().execute("SELECT %s::int", (1,))
    assert raised.value.args[0]["C"] == "25P02"  # in failed transaction
    connection.rollback()


def test_a_transaction_without_statements_commits_and_rolls_back(connection):
    connection.cursor().execute("SELECT 1")  # a statement without parameters goes as a simple query
    connection.commit()
    connection.execute_simple("begin transaction")  # BEGIN waiting in the buffer
    connection.commit()
    connection.execute_simple("begin transaction")
    connection.rollback()
    assert _run(connection, "SELECT %s::text", ("still in step",))[0] == (["still in step"],)
    connection.commit()


def test_the_nodes_engines_use_it_and_committed_work_is_stored(database):
    engine = make_engine(f"postgresql+pg8000://postgres@127.0.0.1:5432/{database}")
    try:
        with engine.begin() as connection:
            assert isinstance(connection.connection.dbapi_connection, OneTripConnection)
            connection.exec_driver_sql("CREATE TABLE kept (id int PRIMARY KEY)")
            connection.execute(sqlalchemy.text("INSERT INTO kept VALUES (:a), (:b)"), {"a": 1, "b": 2})
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("INSERT INTO kept VALUES (:a)"), {"a": 3})
            connection.rollback()
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT id FROM kept ORDER BY id").scalars().all() == [1, 2]
    finally:
        engine.dispose()


# -- statements kept prepared ------------------------------------------------------------

def test_a_kept_statement_goes_without_its_text(connection):
    cursor = connection.cursor()
    statement = "SELECT %s::int * 2 AS doubled_value_from_a_kept_statement"
    for number in range(pg_wire.PREPARE_AFTER):
        cursor.execute(statement, (number,))
    sent = _Wire(connection)
    cursor.execute(statement, (21,))
    assert cursor.fetchall() == ([42],) and [column[0] for column in cursor.description] == [
        "doubled_value_from_a_kept_statement"]
    assert b"doubled_value" not in sent.data and b"21" in sent.data
    connection.commit()
    assert "commit" not in connection._kept  # no parameters: never kept


def test_a_kept_statement_that_fails_is_closed_and_made_again(connection):
    cursor = connection.cursor()
    insert = "INSERT INTO wire (id, body) VALUES (%s, %s)"
    for number in range(3):
        cursor.execute(insert, (number, "kept"))
    connection.commit()
    [name] = _kept_on_server(connection)
    with pytest.raises(pg8000.DatabaseError) as raised:
        cursor.execute(insert, (1, "again"))
    assert raised.value.args[0]["C"] == "23505"
    connection.rollback()
    assert _kept_on_server(connection) == []  # closed with the next statement
    for number in range(3, 6):
        cursor.execute(insert, (number, "kept"))
    connection.commit()
    assert _kept_on_server(connection) not in ([], [name])
    cursor.execute("SELECT count(*) FROM wire")
    assert cursor.fetchall() == ([6],)
    connection.commit()


def test_a_schema_changed_under_a_kept_statement_fails_one_transaction(connection):
    cursor = connection.cursor()
    select = "SELECT * FROM wire WHERE id = %s"
    cursor.execute("INSERT INTO wire VALUES (1, 'one')")
    for _ in range(3):
        cursor.execute(select, (1,))
    connection.commit()
    cursor.execute("ALTER TABLE wire ADD COLUMN added int")
    connection.commit()
    with pytest.raises(pg8000.DatabaseError) as raised:
        cursor.execute(select, (1,))
    assert raised.value.args[0]["C"] == "0A000"  # cached plan must not change result type
    connection.rollback()
    cursor.execute(select, (1,))
    assert cursor.fetchall() == ([1, "one", None],)
    connection.commit()


def test_statements_the_session_lost_are_all_forgotten_at_the_first_missing(connection):
    cursor = connection.cursor()
    texts = ["SELECT %s::int + 1", "SELECT %s::int + 2"]
    for text in texts * 3:
        cursor.execute(text, (1,))
    connection.commit()
    assert len(connection._kept) == 2
    cursor.execute("DEALLOCATE ALL")
    connection.commit()
    with pytest.raises(pg8000.DatabaseError) as raised:
        cursor.execute(texts[0], (1,))
    assert raised.value.args[0]["C"] == "26000"
    connection.rollback()
    assert connection._kept == {}
    for text in texts:
        cursor.execute(text, (1,))  # unnamed again, then made again
        cursor.execute(text, (1,))
    answers = []
    for text in texts:
        cursor.execute(text, (1,))  # kept
        answers += cursor.fetchall()
    assert answers == [[2], [3]] and len(connection._kept) == 2
    connection.commit()


def test_at_most_max_prepared_are_kept_the_least_recently_used_closed(database):
    connection = _connect(OneTripConnection, database, max_prepared=3)
    cursor = connection.cursor()
    texts = [f"SELECT %s::int + {number}" for number in range(6)]
    for text in texts:
        for _ in range(pg_wire.PREPARE_AFTER):
            cursor.execute(text, (1,))
    cursor.execute(texts[-1], (1,))  # a kept one: the closes of the evicted go with it
    assert cursor.fetchall() == ([6],)
    assert list(connection._kept) == [text.replace("%s", "$1") for text in texts[-3:]]
    assert len(_kept_on_server(connection)) == 3
    connection.commit()
    connection.close()


def test_with_none_to_keep_every_statement_goes_unnamed_with_its_text(database):
    """For a pooler in transaction mode (the URL's prepared_statement_cache_size=0): a
    statement run again is sent whole each time, nothing is prepared in the session, and
    the answers are the same."""
    connection = _connect(OneTripConnection, database, max_prepared=0)
    try:
        cursor = connection.cursor()
        statement = "SELECT %s::int * 2 AS doubled_value_never_kept"
        for number in range(pg_wire.PREPARE_AFTER + 2):
            sent = _Wire(connection)
            cursor.execute(statement, (number,))
            assert cursor.fetchall() == ([2 * number],)
            assert b"doubled_value_never_kept" in sent.data
        assert connection._kept == {} and _kept_on_server(connection) == []
        connection.commit()
    finally:
        connection.close()


def test_a_negative_number_to_keep_is_refused(database):
    with pytest.raises(ValueError, match="0 or more"):
        OneTripConnection("postgres", host="127.0.0.1", database=database, max_prepared=-1)


@pytest.mark.parametrize("query, kept", [("", pg_wire.MAX_PREPARED), ("?prepared_statement_cache_size=0", 0),
                                         ("?prepared_statement_cache_size=5", 5)])
def test_the_database_url_sets_how_many_are_kept(database, query, kept):
    engine = make_engine(f"postgresql+pg8000://postgres@127.0.0.1:5432/{database}{query}")
    try:
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection._max_prepared == kept
    finally:
        engine.dispose()


@pytest.mark.parametrize("query", ["=none", "=-1", "=1.5", "=1&prepared_statement_cache_size=2"])
def test_a_database_url_with_a_bad_number_to_keep_is_refused_by_name(query):
    with pytest.raises(ValueError, match="prepared_statement_cache_size"):
        make_engine(f"postgresql+pg8000://postgres@127.0.0.1:5432/postgres?prepared_statement_cache_size{query}")


def test_long_texts_are_not_kept(connection, monkeypatch):
    monkeypatch.setattr(pg_wire, "MAX_PREPARED_TEXT", 40)
    cursor = connection.cursor()
    for _ in range(4):
        cursor.execute("SELECT %s::int AS a_name_that_makes_this_text_long", (1,))
        cursor.execute("SELECT %s::int", (1,))
    assert list(connection._kept) == ["SELECT $1::int"]
    connection.commit()


def test_a_kept_statement_fails_as_an_unnamed_one_would(both):
    theirs, ours = both
    statement = "SELECT %s::int"
    expected = _failure(theirs, statement, ("not a number",))  # fails at Bind
    theirs.rollback()
    for _ in range(pg_wire.PREPARE_AFTER):
        assert _run(ours, statement, (5,))[0] == ([5],)
    assert len(ours._kept) == 1
    assert _failure(ours, statement, ("not a number",)) == expected
    ours.rollback()
    assert ours._kept == {} and _run(ours, statement, (6,))[0] == ([6],)
    ours.commit()


class _Unwritable:
    def __str__(self):
        raise ValueError("cannot be written")


def test_a_value_that_cannot_be_written_leaves_nothing_half_sent(connection):
    cursor = connection.cursor()
    for _ in range(2):
        for statement in ("SELECT %s::text AS one", "SELECT %s::text AS kept"):
            with pytest.raises(ValueError):
                cursor.execute(statement, (_Unwritable(),))  # raised before anything is written
            cursor.execute("SELECT %s::text AS kept", ("x",))
            assert cursor.fetchall() == (["x"],) and cursor.description[0][0] == "kept"
    cursor.execute("INSERT INTO wire VALUES (%s, %s)", (1, "after"))
    assert cursor.description is None and cursor.rowcount == 1
    connection.commit()


# -- statements deferred to go with the next ------------------------------------------------

def _numbered(statement: str) -> str:
    return statement.replace("%s", "$1", 1).replace("%s", "$2", 1)


def test_deferred_statements_go_with_the_next_and_get_their_own_answers(connection):
    cursor = connection.cursor()
    sent = _Wire(connection)
    inserted = connection.defer(_numbered("INSERT INTO wire (id, body) VALUES (%s, %s)"), (1, "one"))
    read = connection.defer("SELECT body FROM wire WHERE id = $1", (1,))
    assert sent.count == 0 and inserted.row_count == -1  # nothing asked of the server yet
    cursor.execute("SELECT count(*) FROM wire WHERE id = %s", (1,))
    assert sent.count == 1  # the BEGIN, both deferred and this one in one round trip
    assert cursor.fetchall() == ([1],)  # the deferred insert ran first
    assert inserted.row_count == 1 and read.rows == [["one"]]
    connection.defer(_numbered("INSERT INTO wire (id, body) VALUES (%s, %s)"), (2, "two"))
    connection.commit()  # the deferred insert goes with the COMMIT
    assert sent.count == 2
    cursor.execute("SELECT id FROM wire ORDER BY id")
    assert cursor.fetchall() == ([1], [2])
    connection.commit()


def test_a_deferred_statement_that_fails_fails_the_next_and_nothing_after_it_runs(connection):
    cursor = connection.cursor()
    cursor.execute("INSERT INTO wire VALUES (%s, %s)", (1, "stored"))
    connection.commit()
    connection.defer(_numbered("INSERT INTO wire (id, body) VALUES (%s, %s)"), (1, "a duplicate"))
    with pytest.raises(pg8000.DatabaseError) as raised:
        cursor.execute("INSERT INTO wire VALUES (%s, %s)", (2, "skipped"))
    assert raised.value.args[0]["C"] == "23505"  # the deferred statement's error
    connection.rollback()
    # At the COMMIT: the transaction fails as a whole, and its rollback is not skipped.
    connection.defer(_numbered("INSERT INTO wire (id, body) VALUES (%s, %s)"), (3, "three"))
    connection.defer(_numbered("INSERT INTO wire (id, body) VALUES (%s, %s)"), (1, "a duplicate"))
    with pytest.raises(pg8000.DatabaseError):
        connection.commit()
    connection.rollback()
    # Before a ROLLBACK the deferred statements' errors are dropped: it rolls back.
    connection.defer(_numbered("INSERT INTO wire (id, body) VALUES (%s, %s)"), (1, "a duplicate"))
    connection.rollback()
    # Before a statement without parameters (a simple query), they are settled first.
    connection.defer(_numbered("INSERT INTO wire (id, body) VALUES (%s, %s)"), (1, "a duplicate"))
    with pytest.raises(pg8000.DatabaseError):
        cursor.execute("SELECT 1")
    connection.rollback()
    cursor.execute("SELECT id, body FROM wire ORDER BY id")
    assert cursor.fetchall() == ([1, "stored"],)
    connection.commit()


def test_kept_statements_deferred_and_skipped_stay_in_step_with_the_server(connection):
    cursor = connection.cursor()
    kept = "SELECT $1::int + 1"
    for _ in range(pg_wire.PREPARE_AFTER):
        connection.defer(kept, (1,))
        cursor.execute("SELECT %s::int", (0,))
    assert kept in connection._kept
    connection.commit()
    made = "SELECT $1::int + 2"
    connection.defer(made, (1,))
    cursor.execute("SELECT %s::int", (0,))  # its first run: unnamed
    connection.commit()
    # A failing statement first: the kept one after it is skipped (and stays kept), the one
    # being made is skipped (and not kept: the server never made it).
    connection.defer("SELECT $1::int", ("not a number",))
    connection.defer(kept, (1,))
    connection.defer(made, (1,))
    with pytest.raises(pg8000.DatabaseError):
        cursor.execute("SELECT %s::int", (0,))
    connection.rollback()
    assert kept in connection._kept and made not in connection._kept
    # The same text made twice in one exchange: one is kept, the other closed.
    again = "SELECT $1::int + 3"
    connection.defer(again, (1,))
    cursor.execute("SELECT %s::int", (0,))
    first, second = connection.defer(again, (1,)), connection.defer(again, (2,))
    cursor.execute("SELECT %s::int", (0,))
    assert (first.rows, second.rows) == ([[4]], [[5]])
    connection.commit()
    assert sorted(_kept_on_server(connection)) == sorted(name.rstrip(b"\x00").decode()
                                                         for name, _, _ in connection._kept.values())
    connection.commit()
