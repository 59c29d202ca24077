"""Fixtures for the dashboard's browser tests (Selenium driving Debian's headless Chromium).

Fixture contract (the tests rely on nothing else):

- ``dashboard_sample`` returns the data the served pages show::

      {"office_name": str, "as_of": str, "overdue": [overdue item, ...], "stats": StatsReport JSON,
       "referrals": [referral list item, ...], "timelines": {referral_id: timeline, ...}}

  with at least one overdue item, at least two referrals, and a timeline for every listed referral
  (shapes as in ``services/office/dashboard.py``).
- ``dashboard_url`` returns the base URL (no trailing slash) of a server answering
  ``GET /dashboard`` and ``GET /dashboard/referrals/<referral_id>`` for exactly that data.

For now ``dashboard_url`` is a tiny ``http.server`` on 127.0.0.1 (a free port) that serves the
render functions' output; it can later be switched to the real office service under the same names.
"""

from __future__ import annotations

import copy
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

from services.office.dashboard import render_dashboard, render_not_found, render_referral

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)

AS_OF = "2025-03-10T08:00:00Z"

# Three referrals: one whose filing decision is late and was urged, one whose handling result
# is so late it was escalated, and one that ran to a judgment and recovered funds.
_TIMELINES = {
    "R-2025-0007": {
        "referral_id": "R-2025-0007",
        "events": [
            # Deliberately not in time order: the page must order them.
            {"sent_at": "2025-03-03T02:10:00Z", "kind": "receipt", "sender": "public_security",
             "recipient": "medical_security", "message_id": "m-0007-3", "in_reply_to": "m-0007-1",
             "sealed": False, "signature_ok": True, "facts": {"status": "accepted"}},
            {"sent_at": "2025-03-02T01:00:00Z", "kind": "clue_transfer", "sender": "medical_security",
             "recipient": "public_security", "message_id": "m-0007-1", "in_reply_to": None,
             "sealed": False, "signature_ok": True,
             "facts": {"category": "fictitious_treatment", "amount_involved_fen": 128645000}},
            {"sent_at": "2025-03-02T01:00:05Z", "kind": "copy_notice", "sender": "medical_security",
             "recipient": "procuratorate", "message_id": "m-0007-2", "in_reply_to": "m-0007-1",
             "sealed": True, "signature_ok": True, "facts": {}},
            {"sent_at": "2025-03-08T03:00:00Z", "kind": "urge", "sender": "joint_office",
             "recipient": "public_security", "message_id": "m-0007-4", "in_reply_to": "m-0007-1",
             "sealed": False, "signature_ok": True, "facts": {"step": "filing_decision", "level": "urged"}},
        ],
        "steps": [
            {"step_id": "receipt:m-0007-1", "rule": "receipt", "late_agency": "public_security",
             "counterpart": "medical_security", "started_at": "2025-03-02T01:00:00Z",
             "due_at": "2025-03-03T16:00:00Z", "state": "closed", "closed_at": "2025-03-03T02:10:00Z",
             "overdue_seconds": 0, "level": None},
            {"step_id": "filing_decision:m-0007-3", "rule": "filing_decision",
             "late_agency": "public_security", "counterpart": "medical_security",
             "started_at": "2025-03-03T02:10:00Z", "due_at": "2025-03-06T16:00:00Z", "state": "open",
             "closed_at": None, "overdue_seconds": 316800, "level": "urged"},
        ],
    },
    "R-2025-0011": {
        "referral_id": "R-2025-0011",
        "events": [
            {"sent_at": "2025-02-20T06:30:00Z", "kind": "clue_transfer", "sender": "medical_security",
             "recipient": "health", "message_id": "m-0011-1", "in_reply_to": None, "sealed": True,
             "signature_ok": True, "facts": {}},
            {"sent_at": "2025-02-21T01:15:00Z", "kind": "receipt", "sender": "health",
             "recipient": "medical_security", "message_id": "m-0011-2", "in_reply_to": "m-0011-1",
             "sealed": False, "signature_ok": False, "facts": {"status": "accepted"}},
            {"sent_at": "2025-03-05T02:00:00Z", "kind": "urge", "sender": "joint_office",
             "recipient": "health", "message_id": "m-0011-3", "in_reply_to": "m-0011-1",
             "sealed": False, "signature_ok": True, "facts": {"step": "handling_result", "level": "urged"}},
        ],
        "steps": [
            {"step_id": "handling_result:m-0011-1", "rule": "handling_result", "late_agency": "health",
             "counterpart": "medical_security", "started_at": "2025-02-20T06:30:00Z",
             "due_at": "2025-03-02T16:00:00Z", "state": "open", "closed_at": None,
             "overdue_seconds": 662400, "level": "escalated"},
        ],
    },
    "R-2025-0003": {
        "referral_id": "R-2025-0003",
        "events": [
            {"sent_at": "2025-01-06T02:00:00Z", "kind": "clue_transfer", "sender": "medical_security",
             "recipient": "public_security", "message_id": "m-0003-1", "in_reply_to": None,
             "sealed": False, "signature_ok": True, "facts": {"category": "card_lending"}},
            {"sent_at": "2025-01-06T09:00:00Z", "kind": "receipt", "sender": "public_security",
             "recipient": "medical_security", "message_id": "m-0003-2", "in_reply_to": "m-0003-1",
             "sealed": False, "signature_ok": True, "facts": {"status": "accepted"}},
            {"sent_at": "2025-01-08T03:00:00Z", "kind": "filing_decision", "sender": "public_security",
             "recipient": "medical_security", "message_id": "m-0003-3", "in_reply_to": "m-0003-1",
             "sealed": False, "signature_ok": True, "facts": {"decision": "filed"}},
            {"sent_at": "2025-03-01T07:45:00Z", "kind": "judgment", "sender": "court",
             "recipient": "medical_security", "message_id": "m-0003-4", "in_reply_to": None,
             "sealed": False, "signature_ok": True,
             "facts": {"effective": True, "amount_to_recover_fen": 4500000}},
        ],
        "steps": [
            {"step_id": "receipt:m-0003-1", "rule": "receipt", "late_agency": "public_security",
             "counterpart": "medical_security", "started_at": "2025-01-06T02:00:00Z",
             "due_at": "2025-01-07T16:00:00Z", "state": "closed", "closed_at": "2025-01-06T09:00:00Z",
             "overdue_seconds": 0, "level": None},
            {"step_id": "filing_decision:m-0003-2", "rule": "filing_decision",
             "late_agency": "public_security", "counterpart": "medical_security",
             "started_at": "2025-01-06T09:00:00Z", "due_at": "2025-01-09T16:00:00Z", "state": "closed",
             "closed_at": "2025-01-08T03:00:00Z", "overdue_seconds": 0, "level": None},
        ],
    },
}

_OVERDUE = [
    {"step_id": "filing_decision:m-0007-3", "rule": "filing_decision", "referral_id": "R-2025-0007",
     "late_agency": "public_security", "counterpart": "medical_security",
     "started_at": "2025-03-03T02:10:00Z", "due_at": "2025-03-06T16:00:00Z", "overdue_seconds": 316800,
     "level": "urged", "urged_at": "2025-03-08T03:00:00Z", "escalated_at": None},
    {"step_id": "handling_result:m-0011-1", "rule": "handling_result", "referral_id": "R-2025-0011",
     "late_agency": "health", "counterpart": "medical_security", "started_at": "2025-02-20T06:30:00Z",
     "due_at": "2025-03-02T16:00:00Z", "overdue_seconds": 662400, "level": "escalated",
     "urged_at": "2025-03-05T02:00:00Z", "escalated_at": "2025-03-09T02:00:00Z"},
]

_REFERRALS = [
    {"referral_id": "R-2025-0011", "opened_by": "medical_security", "first_kind": "clue_transfer",
     "opened_at": "2025-02-20T06:30:00Z", "last_kind": "urge", "last_at": "2025-03-05T02:00:00Z",
     "messages": 3, "open_steps": 1, "overdue_steps": 1, "reference": "穗医保移〔2025〕11号"},
    {"referral_id": "R-2025-0007", "opened_by": "medical_security", "first_kind": "clue_transfer",
     "opened_at": "2025-03-02T01:00:00Z", "last_kind": "urge", "last_at": "2025-03-08T03:00:00Z",
     "messages": 4, "open_steps": 1, "overdue_steps": 1, "reference": "穗医保移〔2025〕7号"},
    {"referral_id": "R-2025-0003", "opened_by": "medical_security", "first_kind": "clue_transfer",
     "opened_at": "2025-01-06T02:00:00Z", "last_kind": "judgment", "last_at": "2025-03-01T07:45:00Z",
     "messages": 4, "open_steps": 0, "overdue_steps": 0, "reference": None},
]


def _agency_row(agency, **values):
    row = {
        "agency": agency, "transfers_sent": 0, "transfers_received": 0,
        "receipts_on_time": 0, "receipts_late": 0, "receipts_open": 0,
        "decisions_on_time": 0, "decisions_late": 0, "decisions_open": 0,
        "feedback_on_time": 0, "feedback_late": 0, "feedback_open": 0,
        "cases_opened": 0, "cases_refused": 0, "referrals_received": 0, "referrals_completed": 0,
        "completion_rate": None, "open_overdue_steps": 0, "max_overdue_seconds": 0,
        "median_seconds_to_receipt": None, "median_seconds_to_decision": None,
        "median_seconds_to_feedback": None, "funds_recovered_fen": 0,
    }
    row.update(values)
    return row


_STATS = {
    "period_from": "2025-01-01T00:00:00Z",
    "period_to": "2025-03-10T08:00:00Z",
    "as_of": AS_OF,
    "agencies": [
        _agency_row("medical_security", transfers_sent=5, funds_recovered_fen=128645000),
        _agency_row("public_security", transfers_sent=3, transfers_received=2, receipts_on_time=2,
                    decisions_on_time=1, decisions_open=1, cases_opened=1, referrals_received=2,
                    referrals_completed=1, completion_rate=0.5, open_overdue_steps=1,
                    max_overdue_seconds=316800, median_seconds_to_receipt=50400.0,
                    median_seconds_to_decision=151200.0),
        _agency_row("health", transfers_sent=1, transfers_received=1, receipts_on_time=1,
                    feedback_open=1, referrals_received=1, completion_rate=0.0, open_overdue_steps=1,
                    max_overdue_seconds=662400, median_seconds_to_receipt=67500.0),
        _agency_row("procuratorate", transfers_received=1),
        _agency_row("court", transfers_sent=1),
        _agency_row("joint_office", transfers_sent=2),
    ],
    "totals": _agency_row("total", transfers_sent=12, transfers_received=4, receipts_on_time=3,
                          decisions_on_time=1, decisions_open=1, feedback_open=1, cases_opened=1,
                          referrals_received=3, referrals_completed=1, completion_rate=1 / 3,
                          open_overdue_steps=2, max_overdue_seconds=662400,
                          median_seconds_to_receipt=58950.0, median_seconds_to_decision=151200.0,
                          funds_recovered_fen=128645000),
    "trend": [
        {"day": "2025-03-04", "transfers": 1, "steps_due": 0, "steps_overdue": 1},
        {"day": "2025-03-05", "transfers": 3, "steps_due": 1, "steps_overdue": 1},
        {"day": "2025-03-06", "transfers": 0, "steps_due": 1, "steps_overdue": 1},
        {"day": "2025-03-07", "transfers": 2, "steps_due": 0, "steps_overdue": 2},
        {"day": "2025-03-08", "transfers": 4, "steps_due": 0, "steps_overdue": 2},
        {"day": "2025-03-09", "transfers": 1, "steps_due": 0, "steps_overdue": 2},
        {"day": "2025-03-10", "transfers": 1, "steps_due": 0, "steps_overdue": 2},
    ],
}

SAMPLE = {
    "office_name": "广州市医疗保障基金监管联席会议办公室",
    "as_of": AS_OF,
    "overdue": _OVERDUE,
    "stats": _STATS,
    "referrals": _REFERRALS,
    "timelines": _TIMELINES,
}


@pytest.fixture(scope="session")
def dashboard_sample() -> dict:
    """The data that ``dashboard_url`` serves (a copy: tests may not change the server's)."""
    return copy.deepcopy(SAMPLE)


def _make_handler(sample: dict):
    prefix = "/dashboard/referrals/"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            path = urlsplit(self.path).path
            status = 200
            if path in ("/dashboard", "/dashboard/"):
                page = render_dashboard(
                    office_name=sample["office_name"], as_of=sample["as_of"], overdue=sample["overdue"],
                    stats=sample["stats"], referrals=sample["referrals"],
                )
            elif path.startswith(prefix) and unquote(path[len(prefix):]) in sample["timelines"]:
                page = render_referral(as_of=sample["as_of"], timeline=sample["timelines"][unquote(path[len(prefix):])])
            else:
                status, page = 404, render_not_found(f"没有这个页面 No such page: {path}")
            data = page.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # keep test output quiet
            pass

    return Handler


@pytest.fixture(scope="session")
def dashboard_url(dashboard_sample):
    """Base URL of a local server with /dashboard and /dashboard/referrals/<id> for the sample."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(copy.deepcopy(dashboard_sample)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A headless Chromium (Debian's package) driven by Debian's chromedriver; no downloads."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(
            f"browser tests need Debian's Chromium and chromedriver, missing: {', '.join(missing)} "
            "(apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    workdir = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={workdir / 'profile'}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(workdir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
