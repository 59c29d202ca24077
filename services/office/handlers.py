"""The office's use cases: observe a message, act on due steps, and read its views.

Plain Python: the service layer hands in an OfficeContext.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from adapters.crypto.timestamps import format_timestamp, parse_timestamp
from adapters.storage.office_tables import ObservedMessageRow, StepRow
from schemas.registry import RECEIPT, RECONCILIATION_KINDS, SUPERVISION_NOTICE, URGE
from services.handlers import receiving
from services.handlers.context import NodeContext
from services.handlers.sending import store_outbound
from services.protocol.exceptions import ComposeError, Rejection
from services.protocol.signing_input import message_sha256

from .model import OPEN as STEP_OPEN, ObservedMessage, facts_of
from .snapshot import LATE, OPEN, Marks, Snapshot, StepAt, snapshot
from .stats import StatsReport, compute_stats
from .tracking import ESCALATE, URGE as URGE_LEVEL, WARN, Tracker, to_observed, to_step

log = logging.getLogger(__name__)


@dataclass
class OfficeContext:
    node: NodeContext
    tracker: Tracker
    warn_before: timedelta
    escalate_after: timedelta
    agencies: list[str]
    escalate_to: str  # OFFICE.ESCALATE_TO: who supervises an overdue step (the procuratorate)
    judges: frozenset[str]  # the agencies the configured route table lets send a judgment

    @property
    def agency(self) -> str:
        return self.node.agency


# -- observing ---------------------------------------------------------------------------------
def observe(ctx: OfficeContext, message: bytes | receiving.Delivery) -> dict:
    """Record a message seen on the bus (a Delivery, checked against its transport facts too,
    or bytes handed over in process)."""
    node = ctx.node
    now = node.clock()
    delivery = message if isinstance(message, receiving.Delivery) else None
    raw = delivery.raw if delivery else message
    try:
        verified = node.verifier.verify(raw, check_freshness=False,
                                        transport=delivery.transport if delivery else None)
        envelope, facts, sealed, problem = verified.envelope, verified.facts, verified.sealed, None
    except Rejection as rejection:
        if rejection.envelope is None:
            with node.store.transaction() as repo:
                outcome = receiving.quarantine(repo, raw, rejection.rule, rejection.detail, now)
            return {"status": outcome.status, "rule": outcome.rule}
        envelope, facts, problem = rejection.envelope, {}, rejection.rule
        sealed = envelope.get("body_encoding") == "sealed"
    if not_tracked(envelope):
        return {"status": "ignored", "kind": envelope["kind"], "message_id": envelope["message_id"],
                "referral_id": envelope["referral_id"], "rule": problem}
    observed = ObservedMessage(
        message_id=envelope["message_id"], kind=envelope["kind"], sender=envelope["sender"],
        recipient=envelope["recipient"], referral_id=envelope["referral_id"],
        in_reply_to=envelope["in_reply_to"], sent_at=parse_timestamp(envelope["sent_at"]),
        observed_at=now, sealed=sealed, facts=facts)
    with node.store.transaction() as repo:
        fresh = ctx.tracker.observe(repo.session, observed, sha256=message_sha256(raw), problem=problem)
    result = {"status": "observed" if fresh else "duplicate", "kind": observed.kind,
              "message_id": observed.message_id, "referral_id": observed.referral_id, "rule": problem}
    if observed.recipient == ctx.agency and observed.kind == RECEIPT:
        # A receipt for one of our urges: record it like any node would.
        result["receipt"] = receiving.receive(node, message).status
    return result


def not_tracked(envelope) -> bool:
    """Reconciliation between two agencies (docs/protocol.md §20) is no step of any referral:
    neither its messages nor their receipts are recorded, tracked or counted. Each
    reconciliation message is its own referral (referral_id = message_id), so a receipt whose
    referral is the very message it answers is a receipt of one."""
    if envelope.get("kind") in RECONCILIATION_KINDS:
        return True
    return envelope.get("kind") == RECEIPT and envelope.get("in_reply_to") is not None \
        and envelope.get("referral_id") == envelope.get("in_reply_to")


# -- acting on due steps -----------------------------------------------------------------------
def act_on_due_steps(ctx: OfficeContext, now: datetime | None = None) -> list[dict]:
    """Warn, urge or escalate what is due. Each level happens once per step: the mark is set
    in the same transaction that queues the signed message, so reruns and restarts find it."""
    node = ctx.node
    now = now or node.clock()
    with node.store.transaction() as repo:
        # Steps marked "calendar missing" get their limit once the calendar covers their year.
        ctx.tracker.recount_calendar_missing(repo.session)
    with node.store.transaction() as repo:
        actions = ctx.tracker.due_actions(repo.session, now, warn_before=ctx.warn_before,
                                          escalate_after=ctx.escalate_after)
    done = []
    for action in actions:
        try:
            with node.store.transaction() as repo:
                row = repo.session.get(StepRow, action.step_id, with_for_update=True)
                result = _act(ctx, repo, row, action.level, now)
        except ComposeError as error:
            log.error("office: cannot %s step %s: %s", action.level, action.step_id, error)
            continue
        if result:
            done.append(result)
    return done


def _act(ctx: OfficeContext, repo, row: StepRow, level: str, now: datetime) -> dict | None:
    if row is None or row.state != STEP_OPEN:
        return None
    overdue = to_step(row).lateness_seconds(now)
    if level == WARN:
        if row.warned_at is not None:
            return None
        row.warned_at = now
        repo.append_audit(now, "step.warning", referral_id=row.referral_id,
                          detail={"step": row.step_id, "late_agency": row.late_agency,
                                  "due_at": format_timestamp(row.due_at)})
        return {"level": WARN, "step_id": row.step_id}
    if level == URGE_LEVEL:
        if row.urged_at is not None:
            return None
        body = {"step": row.rule, "level": "urge", "due_at": row.due_at, "overdue_seconds": overdue,
                "subject_message_id": row.start_message_id,
                "note": f"{row.rule} for referral {row.referral_id} was due {format_timestamp(row.due_at)}; "
                        f"please act and answer {row.counterpart}."}
        signed = ctx.node.composer.compose(URGE, row.late_agency, body, referral_id=row.referral_id, sent_at=now,
                                           seal=ctx.node.seal)
        row.urged_at, row.urge_message_id = now, signed.message_id
    elif level == ESCALATE:
        if row.escalated_at is not None:
            return None
        if row.late_agency == ctx.escalate_to:
            # Nobody above the supervisor on the bus: record it for the office's staff.
            row.escalated_at = now
            row.note = f"overdue at {ctx.escalate_to} itself (OFFICE.ESCALATE_TO): escalate outside the bus"
            repo.append_audit(now, "step.escalation_impossible", referral_id=row.referral_id,
                              detail={"step": row.step_id, "late_agency": row.late_agency})
            return {"level": level, "step_id": row.step_id, "message_id": None, "recipient": None}
        body = {"subject": "overdue_escalation", "late_agency": row.late_agency,
                "subject_message_id": row.start_message_id,
                "requirement": f"{row.late_agency} has not completed {row.rule} although urged "
                               f"at {format_timestamp(row.urged_at)}; please supervise.",
                "reasons": [f"{row.rule} due {format_timestamp(row.due_at)}, overdue by {overdue // 3600} h"]}
        signed = ctx.node.composer.compose(SUPERVISION_NOTICE, ctx.escalate_to, body,
                                           referral_id=row.referral_id, sent_at=now, seal=ctx.node.seal)
        row.escalated_at, row.escalation_message_id = now, signed.message_id
    else:  # pragma: no cover
        raise ValueError(level)
    store_outbound(repo, signed, now, needs_receipt=True)
    repo.append_audit(now, f"step.{level}", referral_id=row.referral_id, message_id=signed.message_id,
                      detail={"step": row.step_id, "late_agency": row.late_agency, "overdue_seconds": overdue})
    return {"level": level, "step_id": row.step_id, "message_id": signed.message_id,
            "recipient": signed.envelope["recipient"]}


# -- views: every one reads a snapshot at as_of (snapshot.py) ------------------------------------
def load(ctx: OfficeContext, referral_id: str | None = None):
    """Everything the views need, as recorded: the observed messages that broke no rule, the
    steps, and the office's marks on them (one read; ``referral_id`` narrows it to one referral)."""
    with ctx.node.store.transaction() as repo:
        session = repo.session
        query = select(ObservedMessageRow).where(ObservedMessageRow.problem.is_(None))
        steps_query = select(StepRow)
        if referral_id is not None:
            query = query.where(ObservedMessageRow.referral_id == referral_id)
            steps_query = steps_query.where(StepRow.referral_id == referral_id)
        messages = [to_observed(m) for m in session.scalars(query)]
        steps, marks = [], {}
        for row in session.scalars(steps_query):
            steps.append(to_step(row))
            marks[row.step_id] = Marks(row.warned_at, row.urged_at, row.escalated_at, row.note)
    return messages, steps, marks


def snapshot_at(ctx: OfficeContext, as_of: datetime, loaded=None, referral_id: str | None = None) -> Snapshot:
    """What the office knew at ``as_of``: the one as-of computation (snapshot.snapshot)."""
    messages, steps, marks = loaded if loaded is not None else load(ctx, referral_id)
    return snapshot(messages, steps, as_of, rules=ctx.tracker.rules, marks=marks)


def step_view(step: StepAt, warn_before: timedelta) -> dict:
    """A step at its snapshot's ``as_of``. ``overdue_seconds``: how late an open step is at
    as_of, or how late a closed one was closed (0 when not late); ``status``: on_time, late
    (closed late), ended (by a closure, withdrawal or refusal) or open; ``open_overdue``."""
    return {"step_id": step.step_id, "rule": step.rule, "referral_id": step.referral_id,
            "late_agency": step.late_agency, "counterpart": step.counterpart,
            "started_at": format_timestamp(step.started_at),
            "due_at": format_timestamp(step.due_at) if step.due_at else None,
            "calendar_missing": step.calendar_missing,
            "state": step.state, "status": step.status,
            "closed_at": format_timestamp(step.closed_at) if step.closed_at else None,
            "overdue_seconds": step.overdue_seconds, "open_overdue": step.open_overdue,
            "level": step.level(warn_before),
            "urged_at": format_timestamp(step.urged_at) if step.urged_at else None,
            "escalated_at": format_timestamp(step.escalated_at) if step.escalated_at else None}


def overdue_views(ctx: OfficeContext, snap: Snapshot, *, include_warnings: bool = True) -> list[dict]:
    """Steps open at the snapshot's as_of past their limit (and, with warnings, those within
    ``warn_before`` of it), most late first."""
    views = []
    for step in snap.steps:
        if step.status != OPEN:
            continue
        if step.open_overdue or (include_warnings and snap.as_of >= step.due_at - ctx.warn_before):
            views.append(step_view(step, ctx.warn_before))
    # Open steps with no limit (the calendar lacks their year): always shown, level calendar_missing.
    views += [step_view(step, ctx.warn_before) for step in snap.calendar_missing if step.status == OPEN]
    return sorted(views, key=lambda v: (-v["overdue_seconds"], v["due_at"] or "", v["step_id"]))


def overdue(ctx: OfficeContext, as_of: datetime, *, include_warnings: bool = True) -> list[dict]:
    """Open steps past their limit (and, with warnings, those nearing it) at ``as_of``."""
    return overdue_views(ctx, snapshot_at(ctx, as_of), include_warnings=include_warnings)


def referral_views(snap: Snapshot, query: str | None = None, limit: int = 500) -> list[dict]:
    """The referrals known at the snapshot's as_of, most recent activity first."""
    messages = snap.referral_messages()
    steps: dict[str, list[StepAt]] = defaultdict(list)
    for step in snap.steps:
        steps[step.referral_id].append(step)
    ids = sorted(messages, key=lambda rid: (max(m.sent_at for m in messages[rid]), rid), reverse=True)[:limit]
    result = []
    for referral_id in ids:
        seen, mine = messages[referral_id], steps[referral_id]
        first, last = seen[0], seen[-1]
        item = {"referral_id": referral_id, "opened_by": first.sender, "first_kind": first.kind,
                "opened_at": format_timestamp(first.sent_at), "last_kind": last.kind,
                "last_at": format_timestamp(last.sent_at), "messages": len(seen),
                "open_steps": sum(1 for s in mine if s.status == OPEN),
                "overdue_steps": sum(1 for s in mine if s.open_overdue),
                "closed_late_steps": sum(1 for s in mine if s.status == LATE),
                "reference": next((m.facts["clue_no"] for m in seen if (m.facts or {}).get("clue_no")), None)}
        if query and query.lower() not in " ".join(str(v) for v in item.values()).lower():
            continue
        result.append(item)
    return result


def referrals(ctx: OfficeContext, as_of: datetime, query: str | None = None, limit: int = 500) -> list[dict]:
    return referral_views(snapshot_at(ctx, as_of), query, limit)


def timeline(ctx: OfficeContext, referral_id: str, as_of: datetime) -> dict | None:
    """One referral at ``as_of``: the messages known then (those that broke a rule too, with
    the rule) and its steps as they stood."""
    snap = snapshot_at(ctx, as_of, referral_id=referral_id)
    with ctx.node.store.transaction() as repo:
        messages = [m for m in repo.session.scalars(
            select(ObservedMessageRow).where(ObservedMessageRow.referral_id == referral_id)
            .order_by(ObservedMessageRow.sent_at, ObservedMessageRow.observed_at))
            if max(m.sent_at, m.observed_at) <= as_of]
        if not messages:
            return None
        return {"referral_id": referral_id,
                "events": [{"sent_at": format_timestamp(m.sent_at), "kind": m.kind, "sender": m.sender,
                            "recipient": m.recipient, "message_id": m.message_id, "in_reply_to": m.in_reply_to,
                            "sealed": m.sealed, "signature_ok": True, "problem": m.problem,
                            "facts": m.facts or {}} for m in messages],
                "steps": [step_view(s, ctx.warn_before) for s in sorted(
                    snap.steps + snap.calendar_missing, key=lambda s: (s.started_at, s.step_id))]}


def all_messages_and_steps(ctx: OfficeContext):
    messages, steps, _ = load(ctx)
    return messages, steps


def statistics(ctx: OfficeContext, period_from: datetime, period_to: datetime, as_of: datetime) -> StatsReport:
    messages, steps = all_messages_and_steps(ctx)
    return report(ctx, messages, steps, period_from, period_to, as_of)


def report(ctx: OfficeContext, messages, steps, period_from: datetime, period_to: datetime,
           as_of: datetime) -> StatsReport:
    """The figures from messages and steps already loaded (see all_messages_and_steps)."""
    return compute_stats(messages, steps, period_from=period_from, period_to=period_to, as_of=as_of,
                         agencies=list(ctx.agencies), tz=ctx.tracker.calendar.tz, rules=ctx.tracker.rules,
                         fine_rules=ctx.tracker.fine_rules, judges=ctx.judges)


def dashboard(ctx: OfficeContext, period_from: datetime, period_to: datetime, as_of: datetime) -> dict:
    """Everything the dashboard shows at ``as_of``, from one read and one snapshot: the overdue
    list, the statistics of the period and the referrals (so they cannot disagree)."""
    messages, steps, marks = load(ctx)
    report_ = compute_stats(messages, steps, period_from=period_from, period_to=period_to, as_of=as_of,
                            agencies=list(ctx.agencies), tz=ctx.tracker.calendar.tz, rules=ctx.tracker.rules,
                            fine_rules=ctx.tracker.fine_rules, judges=ctx.judges)
    snap = snapshot_at(ctx, as_of, (messages, steps, marks))
    return {"overdue": overdue_views(ctx, snap), "stats": report_.to_json(), "referrals": referral_views(snap)}
