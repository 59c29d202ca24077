"""Control calls that change state are done once per request id.

A clerk's system may call again after a timeout, and RabbitMQ delivers an RPC request at
least once: after a node crash or a lost reply the same request arrives again. Each
state-changing call names a request id (the caller's, else the AMQP correlation id of the
call, which a redelivery keeps; the CLI makes one per invocation). The first call stores its
result with what it sent, in one transaction; a repeat returns that result and sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from services.domain.exceptions import DomainError
from services.protocol import rules
from services.protocol.compose import SignedMessage

MAX_REQUEST_ID_LENGTH = 200


class RequestReused(DomainError):
    rule = rules.REQUEST_REUSED


class RequestInvalid(DomainError):
    rule = rules.REQUEST_INVALID


@dataclass(frozen=True)
class Request:
    request_id: str
    action: str

    def __post_init__(self):
        if not isinstance(self.request_id, str) or not self.request_id.strip() \
                or len(self.request_id) > MAX_REQUEST_ID_LENGTH:
            raise RequestInvalid(f"a request id is a non-blank string of at most "
                                f"{MAX_REQUEST_ID_LENGTH} characters")


def summarise(messages: list[SignedMessage]) -> dict:
    return {
        "referral_id": messages[0].envelope["referral_id"] if messages else None,
        "messages": [{"message_id": m.message_id, "kind": m.envelope["kind"],
                      "recipient": m.envelope["recipient"], "sha256": m.sha256} for m in messages],
    }


@dataclass(frozen=True)
class Sent:
    """What a state-changing call sent: the signed messages (none when it repeats an earlier
    call), and the summary a caller gets (the first call's, for a repeat)."""

    summary: dict
    messages: tuple[SignedMessage, ...] = ()
    repeated: bool = False
    request_id: str | None = None

    @classmethod
    def of(cls, messages: list[SignedMessage], request: Request | None) -> "Sent":
        return cls(summarise(messages), tuple(messages), False, request.request_id if request else None)

    @property
    def referral_id(self) -> str | None:
        return self.summary["referral_id"]

    def answer(self) -> dict:
        """The RPC answer: the summary, saying whether it repeats an earlier call."""
        return {**self.summary, "request_id": self.request_id, "repeated": self.repeated}

    def __iter__(self) -> Iterator[SignedMessage]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def __getitem__(self, index) -> SignedMessage:
        return self.messages[index]
