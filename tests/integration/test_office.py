"""The joint-meeting office on the real bus: a transfer goes overdue, the urge reaches the
late agency's node (once, however often the timer runs or the office restarts), the late
answer closes the step, an urge left unanswered is escalated to the procuratorate, and the
statistics and the HTTP API reflect all of it."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

from schemas import registry as k
from services import config as c
from services.office.accounts import accounts_file
from tests.fixtures.bodies import sample_body

MEDICAL, POLICE, PROCURATORATE, OFFICE = "medical_security", "public_security", "procuratorate", "joint_office"
# Tuesday 2026-11-24 10:00 in Shanghai: three days later is Friday, a working day.
START = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
# Filing decision due at the end of Friday 2026-11-27, Shanghai time.
FILING_DUE = datetime(2026, 11, 27, 16, 0, tzinfo=timezone.utc)


def _get(bus, path):
    """GET ``path`` from the office's HTTP gateway, logged in (every route but /login needs it)."""
    address = bus.config[c.OFFICE][c.HTTP_ADDRESS]
    accounts = accounts_file(bus.config)
    if "staff" not in accounts.accounts():
        accounts.add("staff", "integration password")  # the running office reads it at once
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = urllib.parse.urlencode({"name": "staff", "password": "integration password", "next": path})
    with opener.open(f"http://{address}/login", data=login.encode(), timeout=10) as response:
        return response.status, response.read().decode("utf-8"), response.headers.get("Content-Type")


def test_overdue_transfer_is_urged_once_then_escalated_and_counted(bus):
    bus.clock.now = START
    bus.create(MEDICAL, POLICE, PROCURATORATE, OFFICE, fake_clock=True)
    with bus.waiter(OFFICE, kind=k.RECEIPT, count=2):  # clue, copy and both receipts seen
        bus.start()
        with bus.rpc() as rpc:
            sent = rpc.medical_security.refer_clue(sample_body(k.CLUE_TRANSFER))
    referral = sent["referral_id"]
    transfer_id = next(m["message_id"] for m in sent["messages"] if m["kind"] == k.CLUE_TRANSFER)

    with bus.rpc() as rpc:
        steps = {s["rule"]: s for s in rpc.joint_office.timeline(referral)["steps"]}
        assert steps["filing_decision"]["due_at"] == "2026-11-27T16:00:00Z"
        assert steps["filing_decision"]["state"] == "open"
        assert steps["receipt"]["state"] == "closed"
        assert rpc.joint_office.overdue() == []

        # Past the limit: the office's timer urges the police, whose node receives it.
        with bus.waiter(POLICE, kind=k.URGE, status="accepted") as urged, \
                bus.waiter(OFFICE, kind=k.RECEIPT):
            bus.clock.now = FILING_DUE + timedelta(hours=2)
        assert urged.get()["referral_id"] == referral
        [late] = rpc.joint_office.overdue()
        assert (late["rule"], late["late_agency"], late["level"]) == ("filing_decision", POLICE, "urged")
        assert late["overdue_seconds"] == 2 * 3600

        # The timer keeps running and the office restarts: still one urge for the step.
        assert rpc.joint_office.scan_now() == []
    bus.stop(OFFICE)
    bus.start(OFFICE, fake_clock=True)
    with bus.rpc() as rpc:
        assert rpc.joint_office.scan_now() == []
        urges = [m for m in rpc.public_security.inbox(kind=k.URGE)]
        assert len(urges) == 1

        # Still unanswered 72 hours after the urge: escalated to the procuratorate, once.
        with bus.waiter(PROCURATORATE, kind=k.SUPERVISION_NOTICE, status="accepted") as escalated:
            bus.clock.advance(hours=73)
        assert escalated.get()["referral_id"] == referral
        assert rpc.joint_office.scan_now() == []
        assert rpc.joint_office.overdue()[0]["level"] == "escalated"

        # The late answer closes the step.
        with bus.waiter(OFFICE, kind=k.FILING_DECISION):
            rpc.public_security.decide_filing(transfer_id, sample_body(k.FILING_DECISION))
        assert rpc.joint_office.overdue() == []
        filing = next(s for s in rpc.joint_office.timeline(referral)["steps"] if s["rule"] == "filing_decision")
        assert filing["state"] == "closed" and filing["overdue_seconds"] > 3 * 86400

        stats = rpc.joint_office.stats(period_from="2026-11-01T00:00:00Z", period_to="2026-12-31T00:00:00Z")
    police = next(row for row in stats["agencies"] if row["agency"] == POLICE)
    assert police["decisions_late"] == 1 and police["decisions_on_time"] == 0
    assert police["cases_opened"] == 1 and police["transfers_received"] == 1
    medical = next(row for row in stats["agencies"] if row["agency"] == MEDICAL)
    assert medical["transfers_sent"] == 1
    assert stats["totals"]["decisions_late"] == sum(row["decisions_late"] for row in stats["agencies"])

    # The HTTP gateway serves the same views, and the dashboard page.
    status, text, content_type = _get(bus, "/api/overdue")
    assert status == 200 and json.loads(text) == [] and content_type.startswith("application/json")
    status, text, _ = _get(bus, f"/api/referrals/{referral}")
    assert status == 200 and json.loads(text)["referral_id"] == referral
    status, text, content_type = _get(bus, "/dashboard")
    assert status == 200 and content_type.startswith("text/html") and referral in text
    # The office never shows personal data from bodies (names, identity numbers).
    body = sample_body(k.CLUE_TRANSFER)
    for subject in body["subjects"]:
        assert subject["name"] not in text
        assert subject.get("id_number", "\0") not in text


def test_the_office_tracks_sealed_transfers_from_their_signed_facts(bus):
    """Bodies sealed for their recipients (the default): the police read theirs; the office
    reads only the signed metadata and each kind's non-personal facts, and still knows every
    outcome: a sealed 'filed' decision opens the materials-handover step and is counted."""
    bus.clock.now = START
    bus.create(MEDICAL, POLICE, PROCURATORATE, OFFICE, fake_clock=True)
    with bus.waiter(OFFICE, kind=k.RECEIPT, count=2):
        bus.start(MEDICAL, POLICE, PROCURATORATE, OFFICE)
        with bus.rpc() as rpc:
            sent = rpc.medical_security.refer_clue(sample_body(k.CLUE_TRANSFER))  # sealed by default
    referral = sent["referral_id"]
    transfer_id = next(m["message_id"] for m in sent["messages"] if m["kind"] == k.CLUE_TRANSFER)
    clue = sample_body(k.CLUE_TRANSFER)
    with bus.rpc() as rpc:
        [received] = rpc.public_security.inbox(kind=k.CLUE_TRANSFER)
        assert received["sealed"] and received["body"]["clue_no"] == "YB-2026-0001"  # the police can read it
        timeline = rpc.joint_office.timeline(referral)
        transfer = next(e for e in timeline["events"] if e["kind"] == k.CLUE_TRANSFER)
        assert transfer["sealed"]
        assert transfer["facts"] == {name: clue[name] for name in
                                     ("clue_no", "category", "amount_involved_fen", "team_reported_at", "approved_at")}
        assert {s["rule"] for s in timeline["steps"]} >= {"receipt", "filing_decision"}

        with bus.waiter(OFFICE, kind=k.FILING_DECISION):
            rpc.public_security.decide_filing(transfer_id, sample_body(k.FILING_DECISION))  # sealed too
        timeline = rpc.joint_office.timeline(referral)
        filing = next(s for s in timeline["steps"] if s["rule"] == "filing_decision")
        assert filing["state"] == "closed"
        # The outcome is a fact: the handover of materials is now due from the bureau.
        assert any(s["rule"] == "materials_handover" for s in timeline["steps"])
        stats = rpc.joint_office.stats(period_from="2026-11-01T00:00:00Z", period_to="2026-12-31T00:00:00Z")
    police = next(row for row in stats["agencies"] if row["agency"] == POLICE)
    assert police["decisions_on_time"] == 1
    assert police["cases_opened"] == 1 and police["cases_refused"] == 0
    # Nothing personal reached the office's records.
    dump = json.dumps(timeline, ensure_ascii=False)
    for personal in ("王某某", "320102197805061234", "李某", clue["summary"][:10]):
        assert personal not in dump
