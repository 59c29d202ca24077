"""What an import refuses: a whole file (nothing is sent), or one row (the others go on)."""

from __future__ import annotations

from dataclasses import dataclass


class FileRefused(Exception):
    """The file cannot be imported at all; one line, with the rule it broke."""

    def __init__(self, rule: str, detail: str):
        super().__init__(f"[{rule}] {detail}")
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class CellError:
    """Why one row is refused: the column that fed the bad value (its key, e.g. ``amount``;
    ``None`` when no column did, e.g. a command option), the rule and the detail."""

    column: str | None
    rule: str
    detail: str


class CellInvalid(Exception):
    """A cell's text is not a value of its column (an amount, a date, a file)."""

    def __init__(self, rule: str, detail: str):
        super().__init__(detail)
        self.rule = rule
        self.detail = detail
