"""One YAML configuration file with ``${VAR:default}`` interpolation.

The convention is Nameko's: a scalar written ``${VAR}`` or ``${VAR:default}`` takes the
environment variable VAR when set, else the default. When the whole scalar is one such
reference, the result is parsed as YAML so that numbers and booleans keep their type.
Key names are constants below; code never spells a key as a bare string.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

# Top-level keys.
BROKER = "BROKER"
DATA_DIR = "DATA_DIR"
KEYS_DIR = "KEYS_DIR"
KEYRING_DIR = "KEYRING_DIR"
AGENCIES = "AGENCIES"
PROTOCOL = "PROTOCOL"
KEYS = "KEYS"
ROUTES_FILE = "ROUTES_FILE"
ROLES_FILE = "ROLES_FILE"

DATABASE_URL = "DATABASE_URL"
TRANSPORT = "TRANSPORT"
DELIVERY = "DELIVERY"

# Keys under BROKER.
BUS_URI = "BUS_URI"
CONTROL_URI = "CONTROL_URI"
USER_PREFIX = "USER_PREFIX"
CREDENTIALS_DIR = "CREDENTIALS_DIR"
ADMIN_URI = "ADMIN_URI"
# host:port of every member of a broker cluster, comma-separated: they replace the host and
# port of BUS_URI and CONTROL_URI (each becomes a failover list; settings.amqp_addresses).
ADDRESSES = "ADDRESSES"

# Keys under TRANSPORT.
EXCHANGE = "EXCHANGE"
DEAD_LETTER_EXCHANGE = "DEAD_LETTER_EXCHANGE"
QUEUE_TYPE = "QUEUE_TYPE"
DELIVERY_LIMIT = "DELIVERY_LIMIT"
QUORUM_GROUP_SIZE = "QUORUM_GROUP_SIZE"
CONTROL_QUEUE_TYPE = "CONTROL_QUEUE_TYPE"

# Keys under DELIVERY.
RELAY_INTERVAL_SECONDS = "RELAY_INTERVAL_SECONDS"
RECEIPT_TIMEOUT_SECONDS = "RECEIPT_TIMEOUT_SECONDS"
BACKOFF_FACTOR = "BACKOFF_FACTOR"
MAX_ATTEMPTS = "MAX_ATTEMPTS"
PUBLISH_RETRY_SECONDS = "PUBLISH_RETRY_SECONDS"
SEAL_BODIES = "SEAL_BODIES"
BATCH_SIZE = "BATCH_SIZE"
LEASE_SECONDS = "LEASE_SECONDS"
WORKERS = "WORKERS"

# The agency nodes' own HTTP port (metrics and health probes), under NODE: HTTP_ADDRESS.
NODE = "NODE"
OFFICE = "OFFICE"
OBSERVERS = "OBSERVERS"

# Keys under OFFICE.
TIMEZONE = "TIMEZONE"
CALENDAR_FILE = "CALENDAR_FILE"
SCAN_INTERVAL_SECONDS = "SCAN_INTERVAL_SECONDS"
WARN_BEFORE_HOURS = "WARN_BEFORE_HOURS"
ESCALATE_AFTER_HOURS = "ESCALATE_AFTER_HOURS"
ESCALATE_TO = "ESCALATE_TO"
HTTP_ADDRESS = "HTTP_ADDRESS"
ACCOUNTS_FILE = "ACCOUNTS_FILE"
SESSION_HOURS = "SESSION_HOURS"
COOKIE_SECURE = "COOKIE_SECURE"
DEADLINES = "DEADLINES"
# Money rules per jurisdiction (whistle-blower rewards, fines): services/domain/money.py.
REWARD_JURISDICTION = "REWARD_JURISDICTION"
REWARD_RULES = "REWARD_RULES"
FINE_RULES = "FINE_RULES"

# Keys under IMPORT (`cluebus import`, docs/import.md); TIMEZONE as under OFFICE.
IMPORT = "IMPORT"
MAX_FILE_BYTES = "MAX_FILE_BYTES"
CHUNK_ROWS = "CHUNK_ROWS"
CALLS_IN_FLIGHT = "CALLS_IN_FLIGHT"

# Keys under PROTOCOL.
MAX_MESSAGE_BYTES = "MAX_MESSAGE_BYTES"
CLOCK_SKEW_SECONDS = "CLOCK_SKEW_SECONDS"
MAX_DELIVERY_DELAY_SECONDS = "MAX_DELIVERY_DELAY_SECONDS"

# Reconciliation between agencies (docs/protocol.md §20), under RECONCILE.
RECONCILE = "RECONCILE"
INTERVAL_SECONDS = "INTERVAL_SECONDS"
SETTLE_SECONDS = "SETTLE_SECONDS"
RECONCILE_DEFAULTS = {INTERVAL_SECONDS: 3600, SETTLE_SECONDS: 60}

# Keys under KEYS.
VALIDITY_DAYS = "VALIDITY_DAYS"
ACTIVATION_SECONDS = "ACTIVATION_SECONDS"
OVERLAP_DAYS = "OVERLAP_DAYS"

# Keys under each agency.
AGENCY_NAME = "name"
AGENCY_NAME_ZH = "name_zh"

CONFIG_ENV_VAR = "CLUEBUS_CONFIG"
DEFAULT_CONFIG_RESOURCE = "cluebus.yaml"

# A default may itself hold {placeholders} (e.g. {agency} in DATABASE_URL), one level deep.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{[^{}]*\})*))?\}")


class ConfigError(Exception):
    """The configuration file is missing, malformed or names an unset variable."""


def _interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: _interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, environ) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set and has no default")
        return default

    whole = _REFERENCE.fullmatch(value)
    substituted = _REFERENCE.sub(replace, value)
    if whole:
        # A bare reference keeps YAML typing: "1048576" becomes an int, "true" a bool.
        # A value that is not a YAML scalar (e.g. "@admin") stays the string it is.
        if substituted == "":
            return ""
        try:
            parsed = yaml.safe_load(substituted)
        except yaml.YAMLError:
            return substituted
        return parsed if isinstance(parsed, (str, int, bool)) or parsed is None else substituted
    return substituted


def load_config(path: str | os.PathLike | None = None,
                environ: Mapping[str, str] | None = None) -> dict:
    """Load the configuration: ``path``, else $CLUEBUS_CONFIG, else the shipped default."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get(CONFIG_ENV_VAR)
    try:
        if chosen:
            text = Path(chosen).read_text(encoding="utf-8")
        else:
            text = resources.files("services").joinpath(DEFAULT_CONFIG_RESOURCE).read_text(
                encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {chosen}: {exc}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration {chosen or DEFAULT_CONFIG_RESOURCE} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("configuration must be a mapping at the top level")
    config = _interpolate(raw, environ)
    if not config.get(AGENCIES):
        raise ConfigError(f"configuration lists no {AGENCIES}")
    return config


def agency_codes(config: Mapping) -> list[str]:
    return list(config[AGENCIES])


def protocol_setting(config: Mapping, key: str) -> Any:
    return config[PROTOCOL][key]


def database_url(config: Mapping, agency: str) -> str:
    """The node's own database URL, with {data_dir} and {agency} filled in."""
    data_dir = str(Path(config[DATA_DIR]).expanduser().resolve())
    return str(config[DATABASE_URL]).replace("{data_dir}", data_dir).replace("{agency}", agency)


def node_http_address(config: Mapping, agency: str) -> str | None:
    """Where ``agency``'s node serves /metrics, /health and /ready: ``NODE.HTTP_ADDRESS``
    (``host:port``) with the port moved up by the agency's place in AGENCIES (0 for the
    first), so the nodes of one process (the demo) each get a port of their own; None when
    the address is empty (no HTTP port)."""
    address = str((config.get(NODE) or {}).get(HTTP_ADDRESS) or "").strip()
    if not address:
        return None
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"{NODE}.{HTTP_ADDRESS} must be host:port, not {address!r}")
    return f"{host or '127.0.0.1'}:{int(port) + agency_codes(config).index(agency)}"


def reconcile_seconds(config: Mapping, key: str) -> float:
    """RECONCILE.INTERVAL_SECONDS (0: no periodic reconciliation) or SETTLE_SECONDS, with
    their defaults for a configuration file without the section."""
    value = (config.get(RECONCILE) or {}).get(key, RECONCILE_DEFAULTS[key])
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{RECONCILE}.{key} must be a number of seconds, not {value!r}") from None
    if seconds < 0:
        raise ConfigError(f"{RECONCILE}.{key} must not be negative")
    return seconds


def observer_codes(config: Mapping) -> list[str]:
    return [a for a in (config.get(OBSERVERS) or []) if a in config[AGENCIES]]


def office_code(config: Mapping) -> str:
    """The joint office's agency code: the one configured agency in OBSERVERS."""
    observers = observer_codes(config)
    if len(observers) != 1:
        raise ConfigError(f"{OBSERVERS} must name exactly one configured agency, the joint office "
                          f"(it names {', '.join(observers) or 'none'})")
    return observers[0]


def agency_names(config: Mapping, key: str = AGENCY_NAME_ZH) -> dict[str, str]:
    """Each configured agency's name (by default its Chinese name, ``name_zh``), by code;
    agencies without one are left out."""
    return {code: str(entry[key]) for code, entry in config[AGENCIES].items()
            if isinstance(entry, Mapping) and entry.get(key)}
