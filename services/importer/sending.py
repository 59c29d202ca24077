"""Sending the valid rows: ``refer_clues`` calls of ``chunk_size`` rows, ``in_flight`` calls
at a time (the next chunk travels while the node commits the one before), each row with its
row key as request id. A call that fails (a timeout, a lost connection, a node restarting) is
made again with the same ids: rows the node had already done come back "already sent", the
others are sent once. ``start_call`` is the caller's: it starts one call and returns something
whose ``result()`` waits for its answers (a Nameko reply, in the command line)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import CellError
from .plan import Planned

SENT = "sent"
ALREADY_SENT = "already sent"
REFUSED = "refused"
FAILED = "failed"     # the call failed on every attempt: not known to be sent; run the file again
VALID = "valid"       # --dry-run: would be sent


@dataclass
class Outcome:
    row_number: int
    record_no: str | None
    outcome: str
    referral_id: str | None = None
    message_id: str | None = None
    errors: list[CellError] = field(default_factory=list)


def refused(planned: Planned) -> Outcome:
    return Outcome(planned.row_number, planned.record_no, REFUSED, errors=list(planned.errors))


class _Failed:
    """A call that could not even be started: its ``result()`` raises what starting raised."""

    def __init__(self, error: Exception):
        self.error = error

    def result(self):
        raise self.error


def send_rows(rows: list[Planned], start_call: Callable[[list[dict]], Any], *, chunk_size: int = 200,
              in_flight: int = 3, attempts: int = 4, pause: float = 2.0,
              on_failure: Callable[[Exception], None] | None = None,
              on_answered: Callable[[list[Outcome]], None] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> list[Outcome]:
    chunks = [rows[start:start + chunk_size] for start in range(0, len(rows), chunk_size)]
    outcomes: list[Outcome] = []
    pending: deque = deque()

    def launch(index: int, attempt: int) -> None:
        clues = [{"body": row.body, "request_id": row.request_id} for row in chunks[index]]
        try:
            handle = start_call(clues)
        except Exception as error:  # noqa: BLE001 - any failure is retried with the same ids
            handle = _Failed(error)
        pending.append((index, attempt, handle))

    following = 0
    while following < len(chunks) or pending:
        while following < len(chunks) and len(pending) < in_flight:
            launch(following, 1)
            following += 1
        index, attempt, handle = pending.popleft()
        try:
            answers = handle.result()
        except Exception as error:  # noqa: BLE001
            if on_failure is not None:
                on_failure(error)
            if attempt < attempts:
                sleep(pause)  # a moment for the broker or the node to come back; the ids make it safe
                launch(index, attempt + 1)
                continue
            answered = [Outcome(row.row_number, row.record_no, FAILED,
                                errors=[CellError(None, "", f"not sent: the call failed {attempts} times, last "
                                                            f"{error.__class__.__name__}: {error}")])
                        for row in chunks[index]]
        else:
            answered = [_outcome(row, answer) for row, answer in zip(chunks[index], answers)]
        outcomes.extend(answered)
        if on_answered is not None:
            on_answered(answered)
    return outcomes


def _outcome(row: Planned, answer: dict) -> Outcome:
    if answer.get("refused"):
        return Outcome(row.row_number, row.record_no, REFUSED,
                       errors=[CellError(None, answer.get("rule") or "", answer.get("detail") or "")])
    messages = answer.get("messages") or []
    return Outcome(row.row_number, row.record_no, ALREADY_SENT if answer.get("repeated") else SENT,
                   referral_id=answer.get("referral_id"),
                   message_id=messages[0]["message_id"] if messages else None)
