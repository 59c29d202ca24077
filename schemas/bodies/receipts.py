"""回执: the receiving node's signed answer to every business message."""

from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate, validates_schema

from ..base import Contract
from ..fields import LONG_TEXT, AgencyCode, PatternString, Sha256Hex, StrictString, UtcTimestamp

ACCEPTED = "accepted"
REJECTED = "rejected"
REASON_CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class ReceiptV1(Contract):
    status = fields.String(required=True, validate=validate.OneOf((ACCEPTED, REJECTED)))
    # SHA-256 of the exact bytes received, binding the receipt to that message.
    message_sha256 = Sha256Hex(required=True)
    received_at = UtcTimestamp(required=True)
    # Rule codes such as "route.forbidden" (see docs/protocol.md); required when rejected.
    reason_codes = fields.List(PatternString(REASON_CODE, "reason code"), required=True,
                               validate=validate.Length(max=50))
    detail = StrictString(max_length=LONG_TEXT)
    # Set when the receiver is not competent and has passed the matter on (Decree 310 art. 9).
    forwarded_to = AgencyCode()

    @validates_schema
    def _check(self, data, **kwargs):
        if data.get("status") == REJECTED and not data.get("reason_codes"):
            raise ValidationError("a rejection must give at least one reason code", "reason_codes")
        if data.get("status") == ACCEPTED and data.get("reason_codes"):
            raise ValidationError("an acceptance carries no reason codes", "reason_codes")
