"""Transfers of clues and cases, and what travels with them."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from ..base import Contract
from ..fields import LONG_TEXT, AgencyCode, MoneyFen, Sha256Hex, StrictString, Uuid, UtcTimestamp
from .common import ItemSchema, attachments_field, subjects_field, text_list_field

CLUE_CATEGORIES = (
    "suspected_crime",          # 涉嫌犯罪线索 → police, copy to the procuratorate
    "medical_conduct",          # 医疗行为问题 → health commission
    "administrative_violation", # 行政违法 (e.g. found by another agency)
)

# Decree 310 art. 8: a suspected-crime transfer carries at least these documents.
REQUIRED_FOR_SUSPECTED_CRIME = ("transfer_letter", "investigation_report")


class ClueTransferV1(Contract):
    """移送线索: a clue referred to another agency."""

    clue_no = StrictString(required=True, max_length=64)
    category = fields.String(required=True, validate=validate.OneOf(CLUE_CATEGORIES))
    title = StrictString(required=True)
    summary = StrictString(required=True, max_length=LONG_TEXT)
    subjects = subjects_field(required=True)
    amount_involved_fen = MoneyFen(required=True)
    legal_basis = StrictString(required=True, max_length=LONG_TEXT)
    team_reported_at = UtcTimestamp(required=True)
    approved_by = StrictString(required=True)
    approved_at = UtcTimestamp(required=True)
    attachments = attachments_field(required=True)

    @validates_schema
    def _check(self, data, **kwargs):
        if data.get("approved_at") and data.get("team_reported_at") and data["approved_at"] < data["team_reported_at"]:
            raise ValidationError("approval cannot precede the team's report", "approved_at")
        if data.get("category") == "suspected_crime":
            present = {a["category"] for a in data.get("attachments", [])}
            missing = [c for c in REQUIRED_FOR_SUSPECTED_CRIME if c not in present]
            if missing:
                raise ValidationError(
                    f"a suspected-crime transfer must carry: {', '.join(missing)}", "attachments")


class CopyNoticeV1(Contract):
    """抄送: the procuratorate's copy of a suspected-crime transfer."""

    transfer_message_id = Uuid(required=True)
    transfer_message_sha256 = Sha256Hex(required=True)
    transferred_to = AgencyCode(required=True)
    clue_no = StrictString(required=True, max_length=64)
    category = fields.String(required=True, validate=validate.OneOf(CLUE_CATEGORIES))
    title = StrictString(required=True)
    amount_involved_fen = MoneyFen(required=True)


class MaterialsHandoverV1(Contract):
    """移交涉案物品及材料: after a case is opened."""

    case_no = StrictString(required=True, max_length=64)
    items = fields.List(fields.Nested(ItemSchema), required=True, validate=validate.Length(max=1000))
    attachments = attachments_field(required=True)
    handed_over_at = UtcTimestamp(required=True)

    @validates_schema
    def _check(self, data, **kwargs):
        if not data.get("items") and not data.get("attachments"):
            raise ValidationError("a handover must list at least one item or attachment", "items")


CASE_TRANSFER_DIRECTIONS = ("for_prosecution", "reverse")


class CaseTransferV1(Contract):
    """移送审查起诉 (to the procuratorate) or 反向移送 (back to an administrative agency)."""

    direction = fields.String(required=True, validate=validate.OneOf(CASE_TRANSFER_DIRECTIONS))
    case_no = StrictString(required=True, max_length=64)
    summary = StrictString(required=True, max_length=LONG_TEXT)
    findings = text_list_field(required=True)
    subjects = subjects_field(required=True)
    amount_involved_fen = MoneyFen(required=True)
    attachments = attachments_field(required=True)


class WithdrawalV1(Contract):
    """撤销: the sender withdraws what it sent. The reason is required."""

    subject_message_id = Uuid(required=True)
    reason = StrictString(required=True, max_length=LONG_TEXT)


class ClosureV1(Contract):
    """关闭/办结: a referral is closed. The reason is required."""

    reason = StrictString(required=True, max_length=LONG_TEXT)
    outcome = fields.String(required=True, validate=validate.OneOf(
        ("completed", "no_violation", "insufficient_evidence", "merged", "other")))
    closed_at = UtcTimestamp(required=True)
    amount_recovered_fen = MoneyFen()
