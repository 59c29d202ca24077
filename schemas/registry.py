"""Every body kind and version the protocol knows, and loading a body through its schema."""

from __future__ import annotations

import datetime
import functools
from collections import abc
from types import MappingProxyType
from typing import Any, Mapping

from marshmallow import Schema, ValidationError

from adapters.crypto.timestamps import format_timestamp

from .bodies import decisions, finance, office, receipts, reconciliation, transfers
from .exceptions import BodyInvalid, UnknownKind, UnknownSchemaVersion

# Kind names. Code refers to kinds through these constants.
CLUE_TRANSFER = "clue_transfer"
COPY_NOTICE = "copy_notice"
RECEIPT = "receipt"
FILING_DECISION = "filing_decision"
RECONSIDERATION_REQUEST = "reconsideration_request"
RECONSIDERATION_DECISION = "reconsideration_decision"
SUPERVISION_REQUEST = "supervision_request"
SUPERVISION_NOTICE = "supervision_notice"
MATERIALS_HANDOVER = "materials_handover"
CASE_TRANSFER = "case_transfer"
PROSECUTION_DECISION = "prosecution_decision"
JUDGMENT = "judgment"
HANDLING_RESULT = "handling_result"
INVOICE_VERIFICATION_REQUEST = "invoice_verification_request"
INVOICE_VERIFICATION_RESULT = "invoice_verification_result"
REWARD_REQUEST = "reward_request"
REWARD_PAYMENT = "reward_payment"
FINDING_NOTICE = "finding_notice"
URGE = "urge"
WITHDRAWAL = "withdrawal"
CLOSURE = "closure"
RECONCILIATION_SUMMARY = "reconciliation_summary"
RECONCILIATION_ANSWER = "reconciliation_answer"

# Reconciliation between two agencies (docs/protocol.md §20): no referral's lifecycle.
RECONCILIATION_KINDS = frozenset({RECONCILIATION_SUMMARY, RECONCILIATION_ANSWER})

BODY_SCHEMAS: Mapping[str, Mapping[int, type[Schema]]] = MappingProxyType({
    CLUE_TRANSFER: {1: transfers.ClueTransferV1},
    COPY_NOTICE: {1: transfers.CopyNoticeV1},
    RECEIPT: {1: receipts.ReceiptV1},
    FILING_DECISION: {1: decisions.FilingDecisionV1},
    RECONSIDERATION_REQUEST: {1: decisions.ReconsiderationRequestV1},
    RECONSIDERATION_DECISION: {1: decisions.ReconsiderationDecisionV1},
    SUPERVISION_REQUEST: {1: decisions.SupervisionRequestV1},
    SUPERVISION_NOTICE: {1: decisions.SupervisionNoticeV1},
    MATERIALS_HANDOVER: {1: transfers.MaterialsHandoverV1},
    CASE_TRANSFER: {1: transfers.CaseTransferV1},
    PROSECUTION_DECISION: {1: decisions.ProsecutionDecisionV1},
    JUDGMENT: {1: decisions.JudgmentV1},
    HANDLING_RESULT: {1: decisions.HandlingResultV1},
    INVOICE_VERIFICATION_REQUEST: {1: finance.InvoiceVerificationRequestV1},
    INVOICE_VERIFICATION_RESULT: {1: finance.InvoiceVerificationResultV1},
    REWARD_REQUEST: {1: finance.RewardRequestV1},
    REWARD_PAYMENT: {1: finance.RewardPaymentV1},
    FINDING_NOTICE: {1: decisions.FindingNoticeV1},
    URGE: {1: office.UrgeV1},
    WITHDRAWAL: {1: transfers.WithdrawalV1},
    CLOSURE: {1: transfers.ClosureV1},
    RECONCILIATION_SUMMARY: {1: reconciliation.ReconciliationSummaryV1},
    RECONCILIATION_ANSWER: {1: reconciliation.ReconciliationAnswerV1},
})

KINDS = tuple(BODY_SCHEMAS)


def latest_version(kind: str) -> int:
    return max(_versions(kind))


def _versions(kind: str) -> Mapping[int, type[Schema]]:
    try:
        return BODY_SCHEMAS[kind]
    except KeyError:
        raise UnknownKind(f"unknown message kind {kind!r}") from None


@functools.lru_cache(maxsize=None)
def _schema_instance(schema_class: type[Schema]) -> Schema:
    # Building a marshmallow schema costs far more than using one; instances hold no
    # per-load state, so one per class is shared.
    return schema_class()


def body_schema(kind: str, version: int) -> Schema:
    versions = _versions(kind)
    try:
        return _schema_instance(versions[version])
    except KeyError:
        known = ", ".join(str(v) for v in sorted(versions))
        raise UnknownSchemaVersion(
            f"kind {kind!r} has no schema version {version} (known: {known})") from None


def load_body(kind: str, version: int, body: Any) -> dict:
    """Validate a received body; the result has typed values (datetimes, dates)."""
    schema = body_schema(kind, version)
    try:
        return schema.load(body)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise BodyInvalid(f"{kind} v{version} body is invalid: {_summarise(messages)}", messages) from None


def dump_body(kind: str, version: int, body: Mapping) -> dict:
    """Validate an outgoing body and dump it to its wire form.

    The caller's body is first put in wire form (datetimes and dates as strings) and then
    *loaded*, which is what validates: unknown fields, wrong types and money that is not an
    integer are refused here, exactly as the receiver would refuse them. Dumping the loaded
    value gives the canonical wire form.
    """
    schema = body_schema(kind, version)
    try:
        loaded = schema.load(_wire_values(body))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise BodyInvalid(f"{kind} v{version} body is invalid: {_summarise(messages)}", messages) from None
    # The contracts' fields dump a loaded value to exactly its wire values (timestamps in
    # their normal form, dates ISO, everything else as loaded), so dumping is done without
    # marshmallow's per-field machinery; tests/unit/test_schemas.py holds the two equal.
    return _wire_values(loaded)


_SCALARS = frozenset((str, int, bool, type(None)))


def _wire_values(value: Any) -> Any:
    kind = type(value)
    # Exact types first: this walks every body twice per message, and isinstance against
    # typing.Mapping costs several times the rest of the walk.
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {key: _wire_values(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_wire_values(item) for item in value]
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            return "naive datetime (timezone required)"  # fails the timestamp field
        return format_timestamp(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, abc.Mapping):
        return {key: _wire_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire_values(item) for item in value]
    return value


def _summarise(messages: Mapping, prefix: str = "") -> str:
    parts = []
    for key, value in messages.items():
        path = f"{prefix}{key}" if not prefix else f"{prefix}.{key}"
        if isinstance(value, Mapping):
            parts.append(_summarise(value, path))
        else:
            text = "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)
            parts.append(f"{path}: {text}")
    return ", ".join(parts)


summarise_messages = _summarise
