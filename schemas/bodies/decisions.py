"""Decisions and feedback flowing back along a referral."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from ..base import Contract
from ..fields import LONG_TEXT, AgencyCode, MoneyFen, StrictBoolean, StrictString, Uuid, UtcTimestamp
from .common import attachments_field, forbid_when, require_when, subjects_field, text_list_field

FILED = "filed"
NOT_FILED = "not_filed"
NOT_COMPETENT = "not_competent"


class FilingDecisionV1(Contract):
    """立案 / 不予立案 / 移送主管机关: the police decision on a transferred clue."""

    decision = fields.String(required=True, validate=validate.OneOf((FILED, NOT_FILED, NOT_COMPETENT)))
    decided_at = UtcTimestamp(required=True)
    case_no = StrictString(max_length=64)
    reasons = text_list_field()
    forwarded_to = AgencyCode()
    attachments = attachments_field()

    @validates_schema
    def _check(self, data, **kwargs):
        decision = data.get("decision")
        require_when(data, decision == FILED, "case_no", "the case is filed")
        require_when(data, decision == NOT_FILED, "reasons", "the case is not filed")
        require_when(data, decision == NOT_COMPETENT, "forwarded_to", "the matter is passed on")
        forbid_when(data, decision != FILED, "case_no", "no case is filed")


class ReconsiderationRequestV1(Contract):
    """复议申请: asking the police to reconsider a decision not to file."""

    decision_message_id = Uuid(required=True)
    reasons = text_list_field(required=True)
    requested_at = UtcTimestamp(required=True)


class ReconsiderationDecisionV1(Contract):
    """复议决定."""

    outcome = fields.String(required=True, validate=validate.OneOf(("upheld", "reversed")))
    reasons = text_list_field(required=True)
    decided_at = UtcTimestamp(required=True)
    case_no = StrictString(max_length=64)

    @validates_schema
    def _check(self, data, **kwargs):
        require_when(data, data.get("outcome") == "reversed", "case_no", "the decision is reversed and a case filed")


class SupervisionRequestV1(Contract):
    """提请立案监督: asking the procuratorate to supervise a decision not to file."""

    decision_message_id = Uuid(required=True)
    reasons = text_list_field(required=True)
    requested_at = UtcTimestamp(required=True)


SUPERVISION_SUBJECTS = ("filing_supervision", "overdue_escalation", "supervision_result")


class SupervisionNoticeV1(Contract):
    """监督通知 / 检察建议: the procuratorate's notice, or the office's escalation of an overdue step."""

    subject = fields.String(required=True, validate=validate.OneOf(SUPERVISION_SUBJECTS))
    requirement = StrictString(required=True, max_length=LONG_TEXT)
    reasons = text_list_field(required=True)
    respond_by = UtcTimestamp()
    subject_message_id = Uuid()
    late_agency = AgencyCode()


class ProsecutionDecisionV1(Contract):
    """起诉 / 不起诉 / 退回补充侦查."""

    decision = fields.String(required=True, validate=validate.OneOf(
        ("prosecute", "not_prosecute", "return_for_investigation")))
    case_no = StrictString(required=True, max_length=64)
    decided_at = UtcTimestamp(required=True)
    charges = fields.List(StrictString(), validate=validate.Length(max=50))
    reasons = text_list_field()
    attachments = attachments_field()

    @validates_schema
    def _check(self, data, **kwargs):
        require_when(data, data.get("decision") == "prosecute", "charges", "prosecuting")
        require_when(data, data.get("decision") != "prosecute", "reasons", "not prosecuting")


class DefendantSchema(Contract):
    name = StrictString(required=True)
    verdict = fields.String(required=True, validate=validate.OneOf(("guilty", "not_guilty", "exempted")))
    sentence = StrictString(max_length=LONG_TEXT)


class JudgmentV1(Contract):
    """判决: the court's judgment, fed back along the referral."""

    case_no = StrictString(required=True, max_length=64)
    judgment_no = StrictString(required=True, max_length=64)
    decided_at = UtcTimestamp(required=True)
    effective = StrictBoolean(required=True)
    summary = StrictString(required=True, max_length=LONG_TEXT)
    defendants = fields.List(fields.Nested(DefendantSchema), required=True, validate=validate.Length(min=1))
    amount_to_recover_fen = MoneyFen(required=True)
    fine_fen = MoneyFen(required=True)
    attachments = attachments_field()


class HandlingResultV1(Contract):
    """处理结果: what an administrative agency (e.g. the health commission) did with a clue."""

    result = fields.String(required=True, validate=validate.OneOf(
        ("penalised", "corrected", "no_violation", "transferred_on")))
    summary = StrictString(required=True, max_length=LONG_TEXT)
    measures = fields.List(StrictString(max_length=LONG_TEXT), required=True, validate=validate.Length(max=100))
    decided_at = UtcTimestamp(required=True)
    amount_recovered_fen = MoneyFen(required=True)
    fine_fen = MoneyFen(required=True)
    attachments = attachments_field()

    @validates_schema
    def _check(self, data, **kwargs):
        if data.get("result") in ("penalised", "corrected") and not data.get("measures"):
            raise ValidationError("name the measures taken", "measures")


class FindingNoticeV1(Contract):
    """法院在民事案件中发现的欺诈骗保线索."""

    civil_case_no = StrictString(required=True, max_length=64)
    summary = StrictString(required=True, max_length=LONG_TEXT)
    subjects = subjects_field(required=True)
    amount_involved_fen = MoneyFen(required=True)
    found_at = UtcTimestamp(required=True)
    attachments = attachments_field()
