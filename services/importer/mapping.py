"""One row of suspicious records → the body of a clue_transfer, checked with the node's own
schema (schemas/registry.py); a schema error is mapped back to the column that fed the field.

What a row supplies and what comes from the command's options is in docs/import.md: approval,
the team's report and the legal basis may be columns, or options for every row that leaves
them blank.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from adapters.crypto.timestamps import format_timestamp
from schemas import registry
from schemas.bodies.transfers import ClueTransferV1
from schemas.exceptions import BodyInvalid
from services.protocol import rules

from . import cells
from .errors import CellError, CellInvalid
from .reading import Row

SUSPECTED_CRIME = "suspected_crime"
TITLE_MAX = ClueTransferV1._declared_fields["title"].max_length
PERSON_ROLES = {"参保人": "insured_person", "嫌疑人": "suspect", "犯罪嫌疑人": "suspect", "医师": "doctor",
                "医生": "doctor", "药店": "pharmacy", "其他": "other"}
PERSON_ROLE_CODES = ("insured_person", "suspect", "doctor", "pharmacy", "other")
LIST_SEPARATORS = (";", "；")


@dataclass(frozen=True)
class Defaults:
    """Values for every row that leaves their column blank (the command's options)."""

    legal_basis: str | None = None
    team_reported_at: dt.datetime | None = None
    approved_by: str | None = None
    approved_at: dt.datetime | None = None


OPTION_NAMES = {"legal_basis": "--legal-basis", "team_reported_at": "--team-reported-at",
                "approved_by": "--approved-by", "approved_at": "--approved-at"}


@dataclass
class Mapped:
    """A row's body (None when refused), why it was refused, and where each field came from."""

    row: Row
    record_no: str | None
    body: dict | None = None
    errors: list[CellError] = field(default_factory=list)


class RowMapper:
    def __init__(self, *, defaults: Defaults, attachments_dir: Path, zone: ZoneInfo):
        self.defaults = defaults
        self.zone = zone
        self.attachments = cells.Attachments(attachments_dir)

    def map(self, row: Row) -> Mapped:
        reader = _Reader(row)
        record_no = reader.get("record_no", _record_number, required=True)
        mapped = Mapped(row, record_no)
        body, sources = self._body(reader, record_no)
        mapped.errors.extend(reader.errors)
        if not mapped.errors:
            try:
                registry.dump_body(registry.CLUE_TRANSFER, registry.latest_version(registry.CLUE_TRANSFER), body)
            except BodyInvalid as exc:
                mapped.errors.extend(_schema_errors(exc.messages, sources))
        if not mapped.errors:
            mapped.body = body
        return mapped

    def _body(self, reader: "_Reader", record_no: str | None) -> tuple[dict, dict]:
        sources: dict[str, Any] = {"clue_no": "record_no"}
        institution = reader.get("institution_name", cells.text, required=True)
        rule_hit = reader.get("rule_hit", cells.text, required=True)
        period_from = reader.get("period_from", cells.date, required=True)
        period_to = reader.get("period_to", cells.date, required=True)
        if period_from and period_to and period_to < period_from:
            reader.refuse("period_to", f"the period ends ({period_to}) before it begins ({period_from})")
        summary = reader.get("summary", cells.text, required=True)
        title = reader.get("title", cells.text)
        sources["title"] = "title" if title else "institution_name"
        if not title and institution and rule_hit:
            title = _shortened(f"{institution}涉嫌{rule_hit}", TITLE_MAX)
        sources["summary"] = "summary"
        if summary and period_from and period_to:
            summary = f"{summary}\n疑点编号：{record_no}；疑点期间：{period_from} 至 {period_to}；违规规则：{rule_hit}"

        if "amount_fen" in reader.row.cells:
            amount = reader.get("amount_fen", cells.fen, required=True)
            sources["amount_involved_fen"] = "amount_fen"
        else:
            amount = reader.get("amount", cells.yuan_to_fen, required=True)
            sources["amount_involved_fen"] = "amount"

        subjects, subject_sources = self._subjects(reader, institution)
        sources["subjects"] = subject_sources

        values = {}
        for name, parse in (("legal_basis", cells.text), ("approved_by", cells.text),
                            ("team_reported_at", lambda v: cells.timestamp(v, self.zone)),
                            ("approved_at", lambda v: cells.timestamp(v, self.zone))):
            sources[name] = name
            if cells.text(reader.row.cells.get(name)) is not None:
                value = reader.get(name, parse)  # a cell that is there but wrong is refused, not replaced
            else:
                value = getattr(self.defaults, name)
                if value is None:
                    reader.refuse(name, f"is empty and {OPTION_NAMES[name]} was not given")
                else:
                    sources[name] = OPTION_NAMES[name]
            values[name] = value

        attachments, attachment_sources = self._attachments(reader)
        sources["attachments"] = attachment_sources
        body = {
            "clue_no": record_no,
            "category": SUSPECTED_CRIME,
            "title": title,
            "summary": summary,
            "subjects": subjects,
            "amount_involved_fen": amount,
            "legal_basis": values["legal_basis"],
            "team_reported_at": _wire(values["team_reported_at"]),
            "approved_by": values["approved_by"],
            "approved_at": _wire(values["approved_at"]),
            "attachments": attachments,
        }
        return body, sources

    def _subjects(self, reader: "_Reader", institution: str | None) -> tuple[list[dict], list[dict]]:
        subjects, sources = [], []
        if institution:
            subject = {"role": "institution", "name": institution}
            source = {"role": "institution_name", "name": "institution_name"}
            credit_code = reader.get("institution_credit_code", cells.identity_number)
            if credit_code:
                subject.update(id_type="unified_social_credit_code", id_number=credit_code)
                source.update(id_type="institution_credit_code", id_number="institution_credit_code")
            code = reader.get("institution_code", cells.identity_number)
            if code:
                subject["institution_code"] = code
                source["institution_code"] = "institution_code"
            subjects.append(subject)
            sources.append(source)
        person = reader.get("person_name", cells.text)
        id_number = reader.get("person_id_number", cells.identity_number)
        role = reader.get("person_role", _person_role)
        if person:
            subject = {"role": role or "insured_person", "name": person}
            source = {"role": "person_role", "name": "person_name"}
            if id_number:
                subject.update(id_type="resident_id", id_number=id_number)
                source.update(id_type="person_id_number", id_number="person_id_number")
            subjects.append(subject)
            sources.append(source)
        elif id_number or role:
            reader.refuse("person_name", "is empty, but the row gives the person's ID number or role")
        return subjects, sources

    def _attachments(self, reader: "_Reader") -> tuple[list[dict], list[str]]:
        attachments, sources = [], []
        for column, category in (("transfer_letter_file", "transfer_letter"),
                                 ("investigation_report_file", "investigation_report")):
            written = reader.get(column, cells.text, required=True)
            if written:
                described = reader.attempt(column, lambda: self.attachments.describe(written, category))
                if described:
                    attachments.append(described)
                    sources.append(column)
        others = reader.get("other_evidence_files", cells.text) or ""
        for written in _split(others):
            described = reader.attempt("other_evidence_files",
                                       lambda w=written: self.attachments.describe(w, "other_evidence"))
            if described:
                attachments.append(described)
                sources.append("other_evidence_files")
        return attachments, sources


class _Reader:
    """Reads a row's cells, collecting every refusal instead of stopping at the first."""

    def __init__(self, row: Row):
        self.row = row
        self.errors: list[CellError] = []

    def get(self, column: str, parse: Callable[[Any], Any], *, required: bool = False):
        value = self.row.cells.get(column)
        if cells.text(value) is None:
            if required:
                self.refuse(column, "is empty")
            return None
        return self.attempt(column, lambda: parse(value))

    def attempt(self, column: str, action: Callable[[], Any]):
        try:
            return action()
        except CellInvalid as exc:
            self.errors.append(CellError(column, exc.rule, exc.detail))
            return None

    def refuse(self, column: str, detail: str) -> None:
        self.errors.append(CellError(column, rules.IMPORT_CELL_INVALID, detail))


def _record_number(value: Any) -> str | None:
    """A record number as a code: full-width letters and digits read as ASCII (ＹＢ-1 is YB-1),
    so that the row key and the duplicate check see one number however it was typed."""
    written = cells.text(value)
    return unicodedata.normalize("NFKC", written).strip() if written else None


def _person_role(value: Any) -> str:
    written = cells.text(value) or ""
    if written in PERSON_ROLE_CODES:
        return written
    if written in PERSON_ROLES:
        return PERSON_ROLES[written]
    raise CellInvalid(rules.IMPORT_CELL_INVALID, f"{written!r} is not a person's role "
                                                 f"({', '.join(PERSON_ROLES)}, or {', '.join(PERSON_ROLE_CODES)})")


def _split(written: str) -> list[str]:
    for separator in LIST_SEPARATORS[1:]:
        written = written.replace(separator, LIST_SEPARATORS[0])
    return [part.strip() for part in written.split(LIST_SEPARATORS[0]) if part.strip()]


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _wire(moment: dt.datetime | None) -> str | None:
    return format_timestamp(moment) if moment is not None else None


def _schema_errors(messages: dict, sources: dict) -> list[CellError]:
    """The schema's field errors, each with the column (or option) that fed the field."""
    found = []
    for path, text in _leaves(messages, ()):
        found.append(CellError(_source(path, sources), rules.BODY_INVALID, f"{'.'.join(map(str, path))}: {text}"))
    return found


def _leaves(messages: Any, path: tuple):
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from _leaves(value, path + (key,))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        yield path, " ".join(messages)
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            yield from _leaves(value, path + (index,))
    else:
        yield path, str(messages)


def _source(path: tuple, sources: dict) -> str | None:
    if not path or path[0] == "_schema":
        return None
    source = sources.get(path[0])
    if path[0] == "attachments" and isinstance(source, list):
        if len(path) > 1 and isinstance(path[1], int) and path[1] < len(source):
            return source[path[1]]
        return "transfer_letter_file"  # "a suspected-crime transfer must carry: ..."
    if isinstance(source, list):  # subjects: one mapping of fields to columns per subject
        if len(path) > 1 and isinstance(path[1], int) and path[1] < len(source):
            fields = source[path[1]]
            return fields.get(path[2]) if len(path) > 2 else fields.get("name")
        return "institution_name"
    return source
