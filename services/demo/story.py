"""The demo's referrals: made-up but realistic medical-insurance fraud cases (打击欺诈骗保).

Bodies are built relative to the demo's start so that every timestamp is plausible.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from adapters.crypto.timestamps import format_timestamp


def _ts(moment: datetime) -> str:
    return format_timestamp(moment.replace(microsecond=0))


def _doc(name: str, category: str, size: int, media_type: str = "application/pdf") -> dict:
    # The digest stands in for the document's real SHA-256, which travels with the file.
    return {"name": name, "category": category, "media_type": media_type, "size": size,
            "sha256": hashlib.sha256(name.encode("utf-8")).hexdigest()}


HOSPITAL = {"role": "institution", "name": "明德康复医院有限公司", "id_type": "unified_social_credit_code",
            "id_number": "91320100MA1XYZ1234", "institution_code": "H32010500123"}
LEGAL_REP = {"role": "suspect", "name": "王某某", "id_type": "resident_id", "id_number": "320102197805061234"}
PHARMACY = {"role": "pharmacy", "name": "惠民大药房", "institution_code": "P32010500456"}
PHARMACIST = {"role": "suspect", "name": "赵某", "id_type": "resident_id", "id_number": "320104198811023456"}
DOCTOR = {"role": "doctor", "name": "李某", "institution_code": "H32010500777"}


def crime_clue(now: datetime, clue_no: str = "YB-2026-0107") -> dict:
    return {
        "clue_no": clue_no, "category": "suspected_crime",
        "title": "明德康复医院虚构住院骗取医保基金",
        "summary": "2025年3月至2026年6月，该院以挂床住院、虚构诊疗项目方式虚报住院费用1,286,450.00元，涉嫌诈骗罪。",
        "subjects": [HOSPITAL, LEGAL_REP], "amount_involved_fen": 128_645_000,
        "legal_basis": "《医疗保障基金使用监督管理条例》第四十条；《刑法》第二百六十六条",
        "team_reported_at": _ts(now - timedelta(days=2)), "approved_by": "市医疗保障局 张局长",
        "approved_at": _ts(now - timedelta(days=1)),
        "attachments": [_doc(f"涉嫌犯罪案件移送书 {clue_no}.pdf", "transfer_letter", 182_344),
                        _doc("涉嫌犯罪案件调查报告.pdf", "investigation_report", 1_204_551),
                        _doc("涉案物品清单.pdf", "item_list", 48_211),
                        _doc("住院结算明细.xlsx", "other_evidence", 903_112,
                             "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")],
    }


def pharmacy_clue(now: datetime) -> dict:
    body = crime_clue(now, "YB-2026-0112")
    body.update(title="惠民大药房串换药品、盗刷医保卡", subjects=[PHARMACY, PHARMACIST],
                summary="该药房以日用品串换医保目录内药品，盗刷参保人医保卡，涉案金额386,520.00元。",
                amount_involved_fen=38_652_000)
    return body


def health_clue(now: datetime) -> dict:
    return {
        "clue_no": "YB-2026-0120", "category": "medical_conduct",
        "title": "李某医师过度检查、分解收费",
        "summary": "大数据筛查发现该医师2026年上半年开具CT检查量为同科室均值4.7倍，且存在分解收费。",
        "subjects": [DOCTOR], "amount_involved_fen": 3_250_000,
        "legal_basis": "《医疗保障基金使用监督管理条例》第三十八条；《医师法》第五十六条",
        "team_reported_at": _ts(now - timedelta(days=3)), "approved_by": "市医疗保障局 张局长",
        "approved_at": _ts(now - timedelta(days=2)),
        "attachments": [_doc("大数据筛查报告.pdf", "investigation_report", 402_118)],
    }


def filed(now: datetime, case_no: str) -> dict:
    return {"decision": "filed", "decided_at": _ts(now), "case_no": case_no,
            "attachments": [_doc("立案决定书.pdf", "decision_document", 52_031)]}


def not_filed(now: datetime) -> dict:
    return {"decision": "not_filed", "decided_at": _ts(now),
            "reasons": ["现有证据不足以证明药房负责人具有非法占有目的"]}


def materials(now: datetime, case_no: str) -> dict:
    return {"case_no": case_no, "handed_over_at": _ts(now),
            "items": [{"name": "住院病历", "quantity": 214, "description": "挂床住院病历原件"},
                      {"name": "医保结算单", "quantity": 1_032}],
            "attachments": [_doc("物品移交清单.pdf", "item_list", 21_090)]}


def for_prosecution(case_no: str) -> dict:
    return {"direction": "for_prosecution", "case_no": case_no,
            "summary": "犯罪嫌疑人王某某虚构住院骗取医保基金，侦查终结，移送审查起诉。",
            "findings": ["虚构住院214人次", "骗取医保基金1,286,450.00元"], "subjects": [LEGAL_REP],
            "amount_involved_fen": 128_645_000,
            "attachments": [_doc("起诉意见书.pdf", "decision_document", 98_004)]}


def prosecute(now: datetime) -> dict:
    return {"decision": "prosecute", "case_no": "检刑诉[2026]88号", "decided_at": _ts(now),
            "charges": ["诈骗罪"], "attachments": [_doc("起诉书.pdf", "decision_document", 77_310)]}


def judgment(now: datetime) -> dict:
    return {"case_no": "(2026)苏0105刑初321号", "judgment_no": "(2026)苏0105刑初321号判决书",
            "decided_at": _ts(now), "effective": True,
            "summary": "被告人王某某犯诈骗罪，判处有期徒刑十年，并处罚金十万元；责令退赔医保基金。",
            "defendants": [{"name": "王某某", "verdict": "guilty", "sentence": "有期徒刑十年，并处罚金十万元"}],
            "amount_to_recover_fen": 128_645_000, "fine_fen": 10_000_000,
            "attachments": [_doc("刑事判决书.pdf", "judgment_document", 301_122)]}


def closure(now: datetime) -> dict:
    return {"reason": "判决已生效，被骗医保基金1,286,450.00元已全额追回", "outcome": "completed",
            "closed_at": _ts(now), "amount_recovered_fen": 128_645_000}


def reconsideration_request(now: datetime, decision_message_id: str) -> dict:
    return {"decision_message_id": decision_message_id, "requested_at": _ts(now),
            "reasons": ["药房负责人签字的串换台账足以证明其明知并组织实施", "涉案金额已达诈骗罪追诉标准"]}


def reconsideration_upheld(now: datetime) -> dict:
    return {"outcome": "upheld", "decided_at": _ts(now), "reasons": ["经复议，维持原不予立案决定"]}


def supervision_request(now: datetime, decision_message_id: str) -> dict:
    return {"decision_message_id": decision_message_id, "requested_at": _ts(now),
            "reasons": ["公安机关复议维持不予立案决定，理由不能成立，提请立案监督"]}


def supervision_notice(now: datetime, decision_message_id: str) -> dict:
    return {"subject": "filing_supervision", "requirement": "请说明不立案理由；理由不能成立的，应当立案",
            "reasons": ["医疗保障局提请立案监督，线索编号 YB-2026-0112"],
            "respond_by": _ts(now + timedelta(days=7)), "subject_message_id": decision_message_id}


def handling_result(now: datetime) -> dict:
    return {"result": "penalised", "summary": "对李某暂停执业六个月，医院被责令整改并退回违规费用。",
            "measures": ["暂停执业六个月", "责令限期整改"], "decided_at": _ts(now),
            "amount_recovered_fen": 3_250_000, "fine_fen": 500_000}


def invoice_request() -> dict:
    return {"purpose": "核查明德康复医院住院收费电子票据真伪",
            "invoices": [{"invoice_code": "32060125", "invoice_number": "0012345678", "check_code": "a1b2c3",
                          "issued_on": "2026-05-17", "amount_fen": 1_865_000},
                         {"invoice_code": "32060125", "invoice_number": "0012345679", "check_code": "d4e5f6",
                          "issued_on": "2026-05-18", "amount_fen": 2_130_050},
                         {"invoice_code": "32060125", "invoice_number": "0012349999", "check_code": "778899",
                          "issued_on": "2026-05-20", "amount_fen": 960_000}]}


def invoice_result(now: datetime) -> dict:
    return {"verified_at": _ts(now),
            "results": [{"invoice_code": "32060125", "invoice_number": "0012345678", "status": "genuine"},
                        {"invoice_code": "32060125", "invoice_number": "0012345679",
                         "status": "amount_mismatch", "registered_amount_fen": 213_005},
                        {"invoice_code": "32060125", "invoice_number": "0012349999", "status": "not_found"}]}
