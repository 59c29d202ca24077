"""One referral crosses every node, with every receipt; the health commission and the finance
bureau take part through their own referrals, so all six nodes exchange messages.

All nodes run on one fake clock, moved a few seconds between steps: each step then has its
own ``sent_at`` second, so the merged timeline has one right order to check. The clock starts
at the real time and never moves near the receipt timeout, so nothing is ever resent.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from adapters.storage.tables import DONE, OUTBOUND, RECEIPTED, Message, OutboxEntry
from schemas import registry as k
from services.handlers.queries import merge_traces
from tests.fixtures.bodies import sample_body
from tests.integration import helpers as h

AGENCIES = ("medical_security", "public_security", "procuratorate", "court", "health", "finance")
STEP_SECONDS = 5


@contextmanager
def expect(bus, *waits):
    """Enter a waiter per (agency, kind, status, count) and wait on all of them at the end."""
    with ExitStack() as stack:
        yield [stack.enter_context(bus.waiter(agency, kind=kind, status=status, count=n))
               for agency, kind, status, n in waits]


def accepted(agency: str, kind: str, n: int = 1):
    return agency, kind, "accepted", n


def receipts(agency: str, n: int = 1):
    """``agency`` records ``n`` receipts (any status; the status is checked afterwards)."""
    return agency, k.RECEIPT, "receipt", n


def clue(clue_no: str, category: str) -> dict:
    body = sample_body(k.CLUE_TRANSFER)
    body.update(clue_no=clue_no, category=category)
    return body


def only(sent: dict, kind: str, recipient: str | None = None) -> str:
    [message_id] = [m["message_id"] for m in sent["messages"]
                    if m["kind"] == kind and (recipient is None or m["recipient"] == recipient)]
    return message_id


def test_referral_crosses_all_six_nodes_with_every_receipt(bus):
    bus.sync_clock()
    bus.start(*AGENCIES, fake_clock=True)

    with bus.rpc() as rpc:
        # 1. The bureau transfers a suspected crime to the police, copied to the procuratorate.
        with expect(bus, accepted("public_security", k.CLUE_TRANSFER), accepted("procuratorate", k.COPY_NOTICE),
                    receipts("medical_security", 2)):
            sent = rpc.medical_security.refer_clue(clue("YB-2026-0001", "suspected_crime"))
        referral_id = sent["referral_id"]
        transfer_id = only(sent, k.CLUE_TRANSFER, "public_security")
        only(sent, k.COPY_NOTICE, "procuratorate")

        # 2. The police open a case, answering the transfer.
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("medical_security", k.FILING_DECISION), receipts("public_security")):
            sent = rpc.public_security.decide_filing(transfer_id, sample_body(k.FILING_DECISION))
        filing_id = only(sent, k.FILING_DECISION, "medical_security")

        # 3. The bureau hands over the materials.
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("public_security", k.MATERIALS_HANDOVER), receipts("medical_security")):
            rpc.medical_security.hand_over_materials(referral_id, sample_body(k.MATERIALS_HANDOVER),
                                                     in_reply_to=filing_id)

        # 4. The police transfer the case for prosecution.
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("procuratorate", k.CASE_TRANSFER), receipts("public_security")):
            sent = rpc.public_security.transfer_case(referral_id, sample_body(k.CASE_TRANSFER),
                                                     in_reply_to=transfer_id)
        case_id = only(sent, k.CASE_TRANSFER, "procuratorate")

        # 5. The procuratorate prosecutes: the court, the bureau and the police are told.
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("court", k.PROSECUTION_DECISION), accepted("medical_security", k.PROSECUTION_DECISION),
                    accepted("public_security", k.PROSECUTION_DECISION), receipts("procuratorate", 3)):
            sent = rpc.procuratorate.decide_prosecution(referral_id, sample_body(k.PROSECUTION_DECISION),
                                                        in_reply_to=case_id)
        assert sorted(m["recipient"] for m in sent["messages"]) == ["court", "medical_security", "public_security"]
        prosecution_to_court = only(sent, k.PROSECUTION_DECISION, "court")

        # 6. The court returns its judgment along the referral.
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("medical_security", k.JUDGMENT), accepted("procuratorate", k.JUDGMENT),
                    accepted("public_security", k.JUDGMENT), receipts("court", 3)):
            sent = rpc.court.return_judgment(referral_id, sample_body(k.JUDGMENT), in_reply_to=prosecution_to_court)
        assert sorted(m["recipient"] for m in sent["messages"]) == ["medical_security", "procuratorate", "public_security"]

        # 7. A medical-conduct clue to the health commission, and its handling result.
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("health", k.CLUE_TRANSFER), receipts("medical_security")):
            sent = rpc.medical_security.refer_clue(clue("YB-2026-0002", "medical_conduct"), recipient="health")
        assert [m["kind"] for m in sent["messages"]] == [k.CLUE_TRANSFER]  # no copy: not a crime
        health_referral = sent["referral_id"]
        health_clue = only(sent, k.CLUE_TRANSFER, "health")
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("medical_security", k.HANDLING_RESULT), receipts("health")):
            rpc.health.return_handling_result(health_clue, sample_body(k.HANDLING_RESULT))

        # 8. An invoice verification by the finance bureau.
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("finance", k.INVOICE_VERIFICATION_REQUEST), receipts("medical_security")):
            sent = rpc.medical_security.request_invoice_verification(sample_body(k.INVOICE_VERIFICATION_REQUEST))
        finance_referral = sent["referral_id"]
        request_id = only(sent, k.INVOICE_VERIFICATION_REQUEST, "finance")
        bus.clock.advance(seconds=STEP_SECONDS)
        with expect(bus, accepted("medical_security", k.INVOICE_VERIFICATION_RESULT), receipts("finance")):
            rpc.finance.return_invoice_verification(request_id, sample_body(k.INVOICE_VERIFICATION_RESULT))

        # -- every business message of every node is receipted, accepted ----------------------
        expected_sent = {"medical_security": 5, "public_security": 2, "procuratorate": 3, "court": 3,
                         "health": 1, "finance": 1}
        for agency, n in expected_sent.items():
            entries = rpc[agency].outbox()
            business = [e for e in entries if e["kind"] != k.RECEIPT]
            assert len(business) == n, (agency, business)
            for entry in business:
                assert (entry["state"], entry["status"], entry["reason_codes"], entry["attempts"]) == \
                    (RECEIPTED, "accepted", [], 1), (agency, entry)
                assert entry["receipt_message_id"]
            # The receipts this node sent were published once and need no receipt themselves.
            assert {e["state"] for e in entries if e["kind"] == k.RECEIPT} <= {DONE}
            assert all(e["attempts"] == 1 for e in entries if e["kind"] == k.RECEIPT)
            # Nothing was quarantined anywhere.
            assert rpc[agency].quarantine() == []

        # ... and the same seen in each node's own database.
        for agency in AGENCIES:
            with h.db(bus, agency) as repo:
                for message in h.messages(repo, Message.direction == OUTBOUND, Message.kind != k.RECEIPT):
                    entry = repo.outbox_entry(message.message_id)
                    assert (message.status, entry.state) == ("accepted", RECEIPTED), (agency, message.kind)
                    # The receipt it holds answers exactly this message's bytes.
                    receipt = repo.message(entry.receipt_message_id)
                    assert receipt.kind == k.RECEIPT and receipt.in_reply_to == message.message_id
                    assert receipt.sender == message.recipient
                    assert receipt.body["message_sha256"] == message.sha256
                assert h.count(repo, OutboxEntry, OutboxEntry.state.notin_([RECEIPTED, DONE])) == 0

        # -- each node's view of the referral -----------------------------------------------
        assert {a: (rpc[a].referral(referral_id) or {}).get("state") for a in AGENCIES} == {
            "medical_security": "judged", "public_security": "judged", "procuratorate": "judged",
            "court": "judged", "health": None, "finance": None}
        assert rpc.medical_security.referral(health_referral)["state"] == "handled"
        assert rpc.health.referral(health_referral)["state"] == "handled"
        assert rpc.medical_security.referral(finance_referral)["state"] == "verified"
        assert rpc.finance.referral(finance_referral)["state"] == "verified"
        assert rpc.public_security.referral(referral_id)["reference"] == "YB-2026-0001"

        # -- traces: every step verifies, every audit chain holds -----------------------------
        traces = [rpc[a].trace(referral_id) for a in AGENCIES]
        side_traces = [rpc.medical_security.trace(health_referral), rpc.health.trace(health_referral),
                       rpc.medical_security.trace(finance_referral), rpc.finance.trace(finance_referral)]
    for trace in traces + side_traces:
        assert trace["audit_chain"]["ok"], trace["node"]
        assert trace["audit_chain"]["entries"] > 0
        for step in trace["steps"]:
            assert step["signature"] == {"ok": True}, (trace["node"], step)
    steps_per_node = {t["node"]: len(t["steps"]) for t in traces}
    assert steps_per_node == {
        # sent + received, receipts included
        "medical_security": 2 + 2 + 2 + 2 + 2 + 2, "public_security": 2 + 2 + 2 + 2 + 2 + 2,
        "procuratorate": 2 + 2 + 6 + 2, "court": 2 + 6, "health": 0, "finance": 0}
    for side in side_traces:
        assert len(side["steps"]) == 4  # the request, its receipt, the answer, its receipt

    # -- one timeline from all the traces -----------------------------------------------------
    timeline = merge_traces(traces)
    assert len(timeline) == 22  # 11 business messages and their 11 receipts
    assert all(s["referral_id"] == referral_id for s in timeline)
    assert all(sorted(s["seen_by"]) == sorted([s["sender"], s["recipient"]]) for s in timeline)
    # A message sent to several agencies at once shares one second: compared as a group.
    groups: list[tuple[str, set]] = []
    for s in timeline:
        if s["kind"] == k.RECEIPT:
            continue
        if groups and groups[-1][0] == s["kind"]:
            groups[-1][1].add((s["sender"], s["recipient"]))
        else:
            groups.append((s["kind"], {(s["sender"], s["recipient"])}))
    assert groups == [
        (k.CLUE_TRANSFER, {("medical_security", "public_security")}),
        (k.COPY_NOTICE, {("medical_security", "procuratorate")}),
        (k.FILING_DECISION, {("public_security", "medical_security")}),
        (k.MATERIALS_HANDOVER, {("medical_security", "public_security")}),
        (k.CASE_TRANSFER, {("public_security", "procuratorate")}),
        (k.PROSECUTION_DECISION, {("procuratorate", "court"), ("procuratorate", "medical_security"),
                                  ("procuratorate", "public_security")}),
        (k.JUDGMENT, {("court", "medical_security"), ("court", "procuratorate"), ("court", "public_security")}),
    ]
    # Whatever order the traces are merged in, what a message answers comes before it.
    for merged in (timeline, merge_traces(list(reversed(traces)))):
        position = {s["message_id"]: i for i, s in enumerate(merged)}
        for i, step in enumerate(merged):
            if step["in_reply_to"]:
                assert position[step["in_reply_to"]] < i, step
        assert [s["sent_at"] for s in merged] == sorted(s["sent_at"] for s in merged)

    # -- the chain can be rebuilt from in_reply_to and referral_id ------------------------------
    by_id = {s["message_id"]: s for s in timeline}
    receipts_of = {s["in_reply_to"]: s for s in timeline if s["kind"] == k.RECEIPT}
    for step in timeline:
        if step["kind"] != k.RECEIPT:
            receipt = receipts_of[step["message_id"]]  # every business message has its receipt
            assert (receipt["sender"], receipt["recipient"]) == (step["recipient"], step["sender"])
            assert step["status"] == "accepted"  # as received, or as its sender's mirror of the receipt

    def chain(message_id):
        kinds = []
        while message_id:
            kinds.append(by_id[message_id]["kind"])
            message_id = by_id[message_id]["in_reply_to"]
        return kinds

    judgments = [s for s in timeline if s["kind"] == k.JUDGMENT]
    assert len(judgments) == 3
    for judgment in judgments:
        assert chain(judgment["message_id"]) == [k.JUDGMENT, k.PROSECUTION_DECISION, k.CASE_TRANSFER,
                                                 k.CLUE_TRANSFER]
    [materials] = [s for s in timeline if s["kind"] == k.MATERIALS_HANDOVER]
    assert chain(materials["message_id"]) == [k.MATERIALS_HANDOVER, k.FILING_DECISION, k.CLUE_TRANSFER]
