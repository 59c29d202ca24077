"""cluebus import, without a broker: reading CSV and XLSX, the money in fen, mapping a row to a
clue_transfer checked by the node's own schema (errors named by column), the row key, the
report, --dry-run, and every kind of bad file refused in one line before anything is sent."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import Workbook, load_workbook

from schemas import registry
from services.cli.main import main
from services.importer import cells, report, template
from services.importer.columns import COLUMNS
from services.importer.errors import CellInvalid, FileRefused
from services.importer.keys import row_key
from services.importer.mapping import Defaults, RowMapper
from services.importer.plan import plan
from services.importer.reading import read_table
from services.importer.sending import ALREADY_SENT, FAILED, REFUSED, SENT, Outcome, send_rows
from services.protocol import rules

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
EXAMPLE = EXAMPLES / "suspicious_records_example.csv"
MEDICAL, POLICE = "medical_security", "public_security"
ZONE = ZoneInfo("Asia/Shanghai")
LIMIT = 100 * 2**20


def example_rows() -> list[dict]:
    with open(EXAMPLE, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, rows: list[dict], *, encoding: str = "utf-8-sig") -> Path:
    headers = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, headers, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def with_attachments(tmp_path: Path) -> Path:
    """The example's attachments, where the test's files point."""
    folder = tmp_path / "attachments"
    folder.mkdir(exist_ok=True)
    for source in (EXAMPLES / "attachments").iterdir():
        (folder / source.name).write_bytes(source.read_bytes())
    return tmp_path


def mapper(tmp_path: Path, defaults: Defaults = Defaults()) -> RowMapper:
    return RowMapper(defaults=defaults, attachments_dir=tmp_path, zone=ZONE)


def planned(tmp_path: Path, rows: list[dict], defaults: Defaults = Defaults()):
    table = read_table(write_csv(tmp_path / "records.csv", rows), max_bytes=LIMIT)
    return plan(table, mapper(with_attachments(tmp_path), defaults), agency=MEDICAL, recipient=POLICE)


def errors_of(item) -> list[tuple[str | None, str]]:
    return [(error.column, error.rule) for error in item.errors]


# -- the shipped example and templates ----------------------------------------------------------
def test_the_example_maps_to_valid_clue_transfers_whose_dates_follow_one_another():
    table = read_table(EXAMPLE, max_bytes=LIMIT)
    items = plan(table, mapper(EXAMPLES), agency=MEDICAL, recipient=POLICE)
    assert [item.row_number for item in items] == [2, 3, 4] and all(item.valid for item in items)
    for item, row in zip(items, example_rows()):
        body = item.body
        registry.dump_body(registry.CLUE_TRANSFER, 1, body)  # the node's own check
        assert body["clue_no"] == row["疑点编号"] and body["category"] == "suspected_crime"
        assert {a["category"] for a in body["attachments"]} == {"transfer_letter", "investigation_report"}
        assert row["违规规则"] in body["summary"] and row["疑点期间起"] in body["summary"]
        period_to = dt.date.fromisoformat(row["疑点期间止"])
        reported = dt.datetime.fromisoformat(body["team_reported_at"].replace("Z", "+00:00"))
        approved = dt.datetime.fromisoformat(body["approved_at"].replace("Z", "+00:00"))
        # Approved within 3 days of the team's report, counted as the law counts (not its first day).
        assert period_to < reported.date() < approved.date() <= reported.date() + dt.timedelta(days=3)
    assert items[0].body["amount_involved_fen"] == 12846000  # "128,460.00"


def test_the_templates_have_every_column_and_read_back(tmp_path):
    template.main([str(tmp_path)])
    for name in (template.CSV_NAME, template.XLSX_NAME):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes() or name.endswith(".xlsx")
    shipped = (EXAMPLES / template.CSV_NAME).read_bytes()
    assert shipped.startswith(b"\xef\xbb\xbf")  # the BOM, so that Excel shows the Chinese headers
    sheet = load_workbook(EXAMPLES / template.XLSX_NAME).active
    assert [cell.value for cell in sheet[1]] == template.headers()
    assert {column.zh for column in COLUMNS} - set(template.headers()) == {"涉及金额(分)"}
    # A template has a header and no rows: reading it says so, for both.
    for name in (template.CSV_NAME, template.XLSX_NAME):
        with pytest.raises(FileRefused, match="a header but no rows"):
            read_table(EXAMPLES / name, max_bytes=LIMIT)


def test_english_headers_and_an_xlsx_workbook_read_as_the_csv_does(tmp_path):
    rows = example_rows()
    english = {column.zh: column.key for column in COLUMNS}
    csv_items = planned(tmp_path, [{english[key]: value for key, value in row.items()} for row in rows])
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(list(rows[0]))
    for row in rows:
        values = list(row.values())
        values[7] = float(row["涉及金额"].replace(",", ""))           # amounts as numbers
        values[9] = dt.datetime.fromisoformat(row["疑点期间起"])      # dates as dates
        values[13] = dt.datetime.fromisoformat(row["专班报告时间"])   # local times as datetimes
        sheet.append(values)
    workbook.save(tmp_path / "records.xlsx")
    table = read_table(tmp_path / "records.xlsx", max_bytes=LIMIT)
    xlsx_items = plan(table, mapper(tmp_path), agency=MEDICAL, recipient=POLICE)
    assert table.sheet == "Sheet"
    assert [i.body for i in xlsx_items] == [i.body for i in csv_items]
    assert [i.request_id for i in xlsx_items] == [i.request_id for i in csv_items]


# -- money ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("written, fen", [("12,345.67", 1234567), ("12345.67", 1234567), ("0.1", 10),
                                          ("1,234,567", 123456700), ("¥862,300.00", 86230000), ("36.5元", 3650),
                                          (12345.67, 1234567), (0.07, 7), (1.15, 115), (300, 30000),
                                          ("90071992547409.91", 2**53 - 1)])
def test_yuan_become_fen_exactly(written, fen):
    assert cells.yuan_to_fen(written) == fen


@pytest.mark.parametrize("written", ["12.345", "-5.00", "1,2345.00", "12,34", "abc", "1e5", "", True, -1, 0.001,
                                     "90071992547409.92", "１２３"])
def test_what_is_not_an_amount_in_yuan_is_refused(written):
    with pytest.raises(CellInvalid) as refused:
        cells.yuan_to_fen(written)
    assert refused.value.rule == rules.IMPORT_CELL_INVALID


@pytest.mark.parametrize("written, fen", [("8623000", 8623000), (8623000, 8623000), (8623000.0, 8623000)])
def test_whole_fen(written, fen):
    assert cells.fen(written) == fen


@pytest.mark.parametrize("written", ["86230.5", 1.5, "1,000", "-1", False])
def test_fen_are_whole_numbers_only(written):
    with pytest.raises(CellInvalid):
        cells.fen(written)


# -- dates and times ------------------------------------------------------------------------------
@pytest.mark.parametrize("written", ["2026-06-01", "2026/6/1", "2026年6月1日", dt.datetime(2026, 6, 1, 0, 0)])
def test_dates_as_clerks_write_them(written):
    assert cells.date(written) == dt.date(2026, 6, 1)


@pytest.mark.parametrize("written, utc", [("2026-11-16 10:30", "2026-11-16T02:30:00Z"),
                                          ("2026/11/16 10:30:15", "2026-11-16T02:30:15Z"),
                                          ("2026-11-16T02:30:00Z", "2026-11-16T02:30:00Z"),
                                          ("2026-11-16T10:30:00+08:00", "2026-11-16T02:30:00Z"),
                                          (dt.datetime(2026, 11, 16, 10, 30), "2026-11-16T02:30:00Z")])
def test_times_without_an_offset_are_beijing_time(written, utc):
    assert cells.timestamp(written, ZONE).strftime("%Y-%m-%dT%H:%M:%SZ") == utc


@pytest.mark.parametrize("written", ["2026-11-16", "2026-02-30 10:00", "yesterday", dt.date(2026, 11, 16)])
def test_a_time_needs_a_valid_day_and_a_time_of_day(written):
    with pytest.raises(CellInvalid):
        cells.timestamp(written, ZONE)


# -- rows refused, naming the column and the rule ----------------------------------------------
def test_each_bad_row_is_refused_with_its_column_and_rule_and_the_others_are_valid(tmp_path):
    rows = example_rows()
    good, bad_amount, reversed_period = rows[0], dict(rows[1]), dict(rows[2])
    bad_amount["涉及金额"] = "36,912.505"
    reversed_period["疑点期间止"] = "2025-01-31"
    items = planned(tmp_path, [good, bad_amount, reversed_period])
    assert items[0].valid and items[0].request_id == row_key(MEDICAL, POLICE, good["疑点编号"])
    assert errors_of(items[1]) == [("amount", rules.IMPORT_CELL_INVALID)]
    assert "more than two decimal places" in items[1].errors[0].detail
    assert errors_of(items[2]) == [("period_to", rules.IMPORT_CELL_INVALID)]
    assert items[1].request_id is None and items[1].body is None


@pytest.mark.parametrize("header, value, column, words", [
    ("审批时间", "2026-11-26 09:00", "approved_at", "approval cannot precede the team's report"),  # a rule between fields
    ("线索标题", "长" * 300, "title", "Length must be between 1 and 256"),
    ("身份证号", "3" * 65, "person_id_number", "subjects.1.id_number"),
    ("机构编码", "H" * 65, "institution_code", "subjects.0.institution_code"),
    ("疑点编号", "YB-" + "9" * 70, "record_no", "clue_no"),
])
def test_schema_errors_are_mapped_back_to_the_column_that_fed_the_field(tmp_path, header, value, column, words):
    [item] = planned(tmp_path, [{**example_rows()[0], header: value}])
    assert errors_of(item) == [(column, rules.BODY_INVALID)] and words in item.errors[0].detail


def test_missing_values_and_files(tmp_path):
    row = dict(example_rows()[0])
    row["疑点描述"] = "   "
    row["移送书文件"] = "attachments/nowhere.pdf"
    row["参保人姓名"] = ""
    [item] = planned(tmp_path, [row])
    assert sorted(errors_of(item)) == sorted([("summary", rules.IMPORT_CELL_INVALID),
                                              ("transfer_letter_file", rules.IMPORT_CELL_INVALID),
                                              ("person_name", rules.IMPORT_CELL_INVALID)])
    assert any("cannot read the file 'attachments/nowhere.pdf'" in e.detail for e in item.errors)


def test_options_fill_blank_columns_and_a_blank_without_an_option_names_the_option(tmp_path):
    rows = [dict(row) for row in example_rows()[:2]]
    for row in rows:
        del row["审批人"], row["审批时间"]
    rows[1]["法律依据"] = ""
    defaults = Defaults(approved_by="市医疗保障局 李副局长", approved_at=cells.timestamp("2026-11-30 17:00", ZONE))
    first, second = planned(tmp_path, rows, defaults)
    assert first.valid and first.body["approved_by"] == "市医疗保障局 李副局长"
    assert first.body["approved_at"] == "2026-11-30T09:00:00Z"
    assert errors_of(second) == [("legal_basis", rules.IMPORT_CELL_INVALID)]
    assert "--legal-basis was not given" in second.errors[0].detail
    # An option that breaks the schema's rule is named as the option.
    early = Defaults(approved_by="x", approved_at=cells.timestamp("2026-11-01 09:00", ZONE))
    first, _ = planned(tmp_path, rows, early)
    assert errors_of(first) == [("--approved-at", rules.BODY_INVALID)]


def test_two_rows_with_one_record_number_are_both_refused(tmp_path):
    rows = example_rows()
    rows[2] = {**rows[2], "疑点编号": "ＹＢ-2026-0301"}  # full-width letters: the same number
    items = planned(tmp_path, rows)
    assert items[1].valid
    for item in (items[0], items[2]):
        assert errors_of(item) == [("record_no", rules.IMPORT_RECORD_DUPLICATE)]
        assert "rows 2, 4" in item.errors[0].detail


def test_an_id_number_stored_as_a_number_in_a_workbook_is_refused(tmp_path):
    rows = example_rows()
    workbook = Workbook()
    workbook.active.append(list(rows[0]))
    values = list(rows[0].values())
    values[5] = 320102195803124517  # Excel would keep 15 digits of it
    workbook.active.append(values)
    workbook.save(tmp_path / "records.xlsx")
    [item] = plan(read_table(tmp_path / "records.xlsx", max_bytes=LIMIT), mapper(with_attachments(tmp_path)),
                  agency=MEDICAL, recipient=POLICE)
    assert errors_of(item) == [("person_id_number", rules.IMPORT_CELL_INVALID)]


# -- the row key ----------------------------------------------------------------------------------
def test_the_row_key_is_stable_and_depends_on_agency_recipient_and_record():
    key = row_key(MEDICAL, POLICE, "YB-2026-0301")
    assert key == "import:28a002f0-a96d-542d-801e-c31914fca97b"  # fixed for ever: records already sent keep it
    assert len({key, row_key(MEDICAL, "health", "YB-2026-0301"), row_key("health", POLICE, "YB-2026-0301"),
                row_key(MEDICAL, POLICE, "YB-2026-0302")}) == 4


# -- sending (a fake call: the real node is tests/integration/test_import.py) --------------------
class Reply:
    def __init__(self, answers=None, error=None):
        self.answers, self.error = answers, error

    def result(self):
        if self.error:
            raise self.error
        return self.answers


def test_a_failed_chunk_is_called_again_with_the_same_row_keys(tmp_path):
    items = planned(tmp_path, example_rows())
    calls = []

    def start(clues):
        calls.append([clue["request_id"] for clue in clues])
        if len(calls) == 2:
            return Reply(error=TimeoutError("no answer"))
        return Reply([{"referral_id": f"r-{clue['request_id']}", "messages": [{"message_id": "m"}],
                       "repeated": len(calls) == 3 and index == 0}
                      if clue["body"]["clue_no"] != "YB-2026-0303" else
                      {"refused": True, "rule": rules.ROUTE_FORBIDDEN, "detail": "no"}
                      for index, clue in enumerate(clues)])
    outcomes = send_rows(items, start, chunk_size=2, in_flight=1, sleep=lambda seconds: None)
    assert calls[1] == calls[2] == [items[2].request_id]  # the second chunk, twice
    assert [o.outcome for o in sorted(outcomes, key=lambda o: o.row_number)] == [SENT, SENT, REFUSED]
    failing = send_rows(items[:1], lambda clues: Reply(error=ConnectionError("gone")), attempts=2,
                        sleep=lambda seconds: None)
    assert [o.outcome for o in failing] == [FAILED] and "ConnectionError: gone" in failing[0].errors[0].detail


def test_the_csv_report_opens_in_excel_and_runs_no_formula(tmp_path):
    items = planned(tmp_path, [{**example_rows()[0], "涉及金额": "abc"}])
    outcomes = [Outcome(2, "YB-1", SENT, "ref-1", "msg-1"), Outcome(3, "=cmd", ALREADY_SENT, "ref-2", "msg-2"),
                Outcome(4, items[0].record_no, REFUSED, errors=items[0].errors)]
    report.write_csv(outcomes, tmp_path / "report.csv")
    data = (tmp_path / "report.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    written = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [r["outcome"] for r in written] == [SENT, ALREADY_SENT, REFUSED]
    assert written[1]["record_no"] == "'=cmd"
    assert written[2]["column"] == "涉及金额 (amount)" and written[2]["rule"] == rules.IMPORT_CELL_INVALID
    assert report.summary("f.csv", outcomes, dry_run=False) == "f.csv: 3 rows: 1 sent, 1 already sent, 1 refused"


# -- the command line: --dry-run, and bad files in one line, before anything is sent -------------
@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """The command with no broker to reach: a bad file must be refused before it tries."""
    monkeypatch.setenv("CLUEBUS_CONTROL_URI", "amqp://127.0.0.1:1/{agency}")
    monkeypatch.setenv("CLUEBUS_CREDENTIALS_DIR", str(tmp_path / "credentials"))

    def run(*argv):
        code = main(["import", *map(str, argv), "--as", MEDICAL])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_dry_run_reports_every_row_and_needs_no_node(cli, tmp_path):
    rows = example_rows()
    rows[1] = {**rows[1], "涉及金额": "-36,912.50"}
    code, out, err = cli(write_csv(with_attachments(tmp_path) / "records.csv", rows), "--dry-run")
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].startswith("row     2  YB-2026-0301") and "valid" in lines[0]
    assert "refused" in lines[1] and "涉及金额 (amount) [import.cell_invalid]" in lines[1]
    assert lines[-1] == "records.csv → public_security: 3 rows: 2 valid, 1 refused; dry run, nothing sent"
    code, out, _ = cli(EXAMPLE, "--dry-run", "--report", tmp_path / "report.csv")
    assert code == 0 and out.splitlines() == [
        "suspicious_records_example.csv → public_security: 3 rows: 3 valid, 0 refused; dry run, nothing sent"]


def _sheets(path: Path, build) -> Path:
    workbook = Workbook()
    workbook.active.append(list(example_rows()[0]))
    workbook.active.append(list(example_rows()[0].values()))
    build(workbook)
    workbook.save(path)
    return path


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str, str]]:
    rows = example_rows()
    files = {}
    gbk = write_csv(tmp_path / "gbk.csv", rows, encoding="gb18030")
    files["GBK"] = (gbk, rules.IMPORT_ENCODING, "not UTF-8")
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(EXAMPLE.read_text(encoding="utf-8-sig").encode("utf-16"))
    files["UTF-16"] = (utf16, rules.IMPORT_ENCODING, "UTF-16")
    files["missing columns"] = (write_csv(tmp_path / "missing.csv", [{k: v for k, v in row.items()
                                                                       if k not in ("涉及金额", "疑点描述")}
                                                                      for row in rows]),
                                rules.IMPORT_COLUMNS, "missing column(s): 疑点描述 (summary), 涉及金额 (amount) or "
                                                      "涉及金额(分) (amount_fen)")
    files["unknown column"] = (write_csv(tmp_path / "unknown.csv", [{**row, "涉及金额（万元）": "1"} for row in rows]),
                               rules.IMPORT_COLUMNS, "unknown column(s): 涉及金额（万元）")
    files["both amounts"] = (write_csv(tmp_path / "both.csv", [{**row, "amount_fen": "1"} for row in rows]),
                             rules.IMPORT_COLUMNS, "not both")
    files["twice"] = (write_csv(tmp_path / "twice.csv", [{**row, "record_no": "x"} for row in rows]),
                      rules.IMPORT_COLUMNS, "given twice: 疑点编号 / record_no")
    injected = [dict(row) for row in rows]
    injected[1]["疑点描述"] = "=cmd|' /C calc'!A0"
    files["CSV injection"] = (write_csv(tmp_path / "injection.csv", injected), rules.IMPORT_FORMULA, "cell L3")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    files["empty"] = (empty, rules.IMPORT_FORMAT, "is empty")
    blank = tmp_path / "blank.csv"
    blank.write_bytes(b"\xef\xbb\xbf\r\n,,\r\n")
    files["blank"] = (blank, rules.IMPORT_FORMAT, "no header and no rows")
    files["header only"] = (EXAMPLES / template.CSV_NAME, rules.IMPORT_FORMAT, "a header but no rows")
    pdf = tmp_path / "records.csv"
    pdf.write_bytes((EXAMPLES / "attachments" / "YB-2026-0301-transfer-letter.pdf").read_bytes())
    files["PDF"] = (pdf, rules.IMPORT_FORMAT, "is a PDF")
    archive = tmp_path / "records.xlsx"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("records.csv", EXAMPLE.read_bytes())
    files["zip"] = (archive, rules.IMPORT_FORMAT, "a zip archive, not an XLSX workbook")
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    files["xls"] = (xls, rules.IMPORT_FORMAT, "Excel 97-2003")
    files["formula"] = (_sheets(tmp_path / "formula.xlsx", lambda wb: wb.active.__setitem__("H2", "=SUM(1,2)")),
                        rules.IMPORT_FORMULA, "cell H2 of sheet 'Sheet' holds a formula")
    files["merged"] = (_sheets(tmp_path / "merged.xlsx", lambda wb: wb.active.merge_cells("B2:C2")),
                       rules.IMPORT_MERGED_CELLS, "merged cells B2:C2")
    files["sheets"] = (_sheets(tmp_path / "sheets.xlsx", lambda wb: wb.create_sheet("说明")),
                       rules.IMPORT_SHEET, "has 2 sheets (Sheet, 说明): choose the one to import with --sheet NAME")
    large = tmp_path / "large.csv"
    with open(large, "wb") as handle:  # sparse: nothing of it is written, or read
        handle.truncate(LIMIT + 1)
    files["over 100 MB"] = (large, rules.IMPORT_TOO_LARGE, "over the limit of 104,857,600")
    files["not there"] = (tmp_path / "nowhere.csv", rules.IMPORT_FORMAT, "cannot read")
    return files


BAD_FILES = ("GBK", "UTF-16", "missing columns", "unknown column", "both amounts", "twice", "CSV injection", "empty",
             "blank", "header only", "PDF", "zip", "xls", "formula", "merged", "sheets", "over 100 MB", "not there")


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_one_line_with_its_rule_and_sends_nothing(cli, tmp_path, case):
    path, rule, words = _bad_files(tmp_path)[case]
    code, out, err = cli(path)  # not a dry run: it would try the unreachable broker after the file
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"[{rule}]" in err and words in err and err.strip().endswith("nothing sent"), err


def test_gb18030_is_read_when_named_and_a_sheet_when_chosen(cli, tmp_path):
    with_attachments(tmp_path)
    gbk = write_csv(tmp_path / "gbk.csv", example_rows(), encoding="gb18030")
    code, out, err = cli(gbk, "--encoding", "gb18030", "--dry-run")
    assert code == 0 and "3 valid" in out, err
    sheets = _sheets(tmp_path / "sheets.xlsx", lambda wb: wb.create_sheet("说明"))
    code, out, err = cli(sheets, "--sheet", "Sheet", "--dry-run")
    assert code == 0 and "(sheet Sheet)" in out and "1 valid" in out, err
    code, _, err = cli(sheets, "--sheet", "疑点", "--dry-run")
    assert code == 2 and "has no sheet '疑点'" in err


def test_the_size_limit_is_configuration(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CLUEBUS_IMPORT_MAX_FILE_BYTES", "1000")
    code, _, err = cli(EXAMPLE, "--dry-run")
    assert code == 2 and "[import.too_large]" in err and "over the limit of 1,000" in err


def test_a_recipient_the_routes_do_not_allow_and_a_bad_option_are_one_line(cli):
    code, _, err = cli(EXAMPLE, "--to", "court", "--dry-run")
    assert code == 2 and "may not send clue transfers to 'court'" in err
    code, _, err = cli(EXAMPLE, "--approved-at", "2026-11-30", "--dry-run")
    assert code == 2 and "--approved-at: '2026-11-30' has no time of day" in err


def test_a_real_import_without_a_reachable_control_plane_is_one_line(cli):
    code, out, err = cli(EXAMPLE)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.strip().endswith("nothing sent")
