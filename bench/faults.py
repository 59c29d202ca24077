"""Faults: thousands of clue transfers in flight between two cluebus nodes while the broker,
then the recipient's node, then the sender's node are killed with SIGKILL and started again;
then every figure is counted from the two node databases.

For each database (``--database sqlite``, ``postgresql`` or ``both``, the default):

1. a private RabbitMQ node (``tests/support/rabbit_node.py``: its own node name, ports and
   data directory; the shared broker on 5672 is never touched) is started and the bus is
   provisioned on it (``services.provisioning.setup(config, keep_admin_access=True)``, through
   ``bench_delivery.Setup``), then ``sync_metadata()`` so that its quorum queues survive a kill;
2. ``cluebus run`` starts the sender (medical_security), and a client sends ``--messages``
   clue transfers through its control plane: ``refer_clues`` in chunks of ``--chunk``, every
   clue with its own request id; a call that fails or times out is made again with the same
   ids until it is answered (a repeat is answered from the stored result, nothing is sent
   twice). The two nodes keep pace with each other, so a backlog forms only while the
   recipient is away: the client sends as fast as it can until ``--in-flight`` clues are
   waiting, then ``cluebus run`` starts the recipient (public_security) and the client goes
   on at ``--rate`` clues a second, so that control calls are under way at every kill;
3. SIGKILL to the private broker's Erlang VM (by its PID; same name, ports and data when it
   starts again) as soon as the recipient stores its first clue, while a call is under way;
   then SIGKILL to the recipient's node process, and then to the sender's, each started again
   (``cluebus run``), each kill as soon as a clue has made the round trip again after the one
   before. Every wait is on a condition read from the databases (``--timeout`` bounds them);
4. once everything has settled (every outbox entry of the sender receipted or failed, both
   nodes' queues empty) the nodes are stopped and the figures counted from the databases:
   sent (request ids the sender stored), stored at the recipient, LOST (sent, never stored),
   APPLIED TWICE (a clue number with two referrals, a message accepted or answered twice, a
   request id with two messages, at either node), receipted, resends, failed, per kill the
   seconds until the killed part was back, until a clue made the whole round trip again and
   (a node) until its restarted process held the relay lease again, and whether each node's
   audit chain verifies;
5. everything made is removed: the nodes, the private broker and its data directory, the
   PostgreSQL databases, the temporary directories (``--logs DIR`` copies the logs first).

    scripts/faults [--database sqlite|postgresql|both] [--messages 3000] [--rounds 1] [--json]

Exit status 1 when a clue was lost or applied twice or an audit chain does not verify, 2 when
the run itself could not be carried out.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from adapters.storage.exceptions import AuditChainBroken  # noqa: E402
from adapters.storage.store import Store  # noqa: E402
from adapters.storage.tables import (AuditEntry, ControlRequest, InboxEntry, Lease, Message,  # noqa: E402
                                     OutboxEntry, QuarantineEntry, Referral)
from services import config as c  # noqa: E402
from services import settings  # noqa: E402
from services.cli.progress import Progress  # noqa: E402

from bench.bench_delivery import CLUEBUS, POSTGRES_ADMIN, RECEIVER, SENDER, Process, Setup, clue_body  # noqa: E402
from tests.support.rabbit_node import RabbitNode  # noqa: E402

CLUE_OFFSET = 20_000_000  # clue numbers YB-B20000000, ...
POLL = 0.2                # seconds between two looks at the databases
CLUE, RECEIPT = "clue_transfer", "receipt"
LOG_EVERY = 10.0          # seconds between two progress lines of a long wait in a log


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def how_far(dbs: "Databases", feeder: "Feeder") -> str:
    """A progress line's note: the client's and the databases' counts (``?`` for a database
    not made yet: the recipient's, before its node first starts)."""
    def count(name: str):
        try:
            return getattr(dbs, name)()
        except sqlalchemy.exc.SQLAlchemyError:
            return "?"
    return (f"{len(feeder.answered)}/{feeder.count} accepted, {count('stored')} stored, "
            f"{count('receipted')} receipted, {count('unreceipted')} in flight")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def wait_for(predicate, timeout: float, what: str, poll: float = POLL, *, label: str = "",
             how_far: Callable[[], str] | None = None, every: float = LOG_EVERY):
    """Poll ``predicate`` until it returns something true; raise after ``timeout`` seconds.
    With a ``label`` (the main waits; never a feeder thread's), a progress line on stderr
    (services/cli/progress.py) says what it waits for, for how long and, from ``how_far`` (run
    at most once a second: it counts in the databases), how far things are; a line every
    ``every`` seconds when stderr is not a terminal, nothing for a wait shorter than that."""
    deadline = time.monotonic() + timeout
    line = Progress(f"[{label}] waiting for {what}", interval=every, transient=True) if label else None
    noted = 0.0
    try:
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            if line is not None:
                if how_far is not None and time.monotonic() - noted >= 1.0:
                    noted = time.monotonic()
                    line.update(note=how_far())
                else:
                    line.update()
            eventlet.sleep(poll)
    except BaseException as error:
        if line is not None:
            line.finish("timed out" if isinstance(error, TimeoutError) else "failed")
        raise
    finally:
        if line is not None:
            line.finish()  # after success (once finished, a line says nothing more)


# -- the two nodes, each a `cluebus run` process -------------------------------------------------
class Node:
    """One agency's node process; started again under a new log file after each kill."""

    def __init__(self, setup: Setup, agency: str, logs: Path):
        self.setup, self.agency, self.logs = setup, agency, logs
        self.generation = 0
        self.process: Process | None = None
        self.crashes: list[str] = []  # exits nobody asked for

    def start(self) -> None:
        self.generation += 1
        self.process = Process(f"{self.agency}.{self.generation}", [CLUEBUS, "run", "--agency", self.agency],
                               self.setup.env(), self.logs, f"{self.agency} node running", timeout=120)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.popen.poll() is None

    def check(self) -> None:
        """Start the node again (and remember it) if it exited by itself."""
        if self.process is not None and not self.alive:
            self.crashes.append(f"{self.process.name} exited with {self.process.popen.returncode} "
                                f"(log {self.process.log.name})")
            log(f"{self.agency} exited by itself: {self.crashes[-1]}")
            self.process.handle.close()
            self.start()

    def kill(self) -> None:
        """SIGKILL by PID, then reap it."""
        process = self.process
        os.kill(process.pid, signal.SIGKILL)
        process.popen.wait(timeout=30)
        process.handle.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# -- the client: refer_clues in chunks, retried with the same request ids ------------------------
class Feeder:
    def __init__(self, setup: Setup, run: str, count: int, chunk: int, workers: int, window: int, rate: float,
                 rpc_timeout: float, unreceipted, deadline: float):
        self.control = {"AMQP_URI": settings.control_uri(setup.config, SENDER)}
        self.now = utcnow()
        self.run = run
        self.count = count
        self.chunks = [list(range(start, min(start + chunk, count))) for start in range(0, count, chunk)]
        self.rate = 0.0                  # as fast as it can until `pace` (the backlog)
        self.paced_rate = rate
        self.paced_from = (time.monotonic(), 0)  # (when, first clue index) of the paced part
        self.workers = workers
        self.window = window
        self.rpc_timeout = rpc_timeout
        self.unreceipted = unreceipted
        self.deadline = deadline
        self.answered: dict[str, dict] = {}
        self.refused: list[dict] = []
        self.calls = 0
        self.in_progress = 0  # refer_clues calls under way now
        self.failed_calls = 0
        self.repeated = 0
        self.errors: dict[str, int] = {}
        self.error: str | None = None  # what stopped a worker for good (the deadline)
        self.threads: list = []

    def request_id(self, index: int) -> str:
        return f"faults-{self.run}-{index:06d}"

    def start(self) -> None:
        self.threads = [eventlet.spawn(self._worker) for _ in range(self.workers)]

    def pace(self) -> None:
        """From now on at most `rate` clues a second."""
        self.paced_from = (time.monotonic(), self.chunks[0][0] if self.chunks else self.count)
        self.rate = self.paced_rate

    @property
    def finished(self) -> bool:
        return all(thread.dead for thread in self.threads)

    def _worker(self) -> None:
        try:
            self._feed()
        except TimeoutError as error:
            self.error = str(error)
            log(f"client: {error}")

    def _feed(self) -> None:
        rpc = None
        while self.chunks:
            indexes = self.chunks.pop(0)
            if self.rate:  # paced: clue i is due (i - first) / rate seconds after pacing began
                since, first = self.paced_from
                eventlet.sleep(max(since + (indexes[0] - first) / self.rate - time.monotonic(), 0))
            clues = [{"body": clue_body(self.now, CLUE_OFFSET + i), "request_id": self.request_id(i)} for i in indexes]
            # Flow control: no more than `window` clues accepted and not yet receipted.
            wait_for(lambda: self.unreceipted() + len(clues) <= self.window or time.monotonic() > self.deadline,
                     max(self.deadline - time.monotonic(), 1) + 60, "the window to open")
            while True:
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"chunk from {clues[0]['request_id']} not answered before the deadline")
                try:
                    if rpc is None:
                        rpc = ClusterRpcProxy(self.control, timeout=self.rpc_timeout)
                        service = rpc.start()[SENDER]
                    self.calls += 1
                    self.in_progress += 1
                    try:
                        answers = service.refer_clues(clues)
                    finally:
                        self.in_progress -= 1
                    break
                except Exception as error:  # noqa: BLE001 - any failure: call again, same ids
                    self.failed_calls += 1
                    name = type(error).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1
                    if rpc is not None:
                        try:
                            rpc.stop()
                        except Exception:  # noqa: BLE001 - the connection is gone anyway
                            pass
                        rpc = None
                    eventlet.sleep(1)  # back-off before calling again (the ids make it safe)
            for clue, answer in zip(clues, answers):
                if answer.get("refused"):
                    self.refused.append({"request_id": clue["request_id"], **answer})
                    continue
                self.repeated += bool(answer.get("repeated"))
                self.answered[clue["request_id"]] = answer
        if rpc is not None:
            try:
                rpc.stop()
            except Exception:  # noqa: BLE001
                pass


# -- reading the databases -----------------------------------------------------------------------
class Databases:
    def __init__(self, setup: Setup):
        self.sender = setup.engine(SENDER)
        self.recipient = setup.engine(RECEIVER)

    @staticmethod
    def _scalar(engine, query):
        with engine.connect() as connection:
            return connection.execute(query).scalar()

    @staticmethod
    def _all(engine, query):
        with engine.connect() as connection:
            return connection.execute(query).all()

    def outbox_states(self) -> dict[str, int]:
        rows = self._all(self.sender, select(OutboxEntry.state, func.count()).where(OutboxEntry.needs_receipt)
                         .group_by(OutboxEntry.state))
        return {state: count for state, count in rows}

    def unreceipted(self) -> int:
        return self._scalar(self.sender, select(func.count()).select_from(OutboxEntry)
                            .where(OutboxEntry.needs_receipt, OutboxEntry.state.in_(("pending", "published"))))

    def receipted(self) -> int:
        return self._scalar(self.sender, select(func.count()).select_from(OutboxEntry)
                            .where(OutboxEntry.needs_receipt, OutboxEntry.state == "receipted"))

    def stored(self) -> int:
        return self._scalar(self.recipient, select(func.count()).select_from(Message)
                            .where(Message.direction == "in", Message.kind == CLUE))

    def round_trip_since(self, moment: datetime) -> bool:
        """Whether a clue has made the whole round trip after ``moment``: published by the
        sender after it, or stored by the recipient after it, and its receipt recorded."""
        if self._scalar(self.sender, select(func.count()).select_from(OutboxEntry)
                        .where(OutboxEntry.needs_receipt, OutboxEntry.state == "receipted",
                               OutboxEntry.last_published_at > moment)):
            return True
        ids = [row[0] for row in self._all(self.recipient, select(Message.message_id)
                                           .where(Message.direction == "in", Message.kind == CLUE,
                                                  Message.stored_at > moment)
                                           .order_by(Message.stored_at).limit(500))]
        if not ids:
            return False
        return self._scalar(self.sender, select(func.count()).select_from(OutboxEntry)
                            .where(OutboxEntry.message_id.in_(ids), OutboxEntry.state == "receipted")) > 0

    def lease_holder(self, engine) -> str | None:
        """Which process holds that node's relay lease (``leases``, ``outbox.relay``)."""
        return self._scalar(engine, select(Lease.holder).where(Lease.name == "outbox.relay"))

    def dispose(self) -> None:
        self.sender.dispose()
        self.recipient.dispose()


def duplicates(engine, column, *where) -> dict[str, int]:
    """Values of ``column`` appearing on more than one row (among rows matching ``where``)."""
    query = select(column, func.count()).where(*where).group_by(column).having(func.count() > 1)
    with engine.connect() as connection:
        return {str(value): count for value, count in connection.execute(query).all()}


def scalar(engine, query):
    with engine.connect() as connection:
        return connection.execute(query).scalar()


def queue_depths(rabbit: RabbitNode, vhost: str) -> dict[str, int]:
    """Messages (ready + unacked) in the two nodes' queues, from the private broker's API."""
    depths = {}
    for agency in (SENDER, RECEIVER):
        name = f"cluebus.{agency}"
        info = rabbit.api("GET", f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(name, safe='')}")
        depths[agency] = int(info.get("messages") or 0)
    return depths


def verify_audit(setup: Setup, agency: str) -> dict:
    store = Store(c.database_url(setup.config, agency))
    try:
        with store.transaction() as repo:
            return {"ok": True, "entries": repo.verify_audit_chain()}
    except AuditChainBroken as error:
        return {"ok": False, "error": str(error)}
    finally:
        store.dispose()


def count_everything(setup: Setup, dbs: Databases, feeder: Feeder) -> dict:
    """The figures, from the two node databases."""
    prefix = f"faults-{feeder.run}-"
    s, r = dbs.sender, dbs.recipient
    with s.connect() as connection:
        requests = connection.execute(select(ControlRequest.request_id, ControlRequest.result)
                                      .where(ControlRequest.request_id.like(prefix + "%"))).all()
        sender_clues = {row.message_id: row for row in connection.execute(
            select(Message.message_id, Message.referral_id, Message.status)
            .where(Message.direction == "out", Message.kind == CLUE)).all()}
        outbox = connection.execute(select(OutboxEntry.message_id, OutboxEntry.state, OutboxEntry.attempts,
                                           OutboxEntry.last_error).where(OutboxEntry.needs_receipt)).all()
    # request id -> the clue transfer it sent (its summary, as the sender stored it)
    sent: dict[str, dict] = {}
    for request_id, result in requests:
        clues = [m for m in result.get("messages", []) if m.get("kind") == CLUE]
        sent[request_id] = {"referral_id": result.get("referral_id"),
                            "message_ids": [m["message_id"] for m in clues]}
    sent_messages = {m: rid for rid, v in sent.items() for m in v["message_ids"]}
    with r.connect() as connection:
        stored_rows = connection.execute(select(Message.message_id, Message.referral_id, Message.status)
                                         .where(Message.direction == "in", Message.kind == CLUE)).all()
        inbox = {row.message_id: row for row in connection.execute(
            select(InboxEntry.message_id, InboxEntry.outcome, InboxEntry.deliveries)).all()}
        quarantined = connection.execute(select(QuarantineEntry.rule, func.count())
                                         .group_by(QuarantineEntry.rule)).all()
    stored = {row.message_id: row for row in stored_rows}
    lost = sorted(m for m in sent_messages if m not in stored)
    rejected = sorted(m for m, row in stored.items() if row.status != "accepted")

    twice = {
        # at the recipient: one clue number opened twice, one message applied twice, answered twice
        "recipient_referrals_per_clue_no": duplicates(r, Referral.reference, Referral.reference.isnot(None)),
        "recipient_message_rows_per_id": duplicates(r, Message.message_id),
        "recipient_clues_per_referral": duplicates(r, Message.referral_id, Message.direction == "in",
                                                   Message.kind == CLUE),
        "recipient_accepts_per_message": duplicates(r, AuditEntry.message_id, AuditEntry.event == "message.accepted"),
        "recipient_receipts_per_message": duplicates(r, Message.in_reply_to, Message.direction == "out",
                                                     Message.kind == RECEIPT),
        # at the sender: one request id (one clue number) that opened two referrals
        "sender_referrals_per_clue_no": duplicates(s, Referral.reference, Referral.reference.isnot(None)),
        "sender_clues_per_referral": duplicates(s, Message.referral_id, Message.direction == "out",
                                                Message.kind == CLUE),
        "sender_messages_per_request": {rid: len(v["message_ids"]) for rid, v in sent.items()
                                        if len(v["message_ids"]) > 1},
        "sender_receipts_per_message": duplicates(s, Message.in_reply_to, Message.direction == "in",
                                                  Message.kind == RECEIPT),
    }
    applied_twice = sum(len(found) for found in twice.values())

    states: dict[str, int] = {}
    for row in outbox:
        states[row.state] = states.get(row.state, 0) + 1
    answered_not_recorded = sorted(set(feeder.answered) - set(sent))
    answered_other_message = sorted(
        rid for rid, answer in feeder.answered.items() if rid in sent and
        [m["message_id"] for m in answer.get("messages", []) if m.get("kind") == CLUE] != sent[rid]["message_ids"])
    unanswered = feeder.count - len(feeder.answered) - len(feeder.refused)
    return {
        "requested": feeder.count,
        "sent": len(sent),
        "sent_clue_messages": len(sent_messages),
        "sender_clue_messages": len(sender_clues),
        "stored": sum(1 for m in sent_messages if m in stored),
        "stored_rows": len(stored),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "applied_twice": applied_twice,
        "applied_twice_detail": {k: dict(list(v.items())[:10]) for k, v in twice.items() if v},
        "receipted": states.get("receipted", 0),
        "unreceipted": states.get("pending", 0) + states.get("published", 0),
        "failed": states.get("failed", 0),
        "failed_ids": sorted(row.message_id for row in outbox if row.state == "failed")[:20],
        "resends": sum(max(row.attempts - 1, 0) for row in outbox),
        "duplicates_recognised": sum(max(row.deliveries - 1, 0) for row in inbox.values()),
        "rejected_at_recipient": len(rejected),
        "quarantined_at_recipient": {rule: count for rule, count in quarantined},
        "sender_referrals": scalar(s, select(func.count()).select_from(Referral)),
        "recipient_referrals": scalar(r, select(func.count()).select_from(Referral)),
        "recipient_referrals_with_clue_no": scalar(r, select(func.count()).select_from(Referral)
                                                   .where(Referral.reference.isnot(None))),
        "rpc_calls": feeder.calls,
        "rpc_calls_failed": feeder.failed_calls,
        "rpc_errors": feeder.errors,
        "repeated_answers": feeder.repeated,
        "refused": len(feeder.refused),
        "unanswered": unanswered,
        "answered_not_recorded": answered_not_recorded[:20],
        "answered_other_message": answered_other_message[:20],
    }


def watch_lease(dbs: "Databases", engine, holder: str | None, clock: float, record: dict, deadline: float) -> None:
    """Record in ``record`` when another process than ``holder`` (the one just killed) holds
    the node's relay lease: until then the restarted node publishes nothing (a standby)."""
    while time.monotonic() < deadline:
        if dbs.lease_holder(engine) != holder:
            record["lease_seconds"] = round(time.monotonic() - clock, 1)
            return
        eventlet.sleep(POLL)


def play(args, database: str, rabbit: RabbitNode, receiver: Node, sender: Node, dbs: "Databases",
         feeder: Feeder, deadline: float, watchers: list, result: dict) -> None:
    """The backlog, then the kills, each followed by its recovery (into result["kills"])."""
    nodes = [receiver, sender]
    # The recipient keeps up with the sender (both do about the same work per clue), so a
    # backlog forms only while it is not running: it starts once `in_flight` are waiting.
    wait_for(lambda: dbs.unreceipted() >= args.in_flight or feeder.finished,
             max(deadline - time.monotonic(), 1), f"{args.in_flight} clues in flight", label=f"faults {database}",
             how_far=lambda: how_far(dbs, feeder))
    feeder.pace()
    log(f"{database}: {dbs.unreceipted()} in flight; starting the recipient, the client now paced")
    receiver.start()
    wait_for(lambda: dbs.stored() > 0, max(deadline - time.monotonic(), 1), "the recipient to store a clue",
             poll=0.02, label=f"faults {database}")

    phases = [
        ("broker", rabbit.kill, rabbit.start),  # SIGKILL to the VM's PID; the same name and data
        (RECEIVER, receiver.kill, receiver.start),
        (SENDER, sender.kill, sender.start),
    ] * args.rounds
    for round_index, (target, kill, restart) in enumerate(phases):
        # The broker as soon as the recipient works through the backlog; each of the others
        # as soon as a round trip has worked again after the kill before (while the backlog
        # and what piled up during the outage are still in flight).
        for node in nodes:
            node.check()
        in_flight = dbs.unreceipted()
        if target in ("broker", SENDER) and not feeder.finished:  # with a control call under way
            try:
                wait_for(lambda: feeder.in_progress or feeder.finished, 10, "a refer_clues call", poll=0.005)
            except TimeoutError:
                pass
        calls = feeder.in_progress
        relay_db = {RECEIVER: dbs.recipient, SENDER: dbs.sender}.get(target)
        holder = dbs.lease_holder(relay_db) if relay_db is not None else None
        kill_at, kill_clock = utcnow(), time.monotonic()
        log(f"{database}: kill -9 {target} ({len(feeder.answered)} accepted, {in_flight} in flight, "
            f"{calls} refer_clues calls under way)")
        kill()
        restart()
        back = time.monotonic() - kill_clock
        log(f"{database}: {target} back after {back:.1f} s")

        kill_record = {"target": target, "round": round_index // 3 + 1, "accepted_at_kill": len(feeder.answered),
                       "in_flight_at_kill": in_flight, "calls_at_kill": calls, "down_seconds": round(back, 1),
                       "lease_seconds": None, "recovery_seconds": None}
        result["kills"].append(kill_record)
        if relay_db is not None:
            watchers.append(eventlet.spawn(watch_lease, dbs, relay_db, holder, kill_clock, kill_record, deadline))

        def recovered():
            if dbs.round_trip_since(kill_at):
                return "round trip"
            if feeder.finished and dbs.unreceipted() == 0:
                return "nothing left in flight"
            return None
        how = wait_for(recovered, max(deadline - time.monotonic(), 1), f"the round trip after killing {target}",
                       label=f"faults {database}", how_far=lambda: how_far(dbs, feeder))
        recovery = time.monotonic() - kill_clock
        log(f"{database}: recovered from the {target} kill in {recovery:.1f} s ({how})")
        kill_record["recovery_seconds"] = round(recovery, 1) if how == "round trip" else None


# -- one run on one database ---------------------------------------------------------------------
def run_once(args, database: str) -> dict:
    started = time.monotonic()
    deadline = started + args.timeout
    base = Path(tempfile.mkdtemp(prefix="cluebus-faults-rabbit-"))
    rabbit = RabbitNode(base)
    setup: Setup | None = None
    nodes: list[Node] = []
    dbs: Databases | None = None
    feeder: Feeder | None = None
    watchers: list = []
    result: dict = {"database": database, "messages": args.messages, "chunk": args.chunk, "kills": [],
                    "error": None}
    try:
        log(f"{database}: starting a private RabbitMQ node {rabbit.name} (AMQP {rabbit.amqp_port}, "
            f"management {rabbit.management_port}) in {base}")
        rabbit.start()
        environ = {}
        if args.receipt_timeout:
            environ["CLUEBUS_RECEIPT_TIMEOUT_SECONDS"] = str(args.receipt_timeout)
        setup = Setup(database, broker=f"127.0.0.1:{rabbit.amqp_port}", admin=rabbit.management_uri(),
                      label="faults", environ=environ)
        rabbit.sync_metadata()  # the quorum queues just declared survive a SIGKILL
        logs = setup.dir / "logs"
        logs.mkdir()
        receiver, sender = Node(setup, RECEIVER, logs), Node(setup, SENDER, logs)
        nodes = [receiver, sender]
        sender.start()
        rabbit.sync_metadata()  # and whatever the sender declared
        dbs = Databases(setup)
        vhost = urllib.parse.urlsplit(setup.config[c.BROKER][c.BUS_URI]).path.lstrip("/")
        feeder = Feeder(setup, setup.run, args.messages, args.chunk, args.workers, args.window, args.rate,
                        args.rpc_timeout, dbs.unreceipted, deadline)
        log(f"{database}: sending {args.messages} clue transfers in chunks of {args.chunk}, {args.rate or 'no limit'}"
            f" a second, at most {args.window} not yet receipted")
        feeder.start()
        try:
            play(args, database, rabbit, receiver, sender, dbs, feeder, deadline, watchers, result)
        except TimeoutError as error:  # count what there is all the same
            log(f"{database}: {error}")
            result["error"] = str(error)

        def settled():
            for node in nodes:
                node.check()
            if not feeder.finished:
                return False
            states = dbs.outbox_states()
            if states.get("pending", 0) or states.get("published", 0):
                return False
            return not any(queue_depths(rabbit, vhost).values())
        try:
            wait_for(settled, max(deadline - time.monotonic(), 1), "every transfer to be receipted",
                     label=f"faults {database}", how_far=lambda: how_far(dbs, feeder))
            result["settled"] = True
        except TimeoutError as error:
            log(f"{database}: {error}")
            result["settled"] = False
        result["settle_seconds"] = round(time.monotonic() - started, 1)
        try:
            result["queued_at_end"] = queue_depths(rabbit, vhost)
        except Exception as error:  # noqa: BLE001 - the broker is not there to say
            result["queued_at_end"] = {"error": str(error)}
        for thread in [*feeder.threads, *watchers]:  # the client gives up what it has not sent by now
            thread.kill()
        watchers.clear()
        result["client_error"] = feeder.error
        log(f"{database}: settled after {result['settle_seconds']} s; stopping the nodes and counting")
        for node in nodes:
            node.stop()
        result["node_crashes"] = [crash for node in nodes for crash in node.crashes]
        result.update(count_everything(setup, dbs, feeder))
        result["audit"] = {agency: verify_audit(setup, agency) for agency in (SENDER, RECEIVER)}
        for agency, engine in ((SENDER, dbs.sender), (RECEIVER, dbs.recipient)):
            with engine.connect() as connection:
                result["audit"][agency]["events"] = dict(connection.execute(
                    select(AuditEntry.event, func.count()).group_by(AuditEntry.event)).all())
        result["elapsed_seconds"] = round(time.monotonic() - started, 1)
        if args.logs:
            keep_logs(args.logs, database, setup, rabbit)
    finally:
        for thread in [*(feeder.threads if feeder else ()), *watchers]:
            thread.kill()
        for node in nodes:
            try:
                node.stop()
            except Exception as error:  # noqa: BLE001 - go on cleaning up
                log(f"stopping {node.agency}: {error}")
        if dbs is not None:
            dbs.dispose()
        if args.logs and setup is not None and "audit" not in result:
            keep_logs(args.logs, database, setup, rabbit)
        clean_up(setup, rabbit, base)
    result["ok"] = ok(result)
    return result


def ok(result: dict) -> bool:
    return (result["lost"] == 0 and result["applied_twice"] == 0
            and all(audit["ok"] for audit in result["audit"].values()))


def keep_logs(directory: str, database: str, setup: Setup, rabbit: RabbitNode) -> None:
    target = Path(directory) / database
    target.mkdir(parents=True, exist_ok=True)
    for path in (setup.dir / "logs").glob("*.log"):
        shutil.copy(path, target / path.name)
    if rabbit.log_file.exists():
        shutil.copy(rabbit.log_file, target / "rabbitmq.log")
    log(f"logs kept in {target}")


def clean_up(setup: Setup | None, rabbit: RabbitNode, base: Path) -> None:
    """The private broker (stopped, its data directory deleted), the databases, the files.
    The bus's virtual hosts and accounts go with the private broker's data."""
    try:
        rabbit.stop()
    except Exception as error:  # noqa: BLE001
        log(f"stopping the private broker: {error}")
        rabbit._kill_everything()
    shutil.rmtree(base, ignore_errors=True)
    if setup is None:
        return
    if setup.databases:
        engine = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for name in setup.databases:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()
    shutil.rmtree(setup.dir, ignore_errors=True)


# -- the report ----------------------------------------------------------------------------------
def kill_cell(run: dict, target: str, key: str) -> str:
    """That figure of every kill of ``target`` (one per round, separated by /)."""
    values = ["-" if kill.get(key) is None else f"{kill[key]}" for kill in run["kills"] if kill["target"] == target]
    return " / ".join(values) or "-"


def table(runs: list[dict]) -> str:
    rows = [
        ("messages requested", lambda r: r["requested"]),
        ("sent (request ids accepted)", lambda r: r["sent"]),
        ("stored at the recipient", lambda r: r["stored"]),
        ("LOST (sent, not stored at the end)", lambda r: r["lost"]),
        ("APPLIED TWICE", lambda r: r["applied_twice"]),
        ("referrals: sender / recipient",
         lambda r: f"{r['sender_referrals']} / {r['recipient_referrals']}"),
        ("receipted", lambda r: r["receipted"]),
        ("not receipted", lambda r: r["unreceipted"]),
        ("failed deliveries", lambda r: r["failed"]),
        ("resends (publications beyond 1)", lambda r: r["resends"]),
        ("  audited as delivery.resent", lambda r: r["audit"][SENDER]["events"].get("delivery.resent", 0)),
        ("duplicates recognised (recipient)", lambda r: r["duplicates_recognised"]),
        ("rejected / quarantined (recipient)",
         lambda r: f"{r['rejected_at_recipient']} / {sum(r['quarantined_at_recipient'].values())}"),
        ("RPC calls / failed and called again", lambda r: f"{r['rpc_calls']} / {r['rpc_calls_failed']}"),
        ("answers that repeated a stored call", lambda r: r["repeated_answers"]),
    ]
    for target in ("broker", RECEIVER, SENDER):
        rows.append((f"kill -9 {target}: in flight", lambda r, t=target: kill_cell(r, t, "in_flight_at_kill")))
        rows.append(("  refer_clues calls under way", lambda r, t=target: kill_cell(r, t, "calls_at_kill")))
        rows.append(("  back up after (s)", lambda r, t=target: kill_cell(r, t, "down_seconds")))
        if target != "broker":
            rows.append(("  relay lease taken over after (s)", lambda r, t=target: kill_cell(r, t, "lease_seconds")))
        rows.append(("  round trip again after (s)", lambda r, t=target: kill_cell(r, t, "recovery_seconds")))
    rows += [
        ("audit chain medical_security", lambda r: audit_cell(r["audit"][SENDER])),
        ("audit chain public_security", lambda r: audit_cell(r["audit"][RECEIVER])),
        ("node exits nobody asked for", lambda r: len(r["node_crashes"])),
        ("settled", lambda r: "yes" if r["settled"] else "NO (timeout)"),
        ("still in the queues at the end", lambda r: sum(v for v in r["queued_at_end"].values() if isinstance(v, int))),
        ("elapsed (s)", lambda r: r["elapsed_seconds"]),
        ("verdict", lambda r: "ok" if r["ok"] else "FAILED"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    column = max([16] + [len(str(cell(r))) + 2 for _, cell in rows for r in runs])
    lines = ["".ljust(width) + "".join(r["database"].rjust(column) for r in runs)]
    for label, cell in rows:
        lines.append(label.ljust(width) + "".join(str(cell(r)).rjust(column) for r in runs))
    for r in runs:
        for key in ("error", "client_error", "lost_ids", "failed_ids", "answered_not_recorded",
                    "answered_other_message", "node_crashes"):
            if r.get(key):
                lines.append(f"{r['database']}: {key}: {r[key]}")
        if r.get("applied_twice_detail"):
            lines.append(f"{r['database']}: applied twice: {json.dumps(r['applied_twice_detail'])}")
        for agency, audit in r["audit"].items():
            if not audit["ok"]:
                lines.append(f"{r['database']}: audit chain of {agency}: {audit['error']}")
    return "\n".join(lines)


def audit_cell(audit: dict) -> str:
    return f"ok ({audit['entries']})" if audit["ok"] else "BROKEN"


def main() -> int:
    parser = argparse.ArgumentParser(description="Kill -9 the broker, the recipient's node and the sender's node "
                                                 "under thousands of clue transfers in flight; count from the node "
                                                 "databases what was lost or applied twice (bench/faults.py).")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=50, help="clues per refer_clues call")
    parser.add_argument("--rate", type=float, default=50,
                        help="clues a second once the backlog is made (0: as fast as it can), so that control "
                             "calls are under way at every kill")
    parser.add_argument("--workers", type=int, default=2, help="refer_clues calls in flight")
    parser.add_argument("--window", type=int, default=2500,
                        help="the client waits while this many clues are accepted and not yet receipted")
    parser.add_argument("--in-flight", type=int, default=1500,
                        help="the recipient starts once this many clues are waiting (the backlog in flight)")
    parser.add_argument("--rpc-timeout", type=float, default=60, help="seconds before a call is made again")
    parser.add_argument("--receipt-timeout", type=float,
                        help="the nodes' RECEIPT_TIMEOUT_SECONDS (default: the configuration's, 30)")
    parser.add_argument("--rounds", type=int, default=1, help="times the three kills are played")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds for one database's whole run")
    parser.add_argument("--logs", metavar="DIR", help="copy the node and broker logs here before cleaning up")
    parser.add_argument("--json", action="store_true", help="one JSON object on standard output")
    args = parser.parse_args()

    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    runs = []
    try:
        for database in databases:
            runs.append(run_once(args, database))
    except Exception:  # noqa: BLE001 - the run itself broke: say so, exit 2
        traceback.print_exc()
        if args.json:
            print(json.dumps({"ok": False, "error": traceback.format_exc().splitlines()[-1], "runs": runs}))
        return 2
    everything_ok = all(run["ok"] for run in runs)
    if args.json:
        print(json.dumps({"ok": everything_ok, "runs": runs}))
    else:
        print(table(runs))
    return 0 if everything_ok else 1


if __name__ == "__main__":
    sys.exit(main())
