"""The referrals the demo plays, step by step, each step waiting for its receipts."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import eventlet

from services.display_time import TimeFormat
from services.handlers.queries import merge_traces

from . import story


class DemoFailure(Exception):
    pass


class Demo:
    def __init__(self, rpc, agencies: list[str], out: Callable[[str], None] = print, timeout: float = 30,
                 clock=None, when: TimeFormat = TimeFormat(), progress: Callable | None = None):
        """``when`` shows times (local by default); ``progress(label)`` makes the progress line of
        one wait (services/cli/progress.Progress; None: no progress shown)."""
        self.rpc = rpc
        self.when = when
        self.progress = progress
        self.agencies = agencies
        self.clock = clock
        self.out = out
        self.timeout = timeout
        self.referrals: list[tuple[str, str]] = []

    # -- plumbing -------------------------------------------------------------------------------
    def step(self, actor: str, action: str, *args, **kwargs) -> dict:
        result = getattr(self.rpc[actor], action)(*args, **kwargs)
        entries = self._wait_receipted(actor, [m["message_id"] for m in result["messages"]])
        for entry in entries:
            verdict = entry["status"] if not entry["reason_codes"] else \
                f"{entry['status']} ({', '.join(entry['reason_codes'])})"
            self.out(f"    {actor:>16} → {entry['recipient']:<16} {entry['kind']:<28} receipt: {verdict}")
            if entry["status"] != "accepted":
                raise DemoFailure(f"{entry['kind']} from {actor} to {entry['recipient']} was {verdict}")
        return result

    def _wait_receipted(self, agency: str, message_ids: list[str]) -> list[dict]:
        def receipted():
            entries = {e["message_id"]: e for e in self.rpc[agency].outbox()}
            wanted = [entries[m] for m in message_ids]
            return wanted if all(e["state"] == "receipted" for e in wanted) else None

        def late() -> str:
            entries = {e["message_id"]: e for e in self.rpc[agency].outbox()}
            return "no receipt within {:.0f} s for: {}".format(self.timeout, "; ".join(
                f"{e['kind']} to {e['recipient']} ({e['state']}, {e['last_error'] or 'no error'})"
                for e in (entries[m] for m in message_ids) if e["state"] != "receipted"))
        return self._wait_for(receipted, f"the receipts of {agency}'s message(s)", late)

    @staticmethod
    def _id(result: dict, kind: str) -> str:
        return next(m["message_id"] for m in result["messages"] if m["kind"] == kind)

    def _begin(self, number: int, title: str) -> None:
        self.out("")
        self.out(f"[{number}] {title}")

    # -- the referrals --------------------------------------------------------------------------
    def suspected_crime(self, now: datetime) -> str:
        self._begin(1, "Suspected crime YB-2026-0107: transfer, copy, filing, materials, prosecution, judgment")
        sent = self.step("medical_security", "refer_clue", story.crime_clue(now))
        referral = sent["referral_id"]
        case_no = "公(经)立字[2026]0417号"
        self.step("public_security", "decide_filing", self._id(sent, "clue_transfer"), story.filed(now, case_no))
        self.step("medical_security", "hand_over_materials", referral, story.materials(now, case_no))
        self.step("public_security", "transfer_case", referral, story.for_prosecution(case_no))
        self.step("procuratorate", "decide_prosecution", referral, story.prosecute(now))
        self.step("court", "return_judgment", referral, story.judgment(now))
        self.step("medical_security", "close_referral", referral, "public_security", story.closure(now))
        self.referrals.append(("suspected crime, prosecuted and judged", referral))
        return referral

    def refused_case(self, now: datetime) -> str:
        self._begin(2, "Refused case YB-2026-0112: not filed, reconsideration upheld, supervision, then filed")
        sent = self.step("medical_security", "refer_clue", story.pharmacy_clue(now))
        referral = sent["referral_id"]
        decision = self.step("public_security", "decide_filing", self._id(sent, "clue_transfer"),
                             story.not_filed(now))
        decision_id = self._id(decision, "filing_decision")
        request = self.step("medical_security", "request_reconsideration", decision_id,
                            story.reconsideration_request(now, decision_id))
        self.step("public_security", "decide_reconsideration", self._id(request, "reconsideration_request"),
                  story.reconsideration_upheld(now))
        self.step("medical_security", "request_supervision", referral, story.supervision_request(now, decision_id))
        self.step("procuratorate", "notify_supervision", referral, story.supervision_notice(now, decision_id))
        self.step("public_security", "send", "filing_decision", "medical_security",
                  story.filed(now, "公(经)立字[2026]0452号"), referral_id=referral)
        self.referrals.append(("refused, reconsidered, supervised, filed", referral))
        return referral

    def health_clue(self, now: datetime) -> str:
        self._begin(3, "Health clue YB-2026-0120: a doctor's excessive examinations, handled by the commission")
        sent = self.step("medical_security", "refer_clue", story.health_clue(now), recipient="health")
        self.step("health", "return_handling_result", self._id(sent, "clue_transfer"), story.handling_result(now))
        self.referrals.append(("health clue and its handling result", sent["referral_id"]))
        return sent["referral_id"]

    def invoice_check(self, now: datetime) -> str:
        self._begin(4, "Invoice verification with the finance bureau")
        sent = self.step("medical_security", "request_invoice_verification", story.invoice_request())
        self.step("finance", "return_invoice_verification",
                  self._id(sent, "invoice_verification_request"), story.invoice_result(now))
        self.referrals.append(("e-invoice verification", sent["referral_id"]))
        return sent["referral_id"]

    def overdue_transfer(self, now: datetime) -> str:
        self._begin(5, "Overdue: clue YB-2026-0131 to the police, left unanswered; the office urges")
        body = story.crime_clue(now, "YB-2026-0131")
        body["title"] = "仁心诊所伪造处方骗取医保基金"
        sent = self.step("medical_security", "refer_clue", body)
        referral = sent["referral_id"]
        self._wait_observed(referral, "filing_decision")
        step = next(s for s in self.rpc.joint_office.timeline(referral)["steps"] if s["rule"] == "filing_decision")
        if step["due_at"] is None:
            # The count reaches into a year the working-day calendar lacks: the office does not
            # guess a limit, so there is nothing to be late for and nobody to urge.
            self.out(f"    the office's working-day calendar does not cover {step.get('calendar_missing')}: "
                     f"the step is marked calendar missing, with no limit and no urge "
                     f"(see `cluebus calendar check`)")
            self.referrals.append(("transfer whose limit the calendar cannot count", referral))
            return referral
        self.out(f"    the police must decide within 3 days (Decree 310 art. 8): by {self.when(step['due_at'])}, "
                 f"counted as the law counts days; nobody answers...")
        due = datetime.strptime(step["due_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        self.clock.advance(due - self.clock() + timedelta(hours=2))
        self.out(f"    [accelerated clock] every node's clock moves on to {self.when(self.clock())}")
        urge = self._wait_for(lambda: [m for m in self.rpc.public_security.inbox(kind="urge")
                                       if m["referral_id"] == referral], "the urge to reach the police")
        self.out(f"    joint_office → public_security  urge (催办) {urge[0]['message_id']}  "
                 f"received and receipted by the police node")
        for step in self.rpc.joint_office.overdue():
            self.out(f"    overdue: {step['late_agency']:<16} {step['rule']:<20} "
                     f"{step['overdue_seconds'] // 3600} h late, {step['level']}  (referral {step['referral_id'][:8]}…)")
        self.referrals.append(("overdue transfer, urged by the joint office", referral))
        return referral

    def _wait_observed(self, referral: str, rule: str) -> None:
        def opened():
            timeline = self.rpc.joint_office.timeline(referral) or {}
            return any(step["rule"] == rule for step in timeline.get("steps", []))
        self._wait_for(opened, f"the office to open the {rule} step")

    def _wait_for(self, probe, what: str, failure: Callable[[], str] | None = None):
        deadline = time.monotonic() + self.timeout
        progress = self.progress(f"waiting for {what}") if self.progress else None
        try:
            while True:
                found = probe()
                if found:
                    return found
                if time.monotonic() > deadline:
                    raise DemoFailure(failure() if failure else f"timed out waiting for {what}")
                if progress:
                    progress.update()
                eventlet.sleep(0.05)  # a demo polls its nodes; tests wait on entrypoint events instead
        finally:
            if progress:
                progress.finish()

    def play(self) -> None:
        now = datetime.now(timezone.utc)
        self.suspected_crime(now)
        self.refused_case(now)
        self.health_clue(now)
        self.invoice_check(now)
        if self.clock is not None:
            self.overdue_transfer(now)

    # -- traces ---------------------------------------------------------------------------------
    def print_traces(self) -> bool:
        """Print every referral's timeline from all nodes' databases; True when all verified."""
        all_ok = True
        for title, referral in self.referrals:
            traces = [self.rpc[agency].trace(referral) for agency in self.agencies]
            steps = merge_traces(traces)
            self.out("")
            self.out(f"Trace of {referral} ({title}), re-verified from each node's stored bytes:")
            for step in steps:
                ok = step["signature"]["ok"]
                all_ok &= ok
                mark = "signature ok" if ok else f"SIGNATURE {step['signature']['rule']}"
                arrow = f"{step['sender']} → {step['recipient']}"
                self.out(f"  {self.when(step['sent_at'])}  {arrow:<36} {step['kind']:<28} {mark}")
            for node_trace in traces:
                if node_trace["steps"] and not node_trace["audit_chain"]["ok"]:
                    all_ok = False
                    self.out(f"  AUDIT CHAIN BROKEN at {node_trace['node']}: {node_trace['audit_chain']['error']}")
            states = ", ".join(f"{t['node']}={t['state']}" for t in traces if t["state"])
            self.out(f"  states: {states}")
        chains = [self.rpc[agency].audit_chain() for agency in self.agencies]
        self.out("")
        self.out("Audit chains: " + ", ".join(
            f"{agency} {'ok' if chain['ok'] else 'BROKEN'} ({chain.get('entries', '?')} entries)"
            for agency, chain in zip(self.agencies, chains)))
        return all_ok and all(chain["ok"] for chain in chains)
