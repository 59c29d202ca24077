"""Each agency's broker accounts: one on the bus, one on its own control plane.

``cluebus broker setup`` makes them and writes one file per agency,
``<CREDENTIALS_DIR>/<agency>.json``, mode 0600 in a 0700 directory, like the private keys;
a node reads only its own. Passwords are never printed by ``repr`` and never logged.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from adapters.secret_files import SecretFileError, private_directory, read_private, write_atomically

CREDENTIALS_FORMAT = "cluebus-broker-credentials/1"
BUS = "bus"
CONTROL = "control"


class CredentialsError(Exception):
    """An agency's broker credentials are missing or unusable (a configuration error)."""


@dataclass(frozen=True)
class BrokerAccount:
    user: str
    password: str

    def __repr__(self) -> str:  # never show the password
        return f"BrokerAccount(user={self.user!r}, password=<hidden>)"

    @classmethod
    def generate(cls, user: str) -> "BrokerAccount":
        return cls(user, secrets.token_urlsafe(24))


@dataclass(frozen=True)
class AgencyCredentials:
    """An agency's two accounts; the bus operator's file (``bus_operator.json``) holds only
    a bus account (it publishes keyring updates and has no control plane)."""

    agency: str
    bus: BrokerAccount
    control: BrokerAccount | None

    def to_json(self) -> dict:
        document = {"format": CREDENTIALS_FORMAT, "agency": self.agency,
                    BUS: {"user": self.bus.user, "password": self.bus.password}}
        if self.control is not None:
            document[CONTROL] = {"user": self.control.user, "password": self.control.password}
        return document

    @classmethod
    def from_json(cls, agency: str, data, *, control: bool = True) -> "AgencyCredentials":
        try:
            if data.get("format") != CREDENTIALS_FORMAT or data.get("agency") != agency:
                raise ValueError("wrong format or agency")
            accounts = {}
            for plane in (BUS, CONTROL) if control else (BUS,):
                user, password = data[plane]["user"], data[plane]["password"]
                if not (isinstance(user, str) and isinstance(password, str) and user and password):
                    raise ValueError(f"{plane} account needs a user and a password")
                accounts[plane] = BrokerAccount(user, password)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CredentialsError(f"broker credentials of {agency} are malformed: {exc}") from None
        return cls(agency, accounts[BUS], accounts.get(CONTROL))


class CredentialStore:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    def path_for(self, agency: str) -> Path:
        return self.path / f"{agency}.json"

    def exists(self, agency: str) -> bool:
        return self.path_for(agency).exists()

    def load(self, agency: str, *, control: bool = True) -> AgencyCredentials:
        path = self.path_for(agency)
        try:
            text = read_private(path, f"broker credentials of {agency}")
        except SecretFileError as exc:
            raise CredentialsError(f"{exc} (the bus operator makes them with `cluebus broker setup`)") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CredentialsError(f"broker credentials {path} are not JSON: {exc}") from None
        return AgencyCredentials.from_json(agency, data, control=control)

    def save(self, credentials: AgencyCredentials) -> Path:
        private_directory(self.path)
        path = self.path_for(credentials.agency)
        write_atomically(path, json.dumps(credentials.to_json(), indent=2) + "\n")
        return path

    def remove(self, agency: str) -> None:
        self.path_for(agency).unlink(missing_ok=True)
