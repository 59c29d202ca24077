"""Fresh message and referral ids (docs/protocol.md section 3.2): version 7 UUIDs (RFC 9562),
the Unix time in milliseconds in the first 48 bits and 74 random bits after it.

Why not random (version 4) ids: each node keeps its messages, inbox, outbox and referrals
indexed by these ids. A random id lands on a random leaf page of every such index, so once
the history is long each transaction dirties a page per row and index, and its commit writes
and fsyncs them all; ids that grow with time land together at the end of each index (measured:
bench/README.md, history). The random bits keep ids from different agencies and processes
apart without any coordination; they are identifiers, not secrets (a message's sent_at says
when it was made anyway)."""

from __future__ import annotations

import os
import time
import uuid

_RANDOM_B_BITS = 62
_RANDOM_A_BITS = 12


def new_id() -> str:
    """A fresh id in the protocol's form: lowercase, 8-4-4-4-12."""
    milliseconds = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    random = int.from_bytes(os.urandom(10), "big")
    random_a = (random >> _RANDOM_B_BITS) & ((1 << _RANDOM_A_BITS) - 1)
    random_b = random & ((1 << _RANDOM_B_BITS) - 1)
    value = (milliseconds << 80) | (0x7 << 76) | (random_a << 64) | (0b10 << 62) | random_b
    return str(uuid.UUID(int=value))
