"""What the handlers need from the outside, handed in by the service layer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, ContextManager, Protocol

from adapters.crypto.trust import TrustedKeyring
from adapters.storage.repository import NodeRepository
from services.domain.money import MoneyRules
from services.protocol.compose import Composer
from services.protocol.verify import Verifier


class TransactionFactory(Protocol):
    def transaction(self) -> ContextManager[NodeRepository]: ...


@dataclass(frozen=True)
class DeliveryPolicy:
    """When to resend a message that has no receipt, and when to give up."""

    receipt_timeout: timedelta = timedelta(seconds=30)
    backoff_factor: int = 2
    max_attempts: int = 5
    # How long to wait before retrying a publish the broker refused or did not confirm.
    publish_retry: timedelta = timedelta(seconds=5)

    def next_resend(self, now: datetime, attempts: int) -> datetime:
        """After the ``attempts``-th publish, when to publish again if still unreceipted."""
        return now + self.receipt_timeout * (self.backoff_factor ** max(attempts - 1, 0))


@dataclass
class NodeContext:
    agency: str
    store: TransactionFactory
    composer: Composer
    verifier: Verifier
    clock: Callable[[], datetime]
    policy: DeliveryPolicy = DeliveryPolicy()
    # Seal what the node composes on its own (receipts, urges) for their recipients.
    seal: bool = False
    # A running node publishes what it commits at once: such an entry is written as handed
    # over to the broker (services/domain/delivery.py, HANDED_OVER), saving a transaction.
    publishes_at_once: bool = False
    # The jurisdiction's money rules (services/domain/money.py): a reward amount that breaks
    # its rule is refused when sent and rejected when received (reward.rule_broken). None: none.
    money_rules: MoneyRules | None = None
    # The keyring as the bus operator's signed updates change it (handlers/keyring_updates.py);
    # None: the node takes no keyring updates.
    keyring: TrustedKeyring | None = None
