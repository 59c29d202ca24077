"""Keys as agencies hold them (``cluebus keys``), without Nameko:

- an agency makes its own key pair on its own machine (``keys init --agency``) or a new one
  replacing it (``keys rotate``), and hands the bus operator a key request;
- the bus operator adds requests and revocations to the keyring, signs the new version with
  the trust anchor and publishes it on the bus (``keys publish``), where every node checks it
  before use (adapters/crypto/trust.py, services/handlers/keyring_updates.py).

A new key becomes valid ``KEYS.ACTIVATION_SECONDS`` after the keyring that adds it is issued,
so every node has it before the first message signed with it; the key it replaces stays
valid ``KEYS.OVERLAP_DAYS`` beyond that, so messages in flight still verify.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Iterable, Mapping

from adapters.crypto.exceptions import KeyStoreError, UnknownKey
from adapters.crypto.keys import AgencyKeyMaterial, KeyDirectory, Keyring
from adapters.crypto.trust import KEYRING_CONTENT_TYPE, KEYRING_UPDATE_KIND, KeyRequest, SignedKeyring
from adapters.transport.provisioning import OPERATOR
from adapters.transport.publisher import EnvelopePublisher
from services.handlers.relay import PublishFailed

from . import config as c
from . import settings


@dataclass(frozen=True)
class KeyTimes:
    activation: timedelta
    overlap: timedelta
    validity: timedelta

    @classmethod
    def from_config(cls, config: Mapping) -> "KeyTimes":
        keys = config.get(c.KEYS) or {}
        # The shipped defaults (services/cluebus.yaml) for a configuration file without them.
        return cls(activation=timedelta(seconds=float(keys.get(c.ACTIVATION_SECONDS, 300))),
                   overlap=timedelta(days=float(keys.get(c.OVERLAP_DAYS, 7))),
                   validity=timedelta(days=float(keys.get(c.VALIDITY_DAYS, 730))))


# -- an agency's side --------------------------------------------------------------------------------
def make_agency_keys(directory: KeyDirectory, agency: str, now: datetime, *, force: bool = False) -> KeyRequest:
    """A first key pair for ``agency``, and its request for the bus operator."""
    if directory.private_path(agency).exists() and not force:
        raise KeyStoreError(f"{directory.private_path(agency)} exists already: to replace a key in use, "
                            f"run `cluebus keys rotate --agency {agency}` (messages signed with it keep verifying)")
    material = AgencyKeyMaterial.generate(agency)
    directory.write_private(material)
    return _write_request(directory, KeyRequest.make(material, requested_at=now))


def rotate_agency_keys(directory: KeyDirectory, agency: str, now: datetime) -> KeyRequest:
    """A new key pair for ``agency``; the current one is kept (it signs until the new one is
    valid, and opens what was sealed for it). The request is signed by both."""
    current = directory.load_private(agency)
    material = AgencyKeyMaterial.generate(agency)
    directory.retire_private(agency)
    directory.write_private(material)
    return _write_request(directory, KeyRequest.make(material, requested_at=now, replacing=current))


def _write_request(directory: KeyDirectory, request: KeyRequest) -> KeyRequest:
    path = directory.request_path(request.agency)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(request.to_text(), encoding="utf-8")
    return request


# -- the bus operator's side ------------------------------------------------------------------------
@dataclass
class KeyringChange:
    """What ``keys publish`` does to the held keyring."""

    requests: list[KeyRequest] = field(default_factory=list)
    revocations: list[tuple[str, datetime | None]] = field(default_factory=list)   # key id, from when


def next_keyring(held: SignedKeyring, change: KeyringChange, now: datetime, times: KeyTimes) -> Keyring:
    """The held keyring with the requests' keys added (valid from now + activation) and the
    keys they replace ending after the overlap, and the revocations applied."""
    keyring = held.keyring.copy()
    valid_from = now + times.activation
    for request in change.requests:
        request.check_against(keyring, now)
        if any(r.key_id in keyring.records for r in request.records):
            raise KeyStoreError(f"the key request of {request.agency} names a key the keyring holds already")
        if request.replaces is not None:
            ends = valid_from + times.overlap
            for record in list(keyring.records.values()):
                if (record.agency == request.agency and not record.revoked_for(now)
                        and (record.valid_until is None or record.valid_until > ends)):
                    keyring.add(replace(record, valid_until=ends))
        for record in request.records:
            keyring.add(replace(record, valid_from=valid_from, valid_until=valid_from + times.validity))
    for key_id, at in change.revocations:
        if key_id not in keyring.records:
            raise UnknownKey(f"key id {key_id!r} is not in the keyring")
        keyring.revoke(key_id, at)
    return keyring


def publish_keyring(config: Mapping, directory: KeyDirectory, change: KeyringChange, now: datetime, *,
                    distribute: bool = True) -> tuple[SignedKeyring, dict[str, PublishFailed]]:
    """Sign the next version with the trust anchor, keep it in ``directory`` and publish it
    to every agency. Returns it and the agencies whose copy the broker did not take."""
    anchor_key = directory.load_anchor_private()
    held = directory.load_signed_keyring()
    if held is None:
        raise KeyStoreError(f"{directory.path} has no signed keyring to follow (no trust anchor)")
    if not change.requests and not change.revocations:
        # Nothing to change: the held version again (to the agencies that missed it).
        return held, distribute_keyring(config, held) if distribute else {}
    keyring = next_keyring(held, change, now, KeyTimes.from_config(config))
    signed = SignedKeyring.issue(keyring, version=held.version + 1, issued_at=now, key=anchor_key)
    held.check_successor(signed)
    directory.save_signed_keyring(signed)
    failures = distribute_keyring(config, signed) if distribute else {}
    return signed, failures


def distribute_keyring(config: Mapping, signed: SignedKeyring,
                       agencies: Iterable[str] | None = None) -> dict[str, PublishFailed]:
    """One copy of the signed keyring to each agency's queue, with the operator's bus account,
    confirmed by the broker; the failures by agency (publish again: a node takes a copy it
    holds already as a duplicate)."""
    credentials = settings.credential_store(config).load(OPERATOR, control=False)
    uri = settings.bus_uri(config, OPERATOR, credentials)
    publisher = EnvelopePublisher(uri, settings.topology(config), credentials.bus.user,
                                  content_type=KEYRING_CONTENT_TYPE)
    agencies = list(agencies or c.agency_codes(config))
    try:
        return publisher.publish_many([(agency, signed.raw, f"{agency}.{KEYRING_UPDATE_KIND}") for agency in agencies])
    finally:
        publisher.close()
