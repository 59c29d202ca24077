"""Times shown to people (services/display_time.py): local time in OFFICE.TIMEZONE to the
minute with its offset by default, ISO UTC to the second with `cluebus --utc`; `--json` and
evidence files keep the full UTC timestamps."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from services.cli.main import main
from services.display_time import TimeFormat, UnknownTimeZone, local_time, time_zone, utc_offset
from tests.unit.test_cli_show import MEDICAL, POLICE, referred  # noqa: F401 (the fixture)
from tests.unit.test_evidence import MS, PS, referral  # noqa: F401 (the fixture)

LOCAL = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\+08:00\b")
UTC = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
STORED = "2026-12-02T07:04:05.123456Z"


# -- the format ---------------------------------------------------------------------------------
def test_local_by_default_utc_when_asked():
    assert TimeFormat()(STORED) == "2026-12-02 15:04+08:00"
    assert TimeFormat(utc=True)(STORED) == "2026-12-02T07:04:05Z"
    moment = datetime(2026, 12, 2, 7, 4, 59, tzinfo=timezone.utc)
    assert TimeFormat()(moment) == "2026-12-02 15:04+08:00"  # to the minute: truncated, not rounded
    assert TimeFormat()(datetime(2026, 12, 2, 7, 4)) == "2026-12-02 15:04+08:00"  # naive is UTC


def test_another_zone_shows_its_own_offset_summer_and_winter():
    berlin = TimeFormat.named("Europe/Berlin")
    assert berlin("2026-07-01T10:00:00Z") == "2026-07-01 12:00+02:00"
    assert berlin("2026-12-01T10:00:00Z") == "2026-12-01 11:00+01:00"
    assert TimeFormat.named("America/St_Johns")("2026-12-01T10:00:00Z") == "2026-12-01 06:30-03:30"
    assert utc_offset(datetime(2026, 1, 1, tzinfo=timezone.utc)) == "+00:00"


@pytest.mark.parametrize("value, shown", [(None, "-"), ("", "-"), ("not a time", "not a time"), (17, "17")])
def test_missing_or_unparseable_values_are_shown_as_they_are(value, shown):
    assert TimeFormat()(value) == shown
    assert TimeFormat(utc=True)(value) == shown


def test_an_unknown_zone_is_refused_and_the_default_never_is():
    with pytest.raises(UnknownTimeZone):
        time_zone("Mars/Olympus")
    assert time_zone(None).utcoffset(datetime(2026, 1, 1)) == timedelta(hours=8)


def test_the_dashboard_form_is_the_same_time_without_the_offset():
    assert local_time(STORED) == "2026-12-02 15:04"
    assert local_time(None) == "—"


# -- the node's reading commands ----------------------------------------------------------------
def _times(text: str, pattern) -> list[str]:
    return pattern.findall(text)


def test_inbox_show_and_trace_show_local_minutes_and_utc_seconds(referred, capsys):  # noqa: F811
    assert main(["show", referred, "--as", POLICE, "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    sent_local, sent_utc = TimeFormat()(detail["sent_at"]), TimeFormat(utc=True)(detail["sent_at"])

    assert main(["inbox", "--as", POLICE]) == 0
    out = capsys.readouterr().out
    assert out.startswith(sent_local + "  " + referred)
    assert main(["--utc", "inbox", "--as", POLICE]) == 0
    assert capsys.readouterr().out.startswith(sent_utc + "  " + referred)

    # `show`'s header lines; the body after them is printed as it was signed, its own times included.
    assert main(["show", referred, "--as", POLICE]) == 0
    head = capsys.readouterr().out.split("  body (")[0]
    assert f"  sent {sent_local}, stored " in head and not _times(head, UTC)
    assert main(["--utc", "show", referred, "--as", POLICE]) == 0
    head = capsys.readouterr().out.split("  body (")[0]
    assert f"  sent {sent_utc}, stored " in head and not _times(head, LOCAL)

    assert main(["trace", detail["referral_id"], "--as", POLICE]) == 0
    out = capsys.readouterr().out
    assert f"  {sent_local}  " in out and not _times(out, UTC)
    assert main(["--utc", "trace", detail["referral_id"], "--as", POLICE]) == 0
    assert f"  {sent_utc}  " in capsys.readouterr().out


def test_json_keeps_the_stored_utc_timestamps_with_or_without_utc(referred, capsys):  # noqa: F811
    assert main(["inbox", "--as", POLICE, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["--utc", "inbox", "--as", POLICE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == plain
    assert plain[0]["sent_at"].endswith("Z") and "T" in plain[0]["sent_at"]


# -- evidence verify: offline, no configuration needed ------------------------------------------
def _exported(referral, tmp_path, capsys):  # noqa: F811
    bus, referral_id = referral
    ms, ps = tmp_path / "ms.json", tmp_path / "ps.json"
    assert main(["evidence", "export", referral_id, "--as", MS, "--out", str(ms)]) == 0
    assert main(["evidence", "export", referral_id, "--as", PS, "--out", str(ps)]) == 0
    capsys.readouterr()
    return ms, ps


def test_evidence_verify_shows_local_times_or_utc(referral, tmp_path, capsys):  # noqa: F811
    ms, ps = _exported(referral, tmp_path, capsys)
    exported_at = json.loads(ms.read_text(encoding="utf-8"))["manifest"]["exported_at"]
    assert main(["evidence", "verify", str(ms), str(ps)]) == 0
    out = capsys.readouterr().out
    assert len(_times(out, LOCAL)) >= 5 and not _times(out, UTC)
    assert f"at {TimeFormat()(exported_at)}, manifest" in out
    assert main(["--utc", "evidence", "verify", str(ms), str(ps)]) == 0
    out = capsys.readouterr().out
    assert f"at {TimeFormat(utc=True)(exported_at)}, manifest" in out and not _times(out, LOCAL)


def test_evidence_verify_needs_no_configuration_for_its_times(referral, tmp_path, capsys,  # noqa: F811
                                                              monkeypatch):
    ms, ps = _exported(referral, tmp_path, capsys)
    monkeypatch.setenv("CLUEBUS_CONFIG", str(tmp_path / "no-such-config.yaml"))
    assert main(["evidence", "verify", str(ms), str(ps)]) == 0
    out = capsys.readouterr().out
    assert "evidence verified: 2 bundle(s) and agree" in out and _times(out, LOCAL)
