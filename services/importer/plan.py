"""The whole file checked before anything is sent: every row mapped and validated, record
numbers given twice refused (both rows), and each valid row given its row key."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.protocol import rules

from .errors import CellError
from .keys import row_key
from .mapping import Mapped, RowMapper
from .reading import Table


@dataclass
class Planned:
    row_number: int
    record_no: str | None
    body: dict | None
    request_id: str | None
    errors: list[CellError] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def plan(table: Table, mapper: RowMapper, *, agency: str, recipient: str, progress=None) -> list[Planned]:
    mapped: list[Mapped] = []
    for row in table.rows:
        mapped.append(mapper.map(row))
        if progress is not None:
            progress.advance()
    rows_of: dict[str, list[int]] = {}
    for item in mapped:
        if item.record_no:
            rows_of.setdefault(item.record_no, []).append(item.row.number)
    planned = []
    for item in mapped:
        errors = list(item.errors)
        numbers = rows_of.get(item.record_no or "", [])
        if len(numbers) > 1:
            errors.insert(0, CellError("record_no", rules.IMPORT_RECORD_DUPLICATE,
                                       f"record number {item.record_no} is on rows "
                                       f"{', '.join(map(str, numbers))}: none of them is sent"))
        valid = not errors
        planned.append(Planned(item.row.number, item.record_no, item.body if valid else None,
                               row_key(agency, recipient, item.record_no) if valid else None, errors))
    return planned
