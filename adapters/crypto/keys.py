"""Agency keys: generation, the public keyring and the private key store.

Each agency has an Ed25519 signing key and an X25519 key for sealed bodies. A key id is
``<agency>:<algorithm>:<first 16 bytes of SHA-256(public key), hex>``, so it names one key
unambiguously and says whose it is. Private key material never leaves this module except
inside a :class:`~adapters.crypto.signing.Signer` or :class:`~adapters.crypto.sealing.BoxKey`,
neither of which exposes or prints it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from adapters.secret_files import write_atomically as _write_atomically

from .encoding import b64decode_strict, b64encode
from .exceptions import (KeyAgencyMismatch, KeyExpired, KeyNotYetValid, KeyPurposeMismatch,
                         KeyRevoked, KeyStoreError, UnknownKey)
from .timestamps import format_timestamp, parse_timestamp

ED25519 = "ed25519"
X25519 = "x25519"
KEYRING_FORMAT = "cluebus-keyring/1"
PRIVATE_KEY_FORMAT = "cluebus-private-key/1"
KEYRING_FILE = "keyring.json"
PRIVATE_DIR = "private"


def key_id_for(agency: str, algorithm: str, public_key: bytes) -> str:
    return f"{agency}:{algorithm}:{hashlib.sha256(public_key).digest()[:16].hex()}"


@dataclass(frozen=True)
class PublicKeyRecord:
    key_id: str
    agency: str
    algorithm: str
    public_key: bytes
    valid_from: datetime
    valid_until: datetime | None = None
    revoked: bool = False

    def to_json(self) -> dict:
        return {
            "key_id": self.key_id,
            "agency": self.agency,
            "algorithm": self.algorithm,
            "public_key": b64encode(self.public_key),
            "valid_from": format_timestamp(self.valid_from),
            "valid_until": format_timestamp(self.valid_until) if self.valid_until else None,
            "revoked": self.revoked,
        }

    @classmethod
    def from_json(cls, data: dict) -> "PublicKeyRecord":
        if not isinstance(data, dict):
            raise KeyStoreError("keyring entry is not an object")
        if not isinstance(data.get("revoked", False), bool):
            raise KeyStoreError(f"keyring entry {data.get('key_id', '?')!r}: revoked must be true or false")
        try:
            record = cls(
                key_id=data["key_id"],
                agency=data["agency"],
                algorithm=data["algorithm"],
                public_key=b64decode_strict(data["public_key"]),
                valid_from=parse_timestamp(data["valid_from"]),
                valid_until=(parse_timestamp(data["valid_until"]) if data.get("valid_until") is not None
                             else None),
                revoked=data.get("revoked", False),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"keyring entry {data.get('key_id', '?')!r} is malformed: {exc}") from exc
        if record.algorithm not in (ED25519, X25519) or len(record.public_key) != 32:
            raise KeyStoreError(f"keyring entry {record.key_id!r} has an unsupported key")
        if key_id_for(record.agency, record.algorithm, record.public_key) != record.key_id:
            raise KeyStoreError(f"keyring entry {record.key_id!r} does not match its public key")
        return record


@dataclass
class Keyring:
    """The public keys of every agency, with validity periods and revocation flags."""

    records: dict[str, PublicKeyRecord] = field(default_factory=dict)

    def add(self, record: PublicKeyRecord) -> None:
        self.records[record.key_id] = record

    def revoke(self, key_id: str) -> None:
        self.records[key_id] = replace(self._get(key_id), revoked=True)

    def _get(self, key_id: str) -> PublicKeyRecord:
        try:
            return self.records[key_id]
        except KeyError:
            raise UnknownKey(f"key id {key_id!r} is not in the keyring") from None

    def key_for(self, key_id: str, *, agency: str, algorithm: str, at: datetime) -> PublicKeyRecord:
        """The key ``key_id`` if it belongs to ``agency`` and was valid at ``at``."""
        record = self._get(key_id)
        if record.algorithm != algorithm:
            raise KeyPurposeMismatch(f"key {key_id!r} is an {record.algorithm} key, not {algorithm}")
        if record.agency != agency:
            raise KeyAgencyMismatch(f"key {key_id!r} belongs to {record.agency}, not {agency}")
        if record.revoked:
            raise KeyRevoked(f"key {key_id!r} has been revoked")
        if at < record.valid_from:
            raise KeyNotYetValid(
                f"key {key_id!r} is valid only from {format_timestamp(record.valid_from)}")
        if record.valid_until is not None and at >= record.valid_until:
            raise KeyExpired(f"key {key_id!r} expired at {format_timestamp(record.valid_until)}")
        return record

    def current_key_id(self, agency: str, algorithm: str, at: datetime) -> str:
        """The newest key of ``agency`` that is valid at ``at``."""
        candidates = [r for r in self.records.values()
                      if r.agency == agency and r.algorithm == algorithm and not r.revoked
                      and r.valid_from <= at and (r.valid_until is None or at < r.valid_until)]
        if not candidates:
            raise UnknownKey(f"no valid {algorithm} key for {agency} at {format_timestamp(at)}")
        return max(candidates, key=lambda r: r.valid_from).key_id

    def to_json(self) -> dict:
        return {"format": KEYRING_FORMAT,
                "keys": [r.to_json() for r in sorted(self.records.values(), key=lambda r: r.key_id)]}

    @classmethod
    def from_json(cls, data: dict) -> "Keyring":
        if not isinstance(data, dict) or data.get("format") != KEYRING_FORMAT:
            raise KeyStoreError(f"not a {KEYRING_FORMAT} document")
        ring = cls()
        for entry in data.get("keys", []):
            record = PublicKeyRecord.from_json(entry)
            if record.key_id in ring.records:
                raise KeyStoreError(f"keyring lists key {record.key_id!r} twice")
            ring.add(record)
        return ring

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Keyring":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read keyring {path}: {exc}") from exc
        return cls.from_json(data)

    def save(self, path: str | os.PathLike) -> None:
        _write_atomically(Path(path), json.dumps(self.to_json(), indent=2) + "\n", mode=0o644)


@dataclass(frozen=True)
class AgencyKeyMaterial:
    """An agency's private seeds. Held only by the key store and the CLI that makes them."""

    agency: str
    signing_seed: bytes
    box_secret: bytes

    def __repr__(self) -> str:  # never print key material
        return f"AgencyKeyMaterial(agency={self.agency!r}, <secret>)"

    @property
    def signing_public(self) -> bytes:
        return bytes(SigningKey(self.signing_seed).verify_key)

    @property
    def box_public(self) -> bytes:
        return bytes(PrivateKey(self.box_secret).public_key)

    @property
    def signing_key_id(self) -> str:
        return key_id_for(self.agency, ED25519, self.signing_public)

    @property
    def box_key_id(self) -> str:
        return key_id_for(self.agency, X25519, self.box_public)

    def public_records(self, valid_from: datetime, valid_until: datetime | None) -> list[PublicKeyRecord]:
        return [
            PublicKeyRecord(self.signing_key_id, self.agency, ED25519, self.signing_public,
                            valid_from, valid_until),
            PublicKeyRecord(self.box_key_id, self.agency, X25519, self.box_public,
                            valid_from, valid_until),
        ]

    @classmethod
    def generate(cls, agency: str) -> "AgencyKeyMaterial":
        return cls(agency, os.urandom(32), bytes(PrivateKey.generate()))

    @classmethod
    def from_seeds(cls, agency: str, signing_seed: bytes, box_secret: bytes) -> "AgencyKeyMaterial":
        if len(signing_seed) != 32 or len(box_secret) != 32:
            raise KeyStoreError("key seeds must be 32 bytes")
        return cls(agency, signing_seed, box_secret)


class KeyDirectory:
    """A directory holding ``keyring.json`` and ``private/<agency>.key.json`` (mode 0600)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def keyring_path(self) -> Path:
        return self.path / KEYRING_FILE

    def private_path(self, agency: str) -> Path:
        return self.path / PRIVATE_DIR / f"{agency}.key.json"

    def exists(self) -> bool:
        return self.keyring_path.exists()

    def load_keyring(self) -> Keyring:
        return Keyring.load(self.keyring_path)

    def write_private(self, material: AgencyKeyMaterial) -> Path:
        private_dir = self.path / PRIVATE_DIR
        private_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(private_dir, 0o700)
        document = {
            "format": PRIVATE_KEY_FORMAT,
            "agency": material.agency,
            "signing_key_id": material.signing_key_id,
            "signing_seed": b64encode(material.signing_seed),
            "box_key_id": material.box_key_id,
            "box_secret": b64encode(material.box_secret),
        }
        path = self.private_path(material.agency)
        _write_atomically(path, json.dumps(document, indent=2) + "\n", mode=0o600)
        return path

    def load_private(self, agency: str) -> AgencyKeyMaterial:
        path = self.private_path(agency)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError as exc:
            raise KeyStoreError(f"no private key for {agency} at {path} (run `cluebus keys init`)") from exc
        if mode & 0o077:
            raise KeyStoreError(f"private key {path} is readable by others (mode {mode:o}); chmod 600 it")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("format") != PRIVATE_KEY_FORMAT or document.get("agency") != agency:
                raise ValueError("wrong format or agency")
            material = AgencyKeyMaterial.from_seeds(
                agency, b64decode_strict(document["signing_seed"]),
                b64decode_strict(document["box_secret"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"private key file {path} is malformed: {exc}") from None
        if (material.signing_key_id != document.get("signing_key_id")
                or material.box_key_id != document.get("box_key_id")):
            raise KeyStoreError(f"private key file {path} does not match its key ids")
        return material


def initialise_key_directory(path: str | os.PathLike, agencies: Iterable[str], *,
                             validity: timedelta, now: datetime | None = None,
                             force: bool = False) -> tuple[KeyDirectory, Keyring]:
    """Generate keys for every agency and write the keyring and private files."""
    directory = KeyDirectory(path)
    if directory.exists() and not force:
        raise KeyStoreError(
            f"{directory.keyring_path} already exists; pass --force to replace every key "
            "(messages signed with the old keys will no longer verify)")
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    directory.path.mkdir(parents=True, exist_ok=True)
    keyring = Keyring()
    for agency in agencies:
        material = AgencyKeyMaterial.generate(agency)
        directory.write_private(material)
        for record in material.public_records(now, now + validity):
            keyring.add(record)
    keyring.save(directory.keyring_path)
    return directory, keyring
