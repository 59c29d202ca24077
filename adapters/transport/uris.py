"""AMQP URIs: putting an account's credentials into the configured addresses, and taking
them out again for anything that is printed or logged.

A configured URI has no credentials (``amqp://host:5672/vhost``); several addresses of one
broker cluster are separated by ``;`` (kombu's failover syntax), each with the same vhost.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit, urlunsplit

FAILOVER_SEPARATOR = ";"


def addresses(uri: str) -> list[str]:
    return [part.strip() for part in uri.split(FAILOVER_SEPARATOR) if part.strip()]


def _host_part(netloc: str) -> str:
    return netloc.rsplit("@", 1)[-1]


def with_credentials(uri: str, user: str, password: str) -> str:
    """Every address of ``uri`` with ``user:password`` (percent-encoded) as its userinfo."""
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    parts = []
    for address in addresses(uri):
        split = urlsplit(address)
        parts.append(urlunsplit(split._replace(netloc=f"{userinfo}@{_host_part(split.netloc)}")))
    return FAILOVER_SEPARATOR.join(parts)


def without_credentials(uri: str) -> str:
    """``uri`` with any password removed (user names stay: they are not secret)."""
    parts = []
    for address in addresses(uri):
        split = urlsplit(address)
        host = _host_part(split.netloc)
        user = split.username
        netloc = f"{quote(unquote(user), safe='')}@{host}" if user else host
        parts.append(urlunsplit(split._replace(netloc=netloc)))
    return FAILOVER_SEPARATOR.join(parts)


def with_addresses(uri: str, hosts: list[str]) -> str:
    """``uri`` once per ``host:port`` of ``hosts`` (its first address with that host and port
    instead of its own), ``;``-separated; ``uri`` itself when ``hosts`` is empty."""
    if not hosts:
        return uri
    split = urlsplit(addresses(uri)[0])
    userinfo = split.netloc.rsplit("@", 1)[0] + "@" if "@" in split.netloc else ""
    return FAILOVER_SEPARATOR.join(urlunsplit(split._replace(netloc=f"{userinfo}{host}")) for host in hosts)


def split_hosts(value) -> list[str]:
    """``"h1:5672, h2:5673"`` (or a list) as ``["h1:5672", "h2:5673"]``."""
    if not value:
        return []
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(part).strip() for part in parts if str(part).strip()]


def vhost(uri: str) -> str:
    """The virtual host of ``uri`` (of its first address): the unquoted path without its
    leading slash; an empty path is the default virtual host ``/``."""
    path = urlsplit(addresses(uri)[0]).path
    name = unquote(path[1:]) if path.startswith("/") else unquote(path)
    return name or "/"


def host_port(uri: str) -> tuple[str, int]:
    split = urlsplit(addresses(uri)[0])
    return split.hostname or "localhost", split.port or 5672
