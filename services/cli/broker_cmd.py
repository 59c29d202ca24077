"""``cluebus broker``: the bus operator provisions the broker from the configuration."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adapters.transport.credentials import CredentialsError
from adapters.transport.management import ManagementError
from services import config as c
from services import provisioning, settings

from .errors import CommandError
from .progress import Progress


def register(commands) -> None:
    broker = commands.add_parser("broker", help="provision the broker: accounts, permissions, queues (bus operator)")
    actions = broker.add_subparsers(dest="broker_command", metavar="ACTION", required=True)

    setup = actions.add_parser("setup", help="create or update the bus and every agency's accounts (idempotent)")
    setup.add_argument("--admin", metavar="URI", help="management API with an administrator's account, e.g. "
                                                      "http://admin:secret@127.0.0.1:15672/ (default: BROKER.ADMIN_URI)")
    setup.add_argument("--rotate", action="store_true", help="give every account a new password")
    setup.add_argument("--keep-admin-access", action="store_true",
                       help="leave the administrator's own permissions on the virtual hosts (default: removed)")
    setup.set_defaults(handler=run_setup)

    defs = actions.add_parser("definitions", help="the same, as a RabbitMQ definitions file to import")
    defs.add_argument("--out", metavar="FILE", help="write to FILE (mode 0600: it holds password hashes)")
    defs.set_defaults(handler=run_definitions)

    creds = actions.add_parser("credentials", help="print an agency's bus AMQP URI (with its password)")
    creds.add_argument("agency")
    creds.add_argument("--control", action="store_true", help="its control-plane URI instead")
    creds.set_defaults(handler=run_credentials)

    remove = actions.add_parser("remove", help="delete the bus's virtual hosts, queues and accounts")
    remove.add_argument("--admin", metavar="URI")
    remove.add_argument("--yes", action="store_true", required=True, help="yes, delete every queued message too")
    remove.set_defaults(handler=run_remove)


def _failing(action, waiting: str | None = None):
    """``waiting``: what a progress line on stderr says while the action talks to the broker's
    management API (one request per account, permission and queue: seconds on a remote broker)."""
    try:
        if waiting is None:
            return action()
        with Progress(waiting, transient=True) as progress, progress.ticking():
            return action()
    except (ManagementError, CredentialsError) as exc:
        raise CommandError(str(exc)) from None


def run_setup(args: argparse.Namespace) -> int:
    config = c.load_config(args.config)
    plan, report = _failing(lambda: provisioning.setup(config, args.admin, rotate=args.rotate,
                                                       keep_admin_access=args.keep_admin_access),
                            "setting up the bus (virtual hosts, accounts, permissions, queues)")
    print(f"bus virtual host {plan.bus_vhost}: {len(plan.agencies)} agencies, "
          f"{len(plan.accounts)} accounts, {len(plan.queues)} queues")
    for line in report.created:
        print(f"  created {line}")
    for line in report.removed:
        print(f"  removed {line}")
    for line in report.left:
        print(f"  left {line}")
    if args.rotate:
        print("  every account has a new password")
    print(f"credentials: {settings.credential_store(config).path}/<agency>.json (mode 0600); "
          f"give each agency only its own file")
    return 0


def run_definitions(args: argparse.Namespace) -> int:
    config = c.load_config(args.config)
    document = _failing(lambda: provisioning.definitions_document(config))
    text = json.dumps(document, indent=2) + "\n"
    if args.out:
        from adapters.secret_files import write_atomically
        write_atomically(Path(args.out), text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def run_credentials(args: argparse.Namespace) -> int:
    config = c.load_config(args.config)
    if args.agency not in c.agency_codes(config):
        raise CommandError(f"{args.agency!r} is not a configured agency")
    uri = _failing(lambda: (settings.control_uri if args.control else settings.bus_uri)(config, args.agency))
    print(uri)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    config = c.load_config(args.config)
    plan = _failing(lambda: provisioning.remove(config, args.admin), "removing the bus")
    print(f"removed virtual hosts {', '.join(plan.vhosts)} and {len(plan.accounts)} accounts")
    return 0
