"""The empty templates of a suspicious-records file, from the column table itself:
``python -m services.importer.template DIR`` writes suspicious_records_template.csv (UTF-8 with
BOM, as Excel's "CSV UTF-8" saves it, so that Excel shows the Chinese headers) and
suspicious_records_template.xlsx (one sheet; ID and code columns formatted as text, so that
Excel keeps every digit of an 18-digit ID)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from .columns import COLUMNS

CSV_NAME = "suspicious_records_template.csv"
XLSX_NAME = "suspicious_records_template.xlsx"
SHEET_TITLE = "疑点数据"
TEXT_COLUMNS = ("record_no", "institution_credit_code", "institution_code", "person_id_number")
# The template offers one of the two amount columns: yuan, as the national platform shows it.
LEFT_OUT = ("amount_fen",)


def headers() -> list[str]:
    return [column.zh for column in COLUMNS if column.key not in LEFT_OUT]


def write_csv(path: Path) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle, lineterminator="\r\n").writerow(headers())


def write_xlsx(path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = SHEET_TITLE
    sheet.append(headers())
    kept = [column for column in COLUMNS if column.key not in LEFT_OUT]
    for index, column in enumerate(kept, start=1):
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = max(12, 2 * len(column.zh) + 2)
        if column.key in TEXT_COLUMNS:
            for row in range(2, 1002):
                sheet[f"{letter}{row}"].number_format = "@"
    sheet.freeze_panes = "A2"
    workbook.save(path)


def main(argv: list[str]) -> int:
    directory = Path(argv[0] if argv else ".")
    write_csv(directory / CSV_NAME)
    write_xlsx(directory / XLSX_NAME)
    print(f"wrote {directory / CSV_NAME} and {directory / XLSX_NAME}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
