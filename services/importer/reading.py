"""Reading a suspicious-records file into rows: a CSV text (UTF-8, with or without BOM, or the
encoding the caller names) or the one sheet of an XLSX workbook.

Every refusal of the whole file is a FileRefused naming its rule and what to do; the size is
checked before anything is read. Row numbers are those a spreadsheet shows (the header is
row 1), so a clerk finds the row the report names.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.protocol import rules

from .columns import label, resolve_header
from .errors import FileRefused

# A workbook is a zip: refuse one whose parts unpack to more than this many times the size
# limit (a "zip bomb" would otherwise fill the memory before a single row is read).
MAX_UNPACKED_RATIO = 20
# What a spreadsheet runs as a formula when the cell is opened (CSV injection); a number such
# as "-12.50" is a value, not a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?[0-9][0-9,]*(?:\.[0-9]+)?$")

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 .xls (and other OLE files)


@dataclass(frozen=True)
class Row:
    number: int                 # as a spreadsheet shows it
    cells: dict[str, Any]       # column key -> the cell's value (text from a CSV; typed from XLSX)


@dataclass
class Table:
    path: Path
    keys: list[str]             # the columns present, in the file's order
    rows: list[Row] = field(default_factory=list)
    sheet: str | None = None    # the sheet read, for a workbook


def read_table(path: str | Path, *, max_bytes: int, encoding: str | None = None,
               sheet: str | None = None) -> Table:
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise FileRefused(rules.IMPORT_FORMAT, f"{path} is not a file")
    except OSError as exc:
        raise FileRefused(rules.IMPORT_FORMAT, f"cannot read {path}: {exc.strerror}") from None
    if size > max_bytes:
        raise FileRefused(rules.IMPORT_TOO_LARGE, f"{path} is {size:,} bytes, over the limit of {max_bytes:,} "
                                                  f"(IMPORT.MAX_FILE_BYTES): split it into smaller files")
    if size == 0:
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} is empty")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(ZIP_MAGIC):
        return _read_workbook(path, max_bytes=max_bytes, sheet=sheet)
    if head.startswith(b"%PDF"):
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} is a PDF, not a CSV or XLSX file")
    if head.startswith(OLE_MAGIC):
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} is an Excel 97-2003 (.xls) or other OLE file: save it as "
                                               f".xlsx or as CSV UTF-8")
    if sheet is not None:
        raise FileRefused(rules.IMPORT_SHEET, f"{path} is a CSV file: --sheet is for XLSX workbooks")
    return _read_csv(path, path.read_bytes(), encoding)


# -- CSV -----------------------------------------------------------------------------------------
def _decode(path: Path, data: bytes, encoding: str | None) -> str:
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise FileRefused(rules.IMPORT_ENCODING, f"unknown encoding {encoding!r}") from None
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise FileRefused(rules.IMPORT_ENCODING, f"{path} is not {encoding}: byte 0x{data[exc.start]:02x} at "
                                                     f"offset {exc.start}") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileRefused(rules.IMPORT_ENCODING, f"{path} is UTF-16 (Excel's \"Unicode text\"): save it as "
                                                 f"\"CSV UTF-8 (逗号分隔)\"")
    if b"\x00" in data[:8192]:
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} is a binary file, not a CSV or XLSX file")
    try:
        return data.decode("utf-8-sig")  # the BOM Excel's "CSV UTF-8" writes is dropped
    except UnicodeDecodeError as exc:
        hint = ""
        try:
            data.decode("gb18030")
            hint = " (it reads as GB18030/GBK, which Excel's plain \"CSV\" writes on Chinese Windows)"
        except UnicodeDecodeError:
            pass
        raise FileRefused(rules.IMPORT_ENCODING,
                          f"{path} is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}{hint}; save it as "
                          f"\"CSV UTF-8 (逗号分隔)\", or pass --encoding gb18030 if it is GB18030") from None


def _read_csv(path: Path, data: bytes, encoding: str | None) -> Table:
    text = _decode(path, data, encoding)
    records = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    keys: list[str | None] = []
    table: Table | None = None
    try:
        for number, record in enumerate(records, start=1):
            if not any(cell.strip() for cell in record):
                continue  # blank lines (a spreadsheet's trailing empty rows)
            if header is None:
                header = record
                keys = resolve_header(record)
                table = Table(path, [key for key in keys if key])
                continue
            if len(record) > len(keys) and any(cell.strip() for cell in record[len(keys):]):
                raise FileRefused(rules.IMPORT_FORMAT, f"row {number} has {len(record)} cells, the header "
                                                       f"{len(keys)} (a comma in an unquoted cell?)")
            cells = {}
            for index, (key, value) in enumerate(zip(keys, record)):
                if key is None:
                    if value.strip():
                        raise FileRefused(rules.IMPORT_FORMAT, f"cell {_column_letter(index)}{number} has a value "
                                                               f"under no header")
                    continue
                _refuse_formula(value, f"{_column_letter(index)}{number}", key)
                cells[key] = value
            table.rows.append(Row(number, cells))
    except csv.Error as exc:
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} is not a well-formed CSV file: {exc}") from None
    return _checked(path, table)


def _checked(path: Path, table: Table | None) -> Table:
    if table is None:
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} has no header and no rows")
    if not table.rows:
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} has a header but no rows")
    return table


def _refuse_formula(value: Any, cell: str, key: str) -> None:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.match(value.strip()):
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise FileRefused(rules.IMPORT_FORMULA, f"cell {cell} ({label(key)}) starts like a formula: {shown!r}; "
                                                f"formulas are not imported (write the value itself)")


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


# -- XLSX ----------------------------------------------------------------------------------------
def _read_workbook(path: Path, *, max_bytes: int, sheet: str | None) -> Table:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} is a damaged zip archive, not a readable XLSX workbook: "
                                               f"{exc}") from None
    if "xl/workbook.xml" not in names:
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} is a zip archive, not an XLSX workbook")
    if unpacked > max_bytes * MAX_UNPACKED_RATIO:
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} unpacks to {unpacked:,} bytes, more than "
                                               f"{MAX_UNPACKED_RATIO} times the size limit")
    import openpyxl  # only for workbooks: it takes a while to import
    try:
        # data_only=False: a formula is seen as "=..." and refused, not taken at its cached value.
        workbook = openpyxl.load_workbook(path, data_only=False)
    except Exception as exc:  # openpyxl raises many kinds for a damaged workbook
        raise FileRefused(rules.IMPORT_FORMAT, f"{path} is not a readable XLSX workbook: "
                                               f"{exc.__class__.__name__}: {exc}") from None
    sheets = workbook.worksheets
    if sheet is not None:
        chosen = [s for s in sheets if s.title == sheet]
        if not chosen:
            raise FileRefused(rules.IMPORT_SHEET, f"{path} has no sheet {sheet!r} (its sheets: "
                                                  f"{', '.join(s.title for s in sheets)})")
        worksheet = chosen[0]
    elif len(sheets) != 1:
        raise FileRefused(rules.IMPORT_SHEET, f"{path} has {len(sheets)} sheets ({', '.join(s.title for s in sheets)}):"
                                              f" choose the one to import with --sheet NAME")
    else:
        worksheet = sheets[0]
    merged = sorted(str(r) for r in worksheet.merged_cells.ranges)
    if merged:
        more = f" and {len(merged) - 1} more" if len(merged) > 1 else ""
        raise FileRefused(rules.IMPORT_MERGED_CELLS, f"sheet {worksheet.title!r} has merged cells {merged[0]}{more}: "
                                                     f"unmerge them and fill every cell")
    table: Table | None = None
    keys: list[str | None] = []
    for cells in worksheet.iter_rows():
        values = [cell.value for cell in cells]
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        for cell in cells:
            if cell.data_type == "f":
                raise FileRefused(rules.IMPORT_FORMULA, f"cell {cell.coordinate} of sheet {worksheet.title!r} holds a "
                                                        f"formula ({str(cell.value)[:40]!r}): paste its value instead")
        if table is None:
            keys = resolve_header(["" if v is None else str(v) for v in values])
            table = Table(path, [key for key in keys if key], sheet=worksheet.title)
            continue
        row = {}
        for cell, key in zip(cells, keys):
            if key is None:
                if cell.value is not None and str(cell.value).strip():
                    raise FileRefused(rules.IMPORT_FORMAT, f"cell {cell.coordinate} has a value under no header")
                continue
            _refuse_formula(cell.value, cell.coordinate, key)
            row[key] = cell.value
        number = cells[0].row
        table.rows.append(Row(number, row))
    return _checked(path, table)
