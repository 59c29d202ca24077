"""How the office's pages show values: local times, durations, yuan, percentages.

Plain functions from data to text (no HTML: the templates escape what these return). Times
arrive as RFC 3339 UTC strings (``YYYY-MM-DDTHH:MM:SSZ``) and are shown in Asia/Shanghai local
time as ``YYYY-MM-DD HH:MM`` (services/display_time.py, shared with the command line); money
arrives as integer fen and is shown in yuan with two decimals, computed with integer
arithmetic; rates are fractions (0.74 is 74.0%).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

# The one way times are shown to people (the command line uses it too).
from services.display_time import LOCAL_TZ, local_time, parse_time  # noqa: F401

DASHBOARD_PATH = "/dashboard"
REFERRAL_PATH = "/dashboard/referrals/"


def yuan(fen: Any) -> str:
    """Integer fen -> yuan with thousands separators and exactly two decimals, no floats.

    >>> yuan(128645000)
    '1,286,450.00'
    """
    if isinstance(fen, bool) or not isinstance(fen, (int, str)):
        return "—" if fen is None else str(fen)
    try:
        amount = int(fen)
    except ValueError:
        return str(fen)
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def duration(seconds: Any) -> str:
    """Human-readable duration: ``2d 3h``, ``5h 12m``, ``12m``, ``<1m``, ``0``."""
    if seconds is None or isinstance(seconds, bool):
        return "—"
    try:
        total = int(round(float(seconds)))
    except (TypeError, ValueError):
        return str(seconds)
    if total == 0:
        return "0"
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = f"{days}d {hours}h" if hours else f"{days}d"
    elif hours:
        text = f"{hours}h {minutes}m" if minutes else f"{hours}h"
    elif minutes:
        text = f"{minutes}m"
    else:
        text = "<1m"
    return sign + text


def percent(rate: Any) -> str | None:
    """0.745 -> ``74.5%``; None (no rate) stays None; anything else as given."""
    if rate is None or isinstance(rate, bool):
        return None
    try:
        value = float(rate) * 100
    except (TypeError, ValueError):
        return str(rate)
    return f"{value:.1f}%"


def to_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def referral_href(referral_id: Any, as_of: str | None = None) -> str:
    """The referral's page (its id percent-encoded), at ``as_of`` when one was asked for."""
    href = REFERRAL_PATH + quote(str(referral_id), safe="")
    return f"{href}?{urlencode({'as_of': as_of})}" if as_of else href


def dashboard_href(as_of: str | None = None) -> str:
    return f"{DASHBOARD_PATH}?{urlencode({'as_of': as_of})}" if as_of else DASHBOARD_PATH
