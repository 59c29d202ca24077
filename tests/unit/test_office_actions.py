"""The joint-meeting office acting on due steps (services/office/handlers.py), broker-free.

Three nodes on one FakeClock, each with its own SQLite database and real Ed25519 keys from
``initialise_key_directory``: the medical security bureau sends a clue with
services/handlers/sending.py, the police receive it (and answer with a signed receipt) with
services/handlers/receiving.py, and the office observes every envelope through
``handlers.observe`` and acts with ``handlers.act_on_due_steps``. Nothing is published: what
the office sends stays in its outbox, where the tests read and verify it.

The clue goes out on Tuesday 2026-11-24 09:00Z (17:00 in Shanghai): the police's 3-day filing
decision is due at the end of Friday 2026-11-27 local time, 2026-11-27T16:00Z. With the
shipped configuration a warning is due 12 h before (WARN_BEFORE_HOURS) and an escalation 72 h
after the urge (ESCALATE_AFTER_HOURS).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from adapters.crypto.timestamps import format_timestamp
from adapters.storage.office_tables import StepRow
from adapters.storage.store import Store
from adapters.storage.tables import OUTBOUND, PENDING, RECEIPTED
from services import bootstrap
from services.config import load_config
from services.handlers import receiving, sending
from services.handlers.workflows import copy_notice_body
from services.handlers.context import NodeContext
from services.office import handlers
from services.office.handlers import OfficeContext
from services.protocol.signing_input import message_sha256
from tests.fixtures.bodies import resign, sample_body
from tests.fixtures.keys import FIXED_NOW

UTC = timezone.utc
MS, PS, PROC, OFFICE = "medical_security", "public_security", "procuratorate", "joint_office"

T0 = FIXED_NOW                                             # Tuesday 2026-11-24 09:00Z
FILING_DUE = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)     # end of Friday 11-27 in Shanghai
WARN_BEFORE = timedelta(hours=12)
ESCALATE_AFTER = timedelta(hours=72)


def node_context(config, agency: str, clock, stores: list) -> NodeContext:
    """The CLI's wiring (services.bootstrap), on the test's clock."""
    store = bootstrap.open_store(config, agency)
    stores.append(store)
    return bootstrap.offline_context(config, agency, clock=clock, store=store)


def office_context(config, clock, stores: list) -> OfficeContext:
    store = bootstrap.open_store(config, OFFICE)
    stores.append(store)
    return bootstrap.office_context(config, clock=clock, store=store)


class Bus:
    """The bureau, the police and the office, all on the same clock; delivery by hand."""

    def __init__(self, config, clock):
        self.config = config
        self.clock = clock
        self.stores: list[Store] = []
        self.ms = node_context(config, MS, clock, self.stores)
        self.ps = node_context(config, PS, clock, self.stores)
        self.proc = node_context(config, PROC, clock, self.stores)
        self.office = office_context(config, clock, self.stores)

    def restart_office(self) -> OfficeContext:
        """A new context, new Tracker, new engine on the same office database."""
        self.office = office_context(self.config, self.clock, self.stores)
        return self.office

    def close(self):
        for store in self.stores:
            store.dispose()

    # -- traffic -----------------------------------------------------------------------------------
    def deliver(self, node: NodeContext, raw: bytes) -> receiving.ReceiveOutcome:
        """``node`` receives ``raw``; the office observes ``raw`` and the node's receipt."""
        self.office_observes(raw)
        outcome = receiving.receive(node, raw)
        if outcome.receipt_message_id:
            self.office_observes(self.raw_of(node, outcome.receipt_message_id))
        return outcome

    def office_observes(self, raw: bytes) -> dict:
        return handlers.observe(self.office, raw)

    @staticmethod
    def raw_of(node: NodeContext, message_id: str) -> bytes:
        with node.store.transaction() as repo:
            return repo.message(message_id).raw

    def refer(self, *, receipted: bool = True, at: datetime | None = None) -> str:
        """A suspected-crime clue from the bureau to the police, with its copy to the
        procuratorate (receipted, so that only the police's steps stay open); returns the
        transfer's message id."""
        if at is not None:
            self.clock.now = at
        body = sample_body("clue_transfer")
        body["team_reported_at"] = format_timestamp(self.clock() - timedelta(days=1))
        body["approved_at"] = format_timestamp(self.clock() - timedelta(hours=2))
        clue = sending.send(self.ms, "clue_transfer", PS, body)
        copy = sending.send(self.ms, "copy_notice", PROC, copy_notice_body(clue, PS),
                            referral_id=clue.envelope["referral_id"])
        if receipted:
            assert self.deliver(self.ps, clue.raw).status == receiving.OUTCOME_ACCEPTED
        else:
            self.office_observes(clue.raw)
        assert self.deliver(self.proc, copy.raw).status == receiving.OUTCOME_ACCEPTED
        return clue.message_id

    def decide(self, referral_id: str, decision: str = "not_filed") -> str:
        body = {"decision": decision, "decided_at": self.clock(), "reasons": ["证据不足"]}
        if decision == "filed":
            body = {"decision": "filed", "decided_at": self.clock(), "case_no": "公(经)立字[2026]0417号"}
        signed = sending.send(self.ps, "filing_decision", MS, body, referral_id=referral_id)
        assert self.deliver(self.ms, signed.raw).status == receiving.OUTCOME_ACCEPTED
        return signed.message_id

    # -- the office's state ---------------------------------------------------------------------------
    def act(self, at: datetime) -> list[dict]:
        self.clock.now = at
        return handlers.act_on_due_steps(self.office)

    def step(self, step_id: str) -> StepRow:
        with self.office.node.store.transaction() as repo:
            return repo.session.get(StepRow, step_id)

    def sent_by_office(self) -> list[tuple]:
        """(outbox entry, message) of everything the office has sent."""
        with self.office.node.store.transaction() as repo:
            return [(entry, repo.message(entry.message_id)) for entry in repo.outbox_entries()]

    def audit_events(self) -> list[str]:
        with self.office.node.store.transaction() as repo:
            return [entry.event for entry in repo.audit_entries()]

    def referral_of(self, message_id: str) -> str:
        with self.ms.store.transaction() as repo:
            return repo.message(message_id).referral_id


@pytest.fixture
def bus_config(tmp_path, key_dir):
    return load_config(environ={"CLUEBUS_DATA_DIR": str(tmp_path / "data"),
                                "CLUEBUS_KEYS_DIR": str(key_dir.path)})


@pytest.fixture
def bus(bus_config, clock):
    assert clock() == T0
    bus = Bus(bus_config, clock)
    yield bus
    bus.close()


@pytest.fixture
def clue_id(bus) -> str:
    return bus.refer()


def filing_step(clue_id: str) -> str:
    return f"filing_decision:{clue_id}"


# -- the set-up itself ---------------------------------------------------------------------------------

def test_the_office_sees_the_transfer_and_its_receipt(bus, clue_id):
    assert bus.office.warn_before == WARN_BEFORE and bus.office.escalate_after == ESCALATE_AFTER
    assert OFFICE not in bus.office.agencies
    receipt = bus.step(f"receipt:{clue_id}")
    assert receipt.state == "closed" and receipt.closed_at == T0
    filing = bus.step(filing_step(clue_id))
    assert filing.state == "open" and filing.due_at == FILING_DUE and filing.late_agency == PS
    for rule in ("approve_transfer", "transfer_after_approval"):
        assert bus.step(f"{rule}:{clue_id}").state == "closed"
    assert bus.step(f"approve_transfer:{clue_id}").closed_at == T0 - timedelta(hours=2)


# -- warnings --------------------------------------------------------------------------------------------

def test_nothing_is_done_before_the_warning_window(bus, clue_id):
    for at in (T0, T0 + timedelta(days=2), FILING_DUE - WARN_BEFORE - timedelta(seconds=1)):
        assert bus.act(at) == []
    assert bus.sent_by_office() == []
    assert handlers.overdue(bus.office, FILING_DUE - WARN_BEFORE - timedelta(seconds=1)) == []
    step = bus.step(filing_step(clue_id))
    assert (step.warned_at, step.urged_at, step.escalated_at) == (None, None, None)


def test_a_warning_is_given_once_within_the_window_without_a_message(bus, clue_id):
    start = FILING_DUE - WARN_BEFORE
    assert bus.act(start) == [{"level": "warn", "step_id": filing_step(clue_id)}]
    assert bus.act(start + timedelta(minutes=1)) == []
    assert bus.act(FILING_DUE - timedelta(seconds=1)) == []
    assert bus.sent_by_office() == []                       # a warning is not a message
    assert bus.step(filing_step(clue_id)).warned_at == start
    assert bus.audit_events().count("step.warning") == 1

    [view] = handlers.overdue(bus.office, FILING_DUE - timedelta(hours=1))
    assert (view["step_id"], view["level"], view["overdue_seconds"]) == (filing_step(clue_id), "warning", 0)
    assert handlers.overdue(bus.office, FILING_DUE - timedelta(hours=1), include_warnings=False) == []


# -- urges -------------------------------------------------------------------------------------------------

def _verify_urge(bus, message, clue_id, *, due_at=FILING_DUE, overdue_seconds):
    """The urge as the police would verify it: signed by the office, for them, about the step."""
    verified = bus.ps.verifier.verify(message.raw, expected_recipient=PS)
    assert verified.kind == "urge" and verified.sender == OFFICE and verified.recipient == PS
    assert verified.referral_id == bus.referral_of(clue_id)
    assert verified.plain_body["step"] == "filing_decision"
    assert verified.plain_body["level"] == "urge"
    assert verified.plain_body["due_at"] == format_timestamp(due_at)
    assert verified.plain_body["overdue_seconds"] == overdue_seconds
    assert verified.plain_body["subject_message_id"] == clue_id
    return verified


def test_exactly_one_urge_past_the_limit_however_often_and_across_restarts(bus, clue_id):
    bus.act(FILING_DUE - WARN_BEFORE)                        # warned first
    urged_at = FILING_DUE + timedelta(hours=1)
    [done] = bus.act(urged_at)
    assert (done["level"], done["step_id"], done["recipient"]) == ("urge", filing_step(clue_id), PS)

    [(entry, message)] = bus.sent_by_office()
    assert entry.message_id == done["message_id"] == message.message_id
    assert (entry.routing_key, entry.needs_receipt, entry.state) == ("public_security.urge", True, PENDING)
    assert (message.direction, message.kind, message.recipient) == (OUTBOUND, "urge", PS)
    _verify_urge(bus, message, clue_id, overdue_seconds=3600)
    step = bus.step(filing_step(clue_id))
    assert step.urged_at == urged_at and step.urge_message_id == message.message_id

    for minutes in (0, 1, 60, 24 * 60):
        assert bus.act(urged_at + timedelta(minutes=minutes)) == []
    bus.restart_office()
    assert bus.act(urged_at + timedelta(hours=2)) == []
    assert len(bus.sent_by_office()) == 1
    assert bus.audit_events().count("step.urge") == 1

    # The office's own urge comes back on its observer queue: it changes nothing.
    assert bus.office_observes(message.raw)["status"] == "observed"
    assert bus.act(urged_at + timedelta(hours=3)) == []


def test_an_urge_comes_without_a_warning_when_the_window_was_missed(bus, clue_id):
    [done] = bus.act(FILING_DUE + timedelta(days=1))
    assert done["level"] == "urge"
    [(_, message)] = bus.sent_by_office()
    _verify_urge(bus, message, clue_id, overdue_seconds=86400)
    assert bus.step(filing_step(clue_id)).warned_at is None


def test_exactly_one_escalation_to_the_procuratorate_after_the_urge(bus, clue_id):
    urged_at = FILING_DUE + timedelta(minutes=30)
    bus.act(urged_at)
    assert bus.act(urged_at + ESCALATE_AFTER - timedelta(seconds=1)) == []

    escalated_at = urged_at + ESCALATE_AFTER
    [done] = bus.act(escalated_at)
    assert (done["level"], done["recipient"]) == ("escalate", PROC)
    for at in (escalated_at, escalated_at + timedelta(days=3)):
        assert bus.act(at) == []
    bus.restart_office()
    assert bus.act(escalated_at + timedelta(days=10)) == []

    sent = bus.sent_by_office()
    assert [m.kind for _, m in sent] == ["urge", "supervision_notice"]
    entry, notice = sent[1]
    assert entry.routing_key == "procuratorate.supervision_notice" and entry.needs_receipt
    verified = bus.proc.verifier.verify(notice.raw, expected_recipient=PROC, now=escalated_at)
    assert verified.sender == OFFICE and verified.referral_id == bus.referral_of(clue_id)
    assert verified.plain_body["subject"] == "overdue_escalation"
    assert verified.plain_body["late_agency"] == PS
    assert verified.plain_body["subject_message_id"] == clue_id
    step = bus.step(filing_step(clue_id))
    assert step.escalated_at == escalated_at and step.escalation_message_id == notice.message_id

    [view] = handlers.overdue(bus.office, escalated_at, include_warnings=False)
    assert view["level"] == "escalated"
    assert view["escalated_at"] == format_timestamp(escalated_at)


def test_a_step_closed_before_its_limit_is_never_urged(bus, clue_id):
    bus.act(FILING_DUE - WARN_BEFORE)
    bus.clock.now = FILING_DUE - timedelta(hours=1)
    bus.decide(bus.referral_of(clue_id))
    step = bus.step(filing_step(clue_id))
    assert step.state == "closed" and step.closed_at == FILING_DUE - timedelta(hours=1)
    for at in (FILING_DUE, FILING_DUE + timedelta(hours=1), FILING_DUE + timedelta(days=30)):
        assert bus.act(at) == []
    assert bus.sent_by_office() == []
    assert handlers.overdue(bus.office, FILING_DUE + timedelta(days=1)) == []


def test_a_late_answer_after_the_urge_closes_the_step(bus, clue_id):
    urged_at = FILING_DUE + timedelta(hours=1)
    bus.act(urged_at)
    [view] = handlers.overdue(bus.office, urged_at + timedelta(hours=1))
    assert (view["level"], view["overdue_seconds"]) == ("urged", 2 * 3600)

    bus.clock.now = urged_at + timedelta(hours=4)
    decision_id = bus.decide(bus.referral_of(clue_id))
    step = bus.step(filing_step(clue_id))
    assert (step.state, step.closing_message_id) == ("closed", decision_id)
    assert step.closed_at == FILING_DUE + timedelta(hours=5)
    assert handlers.overdue(bus.office, urged_at + timedelta(hours=5)) == []
    assert bus.act(urged_at + ESCALATE_AFTER + timedelta(hours=1)) == []       # no escalation
    assert [m.kind for _, m in bus.sent_by_office()] == ["urge"]


def test_overdue_lists_the_most_late_first_with_their_level(bus):
    a = bus.refer(at=T0)                                   # filing due 11-27T16:00Z
    c = bus.refer(at=T0, receipted=False)                  # receipt due 11-25T10:00Z, filing 11-27T16:00Z
    b = bus.refer(at=T0 + timedelta(days=1))               # day 3 is Saturday: due end of Monday 11-30
    b_due = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert bus.step(filing_step(b)).due_at == b_due

    as_of = b_due - timedelta(hours=10)
    views = handlers.overdue(bus.office, as_of)
    assert [v["step_id"] for v in views[:1]] == [f"receipt:{c}"]
    assert {v["step_id"] for v in views[1:3]} == {filing_step(a), filing_step(c)}
    assert views[3]["step_id"] == filing_step(b)
    assert len(views) == 4
    assert [v["overdue_seconds"] for v in views] == [
        int((as_of - (T0 + timedelta(hours=25))).total_seconds()),  # 24 h from the next whole hour
        int((as_of - FILING_DUE).total_seconds()), int((as_of - FILING_DUE).total_seconds()), 0]
    assert [v["level"] for v in views] == ["overdue", "overdue", "overdue", "warning"]
    assert [v["late_agency"] for v in views] == [PS] * 4

    done = bus.act(as_of)
    assert sorted(d["level"] for d in done) == ["urge", "urge", "urge", "warn"]
    assert [v["level"] for v in handlers.overdue(bus.office, as_of)] == ["urged", "urged", "urged", "warning"]
    assert len(bus.sent_by_office()) == 3
    receipt_urge = next(m for _, m in bus.sent_by_office() if m.body["step"] == "receipt")
    assert receipt_urge.referral_id == bus.referral_of(c)


# -- statistics ---------------------------------------------------------------------------------------------

def test_statistics_count_a_late_decision_once_and_reconcile(bus, clue_id):
    from services.office.stats import ADDITIVE_FIELDS
    on_time = bus.refer(at=T0 + timedelta(hours=1))
    bus.clock.now = T0 + timedelta(days=1)
    bus.decide(bus.referral_of(on_time), "filed")
    bus.act(FILING_DUE + timedelta(hours=1))
    bus.clock.now = FILING_DUE + timedelta(hours=6)
    bus.decide(bus.referral_of(clue_id))

    as_of = FILING_DUE + timedelta(days=1)
    report = handlers.statistics(bus.office, T0 - timedelta(days=1), T0 + timedelta(days=5), as_of)
    police = report.row(PS)
    assert (police.decisions_on_time, police.decisions_late, police.decisions_open) == (1, 1, 0)
    assert (police.receipts_on_time, police.receipts_late, police.receipts_open) == (2, 0, 0)
    assert (police.cases_opened, police.cases_refused) == (1, 1)
    # The refusal is the police's final answer; a case filed goes on (completed by its transfer).
    assert (police.referrals_received, police.referrals_completed, police.referrals_pending) == (2, 1, 1)
    bureau = report.row(MS)
    assert bureau.transfers_sent == 2 and police.transfers_received == 2
    assert bureau.transfer_steps_on_time == 4 and bureau.feedback_open == 1     # materials after "filed"
    assert OFFICE not in [row.agency for row in report.agencies]                 # its urge is no transfer

    totals = report.totals
    for name in ADDITIVE_FIELDS:
        assert getattr(totals, name) == sum(getattr(row, name) for row in report.agencies), name
    assert totals.transfers_sent == totals.transfers_received == 2
    assert totals.decisions_late == 1
    # Per clue: approve_transfer, transfer_after_approval, receipt, filing_decision, and its copy
    # (copy_to_procuratorate, the copy's receipt); plus materials.
    assert (totals.steps_on_time, totals.steps_late, totals.steps_open) == (11, 1, 1)
    assert totals.steps_on_time + totals.steps_late + totals.steps_open == 2 * 6 + 1
    data = report.to_json()
    assert data["totals"]["decisions_late"] == 1


# -- the receipt for an urge -------------------------------------------------------------------------------

def test_the_polices_receipt_for_the_urge_marks_the_office_outbox_entry_receipted(bus, clue_id):
    bus.act(FILING_DUE + timedelta(hours=1))
    [(entry, urge)] = bus.sent_by_office()
    assert entry.state == PENDING

    bus.clock.advance(seconds=20)
    outcome = receiving.receive(bus.ps, urge.raw)                 # the police node receives the urge
    assert outcome.status == receiving.OUTCOME_ACCEPTED
    receipt_raw = bus.raw_of(bus.ps, outcome.receipt_message_id)
    receipt = bus.ps.verifier.verify(receipt_raw, check_freshness=False)
    assert receipt.kind == "receipt" and receipt.recipient == OFFICE and receipt.in_reply_to == urge.message_id
    assert receipt.plain_body["message_sha256"] == message_sha256(urge.raw)

    result = bus.office_observes(receipt_raw)
    assert result["status"] == "observed" and result["receipt"] == receiving.OUTCOME_RECEIPT
    [(entry, urge)] = bus.sent_by_office()
    assert entry.state == RECEIPTED
    assert entry.receipt_message_id == outcome.receipt_message_id
    assert entry.receipted_at == bus.clock()
    assert urge.status == "accepted"

    again = bus.office_observes(receipt_raw)
    assert again["status"] == "duplicate" and again["receipt"] == receiving.OUTCOME_DUPLICATE
    [(entry, _)] = bus.sent_by_office()
    assert entry.state == RECEIPTED


def test_a_receipt_bound_to_other_bytes_does_not_mark_the_urge_receipted(bus, clue_id):
    bus.act(FILING_DUE + timedelta(hours=1))
    [(_, urge)] = bus.sent_by_office()
    body = {"status": "accepted", "message_sha256": "0" * 64, "received_at": bus.clock(), "reason_codes": []}
    forged = bus.ps.composer.compose("receipt", OFFICE, body, referral_id=urge.referral_id,
                                     in_reply_to=urge.message_id, sent_at=bus.clock())
    result = bus.office_observes(forged.raw)
    assert result["receipt"] == receiving.OUTCOME_QUARANTINED
    [(entry, _)] = bus.sent_by_office()
    assert entry.state == PENDING


# -- messages that break a rule --------------------------------------------------------------------------------

def test_a_message_the_office_cannot_authenticate_is_quarantined_and_tracks_nothing(bus):
    body = sample_body("clue_transfer")
    clue = bus.ms.composer.compose("clue_transfer", PS, body, referral_id="5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70")
    tampered = clue.raw.replace(b"suspected_crime", b"suspected_crimf")
    result = bus.office_observes(tampered)
    assert result["status"] == receiving.OUTCOME_QUARANTINED
    with bus.office.node.store.transaction() as repo:
        assert repo.session.scalars(select(StepRow)).all() == []
        assert len(repo.quarantined()) == 1


def test_a_signed_message_on_a_forbidden_route_is_observed_with_its_problem_and_opens_nothing(bus):
    """The procuratorate may not send clues: validly signed by it, the clue breaks route.forbidden."""
    envelope = bus.ms.composer.compose("clue_transfer", PS, sample_body("clue_transfer"),
                                       referral_id="5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70").envelope
    signer = bus.proc.composer.signer
    raw = resign({**envelope, "sender": PROC, "sender_key_id": signer.key_id}, signer)
    result = bus.office_observes(raw)
    assert result["status"] == "observed" and result["rule"] == "route.forbidden"
    with bus.office.node.store.transaction() as repo:
        assert repo.session.scalars(select(StepRow)).all() == []
    assert bus.act(T0 + timedelta(days=30)) == []


# -- boundaries ----------------------------------------------------------------------------------------------

def test_no_urge_at_the_very_instant_of_the_limit(bus, clue_id):
    assert [a["level"] for a in bus.act(FILING_DUE)] in ([], ["warn"])  # a warning at most, no urge


def test_a_step_late_at_the_procuratorate_itself_is_not_escalated_to_it(tmp_path):
    """Nobody above the procuratorate on the bus: the escalation is recorded, no message sent."""
    from datetime import datetime, timedelta, timezone

    from adapters.storage.office_tables import StepRow
    from services import config as c
    from services.office import handlers
    from services.bootstrap import office_context
    from adapters.crypto.keys import initialise_key_directory
    from tests.fixtures.keys import FakeClock

    config = c.load_config(environ={"CLUEBUS_DATA_DIR": str(tmp_path / "data"),
                                    "CLUEBUS_KEYS_DIR": str(tmp_path / "keys")})
    now = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=30),
                             now=now - timedelta(days=10))
    office = office_context(config)
    office.node.clock = FakeClock(now)
    with office.node.store.transaction() as repo:
        repo.session.add(StepRow(step_id="prosecution_decision:x", rule="prosecution_decision",
                                 referral_id="5f0c1b7e-8a4d-4c2e-9b61-2f3a4d5e6f70",
                                 start_message_id="0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5",
                                 started_at=now - timedelta(days=40), due_at=now - timedelta(days=5),
                                 late_agency="procuratorate", counterpart="public_security", state="open",
                                 urged_at=now - timedelta(days=4)))
    [done] = handlers.act_on_due_steps(office, now)
    assert done["level"] == "escalate" and done["message_id"] is None
    assert handlers.act_on_due_steps(office, now) == []
    with office.node.store.transaction() as repo:
        assert repo.outbox_entries() == []
        assert [e.event for e in repo.audit_entries()] == ["step.escalation_impossible"]


def test_the_escalation_target_is_configuration_and_checked(tmp_path):
    from services import config as c
    from services.bootstrap import office_rules

    def rules(target):
        return office_rules(c.load_config(environ={"CLUEBUS_OFFICE_ESCALATE_TO": target}))
    assert rules("procuratorate").escalate_to == "procuratorate"
    with pytest.raises(c.ConfigError, match="ESCALATE_TO must be a configured agency, not 'tax_bureau'"):
        rules("tax_bureau")
    with pytest.raises(c.ConfigError, match="does not let joint_office send it a supervision_notice"):
        rules("finance")


def test_the_office_is_the_one_observer_the_configuration_names():
    from services import config as c
    from services.office.service import build_office_service

    config = c.load_config(environ={})
    assert c.office_code(config) == "joint_office"
    assert build_office_service(config).name == "joint_office"
    with pytest.raises(c.ConfigError, match="OBSERVERS must name exactly one configured agency.*none"):
        c.office_code({**config, c.OBSERVERS: []})
    with pytest.raises(c.ConfigError, match="it names joint_office, court"):
        c.office_code({**config, c.OBSERVERS: ["joint_office", "court"]})


def test_the_judges_come_from_the_configured_route_table(tmp_path):
    """Whether a prosecution opens a trial part (counted for its recipient) depends on who may
    send a judgment: the configured ROUTES_FILE says so, not the shipped table."""
    from importlib import resources

    import yaml

    from services import config as c
    from services.bootstrap import office_rules

    shipped = c.load_config(environ={})
    assert office_rules(shipped).judges == frozenset({"court"})
    routes = yaml.safe_load(resources.files("schemas").joinpath("routes.yaml").read_text(encoding="utf-8"))
    routes["routes"]["judgment"] = [pair for pair in routes["routes"]["judgment"] if pair[0] != "court"]
    custom = tmp_path / "routes.yaml"
    custom.write_text(yaml.safe_dump(routes), encoding="utf-8")
    assert office_rules({**shipped, c.ROUTES_FILE: str(custom)}).judges == frozenset()
