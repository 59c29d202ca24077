"""Sessions of the office's staff on the dashboard and the API, and a limit on failed logins.

Server-side and in memory: a session is a random token (``secrets.token_urlsafe(32)``) given
to the browser as a cookie; the office keeps only the token's SHA-256, the account's name,
the login time and the time of the last request. A session ends at logout, after
``idle_timeout`` without a request, or when its account is removed. Restarting the office
ends every session. Plain Python: no Nameko, no HTTP; the clock is injected.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

TOKEN_BYTES = 32


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _key(token: str) -> str:
    # Looked up by a hash of the token: the dictionary never holds a usable token, and a
    # lookup's timing says nothing about the tokens that exist.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Session:
    account: str
    logged_in_at: datetime
    last_seen: datetime


class Sessions:
    def __init__(self, idle_timeout: timedelta, *, clock: Callable[[], datetime] = _utc_now):
        if idle_timeout <= timedelta(0):
            raise ValueError("the session idle timeout must be positive")
        self.idle_timeout = idle_timeout
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def start(self, account: str) -> str:
        """A new session for ``account``; returns its token (the cookie's value)."""
        self.purge()
        now = self.clock()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._sessions[_key(token)] = Session(account, now, now)
        return token

    def get(self, token: str | None, *, accounts: Iterable[str] | None = None) -> Session | None:
        """The live session of ``token`` (its idle time starts again), or None. With
        ``accounts``, a session whose account is no longer among them ends too."""
        if not token:
            return None
        key = _key(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen >= self.idle_timeout or (accounts is not None and session.account not in accounts):
            del self._sessions[key]
            return None
        session.last_seen = now
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_key(token), None)

    def purge(self) -> None:
        """Forget the sessions idle too long."""
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if now - s.last_seen >= self.idle_timeout]:
            del self._sessions[key]


class FailedLogins:
    """At most ``limit`` failed logins per account name within ``window``; after that the name
    is refused without checking any password until the oldest failure leaves the window.
    Counted for any name, known or not, so the limit does not tell which names exist."""

    def __init__(self, *, limit: int = 5, window: timedelta = timedelta(minutes=15),
                 clock: Callable[[], datetime] = _utc_now, max_names: int = 10_000):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_names = max_names
        self._failures: dict[str, list[datetime]] = {}

    @staticmethod
    def _name(name: str) -> str:
        return name.casefold()

    def _recent(self, name: str) -> list[datetime]:
        cutoff = self.clock() - self.window
        recent = [t for t in self._failures.get(self._name(name), ()) if t > cutoff]
        if recent:
            self._failures[self._name(name)] = recent
        else:
            self._failures.pop(self._name(name), None)
        return recent

    def retry_after(self, name: str) -> timedelta | None:
        """How long ``name`` must wait before another attempt, or None when it may try now."""
        recent = self._recent(name)
        if len(recent) < self.limit:
            return None
        return recent[-self.limit] + self.window - self.clock()

    def failed(self, name: str) -> None:
        if len(self._failures) >= self.max_names:
            cutoff = self.clock() - self.window
            kept = sorted(((ts[-1], n) for n, ts in self._failures.items() if ts[-1] > cutoff), reverse=True)
            self._failures = {n: self._failures[n] for _, n in kept[: self.max_names // 2]}
        self._failures.setdefault(self._name(name), []).append(self.clock())

    def succeeded(self, name: str) -> None:
        self._failures.pop(self._name(name), None)
