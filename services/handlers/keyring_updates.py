"""Keyring updates from the bus: the bus operator's signed keyring (docs/protocol.md 5.5).

Not an envelope: it has a content type of its own and is checked against the node's trust
anchor, never against the keyring it would replace. A node takes an update only when the
anchor signed it, its version is newer than the held one and it keeps every held key; it
then writes it to its key directory, uses it at once and records ``keyring.updated`` in its
audit chain. Anything else is quarantined with the rule it broke (the held keyring stays);
the same version again is a duplicate (the observer gets one copy per agency).
"""

from __future__ import annotations

from adapters.crypto.trust import KEYRING_CONTENT_TYPE, KEYRING_UPDATE_KIND, KeyringUpdateError
from adapters.storage.writes import Writes
from services.protocol import rules

from .context import NodeContext
from .receiving import OUTCOME_DUPLICATE, Delivery, ReceiveOutcome, quarantine_into

OUTCOME_KEYRING_TAKEN = "keyring_taken"


def is_keyring_update(delivery) -> bool:
    return isinstance(delivery, Delivery) and delivery.content_type == KEYRING_CONTENT_TYPE


def take_keyring_updates(ctx: NodeContext, deliveries: list[Delivery]) -> list[ReceiveOutcome]:
    """One outcome per update, in order, stored in one transaction."""
    now = ctx.clock()
    writes = Writes()
    outcomes = []
    for delivery in deliveries:
        try:
            if ctx.keyring is None:
                raise KeyringUpdateError(rules.KEYRING_SIGNATURE,
                                         "this node keeps no trust anchor: it takes no keyring updates")
            update = ctx.keyring.check(delivery.raw)
        except KeyringUpdateError as exc:
            outcomes.append(quarantine_into(writes, delivery.raw, exc.rule, exc.detail, now))
            continue
        if update is None:
            outcomes.append(ReceiveOutcome(OUTCOME_DUPLICATE, kind=KEYRING_UPDATE_KIND,
                                           detail=f"keyring version {ctx.keyring.version} is held already"))
            continue
        before = ctx.keyring.version
        ctx.keyring.take(update)  # written to the key directory before it is used
        writes.audit_event(now, "keyring.updated", detail={
            "version": update.version, "previous_version": before, "sha256": update.sha256,
            "issued_at": update.document["issued_at"], "keys": len(update.keyring.records),
            "published_by": delivery.user_id})
        outcomes.append(ReceiveOutcome(OUTCOME_KEYRING_TAKEN, kind=KEYRING_UPDATE_KIND,
                                       detail=f"keyring version {update.version} taken"))
    with ctx.store.transaction() as repo:
        repo.write(writes)
    return outcomes

