"""A real broker cluster: clue transfers streaming between two cluebus nodes through a 3-node
RabbitMQ cluster while the node leading the agencies' queues is killed with SIGKILL.

1. three private RabbitMQ nodes (``tests/support/rabbit_node.py``, ``RabbitCluster``: three node
   names, three sets of ports, each node its own data directory; the shared broker on 5672 is
   never touched) are started and joined into one cluster;
2. the bus is provisioned on it (``services.provisioning.setup``, through the first member's
   management API) with its quorum queues replicated on all three members
   (``CLUEBUS_QUORUM_GROUP_SIZE=3``), and the control planes' RPC queues made quorum queues too
   (``CLUEBUS_CONTROL_QUEUE_TYPE=quorum``); ``sync_metadata()`` so that a killed member keeps them;
3. ``cluebus run`` starts the sender (medical_security) and the recipient (public_security), both
   given the three members' addresses (``CLUEBUS_BROKER_ADDRESSES``: every URI becomes a failover
   list). A client sends ``--messages`` clue transfers through the sender's control plane at a
   steady ``--rate`` (``refer_clues`` in chunks, each clue with its own request id; a failed call
   is made again with the same ids: bench/faults.py's client);
4. once ``--kill-after`` clues are accepted, the member leading the recipient's queue (the
   management API's ``leader``) is SIGKILLed by its Erlang VM's PID; it is not started again. The
   client keeps sending; the time to recover is from the kill until a clue has made the whole
   round trip again (sent, stored by the recipient, its receipt back at the sender);
5. once everything is receipted (or ``--timeout``), the nodes are stopped and the figures counted
   from the two node databases (bench/faults.py's ``count_everything``): sent, applied, APPLIED
   TWICE, LOST, receipted, time to recover;
6. everything made is removed: the nodes, the three brokers and their data, the temporary files
   (``--logs DIR`` copies the logs first).

    scripts/cluster [--messages 3000] [--rate 40] [--json]

Exit status 1 when a clue was lost or applied twice (or an audit chain does not verify), 2 when
the run itself could not be carried out.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services import config as c  # noqa: E402

from bench import faults  # noqa: E402
from bench.bench_delivery import RECEIVER, SENDER, Setup  # noqa: E402
from bench.faults import (Databases, Feeder, Node, count_everything, how_far, queue_depths, utcnow,  # noqa: E402
                          verify_audit, wait_for)
from services.cli.progress import Progress  # noqa: E402
from tests.support.rabbit_node import RabbitCluster  # noqa: E402


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_with_progress(predicate, timeout: float, what: str, dbs: Databases, feeder: Feeder):
    """faults.wait_for with a progress line saying how far things are (services/cli/progress.py)."""
    return wait_for(predicate, timeout, what, label="cluster", how_far=lambda: how_far(dbs, feeder))


def run(args) -> dict:
    started = time.monotonic()
    deadline = started + args.timeout
    base = Path(tempfile.mkdtemp(prefix="cluebus-cluster-rabbit-"))
    cluster = RabbitCluster(base, size=3)
    setup: Setup | None = None
    nodes: list[Node] = []
    dbs: Databases | None = None
    feeder: Feeder | None = None
    result: dict = {"messages": args.messages, "rate": args.rate, "chunk": args.chunk, "error": None,
                    "members": [m.name for m in cluster.nodes]}
    try:
        log("starting a 3-node RabbitMQ cluster: " + ", ".join(
            f"{m.name} (AMQP {m.amqp_port}, management {m.management_port})" for m in cluster.nodes) + f" in {base}")
        with Progress("[cluster] starting the 3 RabbitMQ members") as starting, starting.ticking():
            cluster.start()
        addresses = ",".join(f"127.0.0.1:{m.amqp_port}" for m in cluster.nodes)
        environ = {"CLUEBUS_BROKER_ADDRESSES": addresses, "CLUEBUS_QUORUM_GROUP_SIZE": "3",
                   "CLUEBUS_CONTROL_QUEUE_TYPE": args.control_queue_type}
        if args.receipt_timeout:
            environ["CLUEBUS_RECEIPT_TIMEOUT_SECONDS"] = str(args.receipt_timeout)
        seed = cluster.nodes[0]
        setup = Setup("sqlite", broker=f"127.0.0.1:{seed.amqp_port}", admin=seed.management_uri(),
                      label="cluster", environ=environ)
        vhost = urllib.parse.urlsplit(setup.config[c.BROKER][c.BUS_URI]).path.lstrip("/")
        queues = [f"cluebus.{SENDER}", f"cluebus.{RECEIVER}"]
        for queue in queues:  # replicated on all three before anything is sent
            cluster.wait_for_online(queue, vhost, timeout=60)
        log(f"bus provisioned on virtual host {vhost}, queues on all three members; nodes given {addresses}")
        logs = setup.dir / "logs"
        logs.mkdir()
        receiver, sender = Node(setup, RECEIVER, logs), Node(setup, SENDER, logs)
        nodes = [receiver, sender]
        receiver.start()
        sender.start()
        control_queues = {agency: (f"{vhost}.{agency}.control", f"rpc-{agency}") for agency in (SENDER, RECEIVER)}
        for agency, (control_vhost, queue) in control_queues.items():
            if args.control_queue_type == "quorum":
                cluster.wait_for_online(queue, control_vhost, timeout=60)
            else:  # a classic queue has no replicas to wait for
                wait_for(lambda: _exists(cluster, queue, control_vhost), 60, f"queue {queue}")
        cluster.sync_metadata()  # what was just declared survives a SIGKILL (rabbit_node.py: pitfall)
        result["queues"] = {q: {"leader": (info := cluster.queue_info(q, vhost)).get("leader"),
                                "members": info.get("members"), "type": info.get("type")} for q in queues}
        result["control_queue_type"] = args.control_queue_type
        result["control_queues"] = {q: {"leader": (info := cluster.queue_info(q, v)).get("leader"),
                                        "members": info.get("members"), "type": info.get("type")}
                                    for v, q in control_queues.values()}

        dbs = Databases(setup)
        feeder = Feeder(setup, setup.run, args.messages, args.chunk, args.workers, args.window, args.rate,
                        args.rpc_timeout, dbs.unreceipted, deadline)
        feeder.pace()  # a steady stream from the first clue
        log(f"sending {args.messages} clue transfers, {args.rate:g} a second in chunks of {args.chunk}")
        feeder.start()
        stream_started = time.monotonic()

        # The kill, mid-stream.
        wait_with_progress(lambda: len(feeder.answered) >= args.kill_after or feeder.finished,
                           max(deadline - time.monotonic(), 1), f"{args.kill_after} clues accepted", dbs, feeder)
        try:  # with a control call under way
            wait_for(lambda: feeder.in_progress or feeder.finished, 5, "a refer_clues call", poll=0.005)
        except TimeoutError:
            pass
        victim = cluster.leader(f"cluebus.{RECEIVER}", vhost)
        leaders_before = {q: cluster.queue_info(q, vhost).get("leader") for q in queues}
        in_flight, accepted, calls = dbs.unreceipted(), len(feeder.answered), feeder.in_progress
        kill_at, kill_clock = utcnow(), time.monotonic()
        log(f"kill -9 {victim.name} (PID {victim.pid}), the leader of cluebus.{RECEIVER}; {accepted} accepted, "
            f"{in_flight} in flight, {calls} refer_clues calls under way")
        cluster.kill(victim)
        kill = {"member": victim.name, "seconds_into_stream": round(kill_clock - stream_started, 1),
                "accepted_at_kill": accepted, "in_flight_at_kill": in_flight, "calls_at_kill": calls,
                "leaders_before": leaders_before}
        result["kill"] = kill
        try:
            new = {q: cluster.wait_for_leader(q, vhost, exclude=[victim], timeout=60).name for q in queues}
            kill["leaders_after"] = new
            kill["new_leader_seconds"] = round(time.monotonic() - kill_clock, 1)
            log(f"new leaders after {kill['new_leader_seconds']} s: {new}")
        except Exception as error:  # noqa: BLE001 - reported; the run goes on
            kill["leaders_after"] = {"error": str(error)}

        def recovered():
            for node in nodes:
                node.check()
            if dbs.round_trip_since(kill_at):
                return "round trip"
            if feeder.finished and dbs.unreceipted() == 0:
                return "nothing left in flight"
            return None
        try:
            how = wait_with_progress(recovered, max(deadline - time.monotonic(), 1), "a round trip after the kill",
                                     dbs, feeder)
            kill["recovery_seconds"] = round(time.monotonic() - kill_clock, 1) if how == "round trip" else None
            log(f"a clue made the round trip again {kill['recovery_seconds']} s after the kill")
        except TimeoutError as error:
            kill["recovery_seconds"] = None
            result["error"] = str(error)
            log(str(error))

        def settled():
            for node in nodes:
                node.check()
            if not feeder.finished:
                return False
            states = dbs.outbox_states()
            if states.get("pending", 0) or states.get("published", 0):
                return False
            return not any(queue_depths(cluster, vhost).values())
        try:
            wait_with_progress(settled, max(deadline - time.monotonic(), 1), "every transfer to be receipted",
                               dbs, feeder)
            result["settled"] = True
        except TimeoutError as error:
            log(str(error))
            result["settled"] = False
        result["settle_seconds"] = round(time.monotonic() - started, 1)
        result["stream_seconds"] = round(time.monotonic() - stream_started, 1)
        try:
            result["queued_at_end"] = queue_depths(cluster, vhost)
        except Exception as error:  # noqa: BLE001
            result["queued_at_end"] = {"error": str(error)}
        for thread in feeder.threads:
            thread.kill()
        result["client_error"] = feeder.error
        log("stopping the nodes and counting")
        for node in nodes:
            node.stop()
        result["node_crashes"] = [crash for node in nodes for crash in node.crashes]
        result.update(count_everything(setup, dbs, feeder))
        result["audit"] = {agency: verify_audit(setup, agency) for agency in (SENDER, RECEIVER)}
        result["elapsed_seconds"] = round(time.monotonic() - started, 1)
        if args.logs:
            keep_logs(args.logs, setup, cluster)
    finally:
        for thread in (feeder.threads if feeder else ()):
            thread.kill()
        for node in nodes:
            try:
                node.stop()
            except Exception as error:  # noqa: BLE001 - go on cleaning up
                log(f"stopping {node.agency}: {error}")
        if dbs is not None:
            dbs.dispose()
        if args.logs and setup is not None and "audit" not in result:
            keep_logs(args.logs, setup, cluster)
        clean_up(setup, cluster, base)
    result["ok"] = ok(result)
    return result


def _exists(cluster: RabbitCluster, queue: str, vhost: str) -> bool:
    try:
        return bool(cluster.queue_info(queue, vhost))
    except Exception:  # noqa: BLE001 - not (yet) there
        return False


def ok(result: dict) -> bool:
    return (result.get("lost") == 0 and result.get("applied_twice") == 0
            and all(audit["ok"] for audit in result.get("audit", {}).values()))


def keep_logs(directory: str, setup: Setup, cluster: RabbitCluster) -> None:
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for path in (setup.dir / "logs").glob("*.log"):
        shutil.copy(path, target / path.name)
    for index, member in enumerate(cluster.nodes, start=1):
        if member.log_file.exists():
            shutil.copy(member.log_file, target / f"rabbitmq-{index}.log")
    log(f"logs kept in {target}")


def clean_up(setup: Setup | None, cluster: RabbitCluster, base: Path) -> None:
    """The three brokers (stopped; each killed by its own PID if it will not stop), their
    data directories, the node files. The bus's virtual hosts go with the brokers' data."""
    try:
        cluster.stop()
    except Exception as error:  # noqa: BLE001
        log(f"stopping the cluster: {error}")
        for member in cluster.nodes:
            member._kill_everything()
    shutil.rmtree(base, ignore_errors=True)
    if setup is not None:
        shutil.rmtree(setup.dir, ignore_errors=True)


def table(r: dict) -> str:
    kill = r.get("kill", {})
    rows = [
        ("cluster members", ", ".join(r["members"])),
        ("messages requested", r["requested"]),
        ("sent (request ids accepted)", r["sent"]),
        ("applied (stored at the recipient)", r["stored"]),
        ("APPLIED TWICE", r["applied_twice"]),
        ("LOST (sent, not stored at the end)", r["lost"]),
        ("receipted", r["receipted"]),
        ("not receipted / failed", f"{r['unreceipted']} / {r['failed']}"),
        ("resends (publications beyond 1)", r["resends"]),
        ("duplicates recognised (recipient)", r["duplicates_recognised"]),
        ("RPC calls / failed and called again", f"{r['rpc_calls']} / {r['rpc_calls_failed']}"),
        ("killed (kill -9)", kill.get("member", "-")),
        ("  seconds into the stream", kill.get("seconds_into_stream", "-")),
        ("  accepted / in flight at the kill", f"{kill.get('accepted_at_kill', '-')} / {kill.get('in_flight_at_kill', '-')}"),
        ("  new queue leaders after (s)", kill.get("new_leader_seconds", "-")),
        ("TIME TO RECOVER (s, kill to round trip)", kill.get("recovery_seconds", "-")),
        ("node exits nobody asked for", len(r["node_crashes"])),
        ("settled", "yes" if r.get("settled") else "NO (timeout)"),
        ("still in the queues at the end", sum(v for v in r["queued_at_end"].values() if isinstance(v, int))),
        ("elapsed (s)", r["elapsed_seconds"]),
        ("verdict", "ok" if r["ok"] else "FAILED"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    lines = [label.ljust(width) + str(value) for label, value in rows]
    for key in ("error", "client_error", "lost_ids", "failed_ids", "node_crashes", "rpc_errors"):
        if r.get(key):
            lines.append(f"{key}: {r[key]}")
    if r.get("applied_twice_detail"):
        lines.append(f"applied twice: {json.dumps(r['applied_twice_detail'])}")
    for agency, audit in r["audit"].items():
        if not audit["ok"]:
            lines.append(f"audit chain of {agency}: {audit['error']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Stream clue transfers through a 3-node RabbitMQ cluster, kill -9 "
                                                 "the member leading the agencies' queues mid-stream, and count "
                                                 "from the node databases what was lost or applied twice.")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=40, help="clues a second (a steady stream)")
    parser.add_argument("--chunk", type=int, default=20, help="clues per refer_clues call")
    parser.add_argument("--workers", type=int, default=2, help="refer_clues calls in flight")
    parser.add_argument("--window", type=int, default=2500,
                        help="the client waits while this many clues are accepted and not yet receipted")
    parser.add_argument("--kill-after", type=int, default=None,
                        help="kill once this many clues are accepted (default: a third of --messages)")
    parser.add_argument("--rpc-timeout", type=float, default=30, help="seconds before a call is made again")
    parser.add_argument("--receipt-timeout", type=float,
                        help="the nodes' RECEIPT_TIMEOUT_SECONDS (default: the configuration's, 30)")
    parser.add_argument("--control-queue-type", choices=("quorum", "classic"), default="quorum",
                        help="the nodes' TRANSPORT.CONTROL_QUEUE_TYPE (classic: see what a classic RPC queue does)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    parser.add_argument("--logs", metavar="DIR", help="copy the node and broker logs here before cleaning up")
    parser.add_argument("--json", action="store_true", help="one JSON object on standard output")
    args = parser.parse_args()
    if args.kill_after is None:
        args.kill_after = max(args.messages // 3, 1)
    faults.log = log  # the client's messages under this script's name
    try:
        result = run(args)
    except Exception:  # noqa: BLE001 - the run itself broke: say so, exit 2
        traceback.print_exc()
        if args.json:
            print(json.dumps({"ok": False, "error": traceback.format_exc().splitlines()[-1]}))
        return 2
    print(json.dumps(result) if args.json else table(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
