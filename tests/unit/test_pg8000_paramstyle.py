"""The fast rewrite of ``%s`` placeholders for pg8000 (adapters/storage/store.py) gives exactly
what pg8000's own scanner gives, or leaves the statement to it."""

from __future__ import annotations

import random

import pytest
from pg8000.dbapi import convert_paramstyle
from pg8000.exceptions import InterfaceError

from adapters.storage.store import _plain_format_to_numeric

ALPHABET = ['%', '%', 's', 's', '"', 'a', '(', ')', ',', ' ', '$', "'", '-', '/', '*', 'E', ':']


def _pg8000(query: str) -> str | None:
    try:
        return convert_paramstyle("format", query, ())[0]
    except InterfaceError:
        return None


@pytest.mark.parametrize("query, expected", [
    ('INSERT INTO messages (a, b) VALUES (%s, %s), (%s, %s)', 'INSERT INTO messages (a, b) VALUES ($1, $2), ($3, $4)'),
    ('UPDATE t AS t SET "size" = v."b_size" FROM (VALUES (%s::INTEGER)) AS v(b_size)',
     'UPDATE t AS t SET "size" = v."b_size" FROM (VALUES ($1::INTEGER)) AS v(b_size)'),
    ("SELECT 100 %% 7, %s", "SELECT 100 % 7, $1"),
])
def test_plain_statements_are_rewritten_as_pg8000_does(query, expected):
    assert _plain_format_to_numeric(query) == expected == _pg8000(query)


@pytest.mark.parametrize("query", [
    "SELECT '%s'",            # a string: pg8000 leaves it alone
    'SELECT "a%sb"',          # a quoted name holding a %
    "SELECT 1 -- %s",         # a comment
    "SELECT $$%s$$",          # a dollar quote
    "SELECT 5 % 2",           # a % pg8000 refuses
    'SELECT "unclosed %s',
])
def test_other_statements_are_left_to_pg8000(query):
    assert _plain_format_to_numeric(query) is None


def test_random_statements_agree_with_pg8000():
    rng = random.Random(8000)
    rewritten = 0
    for _ in range(20_000):
        query = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))
        fast = _plain_format_to_numeric(query)
        if fast is not None:
            assert fast == _pg8000(query), query
            rewritten += 1
    assert rewritten > 1000  # the fast path was exercised, not only refused
