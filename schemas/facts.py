"""The non-personal facts of each kind (protocol §11.4): body members that a sealed message
also carries in the clear, signed, for the joint-meeting office (a decision, an outcome, an
amount of money, a clue number, the dates the law counts from). Nothing here names or
identifies a person: names, ID numbers, addresses and free text always stay sealed."""

from __future__ import annotations

from typing import Mapping

FACT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "clue_transfer": ("clue_no", "category", "amount_involved_fen", "team_reported_at", "approved_at"),
    "filing_decision": ("decision",),
    "reconsideration_decision": ("outcome",),
    "case_transfer": ("direction", "amount_involved_fen"),
    "prosecution_decision": ("decision",),
    "judgment": ("effective", "amount_to_recover_fen", "fine_fen"),
    "handling_result": ("result", "amount_recovered_fen", "fine_fen"),
    "receipt": ("status",),
    "closure": ("outcome", "amount_recovered_fen"),
    "reward_payment": ("reward_fen",),
    "urge": ("step", "level"),
    "supervision_notice": ("subject",),
}


def facts_of(kind: str, body: Mapping | None) -> dict:
    """The facts of ``body`` (its wire form): exactly the whitelisted members it has."""
    if not body:
        return {}
    return {name: body[name] for name in FACT_FIELDS.get(kind, ()) if name in body}
