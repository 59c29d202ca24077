"""The joint-meeting office's staff accounts: who may log in to the dashboard and the API.

One YAML file (``OFFICE.ACCOUNTS_FILE``, mode 0600, refused when group or others may read
it), written by ``cluebus office account add``::

    accounts:
    - name: wang.li
      password_hash: scrypt$n=16384,r=8,p=1$<salt, base64>$<hash, base64>
      created_at: '2026-11-24T08:00:00Z'

Passwords are hashed with scrypt (``hashlib.scrypt``) and a random salt; the stored string
names its own parameters, so they can be raised later without breaking old hashes. Plain
Python: no Nameko, no HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

from adapters.crypto.timestamps import format_timestamp
from adapters.secret_files import SecretFileError, read_private, write_atomically
from services import config as c

MIN_PASSWORD_LENGTH = 12
SCHEME = "scrypt"
# RFC 7914's interactive parameters: 16 MiB of memory and some tens of milliseconds a check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
# A stored hash asking for more than this is refused rather than computed.
_MAX_N, _MAX_R, _MAX_P = 2 ** 20, 32, 16
_MAXMEM = 256 * 1024 * 1024

# Letters of any script, digits, and . _ @ - : a name fits on one line and in a log entry.
_NAME = re.compile(r"[\w.@-]{1,64}")
_HASH = re.compile(r"scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


class AccountsError(Exception):
    """The accounts file is unreadable, malformed or too widely readable, or a change to it
    is refused; the message is one line for the user."""


# -- passwords -------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAXMEM)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n=16384,r=8,p=1$<salt b64>$<hash b64>``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"{SCHEME}$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored hash; False for a malformed hash too."""
    match = _HASH.fullmatch(stored or "")
    if not match:
        return False
    n, r, p = (int(group) for group in match.group(1, 2, 3))
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return False
    try:
        salt = base64.b64decode(match.group(4), validate=True)
        expected = base64.b64decode(match.group(5), validate=True)
    except (binascii.Error, ValueError):
        return False
    if not salt or not expected:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if not password:
        return "the password is empty"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters"
    return None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise AccountsError(f"{name!r} is not an account name: 1 to 64 letters, digits, '.', '_', '@' or '-'")
    return name


# -- the file ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    created_at: str

    def __repr__(self) -> str:  # never print the hash
        return f"Account(name={self.name!r}, created_at={self.created_at!r})"

    def to_yaml(self) -> dict:
        return {"name": self.name, "password_hash": self.password_hash, "created_at": self.created_at}


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AccountsFile:
    """The accounts file. ``accounts()`` re-reads it whenever it changed on disk, so a running
    office sees accounts added or removed by the command line at the next request."""

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], datetime] = _utc_now):
        self.path = Path(path).expanduser()
        self.clock = clock
        self._cache: tuple[tuple, dict[str, Account]] | None = None
        self._dummy_hash: str | None = None

    # reading
    def _signature(self) -> tuple | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AccountsError(f"cannot read the office accounts file {self.path}: {exc}") from None
        return (info.st_ino, info.st_mtime_ns, info.st_size, info.st_mode)

    def accounts(self) -> dict[str, Account]:
        """Every account by name; none when the file does not exist."""
        signature = self._signature()
        if signature is None:
            return {}
        if self._cache is not None and self._cache[0] == signature:
            return self._cache[1]
        try:
            text = read_private(self.path, "office accounts file")
        except SecretFileError as exc:
            raise AccountsError(str(exc)) from None
        accounts = self._parse(text)
        self._cache = (signature, accounts)
        return accounts

    def _parse(self, text: str) -> dict[str, Account]:
        try:
            document = yaml.safe_load(text) or {}
            entries = (document.get("accounts") or []) if isinstance(document, dict) else None
            if not isinstance(entries, list):
                raise ValueError("expected a mapping with a list `accounts`")
            accounts: dict[str, Account] = {}
            for entry in entries:
                if not isinstance(entry, dict):
                    raise ValueError("an account is not a mapping")
                account = Account(check_name(str(entry["name"])), str(entry["password_hash"]),
                                  str(entry.get("created_at", "")))
                if account.name in accounts:
                    raise ValueError(f"account {account.name} is listed twice")
                accounts[account.name] = account
        except (yaml.YAMLError, KeyError, ValueError, AccountsError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise AccountsError(f"office accounts file {self.path} is malformed: {detail}") from None
        return accounts

    def names(self) -> list[str]:
        return sorted(self.accounts())

    # checking
    def verify(self, name: str, password: str) -> bool:
        """Whether ``name`` is an account with this password. An unknown name costs the same
        scrypt computation as a known one, so timing does not tell them apart."""
        account = self.accounts().get(name)
        if account is None:
            if self._dummy_hash is None:
                self._dummy_hash = hash_password(secrets.token_urlsafe(16))
            check_password(password, self._dummy_hash)
            return False
        return check_password(password, account.password_hash)

    # changing
    def _save(self, accounts: dict[str, Account]) -> None:
        document = {"accounts": [accounts[name].to_yaml() for name in sorted(accounts)]}
        header = ("# The joint-meeting office's staff accounts (cluebus office account add|list|remove).\n"
                  "# Keep this file mode 0600: it holds password hashes.\n")
        write_atomically(self.path, header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
        self._cache = None

    def add(self, name: str, password: str, *, replace: bool = False) -> Account:
        check_name(name)
        problem = password_problem(password)
        if problem:
            raise AccountsError(problem)
        accounts = dict(self.accounts())
        if name in accounts and not replace:
            raise AccountsError(f"account {name} already exists; pass --replace to set a new password")
        account = Account(name, hash_password(password), format_timestamp(self.clock().replace(microsecond=0)))
        accounts[name] = account
        self._save(accounts)
        return account

    def remove(self, name: str) -> None:
        accounts = dict(self.accounts())
        if name not in accounts:
            raise AccountsError(f"no account {name} in {self.path}")
        del accounts[name]
        self._save(accounts)


def accounts_file(config) -> AccountsFile:
    """The accounts file the configuration names (``OFFICE.ACCOUNTS_FILE``)."""
    return AccountsFile(config[c.OFFICE][c.ACCOUNTS_FILE])


# -- where the office may listen ---------------------------------------------------------------
def is_loopback(address: str) -> bool:
    """Whether a ``host:port`` (Nameko's ``WEB_SERVER_ADDRESS``) listens on loopback only:
    127.0.0.0/8, ::1 or localhost. An empty host means every interface."""
    host = address.rpartition(":")[0] if ":" in address else ""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_exposed_without_accounts(address: str, accounts: AccountsFile) -> None:
    """Raise AccountsError when the office would listen beyond loopback with no account."""
    if not accounts.accounts() and not is_loopback(address):  # reads, and so checks, the file
        raise AccountsError(
            f"the office's dashboard would listen on {address}, not a loopback address, and "
            f"{accounts.path} holds no account: add one with `cluebus office account add NAME` "
            f"(or listen on 127.0.0.1 with CLUEBUS_OFFICE_HTTP)")
