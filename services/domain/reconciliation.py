"""Reconciliation as data (docs/protocol.md §20): which messages are counted, in what order,
the hash over their ids, the window, and what an answer's ids say is missing.

Plain functions over ``(sent_at, message_id)`` pairs; the handler reads them from the
database and acts on the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from schemas.bodies.reconciliation import MAX_WINDOW_IDS
from schemas.registry import RECEIPT, RECONCILIATION_KINDS

# Receipts are settled by the outbox's own resends; reconciliation messages reconcile nothing.
NOT_COUNTED = frozenset({RECEIPT, *RECONCILIATION_KINDS})

Entry = tuple[datetime, str]  # (sent_at, message_id) from the envelope


def in_order(entries: Iterable[Entry]) -> list[str]:
    """The message ids in protocol order: ascending sent_at, then message_id (as text)."""
    return [message_id for _, message_id in sorted(entries)]


def ids_sha256(message_ids: Iterable[str]) -> str:
    """Lowercase hex SHA-256 over the ids, each followed by one line feed (the empty list:
    the SHA-256 of no bytes)."""
    digest = hashlib.sha256()
    for message_id in message_ids:
        digest.update(message_id.encode("ascii") + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class Window:
    """``[start, until)`` on sent_at; start None: from the beginning."""

    start: datetime | None
    until: datetime


def window_until(now: datetime, settle: timedelta) -> datetime:
    """Messages still in flight are not counted: the window ends ``settle`` before now."""
    return now - settle


def capped(entries: Sequence[Entry], window: Window, limit: int = MAX_WINDOW_IDS) -> tuple[Window, list[Entry]]:
    """At most ``limit`` entries in one window. ``entries`` are the window's first ``limit + 1``
    (or fewer) by sent_at: with more than ``limit``, the window ends at the sent_at of the first
    one left out, so every message of one instant is in the same window."""
    entries = sorted(entries)
    if len(entries) <= limit:
        return window, entries
    until = entries[limit][0]
    return Window(window.start, until), [e for e in entries if e[0] < until]


@dataclass(frozen=True)
class Tally:
    count: int
    ids_sha256: str

    @classmethod
    def of(cls, message_ids: Sequence[str]) -> "Tally":
        return cls(len(message_ids), ids_sha256(message_ids))


@dataclass(frozen=True)
class Comparison:
    """What an answer's held ids say about the ids this node sent in the window."""

    missing: list[str]      # sent, not held: to send again
    unexpected: list[str]   # held, not sent: reported only


def compare(sent_ids: Sequence[str], held_ids: Sequence[str], *, truncated: bool = False) -> Comparison:
    """``truncated``: the peer listed only the first of more ids than fit an answer; it then
    holds something we did not send (our window has at most MAX_WINDOW_IDS), and which of ours
    it lacks cannot be told from a partial list: nothing is called missing."""
    held = set(held_ids)
    sent = set(sent_ids)
    unexpected = [message_id for message_id in held_ids if message_id not in sent]
    if truncated:
        return Comparison([], unexpected)
    return Comparison([message_id for message_id in sent_ids if message_id not in held], unexpected)


def answer_is_consistent(summary: Tally, answer_count: int, answer_sha256: str, match: bool,
                         held_ids: Sequence[str] | None, truncated: bool) -> bool:
    """An answer's ``match`` must say whether its tally equals the summary's, and its held ids
    (when listed in full) must be what its tally counts."""
    if match != (answer_count == summary.count and answer_sha256 == summary.ids_sha256):
        return False
    if not match and not truncated:
        return Tally.of(list(held_ids or ())) == Tally(answer_count, answer_sha256)
    return True
