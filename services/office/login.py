"""Logging in to the office's dashboard and API: the login page, the session cookie, and the
one check every page and API route makes (``LoginApi.refusal``).

Werkzeug requests in, Werkzeug responses out; no Nameko (``service.py`` routes the HTTP
entrypoints here, and its ``OfficeLogin`` provider builds one ``LoginApi`` per office).

- ``/api/*`` without a valid session: 401, JSON ``{"error": "login required"}``.
- Any other guarded page: 303 to ``/login?next=<the page>``.
- ``POST /login``: a right name and password start a session and redirect (303) to ``next``
  (a local path only); anything else shows the form again with 401 and one message that
  does not say which of the two was wrong. After ``FailedLogins.limit`` failures for a name,
  that name is refused for a while (429) without a password being checked.
- ``POST /logout``: ends the session, clears the cookie, redirects to ``/login``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping
from urllib.parse import urlencode

from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from services import config as c

from . import templating
from .accounts import AccountsError, AccountsFile, accounts_file, refuse_exposed_without_accounts
from .sessions import FailedLogins, Session, Sessions

log = logging.getLogger(__name__)

COOKIE_NAME = "cluebus_office_session"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
DEFAULT_NEXT = "/dashboard"
API_PREFIX = "/api/"
# Longer than any account name (64), so never one; keeps what the failure counts hold small.
NAME_LIMIT = 100

LOGIN_FAILED = "账号或密码不正确。The name or the password is wrong."
_PAGE_HEADERS = {
    # The login page loads nothing and may only be posted to its own origin, never framed.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a local path (``/...``, not ``//host`` nor ``/\\host``,
    no control characters), else the dashboard."""
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)):
        return DEFAULT_NEXT
    return value


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def render_login(*, next_path: str, name: str = "", error: str | None = None) -> str:
    """The login page (``templates/login.html``, autoescaped: templating.environment)."""
    return templating.render("login.html", next_path=next_path, name=name, error=error, login_path=LOGIN_PATH)


def _page(text: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(text, status=status, mimetype="text/html", headers={**_PAGE_HEADERS, **(headers or {})})


@dataclass
class LoginApi:
    """What a worker of the office's HTTP gateway gets: one shared set of accounts, sessions
    and failure counts per office process."""

    accounts: AccountsFile
    sessions: Sessions
    failures: FailedLogins
    cookie_secure: bool

    # -- the check -------------------------------------------------------------------------
    def _names(self):
        try:
            return self.accounts.accounts()
        except AccountsError as exc:  # e.g. the file was made world-readable after the start
            log.error("no login possible: %s", exc)
            return {}

    def session(self, request: Request) -> Session | None:
        token = request.cookies.get(COOKIE_NAME)
        if not token:
            return None
        return self.sessions.get(token, accounts=self._names())

    def refusal(self, request: Request) -> Response | None:
        """None when the request has a valid session; else what to answer instead: 401 JSON
        for the API, a redirect to the login page for anything else."""
        if self.session(request) is not None:
            return None
        if request.path.startswith(API_PREFIX):
            return Response(json.dumps({"error": "login required"}), status=401, mimetype="application/json",
                            headers={"Cache-Control": "no-store"})
        target = request.path + (f"?{request.query_string.decode('latin-1')}" if request.query_string else "")
        return redirect(f"{LOGIN_PATH}?{urlencode({'next': target})}", code=303)

    # -- the routes --------------------------------------------------------------------------
    def form(self, request: Request) -> Response:
        next_path = safe_next(request.args.get("next"))
        if self.session(request) is not None:
            return redirect(next_path, code=303)
        return _page(render_login(next_path=next_path))

    def log_in(self, request: Request) -> Response:
        name = (request.form.get("name") or "").strip()[:NAME_LIMIT]
        password = request.form.get("password") or ""
        next_path = safe_next(request.form.get("next"))
        wait = self.failures.retry_after(name)
        if wait is not None:
            minutes = max(1, math.ceil(wait / timedelta(minutes=1)))
            message = (f"登录失败次数过多，请 {minutes} 分钟后再试。"
                       f"Too many failed logins for this name: try again in {minutes} min.")
            return _page(render_login(next_path=next_path, name=name, error=message), 429,
                         {"Retry-After": str(math.ceil(wait.total_seconds()))})
        try:
            ok = bool(name) and self.accounts.verify(name, password)
        except AccountsError as exc:
            log.error("no login possible: %s", exc)
            ok = False
        if not ok:
            self.failures.failed(name)
            log.warning("failed login to the office as %r", name)
            return _page(render_login(next_path=next_path, name=name, error=LOGIN_FAILED), 401)
        self.failures.succeeded(name)
        self.sessions.end(request.cookies.get(COOKIE_NAME))  # never keep a token from before the login
        token = self.sessions.start(name)
        log.info("%s logged in to the office", name)
        response = redirect(next_path, code=303)
        response.set_cookie(COOKIE_NAME, token, path="/", httponly=True, samesite="Strict",
                            secure=self.cookie_secure)
        response.headers["Cache-Control"] = "no-store"
        return response

    def log_out(self, request: Request) -> Response:
        self.sessions.end(request.cookies.get(COOKIE_NAME))
        response = redirect(LOGIN_PATH, code=303)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict", secure=self.cookie_secure)
        return response


def login_api(config: Mapping, bind_address: str) -> LoginApi:
    """The office's accounts and an empty set of sessions, from the configuration. Raises
    AccountsError (one line) when the accounts file is refused, or when ``bind_address`` is
    not loopback and there is no account."""
    office = config[c.OFFICE]
    accounts = accounts_file(config)
    refuse_exposed_without_accounts(bind_address, accounts)
    return LoginApi(accounts, Sessions(timedelta(hours=float(office[c.SESSION_HOURS]))), FailedLogins(),
                    _flag(office[c.COOKIE_SECURE]))
