"""Pieces shared by several body kinds."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate

from ..base import Contract
from ..fields import LONG_TEXT, Count, MediaType, Sha256Hex, StrictString

ATTACHMENT_CATEGORIES = (
    "transfer_letter",       # 移送书
    "investigation_report",  # 调查报告
    "item_list",             # 涉案物品清单
    "appraisal",             # 检验/鉴定报告
    "other_evidence",        # 其他证据材料
    "decision_document",     # 决定书
    "judgment_document",     # 判决书
)

SUBJECT_ROLES = ("suspect", "institution", "doctor", "insured_person", "pharmacy", "other")


class AttachmentSchema(Contract):
    """A document carried alongside a message, identified by its SHA-256."""

    name = StrictString(required=True)
    category = fields.String(required=True, validate=validate.OneOf(ATTACHMENT_CATEGORIES))
    media_type = MediaType(required=True)
    size = Count(required=True)
    sha256 = Sha256Hex(required=True)


class SubjectSchema(Contract):
    """A person or institution a clue or case is about. Personal data: never shown to observers."""

    role = fields.String(required=True, validate=validate.OneOf(SUBJECT_ROLES))
    name = StrictString(required=True)
    id_type = fields.String(validate=validate.OneOf(("resident_id", "passport", "unified_social_credit_code", "other")))
    id_number = StrictString(max_length=64)
    institution_code = StrictString(max_length=64)


class ItemSchema(Contract):
    """One item in an item list (涉案物品)."""

    name = StrictString(required=True)
    quantity = Count(required=True, validate=validate.Range(min=1, max=10**9))
    description = StrictString(max_length=LONG_TEXT)


def attachments_field(**kwargs) -> fields.List:
    return fields.List(fields.Nested(AttachmentSchema), validate=validate.Length(max=500), **kwargs)


def subjects_field(**kwargs) -> fields.List:
    return fields.List(fields.Nested(SubjectSchema), validate=validate.Length(min=1, max=500), **kwargs)


def text_list_field(**kwargs) -> fields.List:
    return fields.List(StrictString(max_length=LONG_TEXT), validate=validate.Length(min=1, max=100), **kwargs)


def require_when(data: dict, condition: bool, field_name: str, reason: str) -> None:
    """Raise unless ``field_name`` is present when ``condition`` holds."""
    if condition and not data.get(field_name):
        raise ValidationError(f"required when {reason}", field_name)


def forbid_when(data: dict, condition: bool, field_name: str, reason: str) -> None:
    if condition and data.get(field_name):
        raise ValidationError(f"not allowed when {reason}", field_name)
