"""Sessions and failed-login limits (services/office/sessions.py), and the login flow of the
office's HTTP gateway (services/office/login.py) on Werkzeug requests, without Nameko."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.test import EnvironBuilder

from services.office.accounts import AccountsFile
from services.office.login import COOKIE_NAME, LoginApi, render_login, safe_next
from services.office.sessions import FailedLogins, Sessions
from tests.fixtures.keys import FakeClock

START = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"


# -- sessions ------------------------------------------------------------------------------------
def test_a_session_lives_while_used_and_ends_after_the_idle_timeout():
    clock = FakeClock(START)
    sessions = Sessions(timedelta(hours=8), clock=clock)
    token = sessions.start("wang.li")
    assert len(token) >= 43  # token_urlsafe(32)
    session = sessions.get(token)
    assert (session.account, session.logged_in_at, session.last_seen) == ("wang.li", START, START)

    clock.advance(hours=7, minutes=59)
    assert sessions.get(token).last_seen == clock.now  # used: idle time starts again
    clock.advance(hours=7, minutes=59)
    session = sessions.get(token)
    assert session is not None and session.logged_in_at == START
    clock.advance(hours=8)
    assert sessions.get(token) is None
    assert len(sessions) == 0


def test_logout_ends_only_that_session():
    sessions = Sessions(timedelta(hours=8), clock=FakeClock(START))
    first, second = sessions.start("wang.li"), sessions.start("wang.li")
    assert first != second
    sessions.end(first)
    assert sessions.get(first) is None and sessions.get(second) is not None
    sessions.end(None)
    sessions.end("not a token")


def test_unknown_tokens_and_removed_accounts_have_no_session():
    sessions = Sessions(timedelta(hours=8), clock=FakeClock(START))
    token = sessions.start("wang.li")
    assert sessions.get(None) is None and sessions.get("") is None and sessions.get(token + "x") is None
    assert sessions.get(token, accounts={"wang.li": object()}) is not None
    assert sessions.get(token, accounts={}) is None
    assert sessions.get(token) is None  # ended for good


def test_sessions_never_keep_the_token_itself():
    sessions = Sessions(timedelta(hours=8), clock=FakeClock(START))
    token = sessions.start("wang.li")
    assert token not in repr(sessions._sessions)


def test_expired_sessions_are_purged_when_a_new_one_starts():
    clock = FakeClock(START)
    sessions = Sessions(timedelta(hours=1), clock=clock)
    sessions.start("a")
    clock.advance(hours=2)
    sessions.start("b")
    assert len(sessions) == 1


# -- failed logins --------------------------------------------------------------------------------
def test_five_failures_block_the_name_for_the_window():
    clock = FakeClock(START)
    failures = FailedLogins(limit=5, window=timedelta(minutes=15), clock=clock)
    for _ in range(4):
        failures.failed("Wang.Li")
        clock.advance(minutes=1)
    assert failures.retry_after("wang.li") is None
    failures.failed("wang.li")
    assert failures.retry_after("WANG.LI") == timedelta(minutes=11)  # the first failure was 4 min ago
    assert failures.retry_after("li.wang") is None
    clock.advance(minutes=11)
    assert failures.retry_after("wang.li") is None


def test_a_success_clears_the_failures():
    failures = FailedLogins(limit=2, clock=FakeClock(START))
    failures.failed("wang.li")
    failures.succeeded("wang.li")
    failures.failed("wang.li")
    assert failures.retry_after("wang.li") is None


def test_failures_for_many_names_stay_bounded():
    clock = FakeClock(START)
    failures = FailedLogins(clock=clock, max_names=100)
    for n in range(1000):
        failures.failed(f"name{n}")
    assert len(failures._failures) <= 100


# -- the login flow ------------------------------------------------------------------------------
@pytest.fixture
def login(tmp_path):
    accounts = AccountsFile(tmp_path / "accounts.yaml")
    accounts.add("wang.li", PASSWORD)
    clock = FakeClock(START)
    return LoginApi(accounts, Sessions(timedelta(hours=8), clock=clock), FailedLogins(clock=clock),
                    cookie_secure=False)


def request(path, method="GET", data=None, token=None, query=None):
    headers = {"Cookie": f"{COOKIE_NAME}={token}"} if token else {}
    return EnvironBuilder(path=path, method=method, data=data, headers=headers, query_string=query).get_request()


def set_cookie(response):
    [header] = response.headers.getlist("Set-Cookie")
    cookie = SimpleCookie()
    cookie.load(header)
    return header, cookie[COOKIE_NAME]


def test_api_without_session_is_401_json_and_pages_redirect_to_login(login):
    refused = login.refusal(request("/api/overdue"))
    assert refused.status_code == 401 and refused.mimetype == "application/json"
    assert refused.get_json() == {"error": "login required"}
    page = login.refusal(request("/dashboard/referrals/R-1", query="x=1&y=2"))
    assert page.status_code == 303
    location = urlsplit(page.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/dashboard/referrals/R-1?x=1&y=2"]}


def test_right_login_sets_a_strict_httponly_cookie_and_redirects(login):
    response = login.log_in(request("/login", "POST", {"name": "wang.li", "password": PASSWORD,
                                                       "next": "/dashboard/referrals/R-1"}))
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/referrals/R-1"
    header, cookie = set_cookie(response)
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"] and "Secure" not in header
    assert login.refusal(request("/api/overdue", token=cookie.value)) is None
    assert login.session(request("/dashboard", token=cookie.value)).account == "wang.li"


def test_cookie_is_secure_when_configured(login):
    login.cookie_secure = True
    header, cookie = set_cookie(login.log_in(request("/login", "POST", {"name": "wang.li", "password": PASSWORD})))
    assert cookie["secure"] and "Secure" in header


@pytest.mark.parametrize("form", [{"name": "wang.li", "password": "wrong password 1"},
                                  {"name": "nobody", "password": PASSWORD},
                                  {"name": "", "password": ""}])
def test_wrong_login_is_401_with_one_generic_message(login, form):
    response = login.log_in(request("/login", "POST", form))
    assert response.status_code == 401 and "Set-Cookie" not in response.headers
    text = response.get_data(as_text=True)
    assert "The name or the password is wrong." in text
    assert "unknown" not in text.lower() and "no such" not in text.lower()


def test_too_many_failures_are_refused_without_checking(login):
    for _ in range(5):
        assert login.log_in(request("/login", "POST", {"name": "wang.li", "password": "wrong password 1"})).status_code == 401
    blocked = login.log_in(request("/login", "POST", {"name": "wang.li", "password": PASSWORD}))
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert "Set-Cookie" not in blocked.headers


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/", "/\\evil.example", "evil",
                                    "/dash\r\nSet-Cookie: x=1", "", None])
def test_next_is_only_a_local_path(login, target):
    assert safe_next(target) == "/dashboard"
    data = {"name": "wang.li", "password": PASSWORD}
    if target is not None:
        data["next"] = target
    assert login.log_in(request("/login", "POST", data)).headers["Location"] == "/dashboard"


def test_local_next_is_kept():
    assert safe_next("/dashboard/referrals/R-1?q=a") == "/dashboard/referrals/R-1?q=a"
    assert safe_next("/api/overdue") == "/api/overdue"


def test_logout_ends_the_session_and_clears_the_cookie(login):
    _, cookie = set_cookie(login.log_in(request("/login", "POST", {"name": "wang.li", "password": PASSWORD})))
    response = login.log_out(request("/logout", "POST", token=cookie.value))
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    header, cleared = set_cookie(response)
    assert cleared.value == "" and "Max-Age=0" in header
    assert login.refusal(request("/api/overdue", token=cookie.value)).status_code == 401


def test_a_new_login_replaces_the_old_token(login):
    _, old = set_cookie(login.log_in(request("/login", "POST", {"name": "wang.li", "password": PASSWORD})))
    _, new = set_cookie(login.log_in(request("/login", "POST", {"name": "wang.li", "password": PASSWORD},
                                             token=old.value)))
    assert new.value != old.value
    assert login.session(request("/dashboard", token=old.value)) is None


def test_removing_the_account_ends_its_sessions(login):
    _, cookie = set_cookie(login.log_in(request("/login", "POST", {"name": "wang.li", "password": PASSWORD})))
    AccountsFile(login.accounts.path).remove("wang.li")
    assert login.refusal(request("/api/overdue", token=cookie.value)).status_code == 401


def test_login_form_is_a_template_with_autoescaping(login):
    response = login.form(request("/login", query="next=/dashboard"))
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "form-action 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    assert 'method="post" action="/login"' in text and 'name="next" value="/dashboard"' in text
    assert 'type="password"' in text
    html = render_login(next_path='/x"><script>alert(1)</script>', name="<b>wang</b>", error="<i>no</i>")
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;b&gt;wang&lt;/b&gt;" in html and "&#34;&gt;&lt;script&gt;" in html


def test_login_form_with_a_session_goes_on_to_next(login):
    _, cookie = set_cookie(login.log_in(request("/login", "POST", {"name": "wang.li", "password": PASSWORD})))
    response = login.form(request("/login", query="next=/api/stats", token=cookie.value))
    assert response.status_code == 303 and response.headers["Location"] == "/api/stats"


def test_every_dashboard_page_can_log_out():
    from html import unescape

    from services.office import dashboard

    pages = [dashboard.render_dashboard(office_name="Office", as_of="2026-11-24T08:00:00Z", overdue=[], stats={},
                                        referrals=[]),
             dashboard.render_referral(as_of="2026-11-24T08:00:00Z", timeline={"referral_id": "R-1"}),
             dashboard.render_not_found("no referral R-1")]
    for page in pages:
        assert page.count('<form class="logout" method="post" action="/logout">') == 1
        assert "form-action 'self'" in unescape(page) and "form-action 'none'" not in unescape(page)
