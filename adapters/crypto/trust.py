"""The bus operator's trust anchor, signed keyrings and agencies' key requests.

Every node holds the operator's public trust anchor (``trust-anchor.json``, given once, out of
band, like a root certificate) and accepts public keys only inside a keyring the anchor
signed (``keyring.signed.json``). A keyring update is one signed document: a version number
that only grows, the time it was issued and the whole keyring. A node takes an update only
when its signature verifies with the anchor, its version is newer than the one it holds, and
it keeps every key of that one (keys are never dropped, a revocation never taken back), so
messages signed with an old key still verify afterwards.

An agency makes its own key pair on its own machine and hands the operator a *key request*:
its public keys, signed with the new signing key (it holds the private key) and, when it
replaces a key, with the key it replaces too (so the operator knows it comes from the holder
of the current key, not only from whoever says so).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from nacl.signing import SigningKey

from services.protocol import rules

from .canonical import canonical_bytes, strict_loads
from .encoding import b64decode_strict, b64encode
from .exceptions import CryptoError, InvalidSignature, KeyStoreError, MalformedSignature
from .keys import ED25519, AgencyKeyMaterial, Keyring, PublicKeyRecord, key_id_for
from .signing import Signer, verify_signature
from .timestamps import format_timestamp, parse_timestamp

ANCHOR_OWNER = "bus_operator"
TRUST_ANCHOR_FORMAT = "cluebus-trust-anchor/1"
ANCHOR_PRIVATE_FORMAT = "cluebus-trust-anchor-private/1"
SIGNED_KEYRING_FORMAT = "cluebus-signed-keyring/1"
KEY_REQUEST_FORMAT = "cluebus-key-request/1"

SIGNED_KEYRING_DOMAIN = b"cluebus-signed-keyring"
KEY_REQUEST_DOMAIN = b"cluebus-key-request"

# The content type of a keyring update on the bus (docs/protocol.md 5.5): not an envelope.
KEYRING_CONTENT_TYPE = "application/vnd.cluebus.keyring+json"
# Its routing key on the bus exchange: <agency>.keyring_update, one copy to every agency.
KEYRING_UPDATE_KIND = "keyring_update"


class KeyringUpdateError(CryptoError):
    """A signed keyring that must not be used; ``rule`` says why."""

    def __init__(self, rule: str, detail: str):
        super().__init__(detail)
        self.rule = rule


def _signing_input(domain: bytes, document: dict) -> bytes:
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return domain + b"\x00" + canonical_bytes(unsigned)


# -- the trust anchor ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrustAnchor:
    key_id: str
    public_key: bytes

    def to_json(self) -> dict:
        return {"format": TRUST_ANCHOR_FORMAT, "key_id": self.key_id, "public_key": b64encode(self.public_key)}

    @classmethod
    def from_json(cls, data) -> "TrustAnchor":
        try:
            if data.get("format") != TRUST_ANCHOR_FORMAT:
                raise ValueError(f"not a {TRUST_ANCHOR_FORMAT} document")
            anchor = cls(data["key_id"], b64decode_strict(data["public_key"]))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"the trust anchor is malformed: {exc}") from None
        if len(anchor.public_key) != 32 or key_id_for(ANCHOR_OWNER, ED25519, anchor.public_key) != anchor.key_id:
            raise KeyStoreError("the trust anchor's key id does not match its public key")
        return anchor

    @property
    def fingerprint(self) -> str:
        """What the operator reads out to an agency to check the anchor file it was given."""
        digest = hashlib.sha256(self.public_key).hexdigest()
        return " ".join(digest[i:i + 4] for i in range(0, 32, 4))


class AnchorKey:
    """The operator's private anchor key: signs keyrings, never shows its seed."""

    __slots__ = ("_signer",)

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise KeyStoreError("the trust anchor's seed must be 32 bytes")
        public = bytes(SigningKey(seed).verify_key)
        self._signer = Signer(ANCHOR_OWNER, key_id_for(ANCHOR_OWNER, ED25519, public), seed)

    def __repr__(self) -> str:
        return f"AnchorKey(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        return self._signer.key_id

    @property
    def anchor(self) -> TrustAnchor:
        return TrustAnchor(self.key_id, bytes(self._signer._key.verify_key))

    def sign(self, message: bytes) -> str:
        return self._signer.sign(message)

    def private_json(self, seed_b64: str) -> dict:
        return {"format": ANCHOR_PRIVATE_FORMAT, "key_id": self.key_id, "seed": seed_b64}

    @classmethod
    def from_private_json(cls, data) -> "AnchorKey":
        try:
            if data.get("format") != ANCHOR_PRIVATE_FORMAT:
                raise ValueError(f"not a {ANCHOR_PRIVATE_FORMAT} document")
            key = cls(b64decode_strict(data["seed"]))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"the trust anchor's private key file is malformed: {exc}") from None
        if key.key_id != data.get("key_id"):
            raise KeyStoreError("the trust anchor's private key file does not match its key id")
        return key


# -- signed keyrings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedKeyring:
    version: int
    issued_at: datetime
    anchor_key_id: str
    keyring: Keyring
    document: dict          # exactly as signed (and as it travels)

    @property
    def raw(self) -> bytes:
        """The document's bytes as published: its RFC 8785 form."""
        return canonical_bytes(self.document)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @classmethod
    def issue(cls, keyring: Keyring, *, version: int, issued_at: datetime, key: AnchorKey) -> "SignedKeyring":
        document = {"format": SIGNED_KEYRING_FORMAT, "version": version,
                    "issued_at": format_timestamp(issued_at), "anchor_key_id": key.key_id,
                    "keyring": keyring.to_json()}
        document["signature"] = key.sign(_signing_input(SIGNED_KEYRING_DOMAIN, document))
        return cls(version, issued_at, key.key_id, Keyring.from_json(document["keyring"]), document)

    @classmethod
    def verify(cls, data: bytes | dict, anchor: TrustAnchor) -> "SignedKeyring":
        """The keyring, if ``data`` is a signed keyring document the anchor signed; else
        KeyringUpdateError (``keyring.invalid`` or ``keyring.signature``)."""
        try:
            document = strict_loads(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        except CryptoError as exc:
            raise KeyringUpdateError(rules.KEYRING_INVALID, f"not a JSON document: {exc.detail}") from None
        if not isinstance(document, dict) or document.get("format") != SIGNED_KEYRING_FORMAT:
            raise KeyringUpdateError(rules.KEYRING_INVALID, f"not a {SIGNED_KEYRING_FORMAT} document")
        if "signature" not in document:
            raise KeyringUpdateError(rules.KEYRING_SIGNATURE, "the keyring is not signed")
        expected = {"format", "version", "issued_at", "anchor_key_id", "keyring", "signature"}
        if set(document) != expected:
            raise KeyringUpdateError(rules.KEYRING_INVALID,
                                     f"members must be exactly {sorted(expected)}, not {sorted(document)}")
        if document["anchor_key_id"] != anchor.key_id:
            raise KeyringUpdateError(rules.KEYRING_SIGNATURE,
                                     f"signed by {document['anchor_key_id']!r}, not the trust anchor {anchor.key_id!r}")
        try:
            verify_signature(anchor.public_key, _signing_input(SIGNED_KEYRING_DOMAIN, document), document["signature"])
        except (InvalidSignature, MalformedSignature) as exc:
            raise KeyringUpdateError(rules.KEYRING_SIGNATURE, f"the trust anchor's signature does not verify: {exc.detail}") from None
        version = document["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise KeyringUpdateError(rules.KEYRING_INVALID, "version must be a positive integer")
        try:
            issued_at = parse_timestamp(document["issued_at"])
            keyring = Keyring.from_json(document["keyring"])
        except (CryptoError, ValueError, TypeError) as exc:
            raise KeyringUpdateError(rules.KEYRING_INVALID, f"the keyring is malformed: {exc}") from None
        return cls(version, issued_at, anchor.key_id, keyring, document)

    def check_successor(self, newer: "SignedKeyring") -> None:
        """``newer`` may replace this one: a greater version that keeps every key (the same
        public key, a revocation never lifted). Else KeyringUpdateError."""
        if newer.version <= self.version:
            raise KeyringUpdateError(rules.KEYRING_STALE,
                                     f"version {newer.version} is not newer than the held version {self.version}")
        for key_id, old in self.keyring.records.items():
            new = newer.keyring.records.get(key_id)
            if new is None:
                raise KeyringUpdateError(rules.KEYRING_DROPS_KEY, f"version {newer.version} drops key {key_id!r}")
            if old.revoked and not new.revoked_for(old.revoked_at or old.valid_from):
                raise KeyringUpdateError(rules.KEYRING_DROPS_KEY,
                                         f"version {newer.version} lifts the revocation of key {key_id!r}")


# -- key requests -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyRequest:
    """An agency's new public keys, signed with the new signing key and, for a rotation, with
    the signing key it replaces."""

    agency: str
    records: tuple[PublicKeyRecord, ...]
    replaces: str | None        # the signing key id it replaces, or None for a first key
    document: dict

    @classmethod
    def make(cls, material: AgencyKeyMaterial, *, requested_at: datetime,
             replacing: AgencyKeyMaterial | None = None) -> "KeyRequest":
        records = material.public_records(requested_at, None)
        document = {"format": KEY_REQUEST_FORMAT, "agency": material.agency,
                    "requested_at": format_timestamp(requested_at),
                    "keys": [{k: v for k, v in r.to_json().items() if k in ("key_id", "algorithm", "public_key")}
                             for r in records],
                    "replaces": replacing.signing_key_id if replacing else None}
        signing_input = _signing_input(KEY_REQUEST_DOMAIN, document)
        signatures = {material.signing_key_id: Signer(material.agency, material.signing_key_id,
                                                      material.signing_seed).sign(signing_input)}
        if replacing is not None:
            signatures[replacing.signing_key_id] = Signer(replacing.agency, replacing.signing_key_id,
                                                          replacing.signing_seed).sign(signing_input)
        document["signature"] = signatures
        return cls.load(document)

    @classmethod
    def load(cls, data) -> "KeyRequest":
        """A request whose own signature verifies (the replaced key's is checked against the
        keyring by ``check_against``)."""
        try:
            if not isinstance(data, dict) or data.get("format") != KEY_REQUEST_FORMAT:
                raise ValueError(f"not a {KEY_REQUEST_FORMAT} document")
            agency, replaces = data["agency"], data.get("replaces")
            requested_at = parse_timestamp(data["requested_at"])
            records = []
            for entry in data["keys"]:
                public = b64decode_strict(entry["public_key"])
                records.append(PublicKeyRecord.from_json({**entry, "agency": agency,
                                                          "public_key": b64encode(public),
                                                          "valid_from": format_timestamp(requested_at)}))
            algorithms = sorted(r.algorithm for r in records)
            if algorithms != sorted(["ed25519", "x25519"]):
                raise ValueError("a request holds exactly one ed25519 and one x25519 key")
            signatures = data["signature"]
            if not isinstance(signatures, dict):
                raise ValueError("signature must be an object of key id: signature")
        except (AttributeError, KeyError, TypeError, ValueError, CryptoError) as exc:
            raise KeyStoreError(f"the key request is malformed: {exc}") from None
        request = cls(agency, tuple(records), replaces, data)
        signing = request.signing_record
        try:
            verify_signature(signing.public_key, _signing_input(KEY_REQUEST_DOMAIN, data),
                             signatures.get(signing.key_id))
        except CryptoError as exc:
            raise KeyStoreError(f"the key request of {agency} is not signed by its new key: {exc.detail}") from None
        return request

    @property
    def signing_record(self) -> PublicKeyRecord:
        return next(r for r in self.records if r.algorithm == ED25519)

    def check_against(self, keyring: Keyring, at: datetime) -> None:
        """A rotation must be signed by the key it replaces, valid now in ``keyring``."""
        if self.replaces is None:
            return
        old = keyring.key_for(self.replaces, agency=self.agency, algorithm=ED25519, at=at)
        try:
            verify_signature(old.public_key, _signing_input(KEY_REQUEST_DOMAIN, self.document),
                             self.document["signature"].get(self.replaces))
        except CryptoError as exc:
            raise KeyStoreError(f"the key request of {self.agency} is not signed by the key it replaces "
                                f"({self.replaces}): {exc.detail}") from None

    def to_text(self) -> str:
        return json.dumps(self.document, indent=2, ensure_ascii=False) + "\n"


# -- a node's keyring, kept up to date from the bus ------------------------------------------------
class TrustedKeyring:
    """A node's live keyring and where it came from: takes a keyring update only when the
    trust anchor signed it and it may follow the held one, writes it to the key directory
    before using it (a restarted node starts from it), then changes the live keyring in place
    and reads the agency's private key generations again (a rotation's new key)."""

    def __init__(self, directory, keyring: Keyring, chain=None, *, held: "SignedKeyring | None" = None):
        """``held``: the signed keyring ``keyring`` came from, when the caller has read it already."""
        self.directory = directory
        self.keyring = keyring
        self.chain = chain
        self.anchor = directory.load_trust_anchor()
        self.held = held if held is not None else directory.load_signed_keyring()

    @property
    def version(self) -> int | None:
        return self.held.version if self.held is not None else None

    def check(self, raw: bytes) -> "SignedKeyring | None":
        """The update if it is to be taken, None for the held one again (a duplicate: the
        observer gets one copy per agency); else KeyringUpdateError."""
        if self.anchor is None:
            raise KeyringUpdateError(rules.KEYRING_SIGNATURE,
                                     "this node has no trust anchor (trust-anchor.json): it takes no keyring updates")
        update = SignedKeyring.verify(raw, self.anchor)
        held = self.held
        if held is not None and update.version == held.version:
            if update.sha256 == held.sha256:
                return None
            raise KeyringUpdateError(rules.KEYRING_STALE,
                                     f"version {update.version} is held already, with other contents")
        if held is not None:
            held.check_successor(update)
        return update

    def take(self, update: "SignedKeyring") -> None:
        on_disk = self.directory.load_signed_keyring()
        # Nodes sharing one directory (one host) each take the update; the first writes it.
        if on_disk is None or on_disk.version < update.version:
            self.directory.save_signed_keyring(update)
        self.held = update
        self.keyring.replace_with(update.keyring)
        if self.chain is not None:
            self.chain.reload(self.directory.load_private_generations(self.chain.agency))
