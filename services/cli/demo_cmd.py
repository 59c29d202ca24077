"""``cluebus demo``: every node in one process against the configured broker, with fresh
SQLite files and keys, playing realistic referrals end to end and printing their traces."""

from __future__ import annotations

import argparse
import logging
import secrets
import shlex
import shutil
import signal
import socket
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

from eventlet.event import Event

from adapters.crypto.keys import initialise_key_directory
from adapters.transport import uris
from adapters.transport.management import ManagementError
from services import config as c
from services import provisioning
from services.control_client import ControlClients
from services.demo.scenario import Demo, DemoFailure
from services.nodes.dependencies import ShiftedClock
from services.office.accounts import accounts_file
from services.bootstrap import node_agencies
from services.runner import start_nodes

from .errors import CommandError
from .progress import Progress
from .times import time_format


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
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="cluebus-demo-")).resolve()
    config = demo_config(base, data_dir, uuid.uuid4().hex[:8])
    agencies = node_agencies(config)
    when = time_format(args, config)

    def discard(*, provisioned: bool = True) -> None:
        """Unless --keep: the demo's bus and its data directory (the broker credentials made
        for it are secrets: never left behind)."""
        if not args.keep:
            if provisioned:
                provisioning.remove(config)
            shutil.rmtree(data_dir, ignore_errors=True)

    try:
        with Progress("setting up the demo's bus (virtual hosts, accounts, permissions)") as progress, \
                progress.ticking():
            plan, _ = provisioning.setup(config)
    except ManagementError as exc:
        discard(provisioned=False)
        raise CommandError(f"cannot provision the demo's bus: {exc}") from None
    print(f"cluebus demo: bus {uris.without_credentials(config[c.BROKER][c.BUS_URI])}, data in {data_dir}")
    print(f"  the demo's own virtual hosts and {len(plan.accounts)} broker accounts (one on the bus and one on "
          f"its own control plane per agency, and the bus operator's), credentials in {config[c.BROKER][c.CREDENTIALS_DIR]}")
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=30))
    print(f"  keys for {len(c.agency_codes(config))} agencies in {config[c.KEYS_DIR]}")
    # A staff account of the demo's own, so its dashboard can be opened (it goes with the data).
    demo_password = secrets.token_urlsafe(12)
    accounts_file(config).add(DEMO_ACCOUNT, demo_password)
    clock = ShiftedClock()  # shared by every node, so the demo can move days forward
    try:
        with Progress(f"starting {len(agencies)} nodes and the joint office") as progress, progress.ticking():
            runner = start_nodes(config, agencies, office=True, clock=clock)
    except Exception as exc:  # the broker refused an account, a port is taken, ...
        discard()
        raise CommandError(f"could not start the nodes: {exc.__class__.__name__}: {exc}") from None
    dashboard = f"http://{config[c.OFFICE][c.HTTP_ADDRESS]}/dashboard"
    print(f"  nodes running: {', '.join(agencies)}, and the joint office (dashboard {dashboard}"
          f"{'' if args.stay else ', gone when the demo ends: use --stay to keep it'})")
    ok = False
    referrals: list[tuple[str, str]] = []
    try:
        with ControlClients(config, c.agency_codes(config)) as rpc:
            demo = Demo(rpc, agencies, clock=clock, when=when,
                        progress=lambda label: Progress(label, transient=True))
            try:
                demo.play()
            except DemoFailure as failure:
                print(f"\ndemo failed: {failure}")
                return 1
            referrals = demo.referrals
            ok = demo.print_traces()
            print("")
            if args.stay:
                print(f"The joint office's dashboard: {dashboard} (log in as {DEMO_ACCOUNT!r}, password "
                      f"{demo_password!r})")
                print("Nodes and dashboard keep running; Ctrl-C stops them.", flush=True)
                _wait_for_interrupt()
            else:
                print("The joint office's dashboard stops with the demo: run `cluebus demo --stay` to browse it.")
    finally:
        runner.stop()
        discard()
    print("")
    print("every message signed, receipted and verified" if ok else "SOME CHECKS FAILED (see above)")
    if args.keep:
        print("")
        print(f"The demo's data is kept in {data_dir}. To inspect it (its own keys, databases and bus):")
        for line in inspect_commands(config, referrals[0][1] if referrals else None, args.config):
            print(f"  {line}")
    return 0 if ok else 1


def inspect_environ(config: dict) -> dict[str, str]:
    """The variables of the shipped configuration (services/cluebus.yaml) that make it the
    demo's: its data directory, keys, databases, broker accounts and virtual hosts. Without
    CLUEBUS_KEYS_DIR, `trace` would check the demo's signatures against other keys."""
    broker = config[c.BROKER]
    return {"CLUEBUS_DATA_DIR": str(config[c.DATA_DIR]), "CLUEBUS_KEYS_DIR": str(config[c.KEYS_DIR]),
            "CLUEBUS_DATABASE_URL": str(config[c.DATABASE_URL]),
            "CLUEBUS_CREDENTIALS_DIR": str(broker[c.CREDENTIALS_DIR]),
            "CLUEBUS_BUS_URI": str(broker[c.BUS_URI]), "CLUEBUS_CONTROL_URI": str(broker[c.CONTROL_URI]),
            "CLUEBUS_BROKER_USER_PREFIX": str(broker[c.USER_PREFIX]),
            "CLUEBUS_OFFICE_ACCOUNTS_FILE": str(config[c.OFFICE][c.ACCOUNTS_FILE])}


def inspect_commands(config: dict, referral: str | None, config_path: str | None = None) -> list[str]:
    """Shell lines that look at a kept demo's data: the environment, then a verified trace."""
    cluebus = "cluebus" + (f" --config {shlex.quote(config_path)}" if config_path else "")
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in inspect_environ(config).items())
    return [f"export {exports}",
            f"{cluebus} trace {referral or 'REFERRAL_ID'}",
            f"{cluebus} inbox --as public_security"]


DEMO_ACCOUNT = "demo"


def demo_config(base: dict, data_dir: Path, run_id: str) -> dict:
    """The demo's configuration: its own data directory, and its own bus (virtual hosts and
    accounts of its own, so it never meets anyone else's messages or accounts)."""
    broker = base[c.BROKER]
    host = uris.addresses(broker[c.BUS_URI])[0].rsplit("/", 1)[0]
    return {**base, c.DATA_DIR: str(data_dir), c.KEYS_DIR: str(data_dir / "keys"),
            c.DATABASE_URL: "sqlite:///{data_dir}/{agency}.sqlite3",
            c.BROKER: {**broker, c.BUS_URI: f"{host}/cluebus-demo-{run_id}",
                       c.CONTROL_URI: f"{host}/cluebus-demo-{run_id}.{{agency}}.control",
                       c.USER_PREFIX: f"demo-{run_id}.",
                       c.CREDENTIALS_DIR: str(data_dir / "credentials")},
            c.DELIVERY: {**base[c.DELIVERY], c.RELAY_INTERVAL_SECONDS: 0.5},
            c.OFFICE: {**base[c.OFFICE], c.SCAN_INTERVAL_SECONDS: 0.5,
                       c.HTTP_ADDRESS: _free_address(base[c.OFFICE][c.HTTP_ADDRESS]),
                       c.ACCOUNTS_FILE: str(data_dir / "office-accounts.yaml")}}


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

