"""``cluebus demo``: every node in one process against the configured broker, with fresh
SQLite files and keys, playing realistic referrals end to end and printing their traces."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import socket
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

from eventlet.event import Event
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy

from adapters.crypto.keys import initialise_key_directory
from services import config as c
from services import settings
from services.demo.scenario import Demo, DemoFailure
from services.nodes.dependencies import ShiftedClock
from services.nodes.factory import container_config
from services.runner import BrokerUnreachable, check_broker, node_agencies, start_nodes

from .errors import CommandError


def register(commands) -> None:
    demo = commands.add_parser("demo", help="run every node and play referrals end to end")
    demo.add_argument("--data-dir", help="where to put the demo's databases and keys (default: a new temporary directory)")
    demo.add_argument("--keep", action="store_true", help="keep the data directory and the broker queues")
    demo.add_argument("--stay", action="store_true",
                      help="keep every node and the dashboard running after the demo, until Ctrl-C")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    base = c.load_config(args.config)
    try:
        check_broker(base[c.AMQP_URI])
    except BrokerUnreachable as exc:
        raise CommandError(str(exc)) from None

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="cluebus-demo-")).resolve()
    run_id = uuid.uuid4().hex[:8]
    config = {**base, c.DATA_DIR: str(data_dir), c.KEYS_DIR: str(data_dir / "keys"),
              c.DATABASE_URL: "sqlite:///{data_dir}/{agency}.sqlite3",
              # The demo's own exchange and queues, so it never meets anyone else's messages.
              c.TRANSPORT: {**base[c.TRANSPORT], c.EXCHANGE: f"cluebus.demo-{run_id}",
                            c.DEAD_LETTER_EXCHANGE: f"cluebus.demo-{run_id}.dlx"},
              c.DELIVERY: {**base[c.DELIVERY], c.RELAY_INTERVAL_SECONDS: 0.5},
              c.OFFICE: {**base[c.OFFICE], c.SCAN_INTERVAL_SECONDS: 0.5,
                         c.HTTP_ADDRESS: _free_address(base[c.OFFICE][c.HTTP_ADDRESS])}}
    agencies = node_agencies(config)
    print(f"cluebus demo: broker {Connection(config[c.AMQP_URI]).as_uri()}, data in {data_dir}")
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=30))
    print(f"  keys for {len(c.agency_codes(config))} agencies in {config[c.KEYS_DIR]}")
    clock = ShiftedClock()  # shared by every node, so the demo can move days forward
    try:
        runner = start_nodes(config, agencies, office=True, clock=clock)
    except Exception as exc:  # the broker refused the topology, a port is taken, ...
        raise CommandError(f"could not start the nodes: {exc.__class__.__name__}: {exc}") from None
    dashboard = f"http://{config[c.OFFICE][c.HTTP_ADDRESS]}/dashboard"
    print(f"  nodes running: {', '.join(agencies)}, and the joint office (dashboard {dashboard})")
    ok = False
    try:
        with ClusterRpcProxy(container_config(config), timeout=60) as rpc:
            demo = Demo(rpc, agencies, clock=clock)
            try:
                demo.play()
            except DemoFailure as failure:
                print(f"\ndemo failed: {failure}")
                return 1
            ok = demo.print_traces()
            print("")
            print(f"The joint office's dashboard: {dashboard}")
            if args.stay:
                print("Nodes and dashboard keep running; Ctrl-C stops them.", flush=True)
                _wait_for_interrupt()
    finally:
        runner.stop()
        if not args.keep:
            _remove_topology(config)
            shutil.rmtree(data_dir, ignore_errors=True)
    print("")
    print("every message signed, receipted and verified" if ok else "SOME CHECKS FAILED (see above)")
    return 0 if ok else 1


def _free_address(address: str) -> str:
    """The configured address if free, else the same host on a free port."""
    host, _, port = address.rpartition(":")
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
            return address
        except OSError:
            probe.bind((host, 0))
            return f"{host}:{probe.getsockname()[1]}"


def _wait_for_interrupt() -> None:
    stop = Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.ready() or stop.send())
    stop.wait()


def _remove_topology(config) -> None:
    with Connection(config[c.AMQP_URI]) as connection:
        settings.topology(config).delete(connection)
