"""``cluebus calendar check`` and the "calendar missing" line of ``cluebus overdue``
(services/cli/office_cmd.py), broker-free."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from adapters.crypto.keys import initialise_key_directory
from services import bootstrap
from services import settings
from services.cli.main import main
from services.config import agency_codes, load_config
from services.office import handlers
from tests.fixtures.bodies import sample_body
from tests.fixtures.keys import FakeClock

UTC = timezone.utc


@pytest.fixture(autouse=True)
def _no_cluebus_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CLUEBUS_"):
            monkeypatch.delenv(name)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("today", ["2025-03-01", "2025-12-31"])
def test_calendar_check_passes_while_this_year_and_the_next_are_covered(capsys, today):
    code, out, err = run(capsys, "calendar", "check", "--today", today)
    assert code == 0 and err == ""
    assert out == "calendar the shipped services/office/holidays_cn.yaml (Asia/Shanghai): covers 2025, 2026\n"


@pytest.mark.parametrize("today, missing", [("2026-12-02", "2027 (next year)"),
                                            ("2027-05-01", "2027 (this year) and 2028 (next year)"),
                                            ("2024-11-20", "2024 (this year)")])
def test_calendar_check_fails_in_one_line_when_a_year_is_missing(capsys, today, missing):
    code, out, err = run(capsys, "calendar", "check", "--today", today)
    assert code == 1
    assert "covers 2025, 2026" in out
    [line] = err.splitlines()
    assert line.startswith(f"cluebus: [calendar.missing] the calendar does not cover {missing}:")


def test_calendar_check_reads_the_configured_file(capsys, tmp_path, monkeypatch):
    local = tmp_path / "local.yaml"
    local.write_text("years: [2026, 2027]\nholidays: [2027-01-01]\nworkdays: []\n", encoding="utf-8")
    monkeypatch.setenv("CLUEBUS_CALENDAR_FILE", str(local))
    code, out, err = run(capsys, "calendar", "check", "--today", "2026-12-02")
    assert (code, err) == (0, "")
    assert out == f"calendar {local} (Asia/Shanghai): covers 2026, 2027\n"


def test_calendar_check_refuses_a_malformed_file(capsys, tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("holidays: [2027-13-01]\nworkdays: []\n", encoding="utf-8")
    monkeypatch.setenv("CLUEBUS_CALENDAR_FILE", str(bad))
    code, out, err = run(capsys, "calendar", "check")
    assert code == 2 and "[calendar.invalid]" in err


def test_overdue_lists_a_step_with_no_limit(capsys, tmp_path, monkeypatch):
    keys, data = tmp_path / "keys", tmp_path / "data"
    initialise_key_directory(keys, agency_codes(load_config(environ={})), validity=timedelta(days=3650),
                             now=datetime(2026, 1, 1, tzinfo=UTC))
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(data))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(keys))
    config = load_config()
    sent_at = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)   # + 30 days: 1 January 2027
    clock = FakeClock(sent_at)
    store = bootstrap.open_store(config, "joint_office")
    office = bootstrap.office_context(config, clock=clock, store=store)
    health = settings.protocol_for(config, "health", clock=clock)[0]
    bureau = settings.protocol_for(config, "medical_security", clock=clock)[0]
    body = dict(sample_body("clue_transfer"), category="medical_conduct", attachments=[])
    clue = bureau.compose("clue_transfer", "health", body, referral_id="5c3f2a1b-3d4e-4f5a-8b6c-7d8e9f0a1b2c",
                          sent_at=sent_at)
    assert handlers.observe(office, clue.raw)["status"] == "observed"
    receipt = health.compose("receipt", "medical_security",
                             {"status": "accepted", "message_sha256": clue.sha256, "received_at": sent_at,
                              "reason_codes": []},
                             referral_id=clue.envelope["referral_id"], in_reply_to=clue.message_id, sent_at=sent_at)
    assert handlers.observe(office, receipt.raw)["status"] == "observed"
    timeline = handlers.timeline(office, clue.envelope["referral_id"], datetime(2026, 12, 10, tzinfo=UTC))
    steps = {s["rule"]: s for s in timeline["steps"]}
    assert (steps["handling_result"]["due_at"], steps["handling_result"]["calendar_missing"]) == (None, 2027)
    assert steps["handling_result"]["level"] == "calendar_missing"
    assert steps["receipt"]["state"] == "closed" and steps["receipt"]["calendar_missing"] is None
    store.dispose()

    code, out, err = run(capsys, "overdue", "--as-of", "2026-12-10T00:00:00Z")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "as of 2026-12-10 08:00+08:00: 0 overdue, 0 nearing their limit, 1 with no limit (calendar missing)"
    [line] = lines[1:]
    assert "[calendar_missing]" in line and "handling_result" in line and "no calendar for 2027" in line

    code, out, _ = run(capsys, "overdue", "--as-of", "2026-12-10T00:00:00Z", "--json")
    [step] = json.loads(out)["steps"]
    assert (step["level"], step["due_at"], step["calendar_missing"]) == ("calendar_missing", None, 2027)
