"""Full signed round trips between two cluebus nodes, each in its own process as deployed,
against raw Nameko events between two processes on the same broker, measured in the same run.

cluebus: clue transfers sent through medical_security's control plane (`refer_clues`, in
chunks), signed and committed, published with confirms, verified and stored by
public_security, receipted, and the receipts recorded back at medical_security. The clock
stops when the last receipt is recorded. Baseline: the same number of Nameko events of the
same body, dispatched by one process and handled by another, once before and once after
cluebus's run; the ratio is against their mean.

    .venv/bin/python bench/bench_delivery.py --messages 5000 [--database postgresql] [--json]
    .venv/bin/python bench/bench_delivery.py --messages 3000 --latency        # p50/p99 at half the rate
    .venv/bin/python bench/bench_delivery.py --messages 2000 --history 100000 # with history stored
    .venv/bin/python bench/bench_delivery.py --messages 10000 --burst         # one burst: resends, failures

Prints a ratio against the baseline (these machines are noisy); see bench/README.md.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from adapters.crypto.keys import initialise_key_directory  # noqa: E402
from adapters.transport.management import ManagementApi  # noqa: E402
from services import config as c  # noqa: E402
from services import provisioning, settings  # noqa: E402
from services.demo import story  # noqa: E402

from bench.history import populate  # noqa: E402
from bench.platform_probe import work_us  # noqa: E402

SENDER, RECEIVER = "medical_security", "public_security"
BROKER = "127.0.0.1:5672"
ADMIN = "http://guest:guest@127.0.0.1:15672/"
POSTGRES_ADMIN = "postgresql+pg8000://postgres@127.0.0.1:5432/postgres"
PYTHON = sys.executable
IN_FLIGHT = int(os.environ.get("BENCH_IN_FLIGHT", "2"))
CLUEBUS = str(Path(PYTHON).with_name("cluebus"))
MACHINE_WORK_REPEATS = 300  # about a tenth of a second


# -- processes -----------------------------------------------------------------------------------
class Process:
    """A child process whose output goes to a log file; ready when a line says so."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path, ready: str, timeout: float = 60):
        self.name = name
        self.log = logs / f"{name}.log"
        self.handle = open(self.log, "w")
        self.popen = subprocess.Popen(argv, env=env, stdout=self.handle, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while ready not in self.log.read_text(errors="replace"):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        return sum(self.user_system_seconds())

    def user_system_seconds(self) -> tuple[float, float]:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.handle.close()


# -- the bench's own bus and databases -----------------------------------------------------------
class Setup:
    """The bench's own virtual hosts, accounts, keys and databases. ``broker`` (host:port)
    and ``admin`` (management API URI) default to the shared broker; ``label`` names what is
    made (``<label>-<run>`` virtual hosts, ``cluebus_<label>_<run>_*`` databases); ``environ``
    adds CLUEBUS_* settings."""

    def __init__(self, database: str, keep: bool = False, *, broker: str = BROKER, admin: str = ADMIN,
                 label: str = "bench", environ: dict | None = None):
        self.run = uuid.uuid4().hex[:8]
        self.dir = Path(tempfile.mkdtemp(prefix=f"cluebus-{label}-"))
        self.database = database
        self.keep = keep
        self.broker = broker
        self.admin = admin
        self.databases: list[str] = []
        url = "sqlite:///{data_dir}/{agency}.sqlite3"
        if database == "postgresql":
            prefix = f"cluebus_{label}_{self.run}"
            engine = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            with engine.connect() as connection:
                for agency in (SENDER, RECEIVER, "procuratorate", "joint_office"):
                    connection.exec_driver_sql(f'CREATE DATABASE "{prefix}_{agency}"')
                    self.databases.append(f"{prefix}_{agency}")
            engine.dispose()
            url = f"postgresql+pg8000://postgres@127.0.0.1:5432/{prefix}_{{agency}}"
        self.environ = {
            "CLUEBUS_BUS_URI": f"amqp://{broker}/{label}-{self.run}",
            "CLUEBUS_CONTROL_URI": f"amqp://{broker}/{label}-{self.run}.{{agency}}.control",
            "CLUEBUS_BROKER_USER_PREFIX": f"{label}-{self.run}.",
            "CLUEBUS_CREDENTIALS_DIR": str(self.dir / "credentials"),
            "CLUEBUS_BROKER_ADMIN_URI": admin,
            "CLUEBUS_DATA_DIR": str(self.dir / "data"),
            "CLUEBUS_KEYS_DIR": str(self.dir / "keys"),
            "CLUEBUS_DATABASE_URL": url,
            "CLUEBUS_OFFICE_ACCOUNTS_FILE": str(self.dir / "office-accounts.yaml"),
            **(environ or {}),
        }
        self.config = c.load_config(environ=self.environ)
        initialise_key_directory(self.config[c.KEYS_DIR], c.agency_codes(self.config), validity=timedelta(days=2),
                                 now=datetime.now(timezone.utc) - timedelta(days=1))
        provisioning.setup(self.config, keep_admin_access=True)
        self.raw_vhost = f"{label}-{self.run}.raw"
        ManagementApi(admin).put(f"/vhosts/{self.raw_vhost}", {})
        ManagementApi(admin).put(f"/permissions/{self.raw_vhost}/guest", {"configure": ".*", "write": ".*", "read": ".*"})

    def env(self) -> dict:
        return {**os.environ, **self.environ}

    def engine(self, agency: str):
        """A plain reading engine (no BEGIN IMMEDIATE: it must not take the node's write lock)."""
        return sqlalchemy.create_engine(c.database_url(self.config, agency))

    def close(self) -> None:
        if self.keep:
            print(f"kept {self.dir}", file=sys.stderr)
            return
        provisioning.remove(self.config)
        ManagementApi(self.admin).delete(f"/vhosts/{self.raw_vhost}")
        if self.databases:
            engine = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            with engine.connect() as connection:
                for name in self.databases:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            engine.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)


def clue_body(now: datetime, index: int) -> dict:
    body = story.crime_clue(now, f"YB-B{index:07d}")
    body["category"] = "administrative_violation"  # no copy to the procuratorate: one message each
    return body


# -- measurements --------------------------------------------------------------------------------
def baseline(setup: Setup, count: int, body: dict) -> float:
    uri = f"amqp://guest:guest@{setup.broker}/{setup.raw_vhost}"
    logs = setup.dir
    listener = Process("raw-listener", [PYTHON, "bench/raw_events.py", "listener", uri], setup.env(), logs,
                       "listener running")
    emitter = Process("raw-emitter", [PYTHON, "bench/raw_events.py", "emitter", uri], setup.env(), logs,
                      "emitter running")
    try:
        with ClusterRpcProxy({"AMQP_URI": uri}, timeout=600) as rpc:
            start = time.perf_counter()
            rpc.bench_emitter.emit(count, body)
            while rpc.bench_listener.count() < count:
                eventlet.sleep(0.01)
            return time.perf_counter() - start
    finally:
        emitter.stop()
        listener.stop()


def receipted(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT count(*) FROM outbox WHERE state = 'receipted'").scalar()


def outbox_figures(engine) -> dict:
    with engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT count(*), coalesce(sum(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0), "
            "sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) FROM outbox WHERE needs_receipt").first()
    return {"sent": row[0], "resends": int(row[1]), "failed": int(row[2] or 0)}


def send_all(rpc, count: int, chunk: int, now: datetime, offset: int = 0, in_flight: int = IN_FLIGHT) -> list[str]:
    """``count`` clues in calls of ``chunk``, ``in_flight`` calls at a time (a client's next
    batch is on its way while the node handles the one before)."""
    ids, pending = [], []

    def collect(reply):
        answers = reply.result()
        refused = [a for a in answers if a.get("refused")]
        if refused:
            raise RuntimeError(f"refused: {refused[0]}")
        ids.extend(a["messages"][0]["message_id"] for a in answers)

    for start in range(0, count, chunk):
        clues = [{"body": clue_body(now, offset + start + i)} for i in range(min(chunk, count - start))]
        pending.append(rpc[SENDER].refer_clues.call_async(clues))
        if len(pending) >= in_flight:
            collect(pending.pop(0))
    for reply in pending:
        collect(reply)
    return ids


def wait_receipted(engine, wanted: int, timeout: float) -> float:
    start = time.perf_counter()
    while receipted(engine) < wanted:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"only {receipted(engine)} of {wanted} receipted after {timeout:.0f} s")
        eventlet.sleep(0.02)
    return time.perf_counter()


def latencies(engine, sent_at: dict[str, datetime]) -> list[float]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT message_id, receipted_at FROM outbox WHERE state = 'receipted'").all()
    found = []
    for message_id, receipted_at in rows:
        if message_id in sent_at:
            if isinstance(receipted_at, str):
                receipted_at = datetime.fromisoformat(receipted_at)
            if receipted_at.tzinfo is None:
                receipted_at = receipted_at.replace(tzinfo=timezone.utc)
            found.append((receipted_at - sent_at[message_id]).total_seconds() * 1000)
    return sorted(found)


def _when(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def stages(sender_engine, receiver_engine, sent_at: dict[str, datetime], trace: str | None = None) -> dict[str, dict]:
    """Where the latency goes, from the timestamps both nodes store: p50/p99 (ms) of each hop
    of the paced calls' round trips (one clock: both nodes run on this machine). A receiving
    batch stamps everything it stores (stored_at, receipted_at, its receipts' sent_at) with
    the moment it began, before verification and its commit: the recipient's work and the
    receipt's composition fall in the hop after it."""
    with sender_engine.connect() as connection:
        composed = dict(connection.exec_driver_sql(
            "SELECT message_id, sent_at FROM messages WHERE direction = 'out' AND kind != 'receipt'").all())
        recorded = dict(connection.exec_driver_sql(
            "SELECT message_id, receipted_at FROM outbox WHERE state = 'receipted'").all())
    with receiver_engine.connect() as connection:
        arrived = dict(connection.exec_driver_sql(
            "SELECT message_id, stored_at FROM messages WHERE direction = 'in'").all())
    hops: dict[str, list[float]] = {"call to composed and signed": [],
                                    "to the recipient's batch (commit, publish, broker)": [],
                                    "to the receipt's batch at the sender": []}
    rows = []
    for message_id, t0 in sent_at.items():
        if not (message_id in composed and message_id in arrived and recorded.get(message_id)):
            continue
        points = [t0, _when(composed[message_id]), _when(arrived[message_id]), _when(recorded[message_id])]
        rows.append(points)
        for values, start, end in zip(hops.values(), points, points[1:]):
            values.append((end - start).total_seconds() * 1000)
    if trace:  # one line per round trip: its send time and its points, seconds from the first
        origin = min(points[0] for points in rows)
        with open(trace, "w") as out:
            for points in sorted(rows):
                out.write(" ".join(f"{(p - origin).total_seconds():.4f}" for p in points) + "\n")
    return {name: {"p50_ms": round(percentile(sorted(v), 0.5), 1), "p99_ms": round(percentile(sorted(v), 0.99), 1)}
            for name, v in hops.items()}


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(fraction * (len(values) - 1))))]


def single_calls_max(rpc, engine, count: int, now: datetime, in_flight: int = 64) -> float:
    """The maximum rate of single ``refer_clue`` calls: ``count`` of them with ``in_flight``
    outstanding at a time, until every receipt is recorded."""
    before = receipted(engine)
    pending = []
    start = time.perf_counter()
    for index in range(count):
        pending.append(rpc[SENDER].refer_clue.call_async(clue_body(now, 20_000_000 + index)))
        if len(pending) >= in_flight:
            pending.pop(0).result()
    for reply in pending:
        reply.result()
    end = wait_receipted(engine, before + count, 300)
    return count / (end - start)


def paced(rpc, count: int, rate: float, now: datetime) -> dict[str, datetime]:
    """``count`` single refer_clue calls at ``rate`` per second, each sent when due (calls do
    not wait for each other's answers), each timed from the moment it was sent. Between
    sends the replies that have arrived are taken at once, as callers each waiting for their
    own answer would take them (left for the end, thousands would wait at the broker)."""
    outstanding: dict[str, tuple[datetime, object]] = {}  # correlation id: (sent, reply)
    sent_at: dict[str, datetime] = {}
    interval = 1.0 / rate
    start = time.perf_counter()
    for index in range(count):
        _take_replies(outstanding, sent_at, start + index * interval)
        t0 = datetime.now(timezone.utc)
        reply = rpc[SENDER].refer_clue.call_async(clue_body(now, 10_000_000 + index))
        outstanding[reply.reply_event.correlation_id] = (t0, reply)
    for t0, reply in outstanding.values():
        sent_at[reply.result()["messages"][0]["message_id"]] = t0
    return sent_at


def _take_replies(outstanding: dict, sent_at: dict[str, datetime], until: float) -> None:
    """Read replies until the moment ``until`` (perf_counter), taking each that arrived (which
    acks it) and noting when its call was sent."""
    while (left := until - time.perf_counter()) > 0:
        if not outstanding:
            eventlet.sleep(left)
            return
        # The standalone proxy's reply consumer (nameko.standalone.rpc.PollingQueueConsumer):
        # one connection for every reply, read here only.
        replies = next(iter(outstanding.values()))[1].reply_event.queue_consumer
        try:
            replies.consumer.connection.drain_events(timeout=left)
        except socket.timeout:  # py-amqp keeps a partly read frame for the next read
            pass
        for correlation_id in [cid for cid in outstanding if cid in replies.replies]:
            t0, reply = outstanding.pop(correlation_id)
            sent_at[reply.result()["messages"][0]["message_id"]] = t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--chunk", type=int, default=200, help="clues per refer_clues call")
    parser.add_argument("--latency", action="store_true", help="also single calls at half the measured rate")
    parser.add_argument("--latency-rate", type=float,
                        help="the rate of single calls (default: half the measured maximum of single calls)")
    parser.add_argument("--history", type=int, default=0, help="referrals stored in both nodes beforehand")
    parser.add_argument("--burst", action="store_true", help="send everything first, then wait (resend storms)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--stages", action="store_true", help="with --latency: p50/p99 of each hop of a round trip")
    parser.add_argument("--trace", metavar="FILE", help="with --stages: each round trip's points, one line each")
    parser.add_argument("--keep", action="store_true", help="keep the data and the bus")
    parser.add_argument("--json", action="store_true", help="one JSON object on standard output")
    parser.add_argument("--profile", metavar="DIR", help="py-spy both nodes during the run (collapsed stacks)")
    args = parser.parse_args()

    setup = Setup(args.database, keep=args.keep)
    now = datetime.now(timezone.utc)
    result: dict = {"messages": args.messages, "database": args.database, "history": args.history,
                    "chunk": args.chunk}
    nodes: list[Process] = []
    # The same pure-Python work timed back to back (bench/platform_probe.py), before and after
    # the run: these machines' speed drifts from minute to minute, and with it every figure.
    result["machine_work_us"] = [work_us(0, MACHINE_WORK_REPEATS)]
    try:
        body = clue_body(now, 0)
        baselines = [] if args.no_baseline else [args.messages / baseline(setup, args.messages, body)]
        if args.history:
            started = time.perf_counter()
            populate(setup.config, SENDER, RECEIVER, args.history)
            result["history_seconds"] = round(time.perf_counter() - started, 1)
        for agency in (RECEIVER, SENDER):
            nodes.append(Process(agency, [CLUEBUS, "run", "--agency", agency], setup.env(), setup.dir,
                                 f"{agency} node running"))
        receiver, sender = nodes
        engine = setup.engine(SENDER)
        control = {"AMQP_URI": settings.control_uri(setup.config, SENDER)}
        with ClusterRpcProxy(control, timeout=600) as proxy:
            rpc = {SENDER: proxy[SENDER]}
            # The instrument's own collector pauses are not the nodes' latency: as the nodes do
            # (services/runner.settle_heap), keep what is made at start out of its scans.
            gc.collect()
            gc.freeze()
            send_all(rpc, min(args.chunk, 50), args.chunk, now, offset=9_000_000)  # warm up
            warm = min(args.chunk, 50)
            wait_receipted(engine, warm, 120)
            cpu = {n.name: n.cpu_seconds() for n in nodes}
            spies = [subprocess.Popen(["py-spy", "record", "-p", str(n.pid), "-r", "200", "--format", "raw", *(["--idle"] if os.environ.get("BENCH_IDLE") else []),
                                       "-o", str(Path(args.profile) / f"{n.name}.txt"), "--nonblocking", *os.environ.get("BENCH_PYSPY_ARGS", "").split()],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for n in nodes] if args.profile else []
            start = time.perf_counter()
            send_all(rpc, args.messages, args.chunk, now)
            sent = time.perf_counter()
            end = wait_receipted(engine, warm + args.messages, 600)
            for spy in spies:
                spy.send_signal(2)
                spy.wait(timeout=60)
            result["rate"] = args.messages / (end - start)
            result["send_seconds"] = round(sent - start, 3)
            result["cpu_ms_per_transfer"] = {n.name: round((n.cpu_seconds() - cpu[n.name]) * 1000 / args.messages, 3)
                                             for n in nodes}
            if not args.no_baseline:
                # The machine's speed drifts within minutes: the baseline once more, just after,
                # so that the ratio compares with the mean of one taken on each side (both kept).
                idle = {n.name: n.cpu_seconds() for n in nodes}
                started = time.perf_counter()
                baselines.append(args.messages / baseline(setup, args.messages, body))
                result["idle_node_cpu_percent"] = {
                    n.name: round((n.cpu_seconds() - idle[n.name]) * 100 / (time.perf_counter() - started), 1)
                    for n in nodes}
            if args.latency:
                if args.latency_rate:
                    rate = args.latency_rate
                else:
                    # Half the maximum of the same calls: single refer_clue calls (the chunked
                    # rate above is several times what single calls can reach).
                    result["single_call_max_rate"] = round(single_calls_max(rpc, engine, 1500, now), 1)
                    rate = result["single_call_max_rate"] / 2
                count = max(200, min(int(rate * 20), 5000))
                before = receipted(engine)
                spies = [subprocess.Popen(["py-spy", "record", "-p", str(n.pid), "-r", "200", "--format", "raw",
                                           "-o", str(Path(args.profile) / f"{n.name}.latency.txt"), "--nonblocking", *os.environ.get("BENCH_PYSPY_ARGS", "").split()],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for n in nodes] if args.profile and os.environ.get("BENCH_PROFILE_LATENCY") else []
                cpu = {n.name: n.user_system_seconds() for n in nodes}
                sent_at = paced(rpc, count, rate, now)
                for spy in spies:
                    spy.send_signal(2)
                    spy.wait(timeout=60)
                wait_receipted(engine, before + count, 300)
                # Single calls at this rate are handled in small batches: what each costs then.
                # (user, system) CPU ms per transfer: the kernel's share is the system calls.
                result["latency_cpu_ms_per_transfer"] = {
                    n.name: [round((now_ - then) * 1000 / count, 2) for now_, then in zip(n.user_system_seconds(), cpu[n.name])]
                    for n in nodes}
                values = latencies(engine, sent_at)
                result.update(latency_rate=round(rate, 1), latency_messages=len(values),
                              p50_ms=round(percentile(values, 0.5), 1), p99_ms=round(percentile(values, 0.99), 1))
                if args.stages:
                    receiver_engine = setup.engine(RECEIVER)
                    result["stages"] = stages(engine, receiver_engine, sent_at, args.trace)
                    receiver_engine.dispose()
        result.update(outbox_figures(engine))
        result["rss_mb"] = {n.name: round(n.rss_mb(), 1) for n in nodes}
        engine.dispose()
    finally:
        for node in nodes:
            node.stop()
        setup.close()
    result["machine_work_us"].append(work_us(0, MACHINE_WORK_REPEATS))
    result["baseline_rate"] = None
    if baselines:
        mean = sum(baselines) / len(baselines)
        result.update(baseline_rate=round(mean, 1), baseline_rates=[round(r, 1) for r in baselines],
                      ratio=round(result["rate"] / mean, 3),
                      # against each baseline alone: how much the machine moved meanwhile
                      ratio_each=[round(result["rate"] / r, 3) for r in baselines])
    result["rate"] = round(result["rate"], 1)
    result.setdefault("p50_ms", None)
    result.setdefault("p99_ms", None)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.messages} transfers on {args.database}" + (f", {args.history} referrals stored" if args.history else ""))
    if result.get("baseline_rate"):
        print(f"  raw Nameko events (baseline):            {result['baseline_rate']:8.0f} msg/s"
              f" (mean of {' and '.join(f'{r:.0f}' for r in result['baseline_rates'])}, before and after)")
    print(f"  cluebus full signed round trips:         {result['rate']:8.0f} msg/s")
    if result.get("ratio"):
        print(f"  ratio cluebus/baseline:                  {result['ratio']:8.2f}"
              f" ({' / '.join(f'{r:.2f}' for r in result['ratio_each'])} against each)")
        print(f"  the nodes' CPU while idle during the second baseline (%): {result['idle_node_cpu_percent']}")
    print(f"  CPU per transfer (ms): {result['cpu_ms_per_transfer']}")
    print(f"  the machine: the same work took {' then '.join(f'{us:.0f}' for us in result['machine_work_us'])} µs"
          " (bench/platform_probe.py; 250 µs on a fast day)")
    if result["p99_ms"] is not None:
        if 'single_call_max_rate' in result:
            print(f"  single refer_clue calls at most {result['single_call_max_rate']}/s")
        print(f"  latency at {result['latency_rate']}/s: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
        if "latency_cpu_ms_per_transfer" in result:
            print(f"    CPU per transfer at that rate (ms): {result['latency_cpu_ms_per_transfer']}")
        for name, figures in result.get("stages", {}).items():
            print(f"    {name:52s} p50 {figures['p50_ms']:6.1f} ms, p99 {figures['p99_ms']:6.1f} ms")
    print(f"  resends {result['resends']}, failed {result['failed']}, RSS (MB) {result['rss_mb']}")


if __name__ == "__main__":
    main()
