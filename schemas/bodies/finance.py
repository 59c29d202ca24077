"""Invoice verification and whistle-blower rewards with the finance bureau."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from ..base import Contract
from ..fields import IsoDate, MoneyFen, StrictBoolean, StrictString, UtcTimestamp


class InvoiceSchema(Contract):
    """医疗收费电子票据 identification."""

    invoice_code = StrictString(required=True, max_length=32)
    invoice_number = StrictString(required=True, max_length=32)
    check_code = StrictString(required=True, max_length=32)
    issued_on = IsoDate(required=True)
    amount_fen = MoneyFen(required=True)


class InvoiceVerificationRequestV1(Contract):
    invoices = fields.List(fields.Nested(InvoiceSchema), required=True, validate=validate.Length(min=1, max=500))
    purpose = StrictString(required=True)


INVOICE_STATUSES = ("genuine", "forged", "not_found", "amount_mismatch", "voided")


class InvoiceResultSchema(Contract):
    invoice_code = StrictString(required=True, max_length=32)
    invoice_number = StrictString(required=True, max_length=32)
    status = fields.String(required=True, validate=validate.OneOf(INVOICE_STATUSES))
    registered_amount_fen = MoneyFen()

    @validates_schema
    def _check(self, data, **kwargs):
        if data.get("status") == "amount_mismatch" and "registered_amount_fen" not in data:
            raise ValidationError("required when the amount does not match", "registered_amount_fen")


class InvoiceVerificationResultV1(Contract):
    results = fields.List(fields.Nested(InvoiceResultSchema), required=True, validate=validate.Length(min=1, max=500))
    verified_at = UtcTimestamp(required=True)


class RewardRequestV1(Contract):
    """举报奖励申请. The whistle-blower is named only by a pseudonymous reference."""

    whistleblower_ref = StrictString(required=True, max_length=64)
    verified_amount_fen = MoneyFen(required=True)
    insider = StrictBoolean(required=True)
    rule_set = StrictString(required=True, max_length=64)
    reward_fen = MoneyFen(required=True)
    basis = StrictString(required=True)


class RewardPaymentV1(Contract):
    reward_fen = MoneyFen(required=True)
    paid_at = UtcTimestamp(required=True)
    payment_ref = StrictString(required=True, max_length=64)
