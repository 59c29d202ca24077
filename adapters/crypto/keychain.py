"""An agency's own keys across rotations: which one signs and seals now, which one opens.

After ``cluebus keys rotate`` an agency holds two generations of private keys. It keeps
signing and sealing with the old one until the new one is in its verified keyring and valid
(its ``valid_from`` has come: every other node has had the keyring update by then), and it
opens a sealed body with whichever of its keys it was sealed for. The facades below look like
a single Signer and BoxKey to the composer and the verifier; neither exposes a private key.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Sequence

from .exceptions import CryptoError
from .keys import ED25519, X25519, AgencyKeyMaterial, Keyring
from .sealing import BoxKey
from .signing import Signer


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class KeyChain:
    def __init__(self, agency: str, keyring: Keyring, generations: Sequence[AgencyKeyMaterial],
                 clock: Callable[[], datetime] = _utc_now):
        if not generations:
            raise ValueError(f"{agency} holds no private keys")
        self.agency = agency
        self.keyring = keyring       # the live keyring: a keyring update changes it in place
        self.clock = clock
        self.reload(generations)

    def reload(self, generations: Sequence[AgencyKeyMaterial]) -> None:
        """Take the private key generations read again (after a rotation); the first is the newest."""
        self._signers = [Signer(self.agency, m.signing_key_id, m.signing_seed) for m in generations]
        self._boxes = [BoxKey(self.agency, m.box_key_id, m.box_secret) for m in generations]

    @property
    def key_ids(self) -> list[str]:
        return [s.key_id for s in self._signers] + [b.key_id for b in self._boxes]

    def _usable(self, candidates, algorithm: str, at: datetime):
        usable = []
        for candidate in candidates:
            try:
                record = self.keyring.key_for(candidate.key_id, agency=self.agency, algorithm=algorithm, at=at)
            except CryptoError:
                continue
            usable.append((record.valid_from, candidate))
        if not usable:
            # None valid: the newest, and the receivers name what is wrong with it.
            return candidates[0]
        return max(usable, key=lambda pair: pair[0])[1]

    def signer_at(self, at: datetime) -> Signer:
        return self._usable(self._signers, ED25519, at)

    def box_key_at(self, at: datetime) -> BoxKey:
        return self._usable(self._boxes, X25519, at)

    def box_key_for(self, key_id: str) -> BoxKey | None:
        return next((b for b in self._boxes if b.key_id == key_id), None)

    @property
    def signer(self) -> "ChainSigner":
        return ChainSigner(self)

    @property
    def box_key(self) -> "ChainBoxKey":
        return ChainBoxKey(self)


class ChainSigner:
    """Looks like a Signer: signs with the chain's signing key valid now."""

    __slots__ = ("chain",)

    def __init__(self, chain: KeyChain):
        self.chain = chain

    def __repr__(self) -> str:
        return f"ChainSigner(agency={self.agency!r}, key_id={self.key_id!r})"

    @property
    def agency(self) -> str:
        return self.chain.agency

    @property
    def key_id(self) -> str:
        return self.chain.signer_at(self.chain.clock()).key_id

    def at(self, when: datetime) -> Signer:
        return self.chain.signer_at(when)

    def sign(self, message: bytes) -> str:
        return self.chain.signer_at(self.chain.clock()).sign(message)


class ChainBoxKey:
    """Looks like a BoxKey: seals with the key valid at the time, opens with the one named."""

    __slots__ = ("chain",)

    def __init__(self, chain: KeyChain):
        self.chain = chain

    def __repr__(self) -> str:
        return f"ChainBoxKey(agency={self.agency!r})"

    @property
    def agency(self) -> str:
        return self.chain.agency

    @property
    def key_id(self) -> str:
        return self.chain.box_key_at(self.chain.clock()).key_id

    def at(self, when: datetime) -> BoxKey:
        return self.chain.box_key_at(when)

    def for_key_id(self, key_id: str) -> BoxKey | None:
        return self.chain.box_key_for(key_id)
