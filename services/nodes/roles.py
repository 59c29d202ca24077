"""Each agency's role on the bus as data: the RPC methods its node adds, and what they send.

An action is one of:
- ``start``: opens a referral with its first message, to ``recipients[0]`` unless given;
- ``reply``: answers a message the node holds, to that message's other party;
- ``follow_up``: sends a message of a known referral to ``recipients`` (one transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import registry as k

START = "start"
REPLY = "reply"
FOLLOW_UP = "follow_up"
REFER = "refer"  # start, plus the copy to the procuratorate for a suspected crime


@dataclass(frozen=True)
class Action:
    name: str
    kind: str
    mode: str
    recipients: tuple[str, ...] = ()
    doc: str = ""
    # Default recipients that get the message only when a body field has a value, e.g. the
    # court hears of a prosecution decision only when it is to prosecute.
    only_when: tuple[tuple[str, str, str], ...] = ()

    def default_recipients(self, body) -> list[str]:
        skip = {agency for agency, field, value in self.only_when if body.get(field) != value}
        return [agency for agency in self.recipients if agency not in skip]


ROLE_ACTIONS: dict[str, tuple[Action, ...]] = {
    "medical_security": (
        Action("refer_clue", k.CLUE_TRANSFER, REFER, ("public_security",),
               "Transfer a clue (a suspected crime goes to the police, copied to the procuratorate)."),
        Action("request_reconsideration", k.RECONSIDERATION_REQUEST, REPLY, (),
               "Ask the police to reconsider a decision not to open a case (复议)."),
        Action("request_supervision", k.SUPERVISION_REQUEST, FOLLOW_UP, ("procuratorate",),
               "Ask the procuratorate to supervise a decision not to open a case (立案监督)."),
        Action("hand_over_materials", k.MATERIALS_HANDOVER, FOLLOW_UP, ("public_security",),
               "Hand over items and materials after a case is opened."),
        Action("request_invoice_verification", k.INVOICE_VERIFICATION_REQUEST, START, ("finance",),
               "Ask the finance bureau to verify electronic medical invoices."),
        Action("request_reward", k.REWARD_REQUEST, START, ("finance",),
               "Ask the finance bureau to pay a whistle-blower reward."),
        Action("return_handling_result", k.HANDLING_RESULT, REPLY, (),
               "Tell the health commission what was done with its clue."),
    ),
    "public_security": (
        Action("decide_filing", k.FILING_DECISION, REPLY, (),
               "Decide whether to open a case on a transferred clue (立案 / 不予立案)."),
        Action("decide_reconsideration", k.RECONSIDERATION_DECISION, REPLY, (),
               "Answer a request for reconsideration."),
        Action("transfer_case", k.CASE_TRANSFER, FOLLOW_UP, ("procuratorate",),
               "Transfer a case for prosecution, or back to an administrative agency (反向移送)."),
    ),
    "procuratorate": (
        Action("notify_supervision", k.SUPERVISION_NOTICE, FOLLOW_UP, ("public_security",),
               "Supervise a police decision (立案监督通知)."),
        Action("decide_prosecution", k.PROSECUTION_DECISION, FOLLOW_UP,
               ("court", "medical_security", "public_security"),
               "Decide on prosecution; the court (when prosecuting), the bureau and the police are told.",
               only_when=(("court", "decision", "prosecute"),)),
    ),
    "court": (
        Action("return_judgment", k.JUDGMENT, FOLLOW_UP, ("medical_security", "procuratorate", "public_security"),
               "Return a judgment along the referral."),
        Action("report_finding", k.FINDING_NOTICE, START, ("medical_security",),
               "Report fraud found in a civil case to the medical security bureau."),
    ),
    "health": (
        Action("refer_clue", k.CLUE_TRANSFER, REFER, ("medical_security",),
               "Transfer a clue the commission found."),
        Action("return_handling_result", k.HANDLING_RESULT, REPLY, (),
               "Return the handling result of a clue about medical conduct."),
    ),
    "finance": (
        Action("return_invoice_verification", k.INVOICE_VERIFICATION_RESULT, REPLY, (),
               "Return the result of an invoice verification."),
        Action("pay_reward", k.REWARD_PAYMENT, REPLY, (),
               "Record a whistle-blower reward paid."),
    ),
}
