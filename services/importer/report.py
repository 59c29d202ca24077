"""The report of an import: one line per row (or per reason, for a refused row) and a summary;
or the same as a CSV file a spreadsheet opens (UTF-8 with BOM, no cell it would run)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import TextIO

from .columns import label
from .reading import FORMULA_STARTS
from .sending import ALREADY_SENT, FAILED, REFUSED, SENT, VALID, Outcome

REPORT_COLUMNS = ("row", "record_no", "outcome", "referral_id", "message_id", "column", "rule", "detail")


def lines(outcome: Outcome) -> list[str]:
    head = f"row {outcome.row_number:>5}  {outcome.record_no or '-':<20}  {outcome.outcome:<12}"
    if outcome.outcome in (SENT, ALREADY_SENT):
        return [f"{head}  referral {outcome.referral_id}  (message {outcome.message_id})"]
    if not outcome.errors:
        return [head.rstrip()]
    return [f"{head}  {label(error.column)} {'[' + error.rule + '] ' if error.rule else ''}{error.detail}"
            for error in outcome.errors]


def records(outcome: Outcome) -> list[dict]:
    base = {"row": outcome.row_number, "record_no": outcome.record_no or "", "outcome": outcome.outcome,
            "referral_id": outcome.referral_id or "", "message_id": outcome.message_id or ""}
    if not outcome.errors:
        return [{**base, "column": "", "rule": "", "detail": ""}]
    return [{**base, "column": label(e.column) if e.column else "", "rule": e.rule, "detail": e.detail}
            for e in outcome.errors]


def write_csv(outcomes: list[Outcome], path: Path) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, REPORT_COLUMNS)
        writer.writeheader()
        for outcome in outcomes:
            for record in records(outcome):
                writer.writerow({key: _inert(value) for key, value in record.items()})


def _inert(value):
    """A cell a spreadsheet would run as a formula is written as text (a leading apostrophe)."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def write_text(outcomes: list[Outcome], stream: TextIO) -> None:
    for outcome in outcomes:
        for line in lines(outcome):
            print(line, file=stream)


def counts(outcomes: list[Outcome]) -> Counter:
    return Counter(outcome.outcome for outcome in outcomes)


def summary(source: str, outcomes: list[Outcome], *, dry_run: bool) -> str:
    count = counts(outcomes)
    if dry_run:
        return (f"{source}: {len(outcomes)} rows: {count[VALID]} valid, {count[REFUSED]} refused; "
                f"dry run, nothing sent")
    text = (f"{source}: {len(outcomes)} rows: {count[SENT]} sent, {count[ALREADY_SENT]} already sent, "
            f"{count[REFUSED]} refused")
    if count[FAILED]:
        text += f", {count[FAILED]} not sent (the node did not answer; run the same file again)"
    return text
