"""The office dashboard as a person sees it in a real (headless) browser.

Written against the fixture contract in conftest.py only: ``dashboard_url`` serves
``/dashboard`` and ``/dashboard/referrals/<id>`` for the data ``dashboard_sample`` returns,
to a browser logged in through ``/login`` with ``office_account``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.browser

WAIT = 10


def _path(browser) -> str:
    return urlsplit(browser.current_url).path


@pytest.fixture(autouse=True)
def logged_in(browser, dashboard_url, office_account):
    """Every test starts logged in: through the login page, the first time (the browser keeps
    its session cookie from one test to the next)."""
    browser.get(f"{dashboard_url}/dashboard")
    if _path(browser) == "/login":
        name, password = office_account
        browser.find_element(By.ID, "name").send_keys(name)
        browser.find_element(By.ID, "password").send_keys(password)
        browser.find_element(By.ID, "login-submit").click()
    WebDriverWait(browser, WAIT).until(lambda d: _path(d) == "/dashboard")


def _open_dashboard(browser, dashboard_url):
    browser.get(f"{dashboard_url}/dashboard")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "referral-search"))


def _visible_referral_ids(browser) -> list[str]:
    return [
        row.get_attribute("data-referral-id")
        for row in browser.find_elements(By.CSS_SELECTOR, '[data-testid="referral-row"]')
        if row.is_displayed()
    ]


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_overdue_steps_are_listed_with_agency_and_referral_link(browser, dashboard_url, dashboard_sample):
    _open_dashboard(browser, dashboard_url)
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, '[data-testid="overdue-row"]') if r.is_displayed()]
    assert len(rows) == len(dashboard_sample["overdue"])
    for item in dashboard_sample["overdue"]:
        matching = [
            row for row in rows
            if any(
                a.text == item["referral_id"] and a.is_displayed()
                for a in row.find_elements(By.TAG_NAME, "a")
            )
        ]
        assert matching, f"no visible overdue row links to {item['referral_id']}"
        row = matching[0]
        agency = dashboard_sample["agency_names"].get(item["late_agency"], item["late_agency"])
        assert agency in row.text
        link = row.find_element(By.LINK_TEXT, item["referral_id"])
        assert link.get_attribute("href") == f"{dashboard_url}/dashboard/referrals/{item['referral_id']}"


def _cell(row, testid) -> str:
    return row.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]').text.strip()


def test_open_overdue_and_closed_late_are_told_apart(browser, dashboard_url, dashboard_sample):
    """A step closed late is not listed as overdue; the page counts it as closed late, in the
    statistics, the on-time rates and the trend, apart from the steps open past their limit."""
    _open_dashboard(browser, dashboard_url)
    totals = dashboard_sample["stats"]["totals"]
    late = dashboard_sample["closed_late"]
    assert late and totals["steps_late"] >= 1 and totals["open_overdue_steps"] >= 1
    listed = {r.get_attribute("data-step-id")
              for r in browser.find_elements(By.CSS_SELECTOR, '[data-testid="overdue-row"]')}
    assert not listed & {s["step_id"] for s in late}                      # closed late: not overdue
    heading = browser.find_element(By.CSS_SELECTOR, "#overdue h2").text
    assert "超期未办" in heading and "Open and overdue" in heading
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="closed-late-count"]').text == str(totals["steps_late"])

    row = browser.find_element(By.CSS_SELECTOR, '[data-testid="stats-totals"]')
    assert _cell(row, "open-overdue") == str(totals["open_overdue_steps"])
    assert _cell(row, "closed-late") == str(totals["steps_late"])
    assert _cell(row, "on-time-rate") == f"{totals['on_time_rate'] * 100:.1f}%"

    trend = dashboard_sample["stats"]["trend"]
    note = browser.find_element(By.CSS_SELECTOR, '[data-testid="trend-note"]')
    assert "open and overdue" in note.text and "closed late" in note.text
    assert note.find_element(By.CSS_SELECTOR, '[data-testid="trend-open-overdue"]').text == str(
        sum(d["steps_open_overdue"] for d in trend))
    assert note.find_element(By.CSS_SELECTOR, '[data-testid="trend-closed-late"]').text == str(
        sum(d["steps_closed_late"] for d in trend))
    series = {b.get_attribute("data-series")
              for b in browser.find_elements(By.CSS_SELECTOR, '[data-testid="trend-bar"]')}
    assert series == {"bar-transfers", "bar-open-overdue", "bar-closed-late"}

    # On-time rates per rule: the late handover is closed late there, not open overdue.
    step = next(s for s in late if s["rule"] == "materials_handover")
    rate_row = browser.find_element(By.CSS_SELECTOR, '[data-testid="on-time-row"][data-rule="materials_handover"]'
                                                     f'[data-agency="{step["late_agency"]}"]')
    assert _cell(rate_row, "on-time-closed-late") == "1" and _cell(rate_row, "on-time-open-overdue") == "0"

    # Its referral's page says "closed late" for it.
    browser.get(f"{dashboard_url}/dashboard/referrals/{step['referral_id']}")
    shown = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(
        By.CSS_SELECTOR, f'[data-testid="step-row"][data-step-id="{step["step_id"]}"]'))
    assert shown.get_attribute("data-status") == "late" and "closed late" in shown.text


def test_the_dashboard_as_of_a_past_moment(browser, dashboard_url, dashboard_sample):
    """``?as_of=`` shows what the office knew then: before the first message, nothing; at the
    sample's moment, what the office's handlers say."""
    first = _when(dashboard_sample["first_sent_at"])
    before = (first - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    browser.get(f"{dashboard_url}/dashboard?as_of={before}")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "referral-search"))
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="overdue-empty"]').is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="referral-row"]') == []
    assert browser.find_element(By.CSS_SELECTOR, '[data-testid="as-of"] time').get_attribute("datetime") == before

    browser.get(f"{dashboard_url}/dashboard?as_of={dashboard_sample['as_of']}")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "referral-search"))
    rows = browser.find_elements(By.CSS_SELECTOR, '[data-testid="overdue-row"]')
    assert sorted(r.get_attribute("data-step-id") for r in rows) == sorted(
        s["step_id"] for s in dashboard_sample["overdue"])
    # Links keep the moment.
    link = rows[0].find_element(By.CSS_SELECTOR, "a.ref-link")
    assert "as_of=" in link.get_attribute("href")

    browser.get(f"{dashboard_url}/dashboard?as_of=yesterday")
    body = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.TAG_NAME, "body"))
    assert "Bad request" in body.text and "RFC 3339" in body.text


def test_trend_chart_is_drawn(browser, dashboard_url):
    _open_dashboard(browser, dashboard_url)
    svg = browser.find_element(By.CSS_SELECTOR, 'svg[data-testid="trend-chart"]')
    assert svg.is_displayed()
    assert svg.size["width"] > 100 and svg.size["height"] > 50
    assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-label")
    marks = svg.find_elements(By.CSS_SELECTOR, "rect.bar, circle.point")
    drawn = [m for m in marks if m.size["height"] > 0 and m.size["width"] > 0]
    assert drawn, "the chart has no visible bar or point"


def test_typing_in_search_filters_the_referral_list(browser, dashboard_url, dashboard_sample):
    _open_dashboard(browser, dashboard_url)
    all_ids = [r["referral_id"] for r in dashboard_sample["referrals"]]
    assert sorted(_visible_referral_ids(browser)) == sorted(all_ids)

    target = dashboard_sample["referrals"][-1]["referral_id"]
    box = browser.find_element(By.ID, "referral-search")
    box.send_keys(target)
    expected = [rid for rid in all_ids if target.lower() in rid.lower()]
    WebDriverWait(browser, WAIT).until(lambda d: sorted(_visible_referral_ids(d)) == sorted(expected))
    assert len(expected) < len(all_ids)

    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    WebDriverWait(browser, WAIT).until(lambda d: sorted(_visible_referral_ids(d)) == sorted(all_ids))

    # Something that matches nothing: every row hides and the page says so.
    box.send_keys("zz-no-such-referral")
    WebDriverWait(browser, WAIT).until(lambda d: _visible_referral_ids(d) == [])
    assert browser.find_element(By.ID, "referral-no-match").is_displayed()


def test_clicking_a_referral_opens_its_timeline_in_order(browser, dashboard_url, dashboard_sample):
    _open_dashboard(browser, dashboard_url)
    referral_id = dashboard_sample["referrals"][0]["referral_id"]
    timeline = dashboard_sample["timelines"][referral_id]
    row = browser.find_element(
        By.CSS_SELECTOR, f'[data-testid="referral-row"][data-referral-id="{referral_id}"]'
    )
    row.find_element(By.LINK_TEXT, referral_id).click()
    WebDriverWait(browser, WAIT).until(lambda d: d.current_url.endswith(f"/dashboard/referrals/{referral_id}"))
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="timeline-event"]'))
    assert referral_id in browser.find_element(By.TAG_NAME, "h1").text

    shown = browser.find_elements(By.CSS_SELECTOR, '[data-testid="timeline-event"]')
    assert all(e.is_displayed() for e in shown)
    expected = sorted(timeline["events"], key=lambda e: _when(e["sent_at"]))
    assert [e.get_attribute("data-message-id") for e in shown] == [e["message_id"] for e in expected]
    # What the eye reads: the kind and who sent it to whom, in time order.
    for element, event in zip(shown, expected):
        assert event["kind"] in element.text
        names = dashboard_sample["agency_names"]
        assert names.get(event["sender"], event["sender"]) in element.text
        assert names.get(event["recipient"], event["recipient"]) in element.text
    times = [e.find_element(By.TAG_NAME, "time").get_attribute("datetime") for e in shown]
    assert times == sorted(times, key=_when)

    # And back to the dashboard.
    browser.find_element(By.PARTIAL_LINK_TEXT, "Dashboard").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "referral-search"))


def test_unknown_referral_is_a_friendly_not_found(browser, dashboard_url):
    browser.get(f"{dashboard_url}/dashboard/referrals/no-such-referral")
    body = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.TAG_NAME, "body"))
    assert "Not found" in body.text
    assert browser.find_elements(By.PARTIAL_LINK_TEXT, "Back to the dashboard")


def test_screenshots(browser, dashboard_url, dashboard_sample, tmp_path):
    _open_dashboard(browser, dashboard_url)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, max(1000, min(int(height) + 200, 5000)))
    try:
        dashboard_png = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(dashboard_png))
        referral_id = dashboard_sample["referrals"][0]["referral_id"]
        browser.get(f"{dashboard_url}/dashboard/referrals/{referral_id}")
        WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="timeline-event"]'))
        referral_png = tmp_path / "referral.png"
        assert browser.save_screenshot(str(referral_png))
    finally:
        browser.set_window_size(1400, 1000)
    for png in (dashboard_png, referral_png):
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_login_page_refuses_a_wrong_password_then_logs_in_and_out(browser, dashboard_url, office_account):
    browser.find_element(By.CSS_SELECTOR, '[data-testid="logout"]').click()
    WebDriverWait(browser, WAIT).until(lambda d: _path(d) == "/login")
    # Logged out: the dashboard sends the browser to the login page, to come back after.
    browser.get(f"{dashboard_url}/dashboard/referrals/no-such-referral")
    WebDriverWait(browser, WAIT).until(lambda d: _path(d) == "/login")
    name, password = office_account
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(password + "-wrong")
    browser.find_element(By.ID, "login-submit").click()
    error = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="login-error"]'))
    assert "The name or the password is wrong." in error.text
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login-submit").click()
    WebDriverWait(browser, WAIT).until(lambda d: _path(d) == "/dashboard/referrals/no-such-referral")
    assert "Not found" in browser.find_element(By.TAG_NAME, "body").text
    # The session cookie is not readable by scripts.
    assert browser.execute_script("return document.cookie") == ""
