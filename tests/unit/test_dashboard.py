"""The office dashboard's pages: pure rendering, checked on their structure."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest

from services.config import agency_names, load_config
from services.office.dashboard import (
    duration,
    local_time,
    render_dashboard,
    render_error,
    render_not_found,
    render_referral,
    yuan,
)

# The agencies' names come from the configuration (AGENCIES: name_zh), as the office passes them.
NAMES = agency_names(load_config(environ={}))

HOSTILE = '<script>alert("x")</script>'
HOSTILE_ID = '"><img src=x onerror=alert(1)>'

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SVG_SELF_CLOSING = {"rect", "line", "circle", "path", "polyline"}


class Page(HTMLParser):
    """Collects elements (tag, attrs, text) and checks that every element is closed in order."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[dict] = []
        self.elements: list[dict] = []
        self.errors: list[str] = []
        self.scripts: list[str] = []
        self.feed(html)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {[e['tag'] for e in self.stack]}")

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": "", "children": []}
        if self.stack:
            self.stack[-1]["children"].append(element)
        self.elements.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": "", "children": []}
        if self.stack:
            self.stack[-1]["children"].append(element)
        self.elements.append(element)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1]["tag"] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1]['tag'] if self.stack else 'nothing'}")
            return
        done = self.stack.pop()
        if self.stack:
            self.stack[-1]["text"] += done["text"]

    def handle_data(self, data):
        if self.stack:
            self.stack[-1]["text"] += data
            if self.stack[-1]["tag"] == "script":
                self.scripts.append(data)

    def by_testid(self, testid: str) -> list[dict]:
        return [e for e in self.elements if e["attrs"].get("data-testid") == testid]

    def by_tag(self, tag: str) -> list[dict]:
        return [e for e in self.elements if e["tag"] == tag]


def _descendants(element: dict):
    for child in element["children"]:
        yield child
        yield from _descendants(child)


def _stats_row(agency: str, **values) -> dict:
    row = dict.fromkeys(
        [
            "transfers_sent", "transfers_received", "receipts_on_time", "receipts_late", "receipts_open",
            "decisions_on_time", "decisions_late", "decisions_open", "feedback_on_time", "feedback_late",
            "feedback_open", "cases_opened", "cases_refused", "referrals_received", "referrals_completed",
            "open_overdue_steps", "max_overdue_seconds", "funds_recovered_fen", "decisions_ended", "feedback_ended",
            "steps_due", "steps_on_time", "steps_late", "max_seconds_late", "referrals_ended", "funds_to_recover_fen",
        ],
        0,
    )
    row.update(
        agency=agency, completion_rate=None, on_time_rate=None, median_seconds_to_receipt=None,
        median_seconds_to_decision=None, median_seconds_to_feedback=None, median_seconds_late=None,
    )
    row.update(values)
    return row


OVERDUE = [
    {"step_id": "filing_decision:m-7-3", "rule": "filing_decision", "referral_id": "R-2025-0007",
     "late_agency": "public_security", "counterpart": "medical_security",
     "started_at": "2025-03-03T02:10:00Z", "due_at": "2025-03-06T16:00:00Z", "overdue_seconds": 316800,
     "level": "urged", "urged_at": "2025-03-08T03:00:00Z", "escalated_at": None},
    {"step_id": "handling_result:m-11-1", "rule": "handling_result", "referral_id": "R-2025-0011",
     "late_agency": "health", "counterpart": "medical_security", "started_at": "2025-02-20T06:30:00Z",
     "due_at": "2025-03-02T16:00:00Z", "overdue_seconds": 662400, "level": "escalated",
     "urged_at": "2025-03-05T02:00:00Z", "escalated_at": "2025-03-09T02:00:00Z"},
    {"step_id": "receipt:m-12-1", "rule": "receipt", "referral_id": "R-2025-0012",
     "late_agency": "public_security", "counterpart": "health", "started_at": "2025-03-08T01:00:00Z",
     "due_at": "2025-03-09T16:00:00Z", "overdue_seconds": 7200, "level": "warning",
     "urged_at": None, "escalated_at": None},
]

TREND = [
    {"day": f"2025-03-{d:02d}", "transfers": t, "steps_due": due, "steps_on_time": 0, "steps_closed_late": late,
     "steps_ended_overdue": 0, "steps_open_overdue": o}
    for d, t, due, late, o in [(4, 1, 1, 1, 0), (5, 3, 1, 0, 1), (6, 0, 1, 0, 1), (7, 2, 0, 0, 0), (8, 4, 0, 0, 0),
                               (9, 1, 1, 0, 1), (10, 1, 0, 0, 0)]
]

ON_TIME = [
    {"rule": "receipt", "agency": "public_security", "steps": 4, "on_time": 2, "late": 1, "ended": 0,
     "ended_overdue": 0, "open": 1, "open_overdue": 1, "steps_due": 4, "on_time_rate": 0.5,
     "median_seconds_late": 7200.0, "max_seconds_late": 7200},
    {"rule": "receipt", "agency": "total", "steps": 4, "on_time": 2, "late": 1, "ended": 0, "ended_overdue": 0,
     "open": 1, "open_overdue": 1, "steps_due": 4, "on_time_rate": 0.5, "median_seconds_late": 7200.0,
     "max_seconds_late": 7200},
]

STATS = {
    "period_from": "2025-01-01T00:00:00Z",
    "period_to": "2025-03-10T08:00:00Z",
    "as_of": "2025-03-10T08:00:00Z",
    "agencies": [
        _stats_row("medical_security", transfers_sent=5, funds_recovered_fen=128645000),
        _stats_row("public_security", transfers_received=3, receipts_on_time=2, receipts_late=1,
                   referrals_received=3, referrals_completed=1, completion_rate=0.5,
                   open_overdue_steps=2, max_overdue_seconds=316800, median_seconds_to_receipt=50400.0),
        _stats_row("health", transfers_received=1, referrals_received=1, completion_rate=0.0,
                   open_overdue_steps=1, max_overdue_seconds=662400),
    ],
    "totals": _stats_row("total", transfers_sent=5, transfers_received=4, receipts_on_time=2,
                         receipts_late=1, referrals_received=4, referrals_completed=1,
                         completion_rate=0.25, open_overdue_steps=3, max_overdue_seconds=662400,
                         median_seconds_to_receipt=50400.0, funds_recovered_fen=128645000),
    "trend": TREND,
    "on_time": ON_TIME,
}

REFERRALS = [
    {"referral_id": "R-2025-0011", "opened_by": "medical_security", "first_kind": "clue_transfer",
     "opened_at": "2025-02-20T06:30:00Z", "last_kind": "urge", "last_at": "2025-03-05T02:00:00Z",
     "messages": 3, "open_steps": 1, "overdue_steps": 1, "reference": "穗医保移〔2025〕11号"},
    {"referral_id": "R-2025-0007", "opened_by": "medical_security", "first_kind": "clue_transfer",
     "opened_at": "2025-03-02T01:00:00Z", "last_kind": "urge", "last_at": "2025-03-08T03:00:00Z",
     "messages": 4, "open_steps": 1, "overdue_steps": 1, "reference": None},
    {"referral_id": "R-2025-0012", "opened_by": "health", "first_kind": "clue_transfer",
     "opened_at": "2025-03-08T01:00:00Z", "last_kind": "clue_transfer", "last_at": "2025-03-08T01:00:00Z",
     "messages": 1, "open_steps": 1, "overdue_steps": 1, "reference": "卫健移〔2025〕2号"},
]

TIMELINE = {
    "referral_id": "R-2025-0007",
    "events": [
        {"sent_at": "2025-03-03T02:10:00Z", "kind": "receipt", "sender": "public_security",
         "recipient": "medical_security", "message_id": "m-7-3", "in_reply_to": "m-7-1", "sealed": False,
         "signature_ok": True, "facts": {"status": "accepted"}},
        {"sent_at": "2025-03-02T01:00:00Z", "kind": "clue_transfer", "sender": "medical_security",
         "recipient": "public_security", "message_id": "m-7-1", "in_reply_to": None, "sealed": False,
         "signature_ok": True, "facts": {"category": "fictitious_treatment", "amount_involved_fen": 128645000}},
        {"sent_at": "2025-03-02T01:00:05Z", "kind": "copy_notice", "sender": "medical_security",
         "recipient": "procuratorate", "message_id": "m-7-2", "in_reply_to": "m-7-1", "sealed": True,
         "signature_ok": False, "facts": {}},
        {"sent_at": "2025-03-08T03:00:00Z", "kind": "urge", "sender": "joint_office",
         "recipient": "public_security", "message_id": "m-7-4", "in_reply_to": "m-7-1", "sealed": False,
         "signature_ok": True, "facts": {"step": "filing_decision", "level": "urged"}},
    ],
    "steps": [
        {"step_id": "receipt:m-7-1", "rule": "receipt", "late_agency": "public_security",
         "counterpart": "medical_security", "started_at": "2025-03-02T01:00:00Z",
         "due_at": "2025-03-03T16:00:00Z", "state": "closed", "closed_at": "2025-03-03T02:10:00Z",
         "overdue_seconds": 0, "level": None},
        {"step_id": "filing_decision:m-7-3", "rule": "filing_decision", "late_agency": "public_security",
         "counterpart": "medical_security", "started_at": "2025-03-03T02:10:00Z",
         "due_at": "2025-03-06T16:00:00Z", "state": "open", "closed_at": None, "overdue_seconds": 316800,
         "level": "urged"},
    ],
}


def _dashboard(**overrides) -> str:
    args = dict(office_name="联席会议办公室", as_of="2025-03-10T08:00:00Z", overdue=OVERDUE, stats=STATS,
                referrals=REFERRALS, agency_names=NAMES)
    args.update(overrides)
    return render_dashboard(**args)


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "fen, text",
    [
        (128645000, "1,286,450.00"),
        (0, "0.00"),
        (7, "0.07"),
        (100, "1.00"),
        (-12345, "-123.45"),
        (10**20 + 1, "1,000,000,000,000,000,000.01"),  # exact: no float anywhere
    ],
)
def test_yuan_from_integer_fen(fen, text):
    assert yuan(fen) == text


def test_times_are_shown_in_shanghai_time():
    assert local_time("2025-03-01T18:30:00Z") == "2025-03-02 02:30"
    assert local_time("2024-12-31T16:00:00Z") == "2025-01-01 00:00"
    assert local_time(None) == "—"
    assert local_time("not a time") == "not a time"


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0"), (30, "<1m"), (600, "10m"), (3600, "1h"), (5400, "1h 30m"), (86400, "1d"),
     (316800, "3d 16h"), (50400.0, "14h"), (None, "—")],
)
def test_durations_are_human_readable(seconds, text):
    assert duration(seconds) == text


# --------------------------------------------------------------------------- dashboard


def test_dashboard_is_a_complete_self_contained_page():
    html = _dashboard()
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="zh-CN">' in html and '<meta charset="utf-8">' in html
    page = Page(html)
    assert page.errors == []
    # Nothing loaded from anywhere: no src, no stylesheet links, no external URLs in href.
    assert not re.search(r"\ssrc=", html)
    assert not page.by_tag("link") and not page.by_tag("img") and not page.by_tag("iframe")
    assert all(not e["attrs"].get("href", "").startswith(("http:", "https:", "//")) for e in page.by_tag("a"))
    # Exactly one (our own) inline script, and the CSP allows exactly it.
    assert len(page.by_tag("script")) == 1 and not page.by_tag("script")[0]["attrs"]
    script = "".join(page.scripts)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = next(m["attrs"]["content"] for m in page.by_tag("meta") if m["attrs"].get("http-equiv"))
    assert f"'sha256-{digest}'" in csp and "default-src 'none'" in csp


def test_overdue_rows_sorted_by_agency_with_links_and_badges():
    page = Page(_dashboard())
    rows = page.by_testid("overdue-row")
    assert len(rows) == 3
    # Grouped by late agency: both public-security steps together (most late first), then health.
    assert [r["attrs"]["data-agency"] for r in rows] == ["public_security", "public_security", "health"]
    assert [r["attrs"]["data-step-id"] for r in rows][:2] == ["filing_decision:m-7-3", "receipt:m-12-1"]
    urged = rows[0]
    assert "公安局" in urged["text"] and "3d 16h" in urged["text"]
    assert "已催办 urged" in urged["text"]
    assert "2025-03-08 11:00" in urged["text"]  # urged_at in local time
    links = [e for e in _descendants(urged) if e["tag"] == "a"]
    assert [a["attrs"]["href"] for a in links] == ["/dashboard/referrals/R-2025-0007"]
    escalated = rows[2]
    assert "已升级 escalated" in escalated["text"] and "7d 16h" in escalated["text"]
    assert any("lv-escalated" in e["attrs"].get("class", "") for e in _descendants(escalated))
    summary = page.by_testid("overdue-agency")
    assert [s["attrs"]["data-agency"] for s in summary] == ["public_security", "health"]
    assert "2" in summary[0]["text"] and "卫生健康委" in summary[1]["text"]


def test_trend_chart_is_an_accessible_svg_with_bars():
    page = Page(_dashboard())
    (svg,) = page.by_testid("trend-chart")
    assert svg["tag"] == "svg"
    assert svg["attrs"]["role"] == "img" and "Trend" in svg["attrs"]["aria-label"]
    bars = [e for e in _descendants(svg) if e["attrs"].get("data-testid") == "trend-bar"]
    assert len(bars) == 3 * 7
    for bar in bars:
        assert bar["tag"] == "rect"
        assert [c["tag"] for c in bar["children"]] == ["title"] and bar["text"]
        assert float(bar["attrs"]["height"]) >= 0
    tallest = max(bars, key=lambda b: float(b["attrs"]["height"]))
    assert tallest["attrs"]["data-value"] == "4" and "2025-03-08" in tallest["text"]
    # Legend and axis titles.
    assert "移送 transfers" in svg["text"] and "超期未办 open and overdue" in svg["text"]
    assert "逾期办结 closed late" in svg["text"]
    series = {b["attrs"]["data-series"] for b in bars}
    assert series == {"bar-transfers", "bar-open-overdue", "bar-closed-late"}
    assert "件数 count" in svg["text"] and "日期 day" in svg["text"] and "03-04" in svg["text"]


def test_statistics_table_with_totals_percent_and_yuan():
    page = Page(_dashboard())
    rows = page.by_testid("stats-row")
    assert [r["attrs"]["data-agency"] for r in rows] == ["medical_security", "public_security", "health"]
    assert "1,286,450.00" in rows[0]["text"]
    assert "50.0%" in rows[1]["text"] and "3d 16h" in rows[1]["text"] and "14h" in rows[1]["text"]
    (totals,) = page.by_testid("stats-totals")
    assert "合计" in totals["text"] and "25.0%" in totals["text"] and "1,286,450.00" in totals["text"]
    assert "2025-01-01 08:00" in page.by_tag("header")[0]["text"]  # period in local time


def test_referral_list_has_search_box_rows_and_links():
    page = Page(_dashboard())
    (box,) = [e for e in page.by_tag("input") if e["attrs"].get("id") == "referral-search"]
    assert box["attrs"]["type"] == "search"
    rows = page.by_testid("referral-row")
    assert [r["attrs"]["data-referral-id"] for r in rows] == ["R-2025-0011", "R-2025-0007", "R-2025-0012"]
    search = rows[2]["attrs"]["data-search"]
    assert "r-2025-0012" in search and "卫健移〔2025〕2号" in search and "卫生健康委" in search
    assert "health" in search and "clue_transfer" in search and "线索移送" in search
    hrefs = [a["attrs"]["href"] for r in rows for a in _descendants(r) if a["tag"] == "a"]
    assert hrefs == [f"/dashboard/referrals/{r['referral_id']}" for r in REFERRALS]


def test_hostile_values_are_escaped_everywhere():
    overdue = [dict(OVERDUE[0], referral_id=HOSTILE_ID, late_agency=HOSTILE, rule=HOSTILE, level=HOSTILE)]
    stats = dict(STATS, agencies=[_stats_row(HOSTILE, completion_rate=HOSTILE)],
                 trend=[{"day": HOSTILE, "transfers": 2, "steps_due": 0, "steps_open_overdue": 1}],
                 on_time=[dict(ON_TIME[0], rule=HOSTILE, agency=HOSTILE, on_time_rate=HOSTILE)])
    referrals = [dict(REFERRALS[0], referral_id=HOSTILE_ID, reference=HOSTILE, first_kind=HOSTILE)]
    html = _dashboard(office_name=HOSTILE, overdue=overdue, stats=stats, referrals=referrals)
    page = Page(html)
    assert page.errors == []
    assert "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html   # markupsafe's escapes
    assert len(page.by_tag("script")) == 1  # only our own
    assert not any(k.startswith("on") for e in page.elements for k in e["attrs"])
    # The hostile referral id is percent-encoded in the link, and shown escaped as its text.
    (row,) = page.by_testid("overdue-row")
    (link,) = [e for e in _descendants(row) if e["tag"] == "a"]
    assert link["attrs"]["href"] == "/dashboard/referrals/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
    assert link["text"] == HOSTILE_ID
    assert not any(" lv-" in e["attrs"].get("class", "") and HOSTILE in e["attrs"]["class"] for e in page.elements)

    timeline = {
        "referral_id": HOSTILE_ID,
        "events": [dict(TIMELINE["events"][0], kind=HOSTILE, sender=HOSTILE, message_id=HOSTILE_ID,
                        facts={HOSTILE: HOSTILE, "amount_fen": HOSTILE, "nested": {"k": HOSTILE}})],
        "steps": [dict(TIMELINE["steps"][1], rule=HOSTILE, state=HOSTILE, level=HOSTILE)],
    }
    html = render_referral(as_of=HOSTILE, timeline=timeline)
    page = Page(html)
    assert page.errors == []
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html

    html = render_not_found(HOSTILE)
    assert "<script" not in html and "&lt;script&gt;alert" in html


def test_empty_states_render_without_error():
    html = render_dashboard(office_name="办公室", as_of="2025-03-10T08:00:00Z", overdue=[], stats={}, referrals=[])
    page = Page(html)
    assert page.errors == []
    assert page.by_testid("overdue-empty") and page.by_testid("trend-empty")
    assert page.by_testid("stats-empty") and page.by_testid("referrals-empty")
    assert not page.by_testid("overdue-row") and not page.by_testid("trend-chart")
    # The search box is still there (and its script copes with no rows).
    assert any(e["attrs"].get("id") == "referral-search" for e in page.by_tag("input"))

    html = render_dashboard(
        office_name="办公室", as_of="2025-03-10T08:00:00Z", overdue=[],
        stats={"agencies": [], "totals": _stats_row("total"), "trend": [{"day": "2025-03-10"}]},
        referrals=[],
    )
    page = Page(html)
    assert page.errors == [] and page.by_testid("trend-chart") and page.by_testid("stats-totals")

    html = render_referral(as_of="2025-03-10T08:00:00Z", timeline={"referral_id": "R-1", "events": [], "steps": []})
    page = Page(html)
    assert page.errors == [] and page.by_testid("timeline-empty") and page.by_testid("steps-empty")


# --------------------------------------------------------------------------- referral page


def test_referral_timeline_in_time_order_with_badges_and_facts():
    html = render_referral(as_of="2025-03-10T08:00:00Z", timeline=TIMELINE, agency_names=NAMES)
    page = Page(html)
    assert page.errors == []
    assert not page.by_tag("script")
    events = page.by_testid("timeline-event")
    assert [e["attrs"]["data-message-id"] for e in events] == ["m-7-1", "m-7-2", "m-7-3", "m-7-4"]
    first, copy, receipt, urge = events
    assert "2025-03-02 09:00" in first["text"]
    assert "医疗保障局" in first["text"] and "公安局" in first["text"] and "→" in first["text"]
    assert "线索移送" in first["text"] and "clue_transfer" in first["text"]
    assert "签名有效 signature ok" in first["text"]
    assert "amount_involved_fen" in first["text"] and "1,286,450.00 元" in first["text"]
    assert "fictitious_treatment" in first["text"]
    assert "人民检察院" in copy["text"] and "签名无效 signature failed" in copy["text"]
    assert any(e["attrs"].get("data-testid") == "sealed" for e in _descendants(copy))
    assert not any(e["attrs"].get("data-testid") == "sealed" for e in _descendants(first))
    assert "m-7-1" in receipt["text"]  # in reply to
    assert "联席会议办公室" in urge["text"]
    steps = page.by_testid("step-row")
    assert [s["attrs"]["data-state"] for s in steps] == ["closed", "open"]
    assert "按时 on time" in steps[0]["text"]
    assert "3d 16h" in steps[1]["text"] and "已催办 urged" in steps[1]["text"]
    assert any(a["attrs"].get("href") == "/dashboard" for a in page.by_tag("a"))


def test_unknown_agency_codes_are_shown_as_is():
    timeline = dict(TIMELINE, events=[dict(TIMELINE["events"][0], sender="market_regulation")])
    html = render_referral(as_of="2025-03-10T08:00:00Z", timeline=timeline)
    assert "market_regulation" in Page(html).by_testid("timeline-event")[0]["text"]


def test_a_bad_request_page_escapes_its_message():
    html = render_error(f"{HOSTILE!r} is not an RFC 3339 UTC timestamp")
    page = Page(html)
    assert page.errors == [] and "<script>alert" not in html
    (box,) = page.by_testid("error")
    assert HOSTILE in box["text"] and "Bad request" in page.by_tag("h1")[0]["text"]


def test_not_found_page():
    page = Page(render_not_found("没有这个移送 No such referral: R-9"))
    assert page.errors == []
    assert "No such referral: R-9" in page.by_testid("not-found")[0]["text"]
