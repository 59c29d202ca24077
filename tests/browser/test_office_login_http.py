"""Logging in to the REAL office service's HTTP gateway (the ``office_node`` of conftest.py:
Nameko, a real RabbitMQ, its own database and accounts file), with plain ``http.client``: no
browser needed, no redirect followed unless the test follows it."""

from __future__ import annotations

import http.client
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from services.office.login import COOKIE_NAME

pytestmark = pytest.mark.integration


@pytest.fixture
def call(dashboard_url):
    host = urlsplit(dashboard_url).netloc

    def request(method, path, *, form=None, token=None):
        connection = http.client.HTTPConnection(host, timeout=10)
        headers = {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            headers["Cookie"] = f"{COOKIE_NAME}={token}"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read().decode("utf-8")
        finally:
            connection.close()
    return request


def _cookie(headers):
    [header] = headers.get_all("Set-Cookie")
    cookie = SimpleCookie()
    cookie.load(header)
    return header, cookie[COOKIE_NAME]


def test_login_guards_the_api_and_the_dashboard(call, office_account):
    name, password = office_account

    # Nothing without a session.
    status, headers, text = call("GET", "/api/overdue")
    assert status == 401 and json.loads(text) == {"error": "login required"}
    assert headers["Content-Type"].startswith("application/json")
    for path in ("/api/stats", "/api/referrals", "/api/referrals/x"):
        assert call("GET", path)[0] == 401
    status, headers, _ = call("GET", "/dashboard")
    assert status == 303
    location = urlsplit(headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/dashboard"]}
    status, headers, _ = call("GET", "/dashboard/referrals/R-1")
    assert status == 303 and parse_qs(urlsplit(headers["Location"]).query) == {"next": ["/dashboard/referrals/R-1"]}

    # The login page is open.
    status, headers, text = call("GET", "/login?next=/dashboard")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'name="password"' in text and 'value="/dashboard"' in text

    # A wrong password, and an unknown name: the same 401 and the same message.
    wrong = call("POST", "/login", form={"name": name, "password": password + "x", "next": "/dashboard"})
    unknown = call("POST", "/login", form={"name": "nobody", "password": password, "next": "/dashboard"})
    for status, headers, text in (wrong, unknown):
        assert status == 401 and "Set-Cookie" not in headers
        assert "The name or the password is wrong." in text
    assert wrong[2] != unknown[2]  # only the name typed in differs
    assert wrong[2].replace(name, "nobody") == unknown[2]

    # Right: a session cookie, HttpOnly and SameSite=Strict, and the way to `next`.
    status, headers, _ = call("POST", "/login", form={"name": name, "password": password, "next": "/api/stats"})
    assert status == 303 and headers["Location"] == "/api/stats"
    header, cookie = _cookie(headers)
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert "Secure" not in header  # OFFICE.COOKIE_SECURE is false by default
    token = cookie.value
    assert len(token) >= 43

    status, _, text = call("GET", "/api/overdue", token=token)
    assert status == 200 and isinstance(json.loads(text), list) and json.loads(text)
    status, headers, text = call("GET", "/dashboard", token=token)
    assert status == 200 and 'action="/logout"' in text
    assert headers["Cache-Control"] == "no-store"
    assert call("GET", "/api/overdue", token=token + "x")[0] == 401

    # Logging out ends the session on the server, not only in the browser.
    status, headers, _ = call("POST", "/logout", token=token)
    assert status == 303 and headers["Location"] == "/login"
    header, cleared = _cookie(headers)
    assert cleared.value == "" and "Max-Age=0" in header
    assert call("GET", "/api/overdue", token=token)[0] == 401
    assert call("GET", "/dashboard", token=token)[0] == 303


@pytest.mark.parametrize("target", ["//evil.example", "//evil.example/dashboard", "https://evil.example/",
                                    "/\\evil.example"])
def test_login_never_sends_the_browser_elsewhere(call, office_account, target):
    name, password = office_account
    status, headers, _ = call("POST", "/login", form={"name": name, "password": password, "next": target})
    assert status == 303 and headers["Location"] == "/dashboard"
    call("POST", "/logout", token=_cookie(headers)[1].value)
