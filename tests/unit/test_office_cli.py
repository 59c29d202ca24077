"""``cluebus overdue`` and ``cluebus stats`` (services/cli/office_cmd.py), broker-free.

The office's SQLite database is filled through ``handlers.observe`` with envelopes signed by real
keys (``initialise_key_directory``), on a FakeClock; the command line then reads it through
``services.cli.main.main``, configured either with CLUEBUS_* environment variables or with
``--config FILE``.

Two referrals in autumn 2026 (in the past of any run, so ``stats``, whose as_of is the real
now, sees them all):

* A: a clue on Tuesday 2026-09-29 (filing decision due 2026-10-08T16:00Z after the National Day
  holidays), receipted at once, decided "not filed" 12 hours late.
* B: a clue on Monday 2026-10-12 (decision due 2026-10-15T16:00Z), receipted, never decided.
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from openpyxl import load_workbook

from adapters.crypto.keys import initialise_key_directory
from adapters.exporters.stats_csv import HEADERS
from adapters.exporters.stats_xlsx import OVERDUE_SHEET, STATISTICS_SHEET
from services import bootstrap
from services import config as c
from services import settings
from services.cli.main import main
from services.config import agency_codes, load_config
from services.office import handlers
from services.office.stats import ADDITIVE_FIELDS
from services.bootstrap import node_agencies
from services.handlers.workflows import copy_notice_body
from tests.fixtures.bodies import sample_body
from tests.fixtures.keys import FakeClock

UTC = timezone.utc
MS, PS, PROC, OFFICE = "medical_security", "public_security", "procuratorate", "joint_office"

REFERRAL_A = "3a1f0e9c-1b2d-4c3e-8f40-5a6b7c8d9e01"
REFERRAL_B = "4b2e1f0d-2c3e-4d4f-9a51-6b7c8d9e0f12"
A_SENT = datetime(2026, 9, 29, 2, 0, tzinfo=UTC)
A_DUE = datetime(2026, 10, 8, 16, 0, tzinfo=UTC)
B_SENT = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)
B_DUE = datetime(2026, 10, 15, 16, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_cluebus_environment(monkeypatch):
    """Only what a test sets: nothing from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("CLUEBUS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def paths(tmp_path):
    keys = tmp_path / "keys"
    data = tmp_path / "data"
    agencies = agency_codes(load_config(environ={}))
    initialise_key_directory(keys, agencies, validity=timedelta(days=3650),
                             now=datetime(2026, 1, 1, tzinfo=UTC))
    return {"CLUEBUS_DATA_DIR": str(data), "CLUEBUS_KEYS_DIR": str(keys)}


class Observer:
    """The office observing envelopes that the bureau and the police sign, on a FakeClock."""

    def __init__(self, config):
        self.clock = FakeClock(A_SENT)
        self.store = bootstrap.open_store(config, OFFICE)
        self.office = bootstrap.office_context(config, clock=self.clock, store=self.store)
        self.bureau = settings.protocol_for(config, MS, clock=self.clock)[0]
        self.police = settings.protocol_for(config, PS, clock=self.clock)[0]
        self.procuratorate = settings.protocol_for(config, PROC, clock=self.clock)[0]

    def observe(self, signed):
        assert handlers.observe(self.office, signed.raw)["status"] == "observed"
        return signed

    def refer(self, referral_id, sent_at, *, receipted=True):
        body = sample_body("clue_transfer")
        body["team_reported_at"] = "2026-09-28T01:00:00Z"
        body["approved_at"] = "2026-09-28T05:00:00Z"
        clue = self.observe(self.bureau.compose("clue_transfer", PS, body, referral_id=referral_id,
                                                sent_at=sent_at))
        # Its copy to the procuratorate (抄送), as the bureau's node sends it, receipted.
        copy = self.observe(self.bureau.compose("copy_notice", PROC, copy_notice_body(clue, PS),
                                                referral_id=referral_id, sent_at=sent_at))
        self.observe(self.procuratorate.compose(
            "receipt", MS, {"status": "accepted", "message_sha256": copy.sha256, "received_at": sent_at,
                            "reason_codes": []},
            referral_id=referral_id, in_reply_to=copy.message_id, sent_at=sent_at + timedelta(minutes=1)))
        if receipted:
            receipt = {"status": "accepted", "message_sha256": clue.sha256, "received_at": sent_at,
                       "reason_codes": []}
            self.observe(self.police.compose("receipt", MS, receipt, referral_id=referral_id,
                                             in_reply_to=clue.message_id, sent_at=sent_at + timedelta(minutes=1)))

    def decide(self, referral_id, at):
        self.observe(self.police.compose("filing_decision", MS, {"decision": "not_filed", "decided_at": at,
                                                                 "reasons": ["证据不足"]},
                                         referral_id=referral_id, sent_at=at))

    def close(self):
        self.store.dispose()


def _fill(config) -> None:
    """What the office would have observed from the bus, through handlers.observe."""
    observer = Observer(config)
    observer.refer(REFERRAL_A, A_SENT)
    observer.decide(REFERRAL_A, A_DUE + timedelta(hours=12))
    observer.refer(REFERRAL_B, B_SENT)
    observer.close()


@pytest.fixture
def env(paths, monkeypatch):
    """The office database, filled; the CLI configured by environment variables."""
    for name, value in paths.items():
        monkeypatch.setenv(name, value)
    _fill(load_config())
    return paths


@pytest.fixture
def config_file(paths, tmp_path):
    """The office database, filled; a configuration file naming it (no environment variables)."""
    shipped = (Path(c.__file__).with_name("cluebus.yaml")).read_text(encoding="utf-8")
    text = (shipped.replace("${CLUEBUS_DATA_DIR:./var}", paths["CLUEBUS_DATA_DIR"])
            .replace("${CLUEBUS_KEYS_DIR:./var/keys}", paths["CLUEBUS_KEYS_DIR"]))
    assert text != shipped
    path = tmp_path / "office.yaml"
    path.write_text(text, encoding="utf-8")
    _fill(load_config(path))
    return str(path)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- overdue ---------------------------------------------------------------------------------------------

def _check_overdue_text(code, out, err):
    assert code == 0 and err == ""
    lines = out.splitlines()
    # Times for people: the office's local time (Asia/Shanghai), to the minute, with its offset.
    assert lines[0] == "as of 2026-10-17 00:00+08:00: 1 overdue, 0 nearing their limit"
    [line] = lines[1:]
    assert "[overdue" in line and PS in line and "filing_decision" in line
    assert "1 d 0 h late" in line
    assert f"referral {REFERRAL_B}" in line and f"(waiting: {MS})" in line


def test_overdue_prints_the_late_step_with_environment_variables(env, capsys):
    _check_overdue_text(*run(capsys, "overdue", "--as-of", "2026-10-16T16:00:00Z"))


def test_overdue_prints_the_late_step_with_a_config_file(config_file, capsys):
    _check_overdue_text(*run(capsys, "--config", config_file, "overdue", "--as-of", "2026-10-16T16:00:00Z"))


def test_overdue_shows_a_step_nearing_its_limit(env, capsys):
    code, out, _ = run(capsys, "overdue", "--as-of", "2026-10-15T05:00:00Z")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "as of 2026-10-15 13:00+08:00: 0 overdue, 1 nearing their limit"
    assert "[warning" in lines[1] and "due 2026-10-16 00:00+08:00" in lines[1]


def test_overdue_with_utc_shows_utc_to_the_second(env, capsys):
    code, out, _ = run(capsys, "--utc", "overdue", "--as-of", "2026-10-15T05:00:00Z")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "as of 2026-10-15T05:00:00Z: 0 overdue, 1 nearing their limit"
    assert "due 2026-10-15T16:00:00Z" in lines[1]


def test_overdue_in_the_configured_time_zone(env, capsys, monkeypatch):
    monkeypatch.setenv("CLUEBUS_OFFICE_TIMEZONE", "Europe/Berlin")
    code, out, _ = run(capsys, "overdue", "--as-of", "2026-10-15T05:00:00Z")
    assert code == 0
    assert out.splitlines()[0] == "as of 2026-10-15 07:00+02:00: 0 overdue, 1 nearing their limit"


def test_an_unknown_time_zone_is_one_line(env, capsys, monkeypatch):
    monkeypatch.setenv("CLUEBUS_OFFICE_TIMEZONE", "Mars/Olympus")
    code, out, err = run(capsys, "overdue")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "unknown time zone 'Mars/Olympus'" in err


def test_overdue_before_anything_is_due_lists_nothing(env, capsys):
    code, out, _ = run(capsys, "overdue", "--as-of", "2026-10-13")
    assert code == 0
    # A bare date is local midnight in the office's time zone (Asia/Shanghai).
    assert out.splitlines() == ["as of 2026-10-13 00:00+08:00: 0 overdue, 0 nearing their limit"]


def test_overdue_json_parses(env, capsys):
    code, out, err = run(capsys, "overdue", "--json", "--as-of", "2026-10-16T16:00:00Z")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["as_of"] == "2026-10-16T16:00:00Z"
    [step] = data["steps"]
    assert step["rule"] == "filing_decision" and step["referral_id"] == REFERRAL_B
    assert (step["late_agency"], step["counterpart"]) == (PS, MS)
    assert step["due_at"] == "2026-10-15T16:00:00Z"
    assert (step["level"], step["overdue_seconds"], step["state"]) == ("overdue", 86400, "open")


@pytest.mark.parametrize("bad", ["yesterday", "2026-10-16 16:00", "2026-13-01", "2026-10-16T16:00:00+08:00"])
def test_a_bad_as_of_exits_2_with_one_line(env, capsys, bad):
    code, out, err = run(capsys, "overdue", "--as-of", bad)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("cluebus: ")
    assert repr(bad) in err


# -- stats --------------------------------------------------------------------------------------------------

PERIOD = ("--from", "2026-09-01", "--to", "2026-11-01")


def test_stats_json_parses_and_has_totals(env, capsys):
    code, out, err = run(capsys, "stats", *PERIOD, "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert (data["period_from"], data["period_to"]) == ("2026-08-31T16:00:00Z", "2026-10-31T16:00:00Z")
    rows = {row["agency"]: row for row in data["agencies"]}
    assert OFFICE not in rows and set(rows) >= {MS, PS}
    police, totals = rows[PS], data["totals"]
    assert (police["decisions_on_time"], police["decisions_late"], police["decisions_open"]) == (0, 1, 1)
    assert (police["receipts_on_time"], police["receipts_late"], police["receipts_open"]) == (2, 0, 0)
    assert police["cases_refused"] == 1 and police["open_overdue_steps"] == 1
    assert totals["agency"] == "total"
    assert totals["transfers_sent"] == totals["transfers_received"] == 2
    for name in ADDITIVE_FIELDS:
        assert totals[name] == sum(row[name] for row in data["agencies"]), name


def test_stats_csv_prints_a_header_and_a_total_row(env, capsys):
    code, out, err = run(capsys, "stats", *PERIOD, "--csv")
    assert code == 0 and err == ""
    table = list(csv.reader(io.StringIO(out)))
    assert tuple(table[0]) == HEADERS
    total = dict(zip(HEADERS, table[-1]))
    assert total[HEADERS[0]] == "total"
    assert total["decisions_late (超时决定)"] == "1"
    assert total["transfers_sent (移送)"] == "2"
    assert len(table) == 1 + len(node_agencies(load_config())) + 1


def test_stats_xlsx_writes_a_workbook(env, capsys, tmp_path):
    target = tmp_path / "out" / "stats.xlsx"
    target.parent.mkdir()
    code, out, err = run(capsys, "stats", *PERIOD, "--xlsx", str(target))
    assert code == 0 and err == ""
    assert out.strip() == f"wrote {target}"
    workbook = load_workbook(target)
    assert STATISTICS_SHEET in workbook.sheetnames and OVERDUE_SHEET in workbook.sheetnames
    values = [cell for row in workbook[STATISTICS_SHEET].iter_rows(values_only=True) for cell in row]
    assert "total" in values
    overdue_text = " ".join(str(cell) for row in workbook[OVERDUE_SHEET].iter_rows(values_only=True)
                            for cell in row if cell is not None)
    assert REFERRAL_B in overdue_text and REFERRAL_A not in overdue_text


def test_stats_text_has_a_row_per_agency_and_a_total(env, capsys):
    code, out, _ = run(capsys, "stats", *PERIOD)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("2026-09-01 00:00+08:00 .. 2026-11-01 00:00+08:00 (as of ")
    assert lines[-1].split()[0] == "total"
    code, out, _ = run(capsys, "--utc", "stats", *PERIOD, "--as-of", "2026-11-01")
    assert out.splitlines()[0] == "2026-08-31T16:00:00Z .. 2026-10-31T16:00:00Z (as of 2026-10-31T16:00:00Z)"
    assert any(line.split()[0] == PS for line in lines[2:])


@pytest.mark.parametrize("argv", [("--from", "2026-11-01", "--to", "2026-09-01"),
                                  ("--from", "2026-09-31", "--to", "2026-11-01"),
                                  ("--to", "soon")])
def test_stats_bad_period_exits_2_with_one_line(env, capsys, argv):
    code, out, err = run(capsys, "stats", *argv, "--json")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("cluebus: ")


def test_stats_date_only_period_is_a_local_calendar_month(env, capsys):
    observer = Observer(load_config())
    observer.refer("5c3f2a1e-3d4f-4e5a-8b62-7c8d9e0f1a23", datetime(2026, 9, 30, 23, 0, tzinfo=UTC))
    observer.close()
    code, out, _ = run(capsys, "stats", "--from", "2026-10-01", "--to", "2026-11-01", "--json")
    assert code == 0
    assert json.loads(out)["totals"]["transfers_sent"] == 2       # B and the clue of 1 October (local)
