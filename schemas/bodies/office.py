"""Messages of the joint-meeting office."""

from __future__ import annotations

from marshmallow import fields, validate

from ..base import Contract
from ..fields import LONG_TEXT, Count, StrictString, Uuid, UtcTimestamp


class UrgeV1(Contract):
    """催办: the office urges a late agency to complete a step."""

    step = StrictString(required=True, max_length=64)
    level = fields.String(required=True, validate=validate.OneOf(("warning", "urge")))
    due_at = UtcTimestamp(required=True)
    overdue_seconds = Count(required=True)
    subject_message_id = Uuid()
    note = StrictString(max_length=LONG_TEXT)
