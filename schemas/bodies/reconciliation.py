"""对账: two agencies compare what one sent the other (docs/protocol.md §20).

A summary says how many messages its sender sent the recipient in a window of ``sent_at`` and
the SHA-256 over their ids in order; the answer says the same of what the recipient holds from
that sender in that window, whether the two agree, and, when they do not, which ids it holds.
"""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from ..base import Contract
from ..fields import Count, Sha256Hex, StrictBoolean, Uuid, UtcTimestamp

# At most this many ids in one summary's window, and in one answer's held_ids: a window that
# would hold more is shortened by its sender; an answer holding more is truncated.
MAX_WINDOW_IDS = 10_000


class ReconciliationSummaryV1(Contract):
    """What the sender sent the recipient in ``[window_from, window_until)``."""

    # The last agreed point with this recipient; null: from the beginning.
    window_from = UtcTimestamp(required=True, allow_none=True)
    window_until = UtcTimestamp(required=True)
    count = Count(required=True, validate=validate.Range(min=0, max=MAX_WINDOW_IDS))
    ids_sha256 = Sha256Hex(required=True)

    @validates_schema
    def _check(self, data, **kwargs):
        start, until = data.get("window_from"), data.get("window_until")
        if start is not None and until is not None and start >= until:
            raise ValidationError("the window must end after it starts", "window_until")


class ReconciliationAnswerV1(Contract):
    """What the recipient holds from the summary's sender in the summary's window."""

    summary_message_id = Uuid(required=True)
    count = Count(required=True)
    ids_sha256 = Sha256Hex(required=True)
    match = StrictBoolean(required=True)
    # Only when match is false: the ids held, in order (the first MAX_WINDOW_IDS of them when
    # truncated, which is only when more than that are held).
    held_ids = fields.List(Uuid(), validate=validate.Length(max=MAX_WINDOW_IDS))
    truncated = StrictBoolean()

    @validates_schema
    def _check(self, data, **kwargs):
        if data.get("match") is True:
            for name in ("held_ids", "truncated"):
                if name in data:
                    raise ValidationError("not allowed when match is true", name)
            return
        if data.get("match") is not False:
            return  # the field's own error says it
        for name in ("held_ids", "truncated"):
            if name not in data:
                raise ValidationError("required when match is false", name)
        held, count = data["held_ids"], data.get("count")
        if len(set(held)) != len(held):
            raise ValidationError("an id is listed twice", "held_ids")
        if count is None:
            return
        if data["truncated"]:
            if len(held) != MAX_WINDOW_IDS or count <= MAX_WINDOW_IDS:
                raise ValidationError(f"truncated only when more than {MAX_WINDOW_IDS} are held, "
                                      f"listing the first {MAX_WINDOW_IDS}", "truncated")
        elif len(held) != count:
            raise ValidationError("must list exactly count ids unless truncated", "held_ids")
