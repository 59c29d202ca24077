"""Every figure is a function of the message log and a moment (docs/office.md §7, Snapshot).

A scripted history of signed envelopes is observed by the office (``handlers.observe``, a real
SQLite database, real keys, the office's clock moved by hand so that each message is observed
when it arrives). At several moments T of that history:

- ``cluebus overdue --as-of T``, ``cluebus stats --as-of T`` and the dashboard at T agree (the
  same open overdue steps, the same closed-late count, the same on-time rate);
- the report at T computed while the history was at T is the same as the one computed at the
  end (a report for a past moment does not change when it is run later);
- before any transfer nothing is shown, although the first transfer's body dates its approval
  steps earlier;
- the receipt and filing-decision steps and the police's completion are recounted here from the
  raw observed messages, independently of the office's code, and compared.

The history (October 2026, Shanghai = UTC+8; the medical security bureau refers to the police):

* A: team report 10-12 01:00Z, approval 05:00Z, transfer 10-13 02:00Z (copy to the
  procuratorate), receipt an hour later; decided ``not_filed`` on 10-17 04:00Z, after its limit
  (end of Friday 10-16 local): closed late.
* B: transfer 10-14 02:00Z observed only at 08:00Z (a queue held it); never receipted, never
  decided: open and overdue. The office urges the police on 10-16 01:00Z.
* C: transfer 10-15 02:00Z, receipted; closed by the bureau on 10-21 02:00Z without a decision:
  the filing step is ended after its limit, and the police's part is ended, not completed. Its
  clue number is hostile markup, which the dashboard must show escaped.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from adapters.crypto.keys import initialise_key_directory
from adapters.crypto.timestamps import format_timestamp
from adapters.storage.office_tables import ObservedMessageRow, StepRow
from services import bootstrap, settings
from services.cli.main import main
from services.config import agency_codes, agency_names, load_config
from services.office import dashboard, handlers
from tests.fixtures.bodies import sample_body
from tests.fixtures.keys import FakeClock

UTC = timezone.utc
MS, PS, PROC, OFFICE = "medical_security", "public_security", "procuratorate", "joint_office"
A, B, C = ("3a1f0e9c-1b2d-4c3e-8f40-5a6b7c8d9e01", "4b2e1f0d-2c3e-4d4f-9a51-6b7c8d9e0f12",
           "5c3f2a1e-3d4f-4e5a-8b62-7c8d9e0f1a23")
HOSTILE = '<script>alert("x")</script>'
PERIOD_FROM = datetime(2026, 10, 1, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


MOMENTS = {
    "before any transfer": utc(2026, 10, 12, 12),
    "A sent, B not yet observed": utc(2026, 10, 14, 5),
    "B's receipt overdue": utc(2026, 10, 16, 0),
    "after the urge": utc(2026, 10, 16, 2),
    "A's decision overdue": utc(2026, 10, 17, 0),
    "A decided late": utc(2026, 10, 18, 0),
    "C closed": utc(2026, 10, 22, 0),
}


@pytest.fixture(autouse=True)
def _no_cluebus_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CLUEBUS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config(tmp_path, monkeypatch):
    keys, data = tmp_path / "keys", tmp_path / "data"
    initialise_key_directory(keys, agency_codes(load_config(environ={})), validity=timedelta(days=3650),
                             now=datetime(2026, 1, 1, tzinfo=UTC))
    monkeypatch.setenv("CLUEBUS_DATA_DIR", str(data))
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", str(keys))
    return load_config()


class History:
    """The office observing what the agencies sign, each message when it arrives."""

    def __init__(self, config):
        self.clock = FakeClock(utc(2026, 10, 1))
        self.store = bootstrap.open_store(config, OFFICE)
        self.office = bootstrap.office_context(config, clock=self.clock, store=self.store)
        self.agents = {agency: settings.protocol_for(config, agency, clock=self.clock)[0]
                       for agency in (MS, PS, PROC)}

    def send(self, agency, kind, recipient, body, referral, at, *, reply_to=None, observed=None):
        signed = self.agents[agency].compose(kind, recipient, body, referral_id=referral, in_reply_to=reply_to,
                                             sent_at=at)
        self.clock.now = observed or at + timedelta(seconds=5)
        assert handlers.observe(self.office, signed.raw)["status"] == "observed"
        return signed

    def refer(self, referral, sent, *, clue_no="YB-2026-0300", observed=None, receipted=True):
        body = sample_body("clue_transfer")
        body.update(clue_no=clue_no, team_reported_at=format_timestamp(sent - timedelta(hours=25)),
                    approved_at=format_timestamp(sent - timedelta(hours=21)))
        clue = self.send(MS, "clue_transfer", PS, body, referral, sent, observed=observed)
        copy = sample_body("copy_notice")
        copy.update(transfer_message_id=clue.message_id, transfer_message_sha256=clue.sha256, clue_no=clue_no)
        copied = self.send(MS, "copy_notice", PROC, copy, referral, sent + timedelta(minutes=1),
                           observed=(observed or sent) + timedelta(minutes=1))
        # What the queue held arrives after it (the office's clock only moves on).
        later = observed + timedelta(minutes=2) if observed else None
        self.receipt(PROC, copied, sent + timedelta(minutes=30), observed=later)
        if receipted:
            self.receipt(PS, clue, sent + timedelta(hours=1), observed=later)
        return clue

    def receipt(self, agency, message, at, observed=None):
        body = {"status": "accepted", "message_sha256": message.sha256, "received_at": format_timestamp(at),
                "reason_codes": []}
        return self.send(agency, "receipt", message.envelope["sender"], body, message.envelope["referral_id"], at,
                         reply_to=message.message_id, observed=observed)

    def urge_at(self, at):
        self.clock.now = at
        return handlers.act_on_due_steps(self.office, at)

    def close(self):
        self.store.dispose()


def play(history: History, until: datetime | None = None, on_moment=None):
    """The scripted history, in order; ``on_moment(name, T)`` is called as each moment of
    MOMENTS is reached (after what happened before it)."""
    events = []
    events.append((utc(2026, 10, 13, 2), lambda: history.refer(A, utc(2026, 10, 13, 2))))
    events.append((utc(2026, 10, 14, 8), lambda: history.refer(B, utc(2026, 10, 14, 2), observed=utc(2026, 10, 14, 8),
                                                               receipted=False)))
    events.append((utc(2026, 10, 15, 2), lambda: history.refer(C, utc(2026, 10, 15, 2), clue_no=HOSTILE)))
    events.append((utc(2026, 10, 16, 1), lambda: history.urge_at(utc(2026, 10, 16, 1))))
    events.append((utc(2026, 10, 17, 4), lambda: history.send(
        PS, "filing_decision", MS, {"decision": "not_filed", "decided_at": "2026-10-17T04:00:00Z",
                                    "reasons": ["证据不足"]}, A, utc(2026, 10, 17, 4))))
    closure = sample_body("closure")
    closure.update(closed_at="2026-10-21T02:00:00Z", outcome="other", reason="线索已合并至其他案件")
    closure.pop("amount_recovered_fen")
    events.append((utc(2026, 10, 21, 2), lambda: history.send(MS, "closure", PS, closure, C, utc(2026, 10, 21, 2))))
    moments = sorted(MOMENTS.items(), key=lambda item: item[1])
    for at, act in sorted(events, key=lambda item: item[0]):
        while moments and moments[0][1] < at:
            name, moment = moments.pop(0)
            on_moment and on_moment(name, moment)
        act()
    for name, moment in moments:
        on_moment and on_moment(name, moment)


# -- the three views at a moment -----------------------------------------------------------------

def run(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


VOID = {"meta", "input", "br", "link", "img", "hr"}


class Page(HTMLParser):
    """The dashboard's elements with a data-testid, in document order, with their text."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.found, self.stack = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        if element["attrs"].get("data-testid"):
            self.found.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        if tag not in VOID and self.stack and self.stack[-1]["tag"] == tag:
            self.stack.pop()

    def handle_data(self, data):
        for element in self.stack:
            element["text"] += data

    def testid(self, name):
        return [e for e in self.found if e["attrs"]["data-testid"] == name]


def views_at(capsys, history: History, moment: datetime, config) -> dict:
    """What ``cluebus overdue``, ``cluebus stats`` and the dashboard say at ``moment``."""
    at = format_timestamp(moment)
    overdue = run(capsys, "overdue", "--as-of", at, "--json")
    stats = run(capsys, "stats", "--as-of", at, "--from", format_timestamp(PERIOD_FROM), "--json")
    data = handlers.dashboard(history.office, PERIOD_FROM, moment, moment)
    html = dashboard.render_dashboard(office_name="办公室", as_of=at, agency_names=agency_names(config), **data)
    return {"overdue": overdue, "stats": stats, "dashboard": data, "html": html}


def _open_overdue_ids(overdue: dict) -> set:
    return {s["step_id"] for s in overdue["steps"] if s["level"] not in ("warning", "calendar_missing")}


def check_agreement(views: dict) -> None:
    overdue, stats, html = views["overdue"], views["stats"], views["html"]
    page = Page(html)
    ids = _open_overdue_ids(overdue)
    assert stats["as_of"] == overdue["as_of"]
    # The same open overdue steps everywhere (the period covers every step's start).
    assert stats["totals"]["open_overdue_steps"] == len(ids)
    assert _open_overdue_ids({"steps": views["dashboard"]["overdue"]}) == ids
    shown = {row["attrs"]["data-step-id"] for row in page.testid("overdue-row")
             if row["attrs"]["data-level"] not in ("warning", "calendar_missing")}
    assert shown == ids
    assert int(_cell(page, "stats-totals", "open-overdue")) == len(ids)
    # Closed late is not open overdue: its own count, the same in the table and the note.
    assert int(_cell(page, "stats-totals", "closed-late")) == stats["totals"]["steps_late"]
    assert int(page.testid("closed-late-count")[0]["text"]) == stats["totals"]["steps_late"]
    rate = stats["totals"]["on_time_rate"]
    assert _cell(page, "stats-totals", "on-time-rate") == ("—" if rate is None else f"{rate * 100:.1f}%")
    if not ids:
        assert page.testid("overdue-empty")
    # The trend's open-overdue steps are among the open overdue steps; closed late are not.
    trend_open = sum(day["steps_open_overdue"] for day in stats["trend"])
    trend_late = sum(day["steps_closed_late"] for day in stats["trend"])
    assert trend_open <= len(ids)
    assert int(page.testid("trend-open-overdue")[0]["text"]) == trend_open
    assert int(page.testid("trend-closed-late")[0]["text"]) == trend_late


def _cell(page: Page, row_testid: str, cell_testid: str) -> str:
    """The text of the cell ``cell_testid`` in the row ``row_testid`` (the last match after it)."""
    found = page.found
    start = found.index(page.testid(row_testid)[0])
    for element in found[start + 1:]:
        if element["attrs"]["data-testid"] == cell_testid:
            return element["text"].strip()
    raise AssertionError(f"no {cell_testid} in {row_testid}")


# -- an independent recount from the raw observed messages ---------------------------------------

def recount(history: History, moment: datetime) -> dict:
    """The receipt and filing-decision steps and the police's completion at ``moment``,
    counted here from the observed messages alone (the limits, ``due_at``, are the tracker's)."""
    with history.store.transaction() as repo:
        rows = list(repo.session.scalars(select(ObservedMessageRow).where(ObservedMessageRow.problem.is_(None))))
        due = {(s.rule, s.start_message_id): s.due_at for s in repo.session.scalars(select(StepRow))}
    known = sorted((m for m in rows if max(m.sent_at, m.observed_at) <= moment), key=lambda m: m.sent_at)
    statuses = {"receipt": [], "filing_decision": []}
    completion = {"completed": 0, "ended": 0, "pending": 0}
    for start in known:
        if start.kind in ("clue_transfer", "copy_notice"):
            answer = next((m for m in known if m.kind == "receipt" and m.in_reply_to == start.message_id
                           and m.sender == start.recipient), None)
            limit = due[("receipt", start.message_id)]
            statuses["receipt"].append(_status(answer, None, limit, moment))
        if start.kind == "clue_transfer" and start.recipient == PS:
            later = [m for m in known if m.referral_id == start.referral_id and m.sent_at >= start.sent_at]
            answer = next((m for m in later if m.kind == "filing_decision" and m.sender == PS
                           and m.recipient == start.sender), None)
            ending = next((m for m in later if m.kind in ("closure", "withdrawal")), None)
            statuses["filing_decision"].append(_status(answer, ending, due[("filing_decision", start.message_id)],
                                                       moment))
            final = answer is not None and (answer.facts or {}).get("decision") in ("not_filed", "not_competent")
            completion["completed" if final else "ended" if ending and ending.sender != PS else "pending"] += 1
    return {"statuses": statuses, "completion": completion}


def _status(answer, ending, limit, moment) -> str:
    if answer is not None and (ending is None or answer.sent_at <= ending.sent_at):
        return "on_time" if answer.sent_at <= limit else "late"
    if ending is not None:
        return "ended_overdue" if ending.sent_at > limit else "ended"
    return "open_overdue" if limit < moment else "open"


def check_recount(views: dict, counted: dict) -> None:
    stats = views["stats"]
    rows = {(r["rule"], r["agency"]): r for r in stats["on_time"]}
    for rule, states in counted["statuses"].items():
        row = rows.get((rule, "total"))
        if not states:
            assert row is None
            continue
        got = {"on_time": row["on_time"], "late": row["late"], "open_overdue": row["open_overdue"],
               "ended_overdue": row["ended_overdue"]}
        assert got == {key: states.count(key) for key in got}, rule
        assert row["steps"] == len(states)
        due = sum(states.count(key) for key in ("on_time", "late", "open_overdue", "ended_overdue"))
        assert row["steps_due"] == due
        assert row["on_time_rate"] == (states.count("on_time") / due if due else None)
    police = next(r for r in stats["agencies"] if r["agency"] == PS)
    assert (police["referrals_completed"], police["referrals_ended"], police["referrals_pending"]) == (
        counted["completion"]["completed"], counted["completion"]["ended"], counted["completion"]["pending"])


# -- the tests --------------------------------------------------------------------------------------

def test_stats_overdue_and_dashboard_agree_at_every_moment_and_never_change(config, capsys):
    history = History(config)
    seen: dict[str, dict] = {}

    def at_moment(name, moment):
        views = views_at(capsys, history, moment, config)
        check_agreement(views)
        check_recount(views, recount(history, moment))
        seen[name] = views

    try:
        play(history, on_moment=at_moment)
        assert set(seen) == set(MOMENTS)
        # Run again at the end of the history: every past report is the same.
        for name, moment in MOMENTS.items():
            again = views_at(capsys, history, moment, config)
            assert again["stats"] == seen[name]["stats"], name
            assert again["overdue"] == seen[name]["overdue"], name
            assert again["html"] == seen[name]["html"], name
    finally:
        history.close()

    # What the moments show, as the story has it.
    before = seen["before any transfer"]
    assert before["overdue"]["steps"] == []
    assert before["stats"]["totals"]["transfers_sent"] == 0
    assert all(before["stats"]["totals"][f"steps_{s}"] == 0 for s in ("on_time", "late", "ended", "open"))
    assert before["dashboard"]["referrals"] == [] and before["stats"]["on_time"] == []
    assert Page(before["html"]).testid("overdue-empty") and not Page(before["html"]).testid("referral-row")

    early = seen["A sent, B not yet observed"]
    assert [r["referral_id"] for r in early["dashboard"]["referrals"]] == [A]      # B was in a queue
    assert early["stats"]["totals"]["transfers_sent"] == 1

    receipt_b = {s["step_id"]: s for s in seen["B's receipt overdue"]["overdue"]["steps"]}
    [b_receipt] = [s for s in receipt_b.values() if s["rule"] == "receipt" and s["referral_id"] == B]
    assert b_receipt["level"] == "overdue"                       # the urge came later
    urged = {s["step_id"]: s for s in seen["after the urge"]["overdue"]["steps"]}
    assert urged[b_receipt["step_id"]]["level"] == "urged"

    decided = seen["A decided late"]
    a_filing = next(s for s in seen["A's decision overdue"]["overdue"]["steps"]
                    if s["rule"] == "filing_decision" and s["referral_id"] == A)
    assert a_filing["level"] in ("overdue", "urged")
    assert a_filing["step_id"] not in _open_overdue_ids(decided["overdue"])       # closed now ...
    assert decided["stats"]["totals"]["steps_late"] >= 1                           # ... late
    filing = next(r for r in decided["stats"]["on_time"] if (r["rule"], r["agency"]) == ("filing_decision", PS))
    assert (filing["on_time"], filing["late"]) == (0, 1)
    assert filing["median_seconds_late"] == filing["max_seconds_late"] == 12 * 3600

    closed = seen["C closed"]
    filing = next(r for r in closed["stats"]["on_time"] if (r["rule"], r["agency"]) == ("filing_decision", PS))
    assert (filing["late"], filing["ended_overdue"], filing["open_overdue"]) == (1, 1, 1)   # A, C, B
    assert filing["on_time_rate"] == 0.0
    police = next(r for r in closed["stats"]["agencies"] if r["agency"] == PS)
    assert (police["referrals_received"], police["referrals_completed"], police["referrals_ended"],
            police["referrals_pending"]) == (3, 1, 1, 1)


def test_a_hostile_body_field_is_escaped_on_the_dashboard(config, capsys):
    history = History(config)
    try:
        play(history)
        moment = MOMENTS["C closed"]
        views = views_at(capsys, history, moment, config)
        [item] = [r for r in views["dashboard"]["referrals"] if r["referral_id"] == C]
        assert item["reference"] == HOSTILE                              # the fact, as signed
        timeline = handlers.timeline(history.office, C, moment)
        page = dashboard.render_referral(as_of=format_timestamp(moment), timeline=timeline,
                                         agency_names=agency_names(config))
    finally:
        history.close()
    for html in (views["html"], page):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
        assert html.count("<script>") == (1 if html is views["html"] else 0)    # only the page's own


def test_a_step_ended_by_a_closure_is_on_time_only_if_the_act_came_in_time(tmp_path):
    """The closure is observed before an earlier answer (queues interleave): the tracker records
    the step as ended by the closure; at a moment the answer is known, the snapshot counts the
    step as answered on time, and before that as ended (never as on time by the closure)."""
    from adapters.storage.office_tables import OfficeBase
    from adapters.storage.store import Store
    from services.office.calendar import Calendar
    from services.office.model import ObservedMessage
    from services.office.rules import load_rules
    from services.office.snapshot import ENDED, ON_TIME, snapshot
    from services.office.stats import compute_stats
    from services.office.tracking import Tracker, to_step, to_observed

    store = Store(f"sqlite:///{tmp_path / 'office.sqlite3'}")
    store.create_schema()
    OfficeBase.metadata.create_all(store.engine)
    rules = load_rules(load_config(environ={})["OFFICE"]["DEADLINES"])
    tracker = Tracker(rules, Calendar.from_yaml(None))

    def seen(message_id, kind, sender, recipient, sent, observed, facts=None, reply_to=None):
        observed_message = ObservedMessage(message_id=message_id, kind=kind, sender=sender, recipient=recipient,
                                           referral_id=A, in_reply_to=reply_to, sent_at=sent, observed_at=observed,
                                           sealed=False, facts=facts or {})
        with store.transaction() as repo:
            tracker.observe(repo.session, observed_message, sha256="0" * 64)

    sent = utc(2026, 10, 13, 2)                      # filing decision due 2026-10-16T16:00Z
    seen("m-clue", "clue_transfer", MS, PS, sent, sent, {"category": "medical_conduct"})
    seen("m-closure", "closure", MS, PS, utc(2026, 10, 15, 3), utc(2026, 10, 15, 3), {"outcome": "other"})
    seen("m-answer", "filing_decision", PS, MS, utc(2026, 10, 15, 2), utc(2026, 10, 17), {"decision": "not_filed"})
    with store.transaction() as repo:
        messages = [to_observed(r) for r in repo.session.scalars(select(ObservedMessageRow))]
        steps = [to_step(r) for r in repo.session.scalars(select(StepRow))]
    store.dispose()
    [filing] = [s for s in steps if s.rule == "filing_decision"]
    assert filing.closing_message_id == "m-closure"          # as recorded: ended by the closure

    def status(moment, with_rules=True):
        snap = snapshot(messages, steps, moment, rules=rules if with_rules else None)
        return next(s for s in snap.steps if s.rule == "filing_decision")

    assert status(utc(2026, 10, 16)).status == ENDED          # the answer was not known yet
    later = status(utc(2026, 10, 18))
    assert (later.status, later.closing_message_id, later.closed_at) == (ON_TIME, "m-answer", utc(2026, 10, 15, 2))
    assert status(utc(2026, 10, 18), with_rules=False).status == ENDED
    report = compute_stats(messages, steps, period_from=utc(2026, 10, 1), period_to=utc(2026, 11, 1),
                           as_of=utc(2026, 10, 16), agencies=[MS, PS], rules=rules)
    police = report.row(PS)
    # Ended before its limit: neither on time nor late, and not in the on-time rate.
    assert (police.decisions_on_time, police.decisions_ended, police.steps_ended_overdue) == (0, 1, 0)
    assert report.on_time_row("filing_decision", PS).steps_due == 0
    # The police's part: ended by the bureau's closure, not completed (as of 10-16).
    assert (police.referrals_completed, police.referrals_ended) == (0, 1)
