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
SIGNED_KEYRING_FILE = "keyring.signed.json"
TRUST_ANCHOR_FILE = "trust-anchor.json"
PRIVATE_DIR = "private"
REQUESTS_DIR = "requests"
ANCHOR_DIR = "anchor"
ANCHOR_PRIVATE_FILE = "trust-anchor.key.json"


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
    # When the revocation takes effect: messages sent before it still verify (a court can
    # still check them); None with ``revoked`` set = every use refused, whenever it was.
    revoked_at: datetime | None = None

    def to_json(self) -> dict:
        document = {
            "key_id": self.key_id,
            "agency": self.agency,
            "algorithm": self.algorithm,
            "public_key": b64encode(self.public_key),
            "valid_from": format_timestamp(self.valid_from),
            "valid_until": format_timestamp(self.valid_until) if self.valid_until else None,
            "revoked": self.revoked,
        }
        if self.revoked_at is not None:  # absent unless dated, so undated keyrings keep their bytes
            document["revoked_at"] = format_timestamp(self.revoked_at)
        return document

    def revoked_for(self, at: datetime) -> bool:
        """Whether the key may not be used for a message sent at ``at`` because it is revoked."""
        return self.revoked and (self.revoked_at is None or at >= self.revoked_at)

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
                revoked_at=(parse_timestamp(data["revoked_at"]) if data.get("revoked_at") is not None
                            else None),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"keyring entry {data.get('key_id', '?')!r} is malformed: {exc}") from exc
        if record.algorithm not in (ED25519, X25519) or len(record.public_key) != 32:
            raise KeyStoreError(f"keyring entry {record.key_id!r} has an unsupported key")
        if key_id_for(record.agency, record.algorithm, record.public_key) != record.key_id:
            raise KeyStoreError(f"keyring entry {record.key_id!r} does not match its public key")
        if record.revoked_at is not None and not record.revoked:
            raise KeyStoreError(f"keyring entry {record.key_id!r} has revoked_at but is not revoked")
        return record


@dataclass
class Keyring:
    """The public keys of every agency, with validity periods and revocation flags."""

    records: dict[str, PublicKeyRecord] = field(default_factory=dict)

    def add(self, record: PublicKeyRecord) -> None:
        self.records[record.key_id] = record

    def revoke(self, key_id: str, at: datetime | None = None) -> None:
        """Revoke ``key_id``: from ``at`` on (messages sent earlier still verify), or for
        every use when ``at`` is None."""
        self.records[key_id] = replace(self._get(key_id), revoked=True, revoked_at=at)

    def replace_with(self, other: "Keyring") -> None:
        """Take ``other``'s keys, in place: every composer and verifier holding this keyring
        sees the new keys at once (one assignment, so no reader sees half of them)."""
        self.records = dict(other.records)

    def copy(self) -> "Keyring":
        return Keyring(dict(self.records))

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
        if record.revoked_for(at):
            when = f" from {format_timestamp(record.revoked_at)}" if record.revoked_at else ""
            raise KeyRevoked(f"key {key_id!r} has been revoked{when}")
        if at < record.valid_from:
            raise KeyNotYetValid(
                f"key {key_id!r} is valid only from {format_timestamp(record.valid_from)}")
        if record.valid_until is not None and at >= record.valid_until:
            raise KeyExpired(f"key {key_id!r} expired at {format_timestamp(record.valid_until)}")
        return record

    def current_key_id(self, agency: str, algorithm: str, at: datetime) -> str:
        """The newest key of ``agency`` that is valid at ``at``."""
        candidates = [r for r in self.records.values()
                      if r.agency == agency and r.algorithm == algorithm and not r.revoked_for(at)
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
    """A directory holding the keyring and an agency's private keys:

    - ``keyring.json``: the public keys (section 5.3 of docs/protocol.md);
    - ``trust-anchor.json`` and ``keyring.signed.json``: the bus operator's trust anchor and
      the keyring it signed (adapters/crypto/trust.py). Where the anchor is, only the signed
      keyring counts, and ``keyring.json`` is its plain copy for reading;
    - ``private/<agency>.key.json`` (mode 0600): the agency's current private keys, and
      ``private/<agency>@<key hash>.key.json`` the ones a rotation replaced (still needed to
      open what was sealed for them, and to sign until the new key is valid);
    - ``anchor/trust-anchor.key.json`` (mode 0600), on the bus operator's machine only.
    """

    def __init__(self, path: str | os.PathLike, keyring_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        # Where the node keeps the keyring it updates (KEYRING_DIR), when its key directory is
        # read-only (secrets mounted into a container); by default the key directory itself.
        self.keyring_dir = Path(keyring_dir) if keyring_dir else self.path

    @property
    def keyring_path(self) -> Path:
        return self.keyring_dir / KEYRING_FILE

    @property
    def signed_keyring_path(self) -> Path:
        return self.keyring_dir / SIGNED_KEYRING_FILE

    @property
    def trust_anchor_path(self) -> Path:
        return self.path / TRUST_ANCHOR_FILE

    @property
    def anchor_private_path(self) -> Path:
        return self.path / ANCHOR_DIR / ANCHOR_PRIVATE_FILE

    def private_path(self, agency: str) -> Path:
        return self.path / PRIVATE_DIR / f"{agency}.key.json"

    def retired_private_path(self, material: "AgencyKeyMaterial") -> Path:
        return self.path / PRIVATE_DIR / f"{material.agency}@{material.signing_key_id.rsplit(':', 1)[-1]}.key.json"

    def request_path(self, agency: str) -> Path:
        return self.path / REQUESTS_DIR / f"{agency}.request.json"

    def exists(self) -> bool:
        return self.keyring_path.exists() or self.signed_keyring_path.exists()

    def has_trust_anchor(self) -> bool:
        return self.trust_anchor_path.exists()

    def load_keyring(self) -> Keyring:
        """The keyring to verify with: the anchor-signed one where there is an anchor."""
        signed = self.load_signed_keyring()
        return signed.keyring if signed is not None else Keyring.load(self.keyring_path)

    def load_trust_anchor(self):
        """The trust anchor, or None where none was given (a keyring of round 1)."""
        from .trust import TrustAnchor  # trust.py builds on this module
        if not self.has_trust_anchor():
            return None
        try:
            return TrustAnchor.from_json(json.loads(self.trust_anchor_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read the trust anchor {self.trust_anchor_path}: {exc}") from None

    def load_signed_keyring(self):
        """The anchor-signed keyring, verified; None where there is no trust anchor. With an
        anchor, a missing or unverifiable signed keyring is refused (never the plain one)."""
        from .trust import KeyringUpdateError, SignedKeyring
        anchor = self.load_trust_anchor()
        if anchor is None:
            return None
        try:
            raw = self.signed_keyring_path.read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"there is a trust anchor but no signed keyring at {self.signed_keyring_path}: "
                                f"{exc.strerror}") from None
        try:
            return SignedKeyring.verify(raw, anchor)
        except KeyringUpdateError as exc:
            raise KeyStoreError(f"the signed keyring {self.signed_keyring_path} is refused "
                                f"[{exc.rule}]: {exc.detail}") from None

    def save_trust_anchor(self, anchor) -> None:
        _write_atomically(self.trust_anchor_path, json.dumps(anchor.to_json(), indent=2) + "\n", mode=0o644)

    def save_signed_keyring(self, signed) -> None:
        """The signed document as it travels, then its plain copy (readers of round 1)."""
        _write_atomically(self.signed_keyring_path, signed.raw.decode("utf-8") + "\n", mode=0o644)
        signed.keyring.save(self.keyring_path)

    def write_anchor_private(self, seed: bytes):
        from .trust import AnchorKey
        key = AnchorKey(seed)
        directory = self.path / ANCHOR_DIR
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        _write_atomically(self.anchor_private_path,
                          json.dumps(key.private_json(b64encode(seed)), indent=2) + "\n", mode=0o600)
        return key

    def load_anchor_private(self):
        from .trust import AnchorKey
        path = self.anchor_private_path
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            raise KeyStoreError(f"no trust anchor private key at {path}: only the bus operator signs keyrings "
                                "(run this where `cluebus keys init` made the anchor)") from None
        if mode & 0o077:
            raise KeyStoreError(f"the trust anchor's private key {path} is readable by others (mode {mode:o}); chmod 600 it")
        try:
            return AnchorKey.from_private_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read the trust anchor's private key {path}: {exc}") from None

    def retire_private(self, agency: str) -> AgencyKeyMaterial:
        """Keep the current private keys under their retired name (a rotation)."""
        current = self.load_private(agency)
        os.replace(self.private_path(agency), self.retired_private_path(current))
        return current

    def load_private_generations(self, agency: str) -> list[AgencyKeyMaterial]:
        """The current private keys first, then those rotations replaced."""
        generations = [self.load_private(agency)]
        for path in sorted((self.path / PRIVATE_DIR).glob(f"{agency}@*.key.json")):
            generations.append(self._load_private_file(path, agency))
        return generations

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
        return self._load_private_file(self.private_path(agency), agency)

    def _load_private_file(self, path: Path, agency: str) -> AgencyKeyMaterial:
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
    """Everything on one machine (development, the demo, tests): a trust anchor, every
    agency's keys and the keyring the anchor signed (version 1). A deployment makes each
    agency's keys on its own machine instead (``cluebus keys init --agency``)."""
    from .trust import SignedKeyring  # trust.py builds on this module
    directory = KeyDirectory(path)
    if directory.exists() and not force:
        raise KeyStoreError(
            f"{directory.keyring_path} already exists; pass --force to replace every key "
            "(messages signed with the old keys will no longer verify)")
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    directory.path.mkdir(parents=True, exist_ok=True)
    for retired in (directory.path / PRIVATE_DIR).glob("*@*.key.json"):
        retired.unlink()  # --force: the replaced keys' generations go with them
    keyring = Keyring()
    for agency in agencies:
        material = AgencyKeyMaterial.generate(agency)
        directory.write_private(material)
        for record in material.public_records(now, now + validity):
            keyring.add(record)
    anchor_key = directory.write_anchor_private(os.urandom(32))
    directory.save_trust_anchor(anchor_key.anchor)
    directory.save_signed_keyring(SignedKeyring.issue(keyring, version=1, issued_at=now, key=anchor_key))
    return directory, keyring
