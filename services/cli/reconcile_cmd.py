"""``cluebus reconcile --with AGENCY --as AGENCY``: reconcile now (docs/protocol.md §20).

The running node of the agency acted as sends the summary (its control RPC ``reconcile``), as
only a running node receives the answer; the command then waits for the answer in the node's
own database (read directly, as the other reading commands do) and prints what it found.

Exit status: 0 in agreement, or when everything the other side lacked was put back to be sent
again; 1 when no answer came in time, or it showed something an operator must look at (ids the
other side holds that were not sent to it, a message it lacks that could not be sent again);
2 for a command that could not run (one line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import eventlet
from nameko.exceptions import RemoteError, RpcTimeout

from services import config as c
from services.bootstrap import DatabaseMissing, DatabaseUnavailable, open_store
from services.control_client import ControlClients
from services.handlers import reconciliation

from .errors import CommandError
from .running_node import require_running_node
from .progress import Progress

DEFAULT_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.2
CALL_TIMEOUT_SECONDS = 30.0


def register(commands) -> None:
    reconcile = commands.add_parser(
        "reconcile", help="compare with another agency what this one sent it; what it lacks is sent again")
    reconcile.add_argument("--with", dest="peer", required=True, metavar="AGENCY", help="the other agency")
    reconcile.add_argument("--as", dest="agency", required=True, help="the agency you act as (its node must run)")
    reconcile.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                           help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_SECONDS:.0f})")
    reconcile.add_argument("--json", action="store_true", help="print the round as JSON")
    reconcile.set_defaults(handler=reconcile_now)


def reconcile_now(args: argparse.Namespace) -> int:
    config = c.load_config(args.config)
    agencies, observers = c.agency_codes(config), c.observer_codes(config)
    for role, agency in (("--as", args.agency), ("--with", args.peer)):
        if agency not in agencies:
            raise CommandError(f"{role} {agency!r} is not a configured agency ({', '.join(agencies)})")
        if agency in observers:
            raise CommandError(f"{role} {agency}: the {agency} observes the bus and does not reconcile")
    if args.agency == args.peer:
        raise CommandError("--as and --with name the same agency")
    if args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    require_running_node(config, args.agency, why="it receives the answer")
    summary = _send_summary(config, args.agency, args.peer)
    window = f"{summary['window_from'] or 'the beginning'} .. {summary['window_until']}"
    if not args.json:
        print(f"{args.agency} ↔ {args.peer}: window {window}")
        print(f"  counted {summary['count']} message(s) sent to {args.peer} (ids sha256 "
              f"{summary['ids_sha256'][:16]}…); summary {summary['summary_message_id']}")
    found = _wait_for_answer(config, args.agency, summary["summary_message_id"], args.timeout)
    if found is None:
        print(f"cluebus: no answer from {args.peer} within {args.timeout:.0f} s (is its node running? the "
              f"summary stays in {args.agency}'s outbox until receipted; `cluebus outbox --as {args.agency}`)",
              file=sys.stderr)
        return 1
    if args.json:
        json.dump(found, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        _print_found(found, args.peer)
    problem = found["unexpected"] or set(found["missing"]) - set(found["resent"])
    return 1 if problem else 0


def _print_found(found: dict, peer: str) -> None:
    print(f"  {peer} holds {found['peer_count']}")
    if found["agreed"]:
        print("  in agreement")
        return
    if found["missing"]:
        print(f"  missing at {peer}: {len(found['missing'])}")
        for message_id in found["missing"]:
            print(f"    {message_id}{'  resent' if message_id in found['resent'] else '  still on its way'}")
        print(f"  resent {len(found['resent'])} (the same bytes, through the outbox)")
    if found["unexpected"]:
        print(f"  held by {peer} but not sent to it: {len(found['unexpected'])} (reported, nothing done)")
        for message_id in found["unexpected"]:
            print(f"    {message_id}")


def _send_summary(config, agency: str, peer: str) -> dict:
    clients = ControlClients(config, [agency], timeout=CALL_TIMEOUT_SECONDS)
    try:
        return clients[agency].reconcile(peer, request_id=f"cli:{uuid.uuid4()}")
    except RemoteError as exc:
        raise CommandError(f"refused {exc.value}") from None
    except RpcTimeout:
        raise CommandError(f"the {agency} node did not answer within {CALL_TIMEOUT_SECONDS:.0f} s") from None
    finally:
        clients.close()


def _wait_for_answer(config, agency: str, summary_id: str, timeout: float) -> dict | None:
    try:
        store = open_store(config, agency, create=False)
    except (DatabaseMissing, DatabaseUnavailable) as exc:
        raise CommandError(str(exc)) from None
    deadline = time.monotonic() + timeout
    try:
        with Progress(f"waiting for the answer to {summary_id[:8]}") as progress:
            while True:
                with store.transaction() as repo:
                    row = repo.reconciliation(summary_id)
                    found = reconciliation.round_view(row) if row is not None else None
                if found is not None and found["answered_at"] is not None:
                    progress.finish("answered")
                    return found
                if time.monotonic() >= deadline:
                    progress.finish("no answer")
                    return None
                progress.update()
                eventlet.sleep(POLL_SECONDS)
    finally:
        store.dispose()
