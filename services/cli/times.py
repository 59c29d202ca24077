"""The times a command prints for people (services/display_time.py): local in the configured
OFFICE.TIMEZONE, or UTC with the global ``--utc``. ``--json`` and exports do not use this."""

from __future__ import annotations

from typing import Mapping

from services import config as c
from services.display_time import TimeFormat, UnknownTimeZone

from .errors import CommandError


def time_format(args, config: Mapping | None = None) -> TimeFormat:
    """``config`` None: the default zone (Asia/Shanghai), for commands that read no configuration."""
    zone = (config.get(c.OFFICE) or {}).get(c.TIMEZONE) if config else None
    try:
        return TimeFormat.named(zone, utc=bool(getattr(args, "utc", False)))
    except UnknownTimeZone as exc:
        raise CommandError(f"OFFICE.TIMEZONE: {exc}") from None
