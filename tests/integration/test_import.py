"""cluebus import against the real bus: the rows of a file arrive at the police as clue
transfers, each receipted; the same file again sends nothing new; a file with a bad row sends
the others and reports the bad one with its row, column and rule; without a running node,
one line and nothing sent."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from schemas import registry as k
from services.cli.main import main
from services.handlers import queries
from services.importer.keys import row_key

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
MEDICAL, POLICE, PROCURATORATE = "medical_security", "public_security", "procuratorate"
RECORDS = ("YB-2026-0301", "YB-2026-0302", "YB-2026-0303")


def _cli(bus, monkeypatch, capsys, *argv):
    for name, value in bus.environ.items():
        monkeypatch.setenv(name, value)
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def _example_here(tmp_path: Path, *, bad_amount_on: str | None = None) -> Path:
    """The shipped example and its attachments; one row's amount made wrong, if asked."""
    shutil.copytree(EXAMPLES / "attachments", tmp_path / "attachments", dirs_exist_ok=True)
    with open(EXAMPLES / "suspicious_records_example.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["疑点编号"] == bad_amount_on:
            row["涉及金额"] = "36,912.5O"  # a letter O typed for a zero
    path = tmp_path / "records.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _received_clues(bus) -> dict[str, dict]:
    return {m["body"]["clue_no"]: m for m in queries.inbox(bus.context(POLICE), kind=k.CLUE_TRANSFER, limit=1000)}


def _sent_count(bus) -> int:
    return len(queries.outbox(bus.context(MEDICAL)))


def _outcomes(out: str) -> dict[str, str]:
    """record number → the report line's words after it."""
    found = {}
    for line in out.splitlines():
        if line.startswith("row "):
            words = line.split()
            found[words[2]] = " ".join(words[3:])
    return found


def test_an_import_sends_each_row_once_and_a_second_run_sends_nothing(bus, tmp_path, monkeypatch, capsys):
    bus.sync_clock()
    path = _example_here(tmp_path)
    bus.create(MEDICAL, POLICE, PROCURATORATE)
    # Three transfers accepted by the police; six receipts back (the transfers and their copies).
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted", count=3), \
            bus.waiter(PROCURATORATE, kind=k.COPY_NOTICE, status="accepted", count=3), \
            bus.waiter(MEDICAL, kind=k.RECEIPT, count=6):
        bus.start(MEDICAL, POLICE, PROCURATORATE)
        code, out, err = _cli(bus, monkeypatch, capsys, "import", path, "--as", MEDICAL)
        assert code == 0, out + err
    first = _outcomes(out)
    assert set(first) == set(RECORDS) and all(words.startswith("sent referral ") for words in first.values()), out
    assert out.splitlines()[-1] == "records.csv → public_security: 3 rows: 3 sent, 0 already sent, 0 refused"

    received = _received_clues(bus)
    assert set(received) == set(RECORDS)
    for record, words in first.items():
        assert received[record]["status"] == "accepted"
        assert words.split()[2] == received[record]["referral_id"]
    receipted = [row for row in queries.outbox(bus.context(MEDICAL)) if row["kind"] == k.CLUE_TRANSFER]
    assert len(receipted) == 3 and all(row["state"] == "receipted" for row in receipted)
    sent_before = _sent_count(bus)

    # The same file again: every row "already sent", with the referral of its first run.
    code, out, err = _cli(bus, monkeypatch, capsys, "import", path, "--as", MEDICAL)
    assert code == 0, out + err
    second = _outcomes(out)
    assert {record: words.split()[3] for record, words in second.items()} == \
        {record: words.split()[2] for record, words in first.items()}
    assert all(words.startswith("already sent referral ") for words in second.values()), out
    assert out.splitlines()[-1] == "records.csv → public_security: 3 rows: 0 sent, 3 already sent, 0 refused"
    # Nothing new was signed (the node writes its outbox before it answers) nor received.
    assert _sent_count(bus) == sent_before == 6
    assert set(_received_clues(bus)) == set(RECORDS)


def test_a_bad_row_is_reported_and_the_others_are_sent(bus, tmp_path, monkeypatch, capsys):
    bus.sync_clock()
    path = _example_here(tmp_path, bad_amount_on="YB-2026-0302")
    bus.create(MEDICAL, POLICE, PROCURATORATE)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted", count=2):
        bus.start(MEDICAL, POLICE, PROCURATORATE)
        code, out, err = _cli(bus, monkeypatch, capsys, "import", path, "--as", MEDICAL, "--report",
                              tmp_path / "report.csv")
    assert code == 1, out + err
    assert out.splitlines() == ["records.csv → public_security: 3 rows: 2 sent, 0 already sent, 1 refused"]
    with open(tmp_path / "report.csv", encoding="utf-8-sig", newline="") as handle:
        report = {row["record_no"]: row for row in csv.DictReader(handle)}
    bad = report["YB-2026-0302"]
    assert (bad["row"], bad["outcome"], bad["column"], bad["rule"]) == \
        ("3", "refused", "涉及金额 (amount)", "import.cell_invalid")
    assert "'36,912.5O' is not an amount in yuan" in bad["detail"]
    assert {report[r]["outcome"] for r in ("YB-2026-0301", "YB-2026-0303")} == {"sent"}
    assert set(_received_clues(bus)) == {"YB-2026-0301", "YB-2026-0303"}
    # The node never saw the refused row's key: fixed, the same file sends it (and only it).
    assert row_key(MEDICAL, POLICE, "YB-2026-0302") not in {row["referral_id"] for row in report.values()}
    fixed = _example_here(tmp_path)
    with bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted", count=1):
        code, out, err = _cli(bus, monkeypatch, capsys, "import", fixed, "--as", MEDICAL)
    assert code == 0, out + err
    assert out.splitlines()[-1] == "records.csv → public_security: 3 rows: 1 sent, 2 already sent, 0 refused"
    assert set(_received_clues(bus)) == set(RECORDS)


def test_without_a_running_node_it_says_so_in_one_line_and_sends_nothing(bus, tmp_path, monkeypatch, capsys):
    path = _example_here(tmp_path)
    bus.start(POLICE)
    code, out, err = _cli(bus, monkeypatch, capsys, "import", path, "--as", MEDICAL)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"the {MEDICAL} node is not running" in err and f"cluebus run --agency {MEDICAL}" in err
    # A node that ran and stopped leaves its control queue behind: still "not running".
    bus.start(MEDICAL)
    bus.stop(MEDICAL)
    code, out, err = _cli(bus, monkeypatch, capsys, "import", path, "--as", MEDICAL)
    assert code == 2 and f"the {MEDICAL} node is not running" in err, err
    assert queries.inbox(bus.context(POLICE)) == []
